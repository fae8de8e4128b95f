"""The public functional API: state types, ``init_state``, ``cprop_step`` and the heuristics.

Every step function is pure: it returns a new state and the scale, and never writes into its
inputs. Arguments are checked completely (hyperparameters, tree structure, namespace, device,
shape, dtype) before any arithmetic, so a bad call raises and changes nothing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import scale as _scale
from ._namespace import check_same_place, namespace_of, statistics_dtype
from ._tree import Tree, tree_paths, tree_structure, tree_unflatten
from .hyperparams import coefficients, validate_count, validate_hyperparameters
from .moments import clip_gradient, update_mean, update_moments

__all__ = [
    "CPropState",
    "RelativeRateState",
    "init_state",
    "init_relative_rate_state",
    "cprop_step",
    "moment_rate_step",
    "relative_rate_step",
]


class CPropState(NamedTuple):
    """State of :func:`cprop_step` and :func:`moment_rate_step`.

    count: exact number of steps taken (a Python int).
    mean:  m̂, the bias-corrected moving mean of g (array or tree of arrays).
    var:   d = v̂ - m̂², the bias-corrected moving variance of g (same tree as ``mean``).
    """

    count: int
    mean: Tree
    var: Tree


class RelativeRateState(NamedTuple):
    """State of :func:`relative_rate_step`: count, m̂ and â (moving mean of |g|)."""

    count: int
    mean: Tree
    abs_mean: Tree


def _zeros_like_leaf(leaf: Any, path: str) -> Any:
    xp = namespace_of(leaf, argument=f"like{path}")
    dtype = statistics_dtype(xp, leaf.dtype, f"like{path}")
    import array_api_compat as compat

    return xp.zeros(leaf.shape, dtype=dtype, device=compat.device(leaf))


def _zeros_tree(like: Tree) -> Tree:
    paths = tree_paths(like)
    if not paths:
        raise ValueError("like: the tree has no arrays")
    return tree_unflatten(like, [_zeros_like_leaf(leaf, path) for path, leaf in paths])


def init_state(like: Tree) -> CPropState:
    """Zero CProp state shaped like ``like`` (an array or a list/tuple/dict tree of arrays).

    Statistics live in the same namespace and on the same device as ``like``; their dtype is
    float64 for float64 input and float32 otherwise (float16/bfloat16 statistics are kept in
    float32, SPEC §6).

    >>> import numpy as np
    >>> state = init_state(np.zeros(3, dtype=np.float16))
    >>> state.count, state.mean.dtype
    (0, dtype('float32'))
    """
    zeros = _zeros_tree(like)
    return CPropState(count=0, mean=zeros, var=_zeros_tree(like))


def init_relative_rate_state(like: Tree) -> RelativeRateState:
    """Zero state for :func:`relative_rate_step`, shaped like ``like``."""
    return RelativeRateState(count=0, mean=_zeros_tree(like), abs_mean=_zeros_tree(like))


def _checked_leaves(state_tree: Tree, grad: Tree, state_name: str) -> list[tuple[Any, Any, Any]]:
    """[(xp, state_leaf, grad_leaf_in_statistics_dtype)], after checking everything.

    Raises before any arithmetic on: tree-structure mismatch, a mixed namespace, another
    device, another shape, a non-real-floating gradient, a dtype that would change the
    statistics' precision.
    """
    if tree_structure(state_tree) != tree_structure(grad):
        raise ValueError(
            f"grad: tree structure {tree_structure(grad)} does not match the state's "
            f"{tree_structure(state_tree)}"
        )
    checked = []
    for (path, state_leaf), (_, grad_leaf) in zip(tree_paths(state_tree), tree_paths(grad)):
        xp = namespace_of(state_leaf, grad_leaf, argument=f"grad{path} and {state_name}{path}")
        check_same_place(xp, state_leaf, grad_leaf, path)
        if tuple(grad_leaf.shape) != tuple(state_leaf.shape):
            raise ValueError(
                f"grad{path}: shape {tuple(grad_leaf.shape)} does not match the state's "
                f"{tuple(state_leaf.shape)}"
            )
        wanted = statistics_dtype(xp, grad_leaf.dtype, f"grad{path}")
        if wanted != state_leaf.dtype:
            raise TypeError(
                f"grad{path}: dtype {grad_leaf.dtype} needs "
                f"{getattr(wanted, '__name__', wanted)} statistics, but the state "
                f"holds {state_leaf.dtype}; re-create the state with init_state"
            )
        upcast = grad_leaf if grad_leaf.dtype == wanted else xp.astype(grad_leaf, wanted)
        checked.append((xp, state_leaf, upcast))
    return checked


def _check_state(state: Any, kind: type, argument: str = "state") -> int:
    if not isinstance(state, kind):
        raise TypeError(f"{argument}: expected a {kind.__name__}, got {type(state).__name__}")
    return validate_count(state.count, f"{argument}.count")


def _prepare(state: Any, kind: type, grad: Tree, beta: float) -> tuple[int, Any, list]:
    """(t, step coefficients, [(xp, mean, second statistic, grad leaf)]) after every check."""
    t = _check_state(state, kind) + 1
    second = state._fields[2]
    checked = _checked_leaves(state.mean, grad, "state.mean")
    _checked_leaves(state[2], grad, f"state.{second}")
    seconds = [leaf for _, leaf in tree_paths(state[2])]
    leaves = [(xp, mean, other, g) for (xp, mean, g), other in zip(checked, seconds)]
    return t, coefficients(float(beta), t), leaves


def _finish(state: Any, t: int, grad: Tree, results: list[tuple[Any, Any, Any]]) -> tuple:
    """The new state (same type) and the scale tree from per-leaf (mean, second, scale)."""
    means, seconds, scales = (list(column) for column in zip(*results))
    new_state = type(state)(t, tree_unflatten(state.mean, means), tree_unflatten(state[2], seconds))
    return new_state, tree_unflatten(grad, scales)


def cprop_step(
    state: CPropState,
    grad: Tree,
    *,
    beta: float = 0.999,
    c: float = 1.0,
    eps: float = 1e-8,
    cdf: str = "normal",
) -> tuple[CPropState, Tree]:
    """One CProp step: new state and the scale s ∈ [0, 1] for every element of ``grad``.

    SPEC §1 with the stable recurrence of §3:
    m̂_t = (1-α_t) m̂_{t-1} + α_t g,  d_t = (1-α_t)(d_{t-1} + α_t (g - m̂_{t-1})²),
    α_t = (1-β)/(1-β^t); n_t = (1-β^t)/(1-β);
    se = sqrt(max(d_t, 0)/(n_t - 1 + ε)) + ε;  s = min(c·|2F(m̂_t/se) - 1|, 1).

    The scale multiplies the wrapped optimizer's update, not the gradient. It has the
    statistics' dtype (float32 for float16/bfloat16 gradients). A non-finite gradient element
    gives NaN for that element (and its statistics stay non-finite); see docs/math.md.

    >>> import numpy as np
    >>> state = init_state(np.zeros(2))
    >>> state, s = cprop_step(state, np.array([1.0, -2.0]))
    >>> s  # t = 1: se = ε, so any |g| ≫ ε is fully confident
    array([1., 1.])
    """
    validate_hyperparameters(beta, c, eps, cdf)
    t, step, leaves = _prepare(state, CPropState, grad, beta)
    results = []
    for xp, mean, var, g in leaves:
        mean, var = update_moments(mean, var, g, step.alpha, step.keep, xp)
        scale = _scale.cprop_scale(
            mean, var, step.excess, c=float(c), eps=float(eps), cdf=cdf, xp=xp
        )
        results.append((mean, var, scale))
    return _finish(state, t, grad, results)


def moment_rate_step(
    state: CPropState, grad: Tree, *, beta: float = 0.999, c: float = 1.0
) -> tuple[CPropState, Tree]:
    """The paper's moment-rate heuristic: s = min(c·|m̂|/sqrt(v̂), 1) (SPEC §5).

    Uses the same state as :func:`cprop_step` (v̂ = d + m̂²); 0/0 (all-zero history) is 0.

    >>> import numpy as np
    >>> state, s = moment_rate_step(init_state(np.zeros(1)), np.array([3.0]))
    >>> float(s[0])
    1.0
    """
    validate_hyperparameters(beta, c)
    t, step, leaves = _prepare(state, CPropState, grad, beta)
    results = []
    for xp, mean, var, g in leaves:
        mean, var = update_moments(mean, var, g, step.alpha, step.keep, xp)
        results.append((mean, var, _scale.moment_rate(mean, var, c=float(c), xp=xp)))
    return _finish(state, t, grad, results)


def relative_rate_step(
    state: RelativeRateState, grad: Tree, *, beta: float = 0.999, c: float = 1.0
) -> tuple[RelativeRateState, Tree]:
    """The paper's relative-rate heuristic: s = min(c·|m̂|/â, 1), â = Σ w_τ|g_τ| (SPEC §5).

    >>> import numpy as np
    >>> state = init_relative_rate_state(np.zeros(1))
    >>> state, s = relative_rate_step(state, np.array([1.0]), beta=0.5)
    >>> state, s = relative_rate_step(state, np.array([-1.0]), beta=0.5)
    >>> float(s[0])  # m̂ = (0.5·1 - 1)/1.5, â = 1
    0.3333333333333333
    """
    validate_hyperparameters(beta, c)
    t, step, leaves = _prepare(state, RelativeRateState, grad, beta)
    results = []
    for xp, mean, abs_mean, g in leaves:
        g = clip_gradient(g, xp)
        mean = update_mean(mean, g, step.alpha, step.keep)
        abs_mean = update_mean(abs_mean, xp.abs(g), step.alpha, step.keep)
        results.append((mean, abs_mean, _scale.relative_rate(mean, abs_mean, c=float(c), xp=xp)))
    return _finish(state, t, grad, results)
