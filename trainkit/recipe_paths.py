"""Positions in a recipe's schema: which types a dotted path (``model.layers.0.units``) may hold.

The ``--set`` overrides walk a path to check each key before setting it, and the validation
messages find the valid keys and choices where a recipe went wrong; both follow the schema along
the user's data, so that a layer is read as the model of its ``type``. The schema's root model is
passed in, so that this module does not import the recipe that uses it.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel

from trainkit.errors import RecipeError
from trainkit.recipe_text import short


class Schema:
    """The set of types a position in a recipe may hold (the members of a union, ``None`` left out)."""

    def __init__(self, types_: tuple[Any, ...], root: type[BaseModel]) -> None:
        flat = tuple(flatten_types(types_))
        self.types = tuple(t for t in flat if t is not type(None))
        self.nullable = any(t is type(None) or t is Any for t in flat)  # whether null is a value here
        self.root = root  # the whole recipe's model: where a key of another section belongs

    def models(self) -> list[type[BaseModel]]:
        """The pydantic models among the types (several for a layer, one for a section)."""
        return [t for t in self.types if isinstance(t, type) and issubclass(t, BaseModel)]

    def is_mapping(self) -> bool:
        """Whether the position holds a mapping (a section, a layer or a free ``dict``)."""
        return bool(self.models()) or self.is_free_mapping()

    def is_free_mapping(self) -> bool:
        """A ``dict[str, Any]`` position (builder_args, {name: adam, ...}) accepts any key."""
        return any(t is Any or typing.get_origin(t) is dict or t is dict for t in self.types)

    def narrow(self, node: Any) -> Schema:
        """Keeps the layer model whose ``type`` matches the mapping being edited."""
        models = self.models()
        if len(models) > 1 and isinstance(node, dict) and "type" in node:
            chosen = [m for m in models if node["type"] in literal_values(m.model_fields.get("type"))]
            if chosen:
                return Schema(tuple(chosen), self.root)
        return self

    def field(self, key: str, dotted: str, override: str) -> Schema:
        """The schema of ``key`` below this position.

        Raises:
            RecipeError: ``bad-override`` naming ``override`` when no model here has ``key``.
        """
        if self.is_free_mapping():
            return Schema((Any,), self.root)
        known: dict[str, Any] = {}
        for model in self.models():
            known.update({name: f.annotation for name, f in model.model_fields.items()})
        if key in known:
            return Schema((known[key],), self.root)
        if known:
            parent = dotted.rpartition(".")[0]
            hint = did_you_mean(key, known, parent, self.root)
            raise RecipeError("bad-override", f"Override {short(override)}: unknown key {dotted}.{hint}")
        raise RecipeError("bad-override", f"Override {short(override)}: {dotted} is inside a value that has no keys.")

    def item(self) -> Schema:
        """The schema of the items of a list position."""
        items = [typing.get_args(t)[0] for t in self.types if typing.get_origin(t) is list and typing.get_args(t)]
        return Schema(tuple(items) or (Any,), self.root)


def flatten_types(types_: tuple[Any, ...]) -> Iterator[Any]:
    """The plain types of ``types_``: unions split into their members, ``Annotated`` unwrapped."""
    for t in types_:
        origin = typing.get_origin(t)
        if origin is Annotated:
            yield from flatten_types((typing.get_args(t)[0],))
        elif origin is Union or origin is types.UnionType:
            yield from flatten_types(typing.get_args(t))
        else:
            yield t


def literal_values(field: Any) -> tuple[Any, ...]:
    """The values a pydantic field's ``Literal`` annotation allows (``()`` for none or no field)."""
    if field is None:
        return ()
    return tuple(v for t in flatten_types((field.annotation,)) if typing.get_origin(t) is Literal for v in typing.get_args(t))


def schema_at(root: type[BaseModel], dotted: str, raw: Mapping[str, Any]) -> Schema | None:
    """The schema of the position a dotted path of ``raw`` names in ``root``, or None if it has none.

    Walks ``raw`` along with the schema so that a layer is read as the model of its ``type``.
    """
    schema = Schema((root,), root)
    node: Any = raw
    for key in [k for k in dotted.split(".") if k]:
        if isinstance(node, list):
            schema = schema.item()
            node = node[int(key)] if key.isdigit() and int(key) < len(node) else None
            continue
        fields = {name: f.annotation for m in schema.narrow(node).models() for name, f in m.model_fields.items()}
        if key not in fields:
            return None
        schema = Schema((fields[key],), root)
        node = node.get(key) if isinstance(node, Mapping) else None
    return schema.narrow(node)


def fields_at(root: type[BaseModel], dotted: str, raw: Mapping[str, Any]) -> list[str]:
    """The valid keys of the schema model at a dotted path of ``raw`` (for "did you mean")."""
    schema = schema_at(root, dotted, raw)
    return [name for m in schema.models() for name in m.model_fields] if schema else []


def did_you_mean(key: str, known: Sequence[str] | Mapping[str, Any], parent: str, root: type[BaseModel] | None = None) -> str:
    """' Did you mean parent.key?' for the closest of the ``known`` keys; else, given the recipe's
    ``root`` model, the section where ``key`` belongs; else the list of the known keys."""
    names = list(known)
    match = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    prefix = f"{parent}." if parent else ""
    if match:
        return f" Did you mean {prefix}{match[0]}?"
    elsewhere = _elsewhere(str(key), parent, root) if root is not None else ""
    if elsewhere:
        return elsewhere
    if names:
        return f" Valid keys{' of ' + parent if parent else ''}: {', '.join(names)}."
    return ""


def _elsewhere(key: str, parent: str, root: type[BaseModel]) -> str:
    """' Did you mean training.epochs?' for a key of another section written here, when nothing
    here is close: a wrong nesting (``epochs`` at the top level, ``layers`` beside ``model``,
    ``learning_rate`` under ``training``) listed the valid keys, none of them the one meant."""
    # The one key of a free mapping (optimizer: {name: adam, ...}), which has no fields to search.
    if key == "learning_rate" and parent != "optimizer":
        return " Did you mean optimizer.learning_rate? (optimizer: {name: adam, learning_rate: 0.01})"
    places = [f"{section}.{key}" for section in _sections(root) if section != parent and key in fields_at(root, section, {})]
    if parent and key in root.model_fields:
        places.append(key)  # a top-level key written inside a section (metrics under training)
    if not places:
        return ""
    section = places[0].rpartition(".")[0]
    return f" Did you mean {places[0]}? ({key} belongs {'under ' + section if section else 'at the top level'})"


def _sections(root: type[BaseModel]) -> list[str]:
    """The fields of ``root`` that hold a section of their own (``data``, ``model``, ``training``...)."""
    return [name for name, field in root.model_fields.items() if Schema((field.annotation,), root).models()]
