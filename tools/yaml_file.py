"""Reading a person's YAML (or JSON) file safely: bounded in size before and after alias
expansion, and no key named twice (YAML would keep the last silently)."""

from __future__ import annotations

from typing import Any

import yaml

from asap.tools.hpo.params import SpaceError

MAX_YAML_BYTES = 1_000_000
MAX_YAML_NODES = 100_000  # after alias expansion


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes ``node`` stands for once aliases are expanded, counted over the shared
    graph (linear in the document): nested aliases ("billion laughs") grow this exponentially."""
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a recursive alias counts once
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        memo[key] = 1 + sum(_expanded_size(c, memo) for c in children)
    return memo[key]


def _no_duplicate_keys(node: yaml.Node, source: str, seen: set[int]) -> None:
    """Refuse a mapping that names a key twice: YAML keeps the last silently, so a parameter
    written twice would lose its first definition without a word."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in keys:
                    raise SpaceError(f"{source} names {key.value!r} twice (line "
                                     f"{key.start_mark.line + 1}); each key once")
                keys.add(key.value)
            _no_duplicate_keys(value, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _no_duplicate_keys(item, source, seen)


def load_yaml(text: str, source: str) -> Any:
    """YAML (or JSON) from a person's file, bounded in size before and after alias expansion; a
    :class:`SpaceError` names ``source`` and the problem."""
    if len(text) > MAX_YAML_BYTES:
        raise SpaceError(f"{source} is {len(text)} bytes; a search space file is at most "
                         f"{MAX_YAML_BYTES}")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:
            raise SpaceError(f"{source} expands to {size} values through its aliases (*name); "
                             f"at most {MAX_YAML_NODES} are read")
        _no_duplicate_keys(node, source, set())
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise SpaceError(f"{source} is not valid YAML/JSON: {exc}") from None
    except RecursionError:  # the parser and the checks recurse once per level
        raise SpaceError(f"{source} nests too deeply; a search space is a few levels deep"
                         ) from None
    finally:
        loader.dispose()
