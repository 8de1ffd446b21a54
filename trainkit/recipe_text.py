"""Recipe text: YAML parsing with trainkit's loader, limits on what a parsed recipe may hold, and how
values are quoted in recipe error messages.

Free of pydantic and of the recipe's schema, so that the schema, the ``--set`` overrides and the
validation messages (:mod:`trainkit.recipe`, :mod:`trainkit.recipe_overrides`,
:mod:`trainkit.recipe_validation`) share it without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from trainkit.errors import RecipeError

# Free-form mappings (builder_args, optimizer kwargs) could nest without end; pydantic's serializer
# and Python's recursion limit give up at a few hundred levels, with exceptions of their own.
MAX_DEPTH = 32
MAX_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float.

    YAML 1.1 (PyYAML) only accepts floats with a dot (``1.0e-3``), so a learning rate written
    ``1e-3`` would arrive as the string "1e-3". This adds the YAML 1.2 spelling on a subclass, so
    the global SafeLoader is left untouched. A key repeated in one mapping is an error (PyYAML
    keeps the last one silently, so ``optimizer: adam`` ... ``optimizer: sgd`` trained with SGD).
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key_node, _ in node.value:
                # Merged keys (<<) may be overridden by design; only keys written here count.
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = (key_node.tag, key_node.value)
                if key in first:
                    line = first[key].start_mark.line + 1
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key_node.value!r} (first at line {line}); keep one", key_node.start_mark)
                first[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, where: str = "") -> Any:
    """Parses YAML text with trainkit's loader.

    Args:
        text: YAML source.
        where: Prefix for error messages (usually ``"path: "``).

    Raises:
        RecipeError: ``recipe-yaml`` with the line and column of the problem.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = err.problem or err.context or "invalid YAML"
        # An editor's tab indent read as "found character '\t' that cannot start any token".
        tabs = " YAML indents with spaces, not tabs: replace the tabs with spaces." if r"'\t'" in problem else ""
        raise RecipeError("recipe-yaml", one_line(f"{where}YAML syntax error{at}: {problem}.{tabs}")) from None
    except yaml.YAMLError as err:  # e.g. ReaderError for control characters
        raise RecipeError("recipe-yaml", one_line(f"{where}YAML error: {err}")) from None
    except (ValueError, OverflowError, RecursionError, TypeError) as err:
        # The safe constructors can still fail on values: an impossible date ("2024-13-45"), an
        # integer longer than Python converts from text, nesting deeper than the recursion limit.
        raise RecipeError("recipe-yaml", one_line(f"{where}YAML value cannot be read: {type(err).__name__}: {err}")) from None


def too_big(value: Any) -> str | None:
    """Why a parsed recipe is too deep, too large or cyclic to handle, or None when it is fine.

    YAML anchors let a short file describe a cyclic value (``&a [*a]``) or an exponentially large
    one ("billion laughs"); both would hang or overflow the recursion limit later. Heights and
    expanded sizes are computed once per container (memoised by id), without recursion.
    """
    height: dict[int, int] = {}
    size: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(value, False)]
    open_ids: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, Mapping | list | tuple) or (id(node) in height and not children_done):
            continue
        children = list(node.values()) if isinstance(node, Mapping) else list(node)
        if not children_done:
            if id(node) in open_ids:
                return "refers to itself through a YAML anchor"
            open_ids.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children)
            continue
        open_ids.discard(id(node))
        containers = [c for c in children if isinstance(c, Mapping | list | tuple)]
        height[id(node)] = 1 + max((height[id(c)] for c in containers), default=0)
        size[id(node)] = len(children) + sum(size[id(c)] for c in containers)
        if height[id(node)] > MAX_DEPTH:
            return f"nests lists or mappings more than {MAX_DEPTH} levels deep"
        if size[id(node)] > MAX_NODES:
            return f"expands to more than {MAX_NODES} values"
    return None


def short(value: Any, limit: int = 60) -> str:
    """A one-line repr of a value, cut to ``limit`` characters (and safe for huge integers)."""
    try:
        text = repr(value)
    except ValueError:  # int too large to convert to text (Python's 4300-digit limit)
        text = f"<integer with more than {4300} digits>"
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {short(value)}"


def one_line(text: str) -> str:
    return " ".join(str(text).split())
