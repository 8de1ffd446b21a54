"""``--set a.b=c`` overrides and sweep values: setting a value at a dotted path of a recipe mapping.

Each key of a path is checked against the recipe's schema on the way (an unknown key is named with
the closest valid one), missing sections are created, list items are addressed by index, and an
optimizer or loss written as a bare name takes keyword paths. The recipe's model is passed in:
:mod:`trainkit.recipe` binds it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from trainkit.errors import RecipeError
from trainkit.recipe_paths import Schema
from trainkit.recipe_text import describe, parse_yaml, short


def apply_overrides(raw: Mapping[str, Any] | None, overrides: Sequence[str], schema: type[BaseModel]) -> dict[str, Any]:
    """Applies ``--set`` overrides to a parsed recipe mapping, returning a new mapping.

    Each override is ``dotted.path=value``; the value is read as YAML (``1e-3`` included, as a
    float), list items are addressed by index (``model.layers.0.units=64``), missing or null
    sections are created (``training.early_stopping.patience=3``), an optimizer or loss given
    by name takes keyword paths (``optimizer.learning_rate=0.01`` on ``optimizer: adam``), and
    ``null`` removes a key the recipe sets where null is not a value of its own (``data.rows=null``:
    its default applies).

    Args:
        raw: The recipe mapping (not modified).
        overrides: The override strings, applied in order.
        schema: The recipe's model (:class:`~trainkit.recipe.Recipe`), whose fields the paths
            must name.

    Raises:
        RecipeError: ``bad-override`` when a string has no ``=``, an empty key, a path into a
            scalar, a list index out of range, an unknown key or an unreadable value.
    """
    if isinstance(overrides, str):  # a single override rather than a list of them
        overrides = [overrides]
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RecipeError("recipe-invalid-value", f"A recipe must be a mapping of keys (task, data, model, loss, ...), got {describe(raw)}.")
    try:
        result = copy.deepcopy(dict(raw))
    except RecursionError:
        raise RecipeError("recipe-invalid-value", "The recipe is nested too deeply to override.") from None
    for override in overrides:
        keys, value = _parse_override(override)
        set_at(result, keys, value, override, schema)
    return result


def apply_values(raw: Mapping[str, Any], values: Mapping[str, Any], schema: type[BaseModel]) -> dict[str, Any]:
    """Sets already-parsed values at dotted paths (a sweep variant), returning a new mapping.

    The same path rules as :func:`apply_overrides`, without reading the values as YAML text.

    Raises:
        RecipeError: ``bad-override`` for a path the recipe cannot hold.
    """
    result = copy.deepcopy(dict(raw))
    for path, value in values.items():
        set_at(result, path.split("."), value, f"{path}={short(value)}", schema)
    return result


def set_at(tree: dict[str, Any], keys: list[str], value: Any, label: str, schema: type[BaseModel]) -> None:
    """Sets ``value`` at the path ``keys`` of a recipe mapping, in place, checking each key.

    Args:
        tree: The recipe mapping to change.
        keys: The path (``["training", "epochs"]``).
        value: The parsed value.
        label: How errors name the change (the ``--set`` string, ``sweep PATH``).
        schema: The recipe's model.

    Raises:
        RecipeError: ``bad-override`` for a path the recipe cannot hold.
    """
    _named_as_mapping(tree, keys, schema)
    _set_path(tree, keys, value, label, schema)


def _named_as_mapping(raw: dict[str, Any], keys: list[str], schema: type[BaseModel]) -> None:
    """``optimizer: adam`` set or swept at ``optimizer.learning_rate`` becomes ``{name: adam}`` first.

    Changing the learning rate of a recipe that names its optimizer by a bare string is the most
    common override there is; the spelling of the optimizer should not stand in its way.
    """
    if len(keys) > 1 and keys[0] == "optimizer" and keys[0] not in raw:  # the default optimizer
        raw["optimizer"] = {"name": schema.model_fields["optimizer"].default}
    if len(keys) > 1 and keys[0] in ("optimizer", "loss") and isinstance(raw.get(keys[0]), str):
        raw[keys[0]] = {"name": raw[keys[0]]}


def _parse_override(override: Any) -> tuple[list[str], Any]:
    if not isinstance(override, str) or "=" not in override:
        raise RecipeError("bad-override", f"Override {short(override)} needs the form key.path=value, e.g. training.epochs=5.")
    key, _, text = override.partition("=")
    keys = key.strip().split(".")
    if any(not k.strip() for k in keys):
        raise RecipeError("bad-override", f"Override {short(override)} has an empty key; write e.g. optimizer.learning_rate=0.01.")
    try:
        value = parse_yaml(text)
    except RecipeError as err:
        raise RecipeError("bad-override", f"Override {short(override)}: the value is not valid YAML ({err.message}){cut_value_hint(override)}") from None
    return [k.strip() for k in keys], value


def cut_value_hint(override: str) -> str:
    """``' The shell cut ...'`` when ``override``'s value opens more brackets than it closes, else ``''``.

    ``--set sweep.optimizer.learning_rate=[1.0, 1e-3]`` without quotes reaches trainkit as
    ``...=[1.0,`` and a stray ``1e-3]``: said only as a YAML error at the stream's end (or, for
    ``train``, as an unexpected extra argument), the missing quotes were left to guess.
    """
    key, _, text = override.partition("=")
    if any(c.isspace() for c in text):  # quoted, spaces and all: a bracket left open in the quotes
        return ""
    if text.count("[") <= text.count("]") and text.count("{") <= text.count("}"):
        return ""
    return (f" If the value holds spaces, the shell cut it at the first one: quote the whole override, "
            f"--set '{key.strip()}={text} ...'.")


def _set_path(root: dict[str, Any], keys: list[str], value: Any, override: str, model: type[BaseModel]) -> None:
    node: Any = root
    schema = Schema((model,), model)
    for depth, key in enumerate(keys):
        dotted = ".".join(keys[: depth + 1])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            index = _list_index(key, node, dotted, override)
            schema = schema.item()
            if last:
                node[index] = value
            else:
                node[index] = _child_container(node[index], schema, dotted, override)
                node = node[index]
            continue
        schema = schema.narrow(node).field(key, dotted, override)
        if last and value is None and not schema.nullable and key in node:
            # `--set data.rows=null`: the way to remove a key the recipe sets (rows on a csv source,
            # which the error asks to remove) where null is no value of its own; its default applies.
            del node[key]
        elif last:
            node[key] = value
        else:
            node[key] = _child_container(node.get(key), schema, dotted, override)
            node = node[key]


def _list_index(key: str, node: list[Any], dotted: str, override: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        # An index past the end meant to add an item: an override replaces items, it adds none.
        whole = dotted.rsplit(".", 1)[0]
        raise RecipeError("bad-override", f"Override {short(override)}: {dotted} is not an item of a list of {len(node)}; use an index from 0 to {len(node) - 1}"
                                          + (f", or set the whole list to add or remove items ({whole}=[...], quoted)." if key.isdigit() else "."))
    return int(key)


def _child_container(current: Any, schema: Schema, dotted: str, override: str) -> Any:
    """The dict or list to descend into, creating a mapping where the recipe has none (or null)."""
    if isinstance(current, dict | list):
        return current
    if current is None and schema.is_mapping():
        return {}
    if current is None:  # a list the recipe does not set: its items cannot be set one by one
        raise RecipeError("bad-override", f"Override {short(override)}: the recipe sets no {dotted}, so it has no items to change; set the whole list: --set '{dotted}=[...]'.")
    raise RecipeError("bad-override", f"Override {short(override)}: {dotted} holds {describe(current)}, which has no keys to set.")
