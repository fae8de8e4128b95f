"""PyTorch adapter: CProp as a genuine ``torch.optim.Optimizer``.

Three ways in, all driven by the math of :mod:`cprop_core`:

* :class:`CProp` wraps any optimizer instance: ``CProp(torch.optim.Adam(params, lr=3e-3))``.
  The scale s comes from each parameter's raw gradient and multiplies the wrapped optimizer's
  *update*: θ ← θ_before + s·(θ_after − θ_before).
* :func:`cprop_class` turns an optimizer class into a params-first class with the same keyword
  arguments plus ``cprop_beta``/``cprop_c``/``cprop_eps``/``cprop_cdf``/``cprop_rule`` (for
  configs and ``ZeroRedundancyOptimizer(optimizer_class=...)``).
* :class:`CPropSGD` and :class:`CPropAdam` fold s into the update without the before/after copy,
  with a for-loop and a foreach (multi-tensor) path; CPropAdam shares Adam's second moment with
  CProp when ``betas[1] == cprop_beta``.

Where the math comes from (STYLE.md: no second copy of the formulas):

* the for-loop paths call :func:`cprop_core.cprop_step` (or the heuristics
  :func:`cprop_core.moment_rate_step`, :func:`cprop_core.relative_rate_step`) once per
  parameter, with the parameter's own :class:`cprop_core.CPropState`;
* the foreach path updates the moments with :func:`cprop_core.moments.update_moments` and
  computes the scale with :func:`_foreach_cprop_scale`, a multi-tensor kernel that must equal
  :func:`cprop_core.scale.cprop_scale` (tests/backends/test_torch_fused.py proves it bit for
  bit on CPU);
* the shared-moment path of CPropAdam uses :func:`cprop_core.moments.update_mean` and
  :func:`cprop_core.scale.cprop_scale` on d = v̂ − m̂² derived from Adam's ``exp_avg_sq``
  (SPEC §3 allows storing (m, v); its accuracy against the core is tested and documented in
  docs/torch.md);
* on the CPU, with numba installed, eligible parameters (rule 'cprop', dense contiguous
  float32/float64 tensors, no torch.compile trace) take a compiled single-pass path built from
  the numba blocks of :mod:`cprop_core.backends.numpy` (see "CPU fast path" below and
  docs/torch.md); ``use_fast_path = False`` forces the ATen path, which
  tests/backends/test_torch_fastpath.py proves it equal to.

Per-parameter state (inside ``optimizer.state[p]``, next to the wrapped optimizer's own
entries, hence inside ``state_dict()['state']``): ``cprop_count`` (exact int),
``cprop_mean`` (m̂) and ``cprop_var`` (d) — or ``cprop_abs_mean`` for the relative-rate rule.
Statistics are float32 for float16/bfloat16 parameters, float64 for float64 ones.
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

import cprop_core
from cprop_core import CPropState, RelativeRateState
from cprop_core.hyperparams import bias_correction, coefficients, validate_hyperparameters
from cprop_core.moments import clip_gradient, update_mean, update_moments
from cprop_core.scale import cprop_scale

__all__ = ["CProp", "CPropAdam", "CPropSGD", "RULES", "cprop_class"]

RULES = ("cprop", "moment_rate", "relative_rate")
_GROUP_KEYS = ("cprop_beta", "cprop_c", "cprop_eps", "cprop_cdf", "cprop_rule")
_SQRT1_2 = math.sqrt(0.5)


# ---------------------------------------------------------------------------------------------
# Validation and small tensor helpers
# ---------------------------------------------------------------------------------------------


def _validate(beta: Any, c: Any, eps: Any, cdf: Any, rule: Any, prefix: str = "") -> None:
    """ValueError naming the argument (``beta`` or, with prefix ``cprop_``, ``cprop_beta``)."""
    try:
        validate_hyperparameters(beta, c, eps, cdf)
    except ValueError as error:  # the core's messages start with the argument's name
        raise ValueError(f"{prefix}{error}") from None
    if rule not in RULES:
        raise ValueError(f"{prefix}rule must be one of {', '.join(map(repr, RULES))}; got {rule!r}")


def _validate_group(group: dict[str, Any]) -> None:
    _validate(*(group[key] for key in _GROUP_KEYS), prefix="cprop_")


def _validate_foreach(foreach: Any) -> None:
    if foreach is not None and not isinstance(foreach, bool):
        raise ValueError(f"foreach must be None, True or False, got {foreach!r}")


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (FSDP2); the tensor itself otherwise.

    CProp is elementwise (SPEC §5), so each rank scales its own shard with its own statistics.
    """
    to_local = getattr(tensor, "to_local", None)
    if to_local is not None and type(tensor).__name__ == "DTensor":
        return to_local()
    return tensor


def _real(tensor: torch.Tensor) -> torch.Tensor:
    """Real view of a complex tensor (real and imaginary parts scaled separately), else itself."""
    tensor = _local(tensor)
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def _statistics_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 → float64, other real floating dtypes → float32 (SPEC §6, as the core does)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _default_foreach(params: list[torch.Tensor]) -> bool:
    from torch.optim.optimizer import _default_to_fused_or_foreach

    return _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)[1]


def _use_foreach(flag: bool | None, params: list[torch.Tensor]) -> bool:
    if flag is None:
        return bool(params) and _default_foreach(params)
    return flag


def _check_gradients(param_groups: list[dict[str, Any]], who: str) -> None:
    """Refuse sparse gradients before anything changes (checked for every group first)."""
    for group_index, group in enumerate(param_groups):
        for param_index, param in enumerate(group["params"]):
            grad = param.grad
            if grad is not None and (grad.is_sparse or grad.layout != torch.strided):
                raise RuntimeError(
                    f"{who} does not support sparse gradients (param_groups[{group_index}]"
                    f"['params'][{param_index}] has a {grad.layout} gradient); densify it with "
                    "grad.to_dense() or use a dense embedding"
                )


def _state_in_place(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A statistic on ``like``'s device (ZeroRedundancyOptimizer moves 0-d state to the CPU)."""
    return value if value.device == like.device else value.to(like.device)


# ---------------------------------------------------------------------------------------------
# The CProp part of one parameter group: core calls (for-loop) or the foreach kernel
# ---------------------------------------------------------------------------------------------


def _foreach_cprop_step(
    means: list[torch.Tensor],
    variances: list[torch.Tensor],
    grads: list[torch.Tensor],
    t: int,
    *,
    beta: float,
    c: float,
    eps: float,
    cdf: str,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """CProp step for tensors that share the count t (after increment), scale batched.

    Must equal, tensor by tensor, :func:`cprop_core.cprop_step`: the moments come from the
    core's :func:`cprop_core.moments.update_moments` (called per tensor), and the scale is
    :func:`_foreach_cprop_scale`, which must equal :func:`cprop_core.scale.cprop_scale`
    bit for bit (test_torch_fused.py). Out of place: returns (new means, new variances, scales).
    """
    step = coefficients(float(beta), t)
    xp = _torch_namespace()
    new_means, new_variances = [], []
    for mean, var, grad in zip(means, variances, grads):
        mean, var = update_moments(mean, var, grad, step.alpha, step.keep, xp)
        new_means.append(mean)
        new_variances.append(var)
    scales = _foreach_cprop_scale(new_means, new_variances, step.excess, c=c, eps=eps, cdf=cdf)
    return new_means, new_variances, scales


def _foreach_cprop_scale(
    means: list[torch.Tensor],
    variances: list[torch.Tensor],
    excess: float,
    *,
    c: float,
    eps: float,
    cdf: str,
) -> list[torch.Tensor]:
    """Multi-tensor :func:`cprop_core.scale.cprop_scale` (SPEC §1): the core's operations in
    the core's order, so the result is bitwise equal on CPU (test_torch_fused.py).

    Batched only where the core's special cases cannot occur (ε > 0, hence se > 0, and the
    normal CDF); otherwise it calls the core's ``cprop_scale`` per tensor.
    """
    if not (eps > 0.0 and cdf == "normal"):
        xp = _torch_namespace()
        return [
            cprop_scale(m, d, excess, c=c, eps=eps, cdf=cdf, xp=xp)
            for m, d in zip(means, variances)
        ]
    # standard_error: se = sqrt(clip(d, min=0) / (n - 1 + ε)) + ε > 0
    se = torch._foreach_clamp_min(variances, 0.0)
    torch._foreach_div_(se, excess + eps)
    torch._foreach_sqrt_(se)
    torch._foreach_add_(se, eps)
    # z_score: |m̂| / se;  conformity (normal): erf(z/√2);  clamp_scale: min(c·raw, 1)
    scales = torch._foreach_abs(means)
    torch._foreach_div_(scales, se)
    torch._foreach_mul_(scales, _SQRT1_2)
    torch._foreach_erf_(scales)
    torch._foreach_mul_(scales, float(c))
    torch._foreach_clamp_max_(scales, 1.0)
    # mark_non_finite: m̂ - m̂ is +0 for finite m̂ (s + 0 = s exactly) and NaN otherwise.
    torch._foreach_add_(scales, torch._foreach_sub(means, means))
    return scales


_NAMESPACE: list[Any] = []


def _torch_namespace() -> Any:
    if not _NAMESPACE:
        import array_api_compat

        _NAMESPACE.append(array_api_compat.array_namespace(torch.zeros(0)))
    return _NAMESPACE[0]


def _core_state(rule: str, state: dict[str, Any], grad: torch.Tensor, where: str) -> Any:
    """The core state of one parameter, from its ``cprop_*`` entries (zeros before step 1)."""
    count = state.get("cprop_count", 0)
    second = "cprop_abs_mean" if rule == "relative_rate" else "cprop_var"
    if count == 0 or "cprop_mean" not in state:
        if rule == "relative_rate":
            return cprop_core.init_relative_rate_state(grad)
        return cprop_core.init_state(grad)
    if second not in state:
        present = sorted(k for k in state if k.startswith("cprop_"))
        raise ValueError(
            f"{where}: cprop_rule is {rule!r}, whose state needs {second!r}, but the parameter's "
            f"state holds {present}; a parameter cannot change rule mid-training"
        )
    mean = _state_in_place(state["cprop_mean"], grad)
    other = _state_in_place(state[second], grad)
    if rule == "relative_rate":
        return RelativeRateState(count, mean, other)
    return CPropState(count, mean, other)


def _entries(core_state: Any) -> dict[str, Any]:
    if isinstance(core_state, RelativeRateState):
        return {
            "cprop_count": core_state.count,
            "cprop_mean": core_state.mean,
            "cprop_abs_mean": core_state.abs_mean,
        }
    return {
        "cprop_count": core_state.count,
        "cprop_mean": core_state.mean,
        "cprop_var": core_state.var,
    }


@torch.compiler.disable
def _group_scales(
    group: dict[str, Any],
    grads: list[torch.Tensor],
    states: list[dict[str, Any]],
    foreach: bool,
    where: str,
) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
    """New ``cprop_*`` entries and the scale for each (real, local) gradient of one group.

    Pure: the parameters' state dicts are read, never written (the caller commits after the
    wrapped optimizer's step succeeded). The for-loop path is one core call per parameter with
    its own count; the foreach path batches tensors of equal count, device and dtype.

    Runs outside torch.compile graphs: the host-side float64 arithmetic on the exact count
    (SPEC §2) would otherwise be specialised on every new count, recompiling every step.
    """
    rule, beta, c, eps, cdf = (group[key] for key in ("cprop_rule", *_GROUP_KEYS[:4]))
    _validate(beta, c, eps, cdf, rule, prefix="cprop_")
    cores = [_core_state(rule, state, grad, where) for state, grad in zip(states, grads)]
    if not foreach or rule != "cprop":
        new_entries, scales = [], []
        for core, grad in zip(cores, grads):
            if rule == "cprop":
                new, scale = cprop_core.cprop_step(core, grad, beta=beta, c=c, eps=eps, cdf=cdf)
            elif rule == "moment_rate":
                new, scale = cprop_core.moment_rate_step(core, grad, beta=beta, c=c)
            else:
                new, scale = cprop_core.relative_rate_step(core, grad, beta=beta, c=c)
            new_entries.append(_entries(new))
            scales.append(scale)
        return new_entries, scales

    buckets: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for index, (core, grad) in enumerate(zip(cores, grads)):
        buckets[(core.count, grad.device, core.mean.dtype)].append(index)
    out_entries: list[Any] = [None] * len(grads)
    out_scales: list[Any] = [None] * len(grads)
    for (count, _, dtype), indices in buckets.items():
        bucket_grads = [
            grads[i] if grads[i].dtype == dtype else grads[i].to(dtype) for i in indices
        ]
        means, variances, scales = _foreach_cprop_step(
            [cores[i].mean for i in indices],
            [cores[i].var for i in indices],
            bucket_grads,
            count + 1,
            beta=beta,
            c=c,
            eps=eps,
            cdf=cdf,
        )
        for i, mean, var, scale in zip(indices, means, variances, scales):
            out_entries[i] = {"cprop_count": count + 1, "cprop_mean": mean, "cprop_var": var}
            out_scales[i] = scale
    return out_entries, out_scales


# ---------------------------------------------------------------------------------------------
# Diagnostics shared by every class here
# ---------------------------------------------------------------------------------------------


class _ScaleStats:
    """``scale_stats()``: the paper's mean scale and scale histogram, computed only when asked.

    ``step`` only keeps references to the last step's scale tensors (one float per element, on
    the parameters' device, no host sync); the reductions run when ``scale_stats`` is called.
    """

    _last_scales: list[list[torch.Tensor]]

    #: Take the CPU fast path (one numba pass per parameter) where it applies: numba installed,
    #: rule 'cprop', dense contiguous float32/float64 CPU tensors, no torch.compile trace.
    #: Set False (on the instance or the class) to force the ATen path, e.g. to compare both.
    use_fast_path: bool = True

    def last_scales(self) -> list[list[torch.Tensor]]:
        """The last step's scale tensors: per group, one per parameter that had a gradient.

        Real views for complex parameters, local shards for DTensors; statistics dtype.
        Empty lists when ``keep_scales=False`` or before the first step.
        """
        return [[_resolve(s) for s in scales] for scales in getattr(self, "_last_scales", [])]

    def scale_stats(self, bins: int = 10) -> list[dict[str, Any]]:
        """Per parameter group, the scales of the last step: mean, histogram on [0, 1], counts.

        Returns one dict per group: ``mean`` (float, over finite scales; NaN if none),
        ``histogram`` (int64 tensor of ``bins`` counts on the CPU), ``bin_edges`` (float64,
        ``bins + 1``), ``numel`` (elements that had a gradient) and ``non_finite`` (NaN
        scales, from non-finite gradients). Groups without gradients in the last step give
        ``numel == 0``. This synchronises with the device; call it only when you log.
        """
        if not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be a positive int, got {bins!r}")
        stats = []
        groups = self.last_scales()
        for group_index in range(len(self.param_groups)):  # type: ignore[attr-defined]
            scales = groups[group_index] if group_index < len(groups) else []
            flat = [s.detach().reshape(-1).to(torch.float64) for s in scales if s.numel()]
            values = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.float64)
            finite = values[torch.isfinite(values)]
            histogram = (
                torch.histc(finite, bins=bins, min=0.0, max=1.0)
                if finite.numel()
                else (torch.zeros(bins, dtype=torch.float64))
            )
            stats.append(
                {
                    "mean": float(finite.mean()) if finite.numel() else math.nan,
                    "histogram": histogram.to(device="cpu", dtype=torch.int64),
                    "bin_edges": torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64),
                    "numel": int(values.numel()),
                    "non_finite": int(values.numel() - finite.numel()),
                }
            )
        return stats


def _load_cprop_entries(
    optimizer: Optimizer, state_dict: dict[str, Any], param_groups: list[dict[str, Any]]
) -> None:
    """Put the saved ``cprop_*`` statistics back with their own dtype, on the param's device.

    ``Optimizer.load_state_dict`` casts every floating tensor of the state to the parameter's
    dtype; CProp's statistics must stay float32 for float16/bfloat16 parameters (SPEC §6).
    """
    saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
    params = [p for group in param_groups for p in group["params"]]
    for saved_id, param in zip(saved_ids, params):
        saved = state_dict["state"].get(saved_id)
        if not saved:
            continue
        real = _real(param)
        target = optimizer.state[param]
        for key, value in saved.items():
            if not key.startswith("cprop_"):
                continue
            if isinstance(value, torch.Tensor):
                if key == "cprop_count":
                    target[key] = int(value)
                else:
                    dtype = _statistics_dtype(real.dtype)
                    target[key] = value.to(device=real.device, dtype=dtype, copy=True)
            else:
                target[key] = value
    for group in param_groups:
        _fill_group_defaults(group, optimizer.defaults)
        _validate_group(group)


def _fill_group_defaults(group: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key in (*_GROUP_KEYS, "cprop_foreach"):
        group.setdefault(key, defaults[key])


# ---------------------------------------------------------------------------------------------
# The wrapper
# ---------------------------------------------------------------------------------------------


class CProp(_ScaleStats, Optimizer):
    """Add CProp to any ``torch.optim.Optimizer``: ``CProp(torch.optim.Adam(params, lr=3e-3))``.

    Each step computes the scale s ∈ [0, 1] of every parameter element from its raw gradient
    (SPEC §1, via :func:`cprop_core.cprop_step` or the foreach kernel proven equal to it), runs
    the wrapped optimizer's step, and rescales its update: θ ← θ_before + s·(θ_after − θ_before).
    Weight decay, momentum and Adam's normalisation stay the wrapped optimizer's.

    ``param_groups`` *is* the wrapped optimizer's list (also after ``load_state_dict``), so LR
    schedulers, ``add_param_group`` and ``GradScaler`` act on both. CProp's settings live in
    those group dicts as ``cprop_beta``, ``cprop_c``, ``cprop_eps``, ``cprop_cdf``,
    ``cprop_rule`` and ``cprop_foreach``; its statistics live in ``state[p]`` next to the wrapped
    optimizer's (``state`` is the wrapped optimizer's too).

    Args:
        optimizer: the optimizer to wrap (an instance).
        beta: horizon β ∈ [0, 1) of the gradient statistics.
        c: overconfidence c > 0; s = min(c·|2F(z) − 1|, 1).
        eps: ε ≥ 0 of the standard error.
        cdf: 'normal', 'logistic', 'bft' or 'bfo'.
        rule: 'cprop', or the paper's heuristics 'moment_rate' / 'relative_rate' (SPEC §5).
        foreach: multi-tensor kernel for the 'cprop' rule; None picks it on CUDA like torch.
        keep_scales: keep the last step's scales for :meth:`scale_stats` (one float per
            element until the next step); False frees them at once.

    A closure is evaluated once by CProp (under ``torch.enable_grad``); the wrapped optimizer is
    then stepped without it, so optimizers that re-evaluate the closure (LBFGS) are refused.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = CProp(torch.optim.SGD([w], lr=0.1))
    >>> w.grad = torch.tensor([1.0, 2.0]); _ = opt.step()   # t = 1: s = 1
    >>> w.detach()
    tensor([ 0.9000, -1.2000])
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        beta: float = 0.999,
        c: float = 1.0,
        eps: float = 1e-8,
        cdf: str = "normal",
        rule: str = "cprop",
        foreach: bool | None = None,
        keep_scales: bool = True,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer instance, got {type(optimizer)!r}"
            )
        if isinstance(optimizer, (CProp, _FusedBase)):
            raise TypeError(
                f"optimizer: {type(optimizer).__name__} already applies the CProp scale; "
                "wrapping it again would scale every update twice"
            )
        if not isinstance(keep_scales, bool):
            raise TypeError(f"keep_scales must be a bool, got {keep_scales!r}")
        if isinstance(optimizer, torch.optim.LBFGS):
            raise TypeError(
                "optimizer: LBFGS re-evaluates the closure inside its step, so the update of "
                "one step has no single gradient to scale; CProp cannot wrap it"
            )
        _validate(beta, c, eps, cdf, rule)
        _validate_foreach(foreach)
        self.optimizer = optimizer
        self.keep_scales = bool(keep_scales)
        cprop_defaults = {
            "cprop_beta": beta,
            "cprop_c": c,
            "cprop_eps": eps,
            "cprop_cdf": cdf,
            "cprop_rule": rule,
            "cprop_foreach": foreach,
        }
        self._init_machinery({**optimizer.defaults, **cprop_defaults})
        for group in optimizer.param_groups:
            _fill_group_defaults(group, self.defaults)
            _validate_group(group)

    def _init_machinery(self, defaults: dict[str, Any]) -> None:
        """What ``Optimizer.__init__`` sets up, minus building param_groups (they are shared)."""
        self.defaults = defaults
        self._optimizer_step_pre_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict[int, Any] = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict[int, Any] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict[int, Any] = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict[int, Any] = OrderedDict()
        self._patch_step_function()
        self._warned_capturable_if_run_uncaptured = True
        self._last_scales = []

    # The wrapped optimizer owns param_groups and state; CProp only looks through to them.
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    @property
    def state(self) -> defaultdict[torch.Tensor, Any]:  # type: ignore[override]
        return self.optimizer.state

    @state.setter
    def state(self, value: defaultdict[torch.Tensor, Any]) -> None:
        self.optimizer.state = value

    def __getstate__(self) -> dict[str, Any]:
        return {
            "defaults": self.defaults,
            "optimizer": self.optimizer,
            "keep_scales": self.keep_scales,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._last_scales = []

    def __repr__(self) -> str:
        inner = repr(self.optimizer).replace("\n", "\n    ")
        return f"CProp(\n    {inner}\n)"

    @torch._disable_dynamo
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the wrapped optimizer, with CProp's defaults for missing cprop_ keys."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group)}")
        _fill_group_defaults(param_group, self.defaults)
        _validate_group(param_group)
        self.optimizer.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state dict; CProp's entries are inside it (``cprop_*``)."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        state_dict = self.optimizer.state_dict()
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    @torch._disable_dynamo
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the wrapped optimizer, then restore CProp's statistics in their dtype."""
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        self.optimizer.load_state_dict(state_dict)
        _load_cprop_entries(self, state_dict, self.param_groups)
        self._last_scales = []
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One step: scales from the raw gradients, the wrapped step, rescaled updates."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = self.param_groups
        _check_gradients(groups, "CProp")
        plans, fast_plans, all_scales = [], [], []
        for group_index, group in enumerate(groups):
            every = [p for p in group["params"] if p.grad is not None]
            all_grads = [_real(p.grad) for p in every]
            all_states = [self.state[p] for p in every]
            reals = [_real(p) for p in every]
            foreach = _use_foreach(group["cprop_foreach"], every)
            fast = set(_fast_indices(self, group, reals, all_grads, all_states, _wrap_fast_ok))
            slow = [i for i in range(len(every)) if i not in fast]
            group_scales: list[Any] = [None] * len(every)
            for i in sorted(fast):  # θ_before and the raw gradient; statistics after the step
                scale, before, new = _fast_wrap_scale(self, group, every[i], reals[i], all_grads[i])
                group_scales[i] = scale
                fast_plans.append((every[i], before, group, all_states[i], new))
            params = [every[i] for i in slow]
            states = [all_states[i] for i in slow]
            entries, scales = _group_scales(
                group, [all_grads[i] for i in slow], states, foreach, f"param_groups[{group_index}]"
            )
            for i, scale in zip(slow, scales):
                group_scales[i] = scale
            befores = [_snapshot(_real(p), s.dtype) for p, s in zip(params, scales)]
            plans.append((params, states, entries, scales, befores, foreach))
            all_scales.append(group_scales)

        self.optimizer.step()

        for params, states, entries, scales, befores, foreach in plans:
            _rescale_updates([_real(p) for p in params], befores, scales, foreach)
            _commit(states, entries)
        for param, before, group, state, new in fast_plans:
            mean, var = (new.get(key, state.get(key)) for key in _WRAP_KEYS)
            _fast_wrap_rescale(group, new["cprop_count"], _real(param), before, mean, var)
            state.update(new)
        self._last_scales = all_scales if self.keep_scales else []
        return loss


@torch.compiler.disable
def _commit(states: list[dict[str, Any]], entries: list[dict[str, Any]]) -> None:
    """Store new ``cprop_*`` entries, into the existing tensors where there are some.

    Writing in place keeps the state tensors' identity, which torch.compile guards on (a new
    tensor each step would invalidate the compiled wrapped step every time).
    """
    targets, sources = [], []
    for state, new in zip(states, entries):
        for key, value in new.items():
            old = state.get(key)
            if (
                isinstance(value, torch.Tensor)
                and isinstance(old, torch.Tensor)
                and old is not value
                and old.shape == value.shape
                and old.dtype == value.dtype
                and old.device == value.device
            ):
                targets.append(old)
                sources.append(value)
            else:
                state[key] = value
    if targets:
        torch._foreach_copy_(targets, sources)


def _snapshot(param: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """θ_before, in the scale's dtype (float32 for half parameters)."""
    return param.detach().to(dtype=dtype, copy=True)


def _rescale_updates(
    params: list[torch.Tensor],
    befores: list[torch.Tensor],
    scales: list[torch.Tensor],
    foreach: bool,
) -> None:
    """θ ← θ_before + s·(θ_after − θ_before), in the scale's dtype, written into θ."""
    if not params:
        return
    afters = [p if p.dtype == b.dtype else p.to(b.dtype) for p, b in zip(params, befores)]
    if foreach:
        updates = torch._foreach_sub(afters, befores)
        torch._foreach_mul_(updates, scales)
        torch._foreach_add_(updates, befores)
        torch._foreach_copy_(params, updates)
        return
    for param, after, before, scale in zip(params, afters, befores, scales):
        update = after - before
        update.mul_(scale)
        update.add_(before)
        param.copy_(update)


_CLASSES: dict[type, type] = {}


def cprop_class(optimizer_class: type[Optimizer]) -> type[CProp]:
    """A params-first optimizer class: ``optimizer_class`` wrapped in :class:`CProp`.

    ``cprop_class(torch.optim.Adam)(params, lr=3e-3, cprop_beta=0.999, cprop_c=1.0,
    cprop_eps=1e-8, cprop_cdf='normal', cprop_rule='cprop', cprop_foreach=None)``: every other
    keyword goes to ``optimizer_class``. The same class object is returned for the same input,
    so it can be named in configs and passed to
    ``torch.distributed.optim.ZeroRedundancyOptimizer(optimizer_class=...)``.
    """
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
        raise TypeError(
            f"optimizer_class must be a torch.optim.Optimizer subclass, got {optimizer_class!r}"
        )
    if issubclass(optimizer_class, (CProp, _FusedBase)):
        raise TypeError(
            f"optimizer_class: {optimizer_class.__name__} already applies the CProp scale"
        )
    if optimizer_class in _CLASSES:
        return _CLASSES[optimizer_class]

    def __init__(
        self: CProp,
        params: Iterable[Any],
        *,
        cprop_beta: float = 0.999,
        cprop_c: float = 1.0,
        cprop_eps: float = 1e-8,
        cprop_cdf: str = "normal",
        cprop_rule: str = "cprop",
        cprop_foreach: bool | None = None,
        **kwargs: Any,
    ) -> None:
        _validate(cprop_beta, cprop_c, cprop_eps, cprop_cdf, cprop_rule, prefix="cprop_")
        CProp.__init__(
            self,
            optimizer_class(params, **kwargs),
            beta=cprop_beta,
            c=cprop_c,
            eps=cprop_eps,
            cdf=cprop_cdf,
            rule=cprop_rule,
            foreach=cprop_foreach,
        )

    name = f"CProp{optimizer_class.__name__}Wrapper"
    cls = type(
        name,
        (CProp,),
        {
            "__init__": __init__,
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{optimizer_class.__name__} wrapped in CProp (see cprop_class).",
            "wrapped_class": optimizer_class,
        },
    )
    _CLASSES[optimizer_class] = cls
    return cls


# ---------------------------------------------------------------------------------------------
# Fused optimizers
# ---------------------------------------------------------------------------------------------


class _FusedBase(_ScaleStats, Optimizer):
    """Shared plumbing of CPropSGD/CPropAdam: CProp group keys, validation, loading."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        _validate(*(defaults[k] for k in _GROUP_KEYS), prefix="cprop_")
        _validate_foreach(defaults["cprop_foreach"])
        super().__init__(params, defaults)
        self._last_scales = []

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        _validate_group(self.param_groups[-1])

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._last_scales = []

    @torch._disable_dynamo
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        _load_cprop_entries(self, state_dict, self.param_groups)
        self._last_scales = []

    def _prepare(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = [p for p in group["params"] if p.grad is not None]
        return params, [_real(p.grad) for p in params]


def _cprop_kwargs(
    cprop_beta: float, cprop_c: float, cprop_eps: float, cprop_cdf: str, cprop_rule: str, foreach
) -> dict[str, Any]:
    return {
        "cprop_beta": cprop_beta,
        "cprop_c": cprop_c,
        "cprop_eps": cprop_eps,
        "cprop_cdf": cprop_cdf,
        "cprop_rule": cprop_rule,
        "cprop_foreach": foreach,
    }


class CPropSGD(_FusedBase):
    """SGD (torch.optim.SGD's options) with the CProp scale folded into its update.

    Equals ``CProp(torch.optim.SGD(...))`` on the same inputs (float64: within 1e-12; the
    fused path skips the before/after copy, so the last bits of θ may differ):
    u = −lr·d_p with torch's momentum/dampening/nesterov/weight-decay d_p, θ ← θ + s·u.
    ``foreach`` (alias ``cprop_foreach``) picks the multi-tensor path; both paths are
    bitwise equal on CPU.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        cprop_beta: float = 0.999,
        cprop_c: float = 1.0,
        cprop_eps: float = 1e-8,
        cprop_cdf: str = "normal",
        cprop_rule: str = "cprop",
        cprop_foreach: bool | None = None,
    ) -> None:
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not (isinstance(value, (int, float)) and 0.0 <= value < math.inf):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening = 0")
        flag = foreach if foreach is not None else cprop_foreach
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            **_cprop_kwargs(cprop_beta, cprop_c, cprop_eps, cprop_cdf, cprop_rule, flag),
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        _check_gradients(self.param_groups, "CPropSGD")
        last = []
        for group_index, group in enumerate(self.param_groups):
            params, grads = self._prepare(group)
            states = [self.state[p] for p in params]
            foreach = _use_foreach(group["cprop_foreach"], params)
            reals = [_real(p) for p in params]
            fast = set(_fast_indices(self, group, reals, grads, states, _sgd_fast_ok))
            slow = [i for i in range(len(params)) if i not in fast]
            scales: list[Any] = [None] * len(params)
            for i in sorted(fast):
                scales[i] = _fast_sgd_step(self, group, params[i], reals[i], grads[i], states[i])
            slow_states = [states[i] for i in slow]
            where = f"param_groups[{group_index}]"
            entries, slow_scales = _group_scales(
                group, [grads[i] for i in slow], slow_states, foreach, where
            )
            buffers = [state.get("momentum_buffer") for state in slow_states]
            _sgd_update(
                [reals[i] for i in slow],
                [grads[i] for i in slow],
                buffers,
                slow_scales,
                group,
                foreach,
            )
            _commit(slow_states, entries)
            if group["momentum"] != 0:
                for state, buffer in zip(slow_states, buffers):
                    state["momentum_buffer"] = buffer
            for i, scale in zip(slow, slow_scales):
                scales[i] = scale
            last.append(scales)
        self._last_scales = last
        return loss


def _sgd_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    buffers: list[torch.Tensor | None],
    scales: list[torch.Tensor],
    group: dict[str, Any],
    foreach: bool,
) -> None:
    """torch.optim.SGD's direction d_p, then θ ← θ − lr·s·d_p. ``buffers`` is updated in place."""
    if not params:
        return
    lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
    weight_decay, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
    if foreach:
        directions = torch._foreach_neg(grads) if maximize else list(grads)
        if weight_decay != 0:
            directions = torch._foreach_add(directions, params, alpha=weight_decay)
        if momentum != 0:
            fresh = [i for i, b in enumerate(buffers) if b is None]
            old = [i for i, b in enumerate(buffers) if b is not None]
            for i in fresh:
                buffers[i] = torch.clone(directions[i]).detach()
            if old:
                olds = [buffers[i] for i in old]
                torch._foreach_mul_(olds, momentum)
                torch._foreach_add_(olds, [directions[i] for i in old], alpha=1 - dampening)
            if nesterov:
                directions = torch._foreach_add(directions, buffers, alpha=momentum)
            else:
                directions = list(buffers)
        scaled = torch._foreach_mul(directions, scales)
        torch._foreach_add_(params, scaled, alpha=-lr)
        return
    for i, (param, grad, scale) in enumerate(zip(params, grads, scales)):
        direction = -grad if maximize else grad
        if weight_decay != 0:
            direction = direction.add(param, alpha=weight_decay)
        if momentum != 0:
            buffer = buffers[i]
            if buffer is None:
                buffer = buffers[i] = torch.clone(direction).detach()
            else:
                buffer.mul_(momentum).add_(direction, alpha=1 - dampening)
            direction = direction.add(buffer, alpha=momentum) if nesterov else buffer
        param.add_(direction * scale, alpha=-lr)


class CPropAdam(_FusedBase):
    """Adam (``decoupled=True``: AdamW) with the CProp scale folded into its update.

    u = −lr·m̂_adam/(sqrt(v̂_adam) + eps) (− lr·wd·θ when decoupled); θ ← θ + s·u. Equals
    ``CProp(torch.optim.Adam(...))`` / ``CProp(torch.optim.AdamW(...))`` on the same inputs
    (float64: within 1e-12, when the second moment is not shared).

    Shared second moment: when ``betas[1] == cprop_beta``, rule 'cprop', no coupled weight decay
    (it would feed g + wd·θ into Adam's moment) and a float32/float64 parameter, CProp keeps only
    m̂ (``cprop_mean``) and derives d = v̂ − m̂² from Adam's ``exp_avg_sq`` (d = 0 exactly at
    t = 1), saving one parameter-sized buffer. This reintroduces the cancellation the core's
    recurrence avoids; measured accuracy against the core is in docs/torch.md and within the
    SPEC §6 float32 budget in the tests. Set ``share_second_moment=False`` to keep d.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decoupled: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        share_second_moment: bool = True,
        cprop_beta: float = 0.999,
        cprop_c: float = 1.0,
        cprop_eps: float = 1e-8,
        cprop_cdf: str = "normal",
        cprop_rule: str = "cprop",
        cprop_foreach: bool | None = None,
    ) -> None:
        if not (isinstance(lr, (int, float)) and 0.0 <= lr < math.inf):
            raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
        if not (isinstance(eps, (int, float)) and 0.0 <= eps < math.inf):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        if not (isinstance(weight_decay, (int, float)) and 0.0 <= weight_decay < math.inf):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        try:
            beta1, beta2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}") from None
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")
        flag = foreach if foreach is not None else cprop_foreach
        defaults = {
            "lr": lr,
            "betas": (beta1, beta2),
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled": decoupled,
            "maximize": maximize,
            "share_second_moment": share_second_moment,
            **_cprop_kwargs(cprop_beta, cprop_c, cprop_eps, cprop_cdf, cprop_rule, flag),
        }
        super().__init__(params, defaults)

    @staticmethod
    def _shares(group: dict[str, Any], param: torch.Tensor) -> bool:
        return (
            group["share_second_moment"]
            and group["cprop_rule"] == "cprop"
            and float(group["betas"][1]) == float(group["cprop_beta"])
            and (group["weight_decay"] == 0 or group["decoupled"])
            and _real(param).dtype in (torch.float32, torch.float64)
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        _check_gradients(self.param_groups, "CPropAdam")
        last = []
        for group_index, group in enumerate(self.param_groups):
            params, grads = self._prepare(group)
            states = [self.state[p] for p in params]
            foreach = _use_foreach(group["cprop_foreach"], params)
            where = f"param_groups[{group_index}]"
            reals = [_real(p) for p in params]
            for param, state, real in zip(params, states, reals):
                if "step" not in state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(real, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(
                        real, memory_format=torch.preserve_format
                    )
                    if self._shares(group, param) and state.get("cprop_count", 0) == 0:
                        state["cprop_shared"] = True
            shared = [i for i, s in enumerate(states) if s.get("cprop_shared", False)]
            for i in shared:  # a group changed since: keep d from now on (SPEC §3 either way)
                if not self._shares(group, params[i]) or states[i].get("cprop_count", 0) != int(
                    states[i]["step"]
                ):
                    _unshare(states[i], group)
            fast = set(_fast_indices(self, group, reals, grads, states, _adam_fast_ok))
            shared = [
                i for i, s in enumerate(states) if s.get("cprop_shared", False) and i not in fast
            ]
            own = [i for i in range(len(params)) if i not in set(shared) and i not in fast]
            slow = [i for i in range(len(params)) if i not in fast]
            scales: list[Any] = [None] * len(params)
            for i in sorted(fast):
                scales[i] = _fast_adam_step(self, group, params[i], reals[i], grads[i], states[i])

            own_entries, own_scales = _group_scales(
                group, [grads[i] for i in own], [states[i] for i in own], foreach, where
            )
            _adam_moments(
                [reals[i] for i in slow],
                [grads[i] for i in slow],
                [states[i]["exp_avg"] for i in slow],
                [states[i]["exp_avg_sq"] for i in slow],
                [states[i]["step"] for i in slow],
                group,
                foreach,
            )
            shared_entries, shared_scales = _shared_scales(
                group, [grads[i] for i in shared], [states[i] for i in shared], foreach
            )
            for i, scale in zip(own, own_scales):
                scales[i] = scale
            for i, scale in zip(shared, shared_scales):
                scales[i] = scale
            _commit([states[i] for i in own], own_entries)
            _commit([states[i] for i in shared], shared_entries)
            _adam_update(
                [reals[i] for i in slow],
                [states[i]["exp_avg"] for i in slow],
                [states[i]["exp_avg_sq"] for i in slow],
                [states[i]["step"] for i in slow],
                [scales[i] for i in slow],
                group,
                foreach,
            )
            last.append(scales)
        self._last_scales = last
        return loss


def _unshare(state: dict[str, Any], group: dict[str, Any]) -> None:
    """Materialise d = v̂ − m̂² from Adam's moment and stop sharing it."""
    count = state.get("cprop_count", 0)
    if count > 0:
        state["cprop_var"] = _shared_variance(
            state["cprop_mean"], state["exp_avg_sq"], group["cprop_beta"], count
        )
    state.pop("cprop_shared", None)


def _shared_variance(
    mean: torch.Tensor, exp_avg_sq: torch.Tensor, beta: float, t: int
) -> torch.Tensor:
    """d = v̂ − m̂² with v̂ = exp_avg_sq / (1 − β^t) (SPEC §1, §3); exactly 0 at t = 1.

    At t = 1 the true d is 0 but v̂ − m̂² would leave a rounding residue that ε = 1e-8 turns
    into a wrong scale (SPEC trap 1), so it is set, not computed. Negative residues are clipped
    to 0 by the core's ``standard_error``.
    """
    if t == 1:
        return torch.zeros_like(mean)
    second_moment = exp_avg_sq / bias_correction(float(beta), t)
    return second_moment - mean * mean


@torch.compiler.disable
def _shared_scales(
    group: dict[str, Any], grads: list[torch.Tensor], states: list[dict[str, Any]], foreach: bool
) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
    """CProp scales from m̂ (core ``update_mean``) and d derived from Adam's second moment.

    Run after Adam's ``exp_avg_sq`` took this step's gradient. Per tensor in both paths: m̂ by
    the core's ``update_mean``, d by :func:`_shared_variance`, s by the core's ``cprop_scale``.
    """
    beta, c, eps, cdf = (group[key] for key in _GROUP_KEYS[:4])
    xp = _torch_namespace()
    entries, scales = [], []
    for grad, state in zip(grads, states):
        count = state.get("cprop_count", 0)
        t = count + 1
        step = coefficients(float(beta), t)
        mean = state.get("cprop_mean")
        if mean is None or count == 0:
            mean = torch.zeros_like(grad)
        mean = update_mean(
            _state_in_place(mean, grad), clip_gradient(grad, xp), step.alpha, step.keep
        )
        variance = _shared_variance(mean, state["exp_avg_sq"], beta, t)
        scales.append(cprop_scale(mean, variance, step.excess, c=c, eps=eps, cdf=cdf, xp=xp))
        entries.append({"cprop_count": t, "cprop_mean": mean})
    return entries, scales


def _adam_moments(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[torch.Tensor],
    group: dict[str, Any],
    foreach: bool,
) -> None:
    """torch.optim.Adam's moment updates (in place), with its L2 weight decay and maximize."""
    if not params:
        return
    beta1, beta2 = group["betas"]
    weight_decay, decoupled, maximize = group["weight_decay"], group["decoupled"], group["maximize"]
    if foreach:
        torch._foreach_add_(steps, 1.0)
        directions = torch._foreach_neg(grads) if maximize else list(grads)
        if weight_decay != 0 and not decoupled:
            directions = torch._foreach_add(directions, params, alpha=weight_decay)
        torch._foreach_lerp_(exp_avgs, directions, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, directions, directions, 1 - beta2)
        return
    for param, grad, exp_avg, exp_avg_sq, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        step.add_(1.0)
        direction = -grad if maximize else grad
        if weight_decay != 0 and not decoupled:
            direction = direction.add(param, alpha=weight_decay)
        exp_avg.lerp_(direction, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(direction, direction, value=1 - beta2)


@torch.compiler.disable
def _adam_scalars(
    steps: list[torch.Tensor], lr: float, beta1: float, beta2: float
) -> tuple[list[float], list[float]]:
    """Host scalars of Adam's step (as torch.optim.Adam): −lr/(1−β1^t) and sqrt(1−β2^t).

    Outside torch.compile graphs for the same reason as :func:`_group_scales`.
    """
    counts = [int(step.item()) for step in steps]  # CPU tensors: no device sync
    return [-(lr / (1 - beta1**t)) for t in counts], [(1 - beta2**t) ** 0.5 for t in counts]


def _adam_update(
    params: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    steps: list[torch.Tensor],
    scales: list[torch.Tensor],
    group: dict[str, Any],
    foreach: bool,
) -> None:
    """θ ← θ + s·u, u = −lr/(1−β1^t)·m/(sqrt(v)/sqrt(1−β2^t) + eps) − lr·wd·θ (decoupled)."""
    if not params:
        return
    beta1, beta2 = group["betas"]
    lr, eps, weight_decay, decoupled = (
        group["lr"],
        group["eps"],
        group["weight_decay"],
        group["decoupled"],
    )
    step_sizes, roots = _adam_scalars(steps, lr, beta1, beta2)
    if foreach:
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, roots)
        torch._foreach_add_(denominators, eps)
        updates = torch._foreach_div(exp_avgs, denominators)
        torch._foreach_mul_(updates, step_sizes)
        if weight_decay != 0 and decoupled:
            torch._foreach_add_(updates, params, alpha=-lr * weight_decay)
        torch._foreach_add_(params, torch._foreach_mul(updates, scales))
        return
    for param, exp_avg, exp_avg_sq, step_size, root, scale in zip(
        params, exp_avgs, exp_avg_sqs, step_sizes, roots, scales
    ):
        denominator = exp_avg_sq.sqrt().div_(root).add_(eps)
        update = (exp_avg / denominator).mul_(step_size)
        if weight_decay != 0 and decoupled:
            update.add_(param, alpha=-lr * weight_decay)
        param.add_(update * scale)


# ---------------------------------------------------------------------------------------------
# CPU fast path: one numba pass per parameter, built from cprop_core.backends.numpy's blocks
# ---------------------------------------------------------------------------------------------
#
# On the CPU the paths above cost ~40 ATen passes over memory per step. With numba installed
# (`pip install 'cprop[fast]'`), each eligible parameter instead takes one compiled loop that
# does CProp's statistics (moments.update_moments / update_mean), the scale
# (scale.cprop_scale, via the numba blocks of cprop_core.backends.numpy that
# tests/backends/test_fastpaths.py proves equal to the core) and the optimizer's update, reading
# and writing each array once (the wrapper: one loop before and one after the wrapped step).
# Each kernel variant compiles on its first call (about a second each). The optimizer's
# arithmetic repeats torch's CPU kernels operation by operation, including where they round
# once (lerp, addcmul and add with alpha are fused multiply-adds there), so Adam's and SGD's
# buffers match the ATen paths bit for bit given the same inputs;
# tests/backends/test_torch_fastpath.py proves fast == ATen path.

_FAST_DTYPES = (torch.float32, torch.float64)
_NUMPY_DTYPES = {torch.float32: "float32", torch.float64: "float64"}
_FAST_KERNELS: dict[tuple[Any, ...], Any] = {}


def _numba_blocks() -> Any:
    """cprop_core.backends.numpy's numba blocks, or None without numba."""
    from cprop_core.backends import numpy as numpy_backend

    return numpy_backend.numba_blocks() if numpy_backend.HAVE_NUMBA else None


def _have_numba() -> bool:
    from cprop_core.backends import numpy as numpy_backend

    return numpy_backend.HAVE_NUMBA


def _fast_path_on(optimizer: Any) -> bool:
    """The optimizer asks for it, numba is there and no torch.compile trace is running."""
    return (
        bool(getattr(optimizer, "use_fast_path", False))
        and _have_numba()
        and not torch.compiler.is_compiling()
    )


def _fast_tensor(tensor: Any, dtype: torch.dtype) -> bool:
    """A dense, contiguous CPU tensor of ``dtype`` that ``.numpy()`` can view without a copy."""
    return (
        isinstance(tensor, torch.Tensor)
        and type(tensor) in (torch.Tensor, torch.nn.Parameter)
        and tensor.device.type == "cpu"
        and tensor.dtype == dtype
        and tensor.layout == torch.strided
        and tensor.is_contiguous()
        and not tensor.is_conj()
        and not tensor.is_neg()
    )


def _fast_statistics_ok(state: dict[str, Any], dtype: torch.dtype, keys: tuple[str, ...]) -> bool:
    """The parameter's ``cprop_*`` tensors (if any yet) can be viewed; a missing one after step
    1 (e.g. a rule change) goes to the ATen path, which raises the explanatory error."""
    if state.get("cprop_count", 0) == 0 or "cprop_mean" not in state:
        return True
    return all(key in state and _fast_tensor(state[key], dtype) for key in keys)


def _flat(tensor: torch.Tensor) -> Any:
    """Zero-copy 1-d NumPy view of a contiguous CPU tensor (0-d included)."""
    return tensor.detach().numpy().reshape(-1)


_WRAP_KEYS = ("cprop_mean", "cprop_var")


def _fresh_statistics(state: dict[str, Any], like: torch.Tensor, keys: tuple[str, ...]) -> None:
    """Zero statistics before step 1 (as ``cprop_core.init_state``)."""
    if state.get("cprop_count", 0) == 0 or "cprop_mean" not in state:
        for key in keys:
            state[key] = torch.zeros_like(like, memory_format=torch.contiguous_format)


def _cprop_constants(group: dict[str, Any], t: int, dtype: torch.dtype) -> tuple[Any, bool, Any]:
    """(constants, zero denominator, erf/tanh coefficients) of step t for the numba blocks."""
    from cprop_core.backends import numpy as numpy_backend

    beta, c, eps = (float(group[key]) for key in _GROUP_KEYS[:3])
    step = coefficients(beta, t)
    np_dtype = _NUMPY_DTYPES[dtype]
    constants, zero_denominator = numpy_backend.kernel_constants(step, c, eps, np_dtype)
    return constants, zero_denominator, numpy_backend.conformity_coefficients()


def _host_constants(values: list[float], dtype: torch.dtype) -> Any:
    """Python floats as an array of ``dtype``, rounded to nearest as torch casts a scalar."""
    import numpy

    return numpy.array(values, dtype=numpy.float64).astype(_NUMPY_DTYPES[dtype])


def _cdf_code(cdf: str) -> int:
    from cprop_core.backends import numpy as numpy_backend

    return numpy_backend._CDF_CODES[cdf]


def _kernel(kind: str, *key: Any) -> Any:
    """A compiled kernel, built once per variant and compiled per dtype on first call."""
    full_key = (kind, *key)
    if full_key not in _FAST_KERNELS:
        builders = {
            "adam": _make_adam_kernel,
            "sgd": _make_sgd_kernel,
            "wrap": _make_wrap_kernel,
            "scale": _make_scale_kernel,
        }
        _FAST_KERNELS[full_key] = builders[kind](_numba_blocks(), *key)
    return _FAST_KERNELS[full_key]


def _make_adam_kernel(blocks: Any, cdf: int, fast: bool, shared: bool, decay: int, small: bool):
    """CProp + torch.optim.Adam for one parameter, one pass (``decay``: 0 none, 1 L2 (coupled),
    2 decoupled; ``small``: Adam's lerp weight 1 − β1 < 0.5, as torch's lerp picks its form).

    Per element, in the order of the ATen path (CPropAdam.step): Adam's moments of ±g (+wd·θ),
    CProp's m̂ (and d, or d = v̂ − m̂² from exp_avg_sq when ``shared``), s, then
    θ ← θ + s·u with u = step_size·m/(sqrt(v)/root + eps) (− lr·wd·θ when decoupled).
    """
    statistics, update_mean, z_score, finish = (
        blocks.statistics,
        blocks.update_mean,
        blocks.z_score_reciprocal,
        blocks.finish,
    )
    variance_from_moment = blocks.variance_from_moment
    fma, cdf_constants = blocks.fma, blocks.cdf_constants
    conformity = blocks.make_conformity(cdf, fast)

    @blocks.njit()
    def kernel(param, grad, exp_avg, exp_avg_sq, mean, var, k, zero_denominator, cf, a):
        alpha, keep, denominator, eps, c, largest = k[0], k[1], k[2], k[3], k[4], k[5]
        zero, one, inf = k[12], k[13], k[14]
        nan = inf - inf
        q = cdf_constants(k)
        sign, weight_decay, lerp_weight, lerp_weight_minus_1 = a[0], a[1], a[2], a[3]
        beta2, one_minus_beta2, inverse_root, adam_eps = a[4], a[5], a[6], a[7]
        step_size, decoupled_decay, inverse_correction = a[8], a[9], a[10]
        first = a[11] != zero
        inverse_denominator = one / denominator
        for i in range(grad.size):
            gi = grad[i]
            theta = param[i]
            direction = sign * gi
            if decay == 1:  # direction.add(param, alpha=wd)
                direction = fma(theta, weight_decay, direction)
            m = exp_avg[i]
            if small:  # exp_avg.lerp_(direction, 1 - β1)
                m = fma(lerp_weight, direction - m, m)
            else:
                m = fma(lerp_weight_minus_1, direction - m, direction)
            v = fma(one_minus_beta2 * direction, direction, exp_avg_sq[i] * beta2)  # addcmul
            exp_avg[i] = m
            exp_avg_sq[i] = v
            if shared:  # update_mean, then _shared_variance
                new_mean = update_mean(gi, mean[i], alpha, keep, largest)
                new_var = variance_from_moment(v, inverse_correction, new_mean, first, zero)
            else:
                new_mean, new_var = statistics(gi, mean[i], var[i], alpha, keep, largest)
                var[i] = new_var
            mean[i] = new_mean
            z = z_score(new_mean, new_var, inverse_denominator, eps, zero_denominator, zero, inf)
            s = finish(conformity(z, q, cf), new_mean, c, one, nan)
            update = (m / (math.sqrt(v) * inverse_root + adam_eps)) * step_size
            if decay == 2:  # update.add_(param, alpha=-lr·wd)
                update = fma(theta, decoupled_decay, update)
            param[i] = theta + update * s

    return kernel


def _make_sgd_kernel(blocks: Any, cdf: int, fast: bool, decay: bool, momentum: int, nesterov):
    """CProp + torch.optim.SGD for one parameter, one pass (``momentum``: 0 none, 1 first step
    (the buffer becomes d_p), 2 later steps): θ ← θ − lr·s·d_p as :func:`_sgd_update`."""
    statistics, z_score, finish = blocks.statistics, blocks.z_score_reciprocal, blocks.finish
    fma, cdf_constants = blocks.fma, blocks.cdf_constants
    conformity = blocks.make_conformity(cdf, fast)

    @blocks.njit()
    def kernel(param, grad, buffer, mean, var, k, zero_denominator, cf, a):
        alpha, keep, denominator, eps, c, largest = k[0], k[1], k[2], k[3], k[4], k[5]
        zero, one, inf = k[12], k[13], k[14]
        nan = inf - inf
        inverse_denominator = one / denominator
        q = cdf_constants(k)
        sign, weight_decay, momentum_factor, undamped, negative_lr = a[0], a[1], a[2], a[3], a[4]
        for i in range(grad.size):
            gi = grad[i]
            theta = param[i]
            new_mean, new_var = statistics(gi, mean[i], var[i], alpha, keep, largest)
            mean[i] = new_mean
            var[i] = new_var
            z = z_score(new_mean, new_var, inverse_denominator, eps, zero_denominator, zero, inf)
            s = finish(conformity(z, q, cf), new_mean, c, one, nan)
            direction = sign * gi
            if decay:  # direction.add(param, alpha=wd)
                direction = fma(theta, weight_decay, direction)
            if momentum == 1:  # buffer = clone(d_p)
                buffer[i] = direction
                moved = direction
            elif momentum == 2:  # buffer.mul_(μ).add_(d_p, alpha=1 − dampening)
                moved = fma(direction, undamped, buffer[i] * momentum_factor)
                buffer[i] = moved
            else:
                moved = direction
            if momentum != 0:
                if nesterov:  # d_p.add(buffer, alpha=μ)
                    direction = fma(moved, momentum_factor, direction)
                else:
                    direction = moved
            param[i] = fma(direction * s, negative_lr, theta)  # param.add_(d_p·s, alpha=−lr)

    return kernel


def _make_wrap_kernel(blocks: Any, cdf: int, fast: bool, phase: int):
    """The wrapper's two passes around the wrapped step. Phase 0: θ_before and a copy of the
    raw gradient (the wrapped step may change ``p.grad``, e.g. Rprop does); phase 1: CProp's
    statistics from that copy (moments.update_moments), the scale from them
    (scale.cprop_scale) and θ ← θ_before + s·(θ_after − θ_before) as :func:`_rescale_updates`.
    Nothing of CProp's state is written before the wrapped step has returned, so a wrapped
    step that raises leaves it exactly as it was."""
    statistics, z_score, finish = blocks.statistics, blocks.z_score_reciprocal, blocks.finish
    cdf_constants = blocks.cdf_constants
    conformity = blocks.make_conformity(cdf, fast)
    if phase == 0:

        @blocks.njit()
        def snapshot(param, before, grad, grad_copy):
            for i in range(grad.size):
                before[i] = param[i]
                grad_copy[i] = grad[i]

        return snapshot

    @blocks.njit()
    def rescale(param, before, grad, mean, var, k, zero_denominator, cf):
        alpha, keep, largest = k[0], k[1], k[5]
        denominator, eps, c = k[2], k[3], k[4]
        zero, one, inf = k[12], k[13], k[14]
        nan = inf - inf
        inverse_denominator = one / denominator
        q = cdf_constants(k)
        for i in range(param.size):
            new_mean, new_var = statistics(grad[i], mean[i], var[i], alpha, keep, largest)
            mean[i] = new_mean
            var[i] = new_var
            z = z_score(new_mean, new_var, inverse_denominator, eps, zero_denominator, zero, inf)
            s = finish(conformity(z, q, cf), new_mean, c, one, nan)
            b = before[i]
            param[i] = (param[i] - b) * s + b

    return rescale


def _make_scale_kernel(blocks: Any, cdf: int, fast: bool, shared: bool):
    """The scale of the last fast step from the statistics it left (scale.cprop_scale; with
    ``shared``, d = v̂ − m̂² from exp_avg_sq as :func:`_shared_variance`): the same blocks on the
    same stored values, so it equals bit for bit the scale the step applied."""
    z_score, finish = blocks.z_score_reciprocal, blocks.finish
    variance_from_moment = blocks.variance_from_moment
    cdf_constants = blocks.cdf_constants
    conformity = blocks.make_conformity(cdf, fast)

    @blocks.njit()
    def kernel(mean, second, scale, k, zero_denominator, cf, inverse_correction, first):
        denominator, eps, c = k[2], k[3], k[4]
        zero, one, inf = k[12], k[13], k[14]
        nan = inf - inf
        inverse_denominator = one / denominator
        q = cdf_constants(k)
        for i in range(mean.size):
            new_mean = mean[i]
            if shared:
                new_var = variance_from_moment(second[i], inverse_correction, new_mean, first, zero)
            else:
                new_var = second[i]
            z = z_score(new_mean, new_var, inverse_denominator, eps, zero_denominator, zero, inf)
            scale[i] = finish(conformity(z, q, cf), new_mean, c, one, nan)

    return kernel


class _LazyScale:
    """The scale of one parameter's last fast step, computed from its statistics when asked
    (:meth:`_ScaleStats.last_scales`): writing it in the step would add a write-only stream
    (measured +30% on CPropAdam at 1e7)."""

    __slots__ = ("_arguments", "_value")

    def __init__(self, group: dict[str, Any], t: int, mean, second, shared: bool) -> None:
        inverse_correction = 1.0 / bias_correction(float(group["cprop_beta"]), t) if shared else 1.0
        hyperparameters = {key: group[key] for key in _GROUP_KEYS}
        self._arguments = (
            group["cprop_cdf"],
            t,
            hyperparameters,
            mean,
            second,
            shared,
            inverse_correction,
        )
        self._value: torch.Tensor | None = None

    def get(self) -> torch.Tensor:
        if self._value is None:
            cdf, t, group, mean, second, shared, inverse_correction = self._arguments
            dtype = mean.dtype
            constants, zero_denominator, coefficients_ = _cprop_constants(group, t, dtype)
            scale = torch.empty_like(mean, memory_format=torch.contiguous_format)
            kernel = _kernel("scale", _cdf_code(cdf), dtype == torch.float32, shared)
            kernel(
                _flat(mean),
                _flat(second),
                _flat(scale),
                constants,
                zero_denominator,
                coefficients_,
                _host_constants([inverse_correction], dtype)[0],
                t == 1,
            )
            self._value = scale
            self._arguments = None
        return self._value


def _resolve(scale: Any) -> torch.Tensor:
    return scale.get() if isinstance(scale, _LazyScale) else scale


def _fast_indices(
    optimizer: Any,
    group: dict[str, Any],
    reals: list[torch.Tensor],
    grads: list[torch.Tensor],
    states: list[dict[str, Any]],
    eligible: Callable[..., bool],
) -> list[int]:
    """Indices of the parameters of ``group`` that take the fast path this step."""
    if not reals or group["cprop_rule"] != "cprop" or not _fast_path_on(optimizer):
        return []
    _validate_group(group)
    return [
        i
        for i, (real, grad, state) in enumerate(zip(reals, grads, states))
        if real.dtype in _FAST_DTYPES
        and _fast_tensor(real, real.dtype)
        and _fast_tensor(grad, real.dtype)
        and eligible(group, real, state)
    ]


def _adam_fast_ok(group: dict[str, Any], real: torch.Tensor, state: dict[str, Any]) -> bool:
    keys = ("cprop_mean",) if state.get("cprop_shared", False) else ("cprop_mean", "cprop_var")
    return (
        _fast_tensor(state["exp_avg"], real.dtype)
        and _fast_tensor(state["exp_avg_sq"], real.dtype)
        and isinstance(state["step"], torch.Tensor)
        and state["step"].device.type == "cpu"
        and _fast_statistics_ok(state, real.dtype, keys)
    )


def _sgd_fast_ok(group: dict[str, Any], real: torch.Tensor, state: dict[str, Any]) -> bool:
    buffer = state.get("momentum_buffer")
    return (
        group["momentum"] == 0 or buffer is None or _fast_tensor(buffer, real.dtype)
    ) and _fast_statistics_ok(state, real.dtype, ("cprop_mean", "cprop_var"))


def _wrap_fast_ok(group: dict[str, Any], real: torch.Tensor, state: dict[str, Any]) -> bool:
    return _fast_statistics_ok(state, real.dtype, ("cprop_mean", "cprop_var"))


def _dummy(like: torch.Tensor) -> Any:
    """A 1-element array standing for a buffer a kernel variant does not touch."""
    return torch.empty(1, dtype=like.dtype).numpy()


def _fast_adam_step(
    optimizer: Any,
    group: dict[str, Any],
    param: torch.Tensor,
    real: torch.Tensor,
    grad: torch.Tensor,
    state: dict[str, Any],
) -> torch.Tensor:
    """CPropAdam's step of one parameter in one numba pass; returns its scale tensor."""
    shared = bool(state.get("cprop_shared", False))
    keys = ("cprop_mean",) if shared else ("cprop_mean", "cprop_var")
    _fresh_statistics(state, real, keys)
    t = state.get("cprop_count", 0) + 1
    beta1, beta2 = group["betas"]
    lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
    state["step"].add_(1.0)
    adam_t = int(state["step"].item())  # as _adam_scalars (not traced: the fast path is eager)
    step_size, root = -(lr / (1 - beta1**adam_t)), (1 - beta2**adam_t) ** 0.5
    decay = 0 if weight_decay == 0 else (2 if group["decoupled"] else 1)
    dtype = real.dtype
    adam = _host_constants(
        [
            -1.0 if group["maximize"] else 1.0,
            weight_decay,
            1 - beta1,
            0.0,  # lerp's weight − 1, computed below in the dtype as torch's lerp does
            beta2,
            1 - beta2,
            1.0 / root,
            eps,
            step_size,
            -lr * weight_decay,
            1.0 / bias_correction(float(group["cprop_beta"]), t),
            1.0 if t == 1 else 0.0,
        ],
        dtype,
    )
    adam[3] = adam[2] - 1
    constants, zero_denominator, coefficients_ = _cprop_constants(group, t, dtype)
    kernel = _kernel(
        "adam",
        _cdf_code(group["cprop_cdf"]),
        dtype == torch.float32,
        shared,
        decay,
        bool(abs(adam[2]) < 0.5),
    )
    kernel(
        _flat(real),
        _flat(grad),
        _flat(state["exp_avg"]),
        _flat(state["exp_avg_sq"]),
        _flat(state["cprop_mean"]),
        _dummy(real) if shared else _flat(state["cprop_var"]),
        constants,
        zero_denominator,
        coefficients_,
        adam,
    )
    state["cprop_count"] = t
    second = state["exp_avg_sq"] if shared else state["cprop_var"]
    return _LazyScale(group, t, state["cprop_mean"], second, shared)


def _fast_sgd_step(
    optimizer: Any,
    group: dict[str, Any],
    param: torch.Tensor,
    real: torch.Tensor,
    grad: torch.Tensor,
    state: dict[str, Any],
) -> torch.Tensor:
    """CPropSGD's step of one parameter in one numba pass; returns its scale tensor."""
    _fresh_statistics(state, real, ("cprop_mean", "cprop_var"))
    t = state.get("cprop_count", 0) + 1
    momentum, dampening = group["momentum"], group["dampening"]
    buffer = state.get("momentum_buffer")
    if momentum == 0:
        mode = 0
    elif buffer is None:
        mode = 1
        buffer = state["momentum_buffer"] = torch.empty_like(
            real, memory_format=torch.contiguous_format
        )
    else:
        mode = 2
    dtype = real.dtype
    sgd = _host_constants(
        [
            -1.0 if group["maximize"] else 1.0,
            group["weight_decay"],
            momentum,
            1 - dampening,
            -group["lr"],
        ],
        dtype,
    )
    constants, zero_denominator, coefficients_ = _cprop_constants(group, t, dtype)
    kernel = _kernel(
        "sgd",
        _cdf_code(group["cprop_cdf"]),
        dtype == torch.float32,
        group["weight_decay"] != 0,
        mode,
        bool(group["nesterov"]),
    )
    kernel(
        _flat(real),
        _flat(grad),
        _dummy(real) if mode == 0 else _flat(buffer),
        _flat(state["cprop_mean"]),
        _flat(state["cprop_var"]),
        constants,
        zero_denominator,
        coefficients_,
        sgd,
    )
    state["cprop_count"] = t
    return _LazyScale(group, t, state["cprop_mean"], state["cprop_var"], False)


def _fast_wrap_scale(
    optimizer: Any, group: dict[str, Any], param: torch.Tensor, real: torch.Tensor, grad
) -> tuple[Any, tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
    """θ_before and a copy of the raw gradient of one parameter, in one pass.

    Returns (scale, (θ_before, gradient copy), new ``cprop_*`` entries). The statistics are
    updated only in :func:`_fast_wrap_rescale`, after the wrapped step returned; new ones
    (step 1) and the count are put into the state only then, since the wrapped optimizer's lazy
    initialisation looks for an empty state. The scale is lazy (computed when asked for).
    """
    state = optimizer.state[param]
    entries: dict[str, Any] = {}
    if state.get("cprop_count", 0) == 0:
        _fresh_statistics(entries, real, _WRAP_KEYS)
    mean, var = (entries.get(key, state.get(key)) for key in _WRAP_KEYS)
    t = state.get("cprop_count", 0) + 1
    before = _buffer(optimizer, "_fast_befores", param, real)
    grad_copy = _buffer(optimizer, "_fast_grads", param, real)
    kernel = _kernel("wrap", 0, real.dtype == torch.float32, 0)  # no CDF in this pass
    kernel(_flat(real), _flat(before), _flat(grad), _flat(grad_copy))
    entries["cprop_count"] = t
    scale = _LazyScale(group, t, mean, var, False) if optimizer.keep_scales else None
    return scale, (before, grad_copy), entries


def _buffer(optimizer: Any, name: str, param: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A work buffer shaped like ``like``, kept from step to step: a fresh one would fault in
    (and the kernel zero) new pages every step."""
    buffers = optimizer.__dict__.setdefault(name, {})
    buffer = buffers.get(param)
    if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
        buffer = buffers[param] = torch.empty_like(like, memory_format=torch.contiguous_format)
    return buffer


def _fast_wrap_rescale(
    group: dict[str, Any],
    t: int,
    real: torch.Tensor,
    buffers: tuple[torch.Tensor, torch.Tensor],
    mean: torch.Tensor,
    var: torch.Tensor,
) -> None:
    """CProp's statistics from the gradient copy, s from them, then
    θ ← θ_before + s·(θ_after − θ_before), in one pass."""
    before, grad = buffers
    constants, zero_denominator, coefficients_ = _cprop_constants(group, t, real.dtype)
    if not _fast_tensor(real, before.dtype):  # the wrapped step replaced the parameter's layout
        step = coefficients(float(group["cprop_beta"]), t)
        new_mean, new_var = update_moments(
            mean, var, grad, step.alpha, step.keep, _torch_namespace()
        )
        mean.copy_(new_mean)
        var.copy_(new_var)
        scale = _LazyScale(group, t, mean, var, False).get()
        _rescale_updates([real], [before], [scale], False)
        return
    kernel = _kernel("wrap", _cdf_code(group["cprop_cdf"]), real.dtype == torch.float32, 1)
    kernel(
        _flat(real),
        _flat(before),
        _flat(grad),
        _flat(mean),
        _flat(var),
        constants,
        zero_denominator,
        coefficients_,
    )
