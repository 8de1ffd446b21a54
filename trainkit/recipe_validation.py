"""Pydantic's validation errors, as the one line a recipe error shows.

pydantic reports every problem with its own location syntax (union members' labels inside the
path) and wording ("Input should be a valid dictionary or instance of TrainingConfig"); a recipe's
user wrote YAML keys. This names the dotted path as written, the closest valid key or choice, and
what was expected, for up to three problems.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from trainkit.errors import RecipeError, closest_match
from trainkit.recipe_paths import did_you_mean, fields_at, literal_values, schema_at
from trainkit.recipe_text import one_line, parse_yaml, short

_MAX_REPORTED = 3  # problems named in one message


def to_recipe_error(err: ValidationError, raw: Mapping[str, Any], where: str, schema: type[BaseModel]) -> RecipeError:
    """Turns a pydantic ``ValidationError`` into one :class:`~trainkit.errors.RecipeError` line.

    Args:
        err: What pydantic raised validating ``raw``.
        raw: The mapping validated.
        where: Prefix of the message (``"path: "`` or ``""``).
        schema: The model ``raw`` was validated against (for the valid keys and choices).

    Returns:
        ``recipe-unknown-key`` when a key is unknown, else ``recipe-invalid-value``; up to three
        problems in one line, unknown keys first.
    """
    problems: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for error in err.errors():
        path = _dotted(error["loc"], raw, include_last=error["type"] in ("missing", "extra_forbidden"))
        kind = "unknown" if error["type"] == "extra_forbidden" else "invalid"
        problems.setdefault(path, (kind, []))[1].append(error)
    # Unknown keys first: they usually explain the other errors (a misspelt key looks missing).
    ordered = sorted(problems.items(), key=lambda item: item[1][0] != "unknown")
    code = "recipe-unknown-key" if ordered[0][1][0] == "unknown" else "recipe-invalid-value"
    parts = [_describe_problem(path, kind, errors, raw, schema) for path, (kind, errors) in ordered[:_MAX_REPORTED]]
    more = len(ordered) - _MAX_REPORTED
    tail = f" (and {more} more problem{'s' * (more > 1)})" if more > 0 else ""
    return RecipeError(code, one_line(where + " ".join(parts) + tail))


def _dotted(loc: tuple[Any, ...], raw: Any, include_last: bool) -> str:
    """The user's dotted path for a pydantic location, dropping pydantic's union-member labels.

    Pydantic inserts the name of the union member tried ("dense", "str", "dict[str,any]") into the
    location; only the steps that exist in the user's data are kept (plus a missing/unknown key).
    """
    parts: list[str] = []
    node = raw
    for i, step in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, Mapping) and not last and step == node.get("type"):
            continue  # the discriminator label pydantic adds for the layer union
        in_mapping = isinstance(node, Mapping) and step in node
        in_list = isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        if in_mapping or in_list:
            parts.append(str(step))
            node = node[step]
        elif isinstance(step, str) and (nested := _nested_value(node, step)) is not None:
            parts.append(step)  # a sweep path flattened from nested mappings (_flatten_sweep)
            node = nested
        elif include_last and last:
            parts.append(str(step))
    return ".".join(parts)


def _nested_value(node: Any, dotted: str) -> Any:
    """The value at ``dotted`` through nested mappings (``{a: {b: 1}}`` at ``a.b``), else None."""
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _describe_problem(path: str, kind: str, errors: list[dict[str, Any]], raw: Mapping[str, Any], schema: type[BaseModel]) -> str:
    first = errors[0]
    if kind == "unknown":
        parent, _, key = path.rpartition(".")
        known = fields_at(schema, parent, raw)
        return f"Unknown key {path}.{did_you_mean(key, known, parent, schema)}"
    if first["type"] == "missing":
        return f"Missing required key {path}."
    if first["type"] == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag", "")
        types_ = _tags_at(schema, path, raw)
        return f"Invalid value at {path}.type: received {short(tag)}; expected one of {', '.join(types_)}.{_closest_quoted(str(tag), types_)}"
    if first["type"] == "union_tag_not_found":
        return f"Invalid value at {path}: a layer needs a 'type', one of {', '.join(_tags_at(schema, path, raw))}."
    if first["type"] == "value_error":
        message = str(first["msg"]).removeprefix("Value error, ")
        return f"Invalid {path or 'recipe'}: {message}." if path else f"Invalid recipe: {message}."
    expected = " or ".join(dict.fromkeys(_expectation(e) for e in errors))
    if path.startswith("sweep.") and first["type"] == "list_type":
        expected += f" of the values to try, such as {_as_list(first.get('input'))}"
    elif first["type"] == "list_type" and not isinstance(first.get("input"), (Mapping, list, type(None))):
        # metrics: accuracy (YAML's one name, not a list of one) said only "expected a valid list".
        # An empty value (allow:) is YAML's null, no name: "such as [None]" showed no list to write.
        expected += f", such as {_as_list(first.get('input'))}"
    hint = _closest_choice(path, errors, raw, schema) or _boolean_word(errors)
    return f"Invalid value at {path or 'recipe'}: received {short(first.get('input'))}; expected {expected}.{hint}"


def _as_list(value: Any) -> str:
    """The list a scalar written where a list belongs stands for: ``[0.1, 0.01]`` for ``'0.1,0.01'``.

    ``--set metrics=accuracy,auc`` (or a sweep's ``0.1,0.01``) is one YAML string with commas in
    it, and the list shown to write instead was that string in brackets, ``['accuracy,auc']``:
    one name that is no metric. Each comma-separated part is read as YAML, as the list's items would be.
    """
    if not isinstance(value, str) or "," not in value:
        return f"[{short(value)}]"
    # An empty part (a trailing comma, accuracy,) is no item: it showed ['accuracy', None].
    parts = [part.strip() for part in value.split(",") if part.strip()]
    try:
        items = [parse_yaml(part) for part in parts]
    except RecipeError:  # a part that is no YAML value of its own: shown as text
        items = parts
    return f"[{', '.join(short(item) for item in items)}]"


def _boolean_word(errors: list[dict[str, Any]]) -> str:
    """What to do about a boolean where a name belongs: YAML reads an unquoted ``no`` as False, so
    a csv column named ``no`` (``target: no``, ``drop: [off]``) was "received False"."""
    if not isinstance(errors[0].get("input"), bool) or not any(e["type"] == "string_type" for e in errors):
        return ""
    return " YAML reads an unquoted yes, no, on, off, true or false as a boolean: put a name that is one of those words in quotes ('no')."


def _closest_choice(path: str, errors: list[dict[str, Any]], raw: Mapping[str, Any], schema: type[BaseModel]) -> str:
    """' Did you mean binary?' for a misspelt value of a field with fixed choices (a Literal).

    The choices come from the schema at ``path``, so every such field (task, data.source,
    training.on_nan, a layer's padding, ...) gets the hint without a rule of its own.
    """
    value = errors[0].get("input")
    if not isinstance(value, str) or not any(e["type"] == "literal_error" for e in errors):
        return ""
    position = schema_at(schema, path, raw)
    choices = [v for t in position.types if typing.get_origin(t) is Literal for v in typing.get_args(t) if isinstance(v, str)] if position else []
    return _closest_quoted(value, choices)


def _expectation(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "a valid value"))
    for prefix in ("Input should be ", "Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith(("greater", "less", "at least", "at most")):
        message = f"a value {message}"  # "greater than 0" reads as a fragment on its own
    # "a valid dictionary or instance of TrainingConfig": the class is ours, the user wrote a mapping.
    message = re.sub(r"a valid dictionary or (instance of \w+|object to extract fields from)", "a mapping of keys (key: value, ...)", message)
    return message.rstrip(".")


def _tags_at(schema: type[BaseModel], path: str, raw: Mapping[str, Any]) -> list[str]:
    """The ``type`` values the models of a tagged union at ``path`` take (the layer types)."""
    position = schema_at(schema, path, raw)
    return [tag for model in (position.models() if position else []) for tag in literal_values(model.model_fields.get("type"))]


def _closest_quoted(name: str, choices: Sequence[str]) -> str:
    match = closest_match(name, choices)
    return f" Did you mean {match}?" if match is not None else ""
