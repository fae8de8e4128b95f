"""Minimal pytrees: an array, or a list / tuple / dict (nested) of arrays.

The core accepts a single array or a tree of arrays and applies the same elementwise math to
every leaf. This module flattens a tree into its leaves and rebuilds it, and compares two
tree structures so that a mismatch between a state and a gradient is reported by path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["tree_leaves", "tree_paths", "tree_unflatten", "tree_map", "tree_structure"]

Tree = Any


def _is_node(x: Any) -> bool:
    return isinstance(x, (list, tuple, Mapping)) and not hasattr(x, "_fields")


def tree_paths(tree: Tree, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, leaf) pairs in a deterministic order (dict keys sorted)."""
    if isinstance(tree, Mapping):
        out: list[tuple[str, Any]] = []
        for key in sorted(tree, key=repr):
            out.extend(tree_paths(tree[key], f"{prefix}[{key!r}]"))
        return out
    if _is_node(tree):
        out = []
        for i, item in enumerate(tree):
            out.extend(tree_paths(item, f"{prefix}[{i}]"))
        return out
    return [(prefix, tree)]


def tree_leaves(tree: Tree) -> list[Any]:
    """The leaves of ``tree`` in the order of :func:`tree_paths`."""
    return [leaf for _, leaf in tree_paths(tree)]


def tree_structure(tree: Tree) -> Any:
    """A hashable description of the tree's shape (leaves replaced by ``None``)."""
    if isinstance(tree, Mapping):
        return ("dict", tuple((repr(k), tree_structure(tree[k])) for k in sorted(tree, key=repr)))
    if _is_node(tree):
        return (type(tree).__name__, tuple(tree_structure(item) for item in tree))
    return None


def tree_unflatten(like: Tree, leaves: list[Any]) -> Tree:
    """Rebuild a tree shaped like ``like`` from ``leaves`` (consumed in order)."""
    iterator = iter(leaves)

    def build(node: Tree) -> Tree:
        if isinstance(node, Mapping):
            built = {key: build(node[key]) for key in sorted(node, key=repr)}
            return {key: built[key] for key in node}
        if _is_node(node):
            return type(node)(build(item) for item in node)
        return next(iterator)

    return build(like)


def tree_map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``fn`` leafwise over trees of identical structure."""
    leaves = [fn(*args) for args in zip(tree_leaves(tree), *(tree_leaves(r) for r in rest))]
    return tree_unflatten(tree, leaves)
