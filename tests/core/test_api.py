"""The public API's contract: state types, purity, trees, devices, and errors at the boundary."""

from __future__ import annotations

import numpy as np
import pytest
from cprop_core.reference import reference_moment_rate, reference_relative_rate

from cprop_core import (
    CPropState,
    RelativeRateState,
    cprop_step,
    init_relative_rate_state,
    init_state,
    moment_rate_step,
    relative_rate_step,
)

STEPS = [
    (cprop_step, init_state),
    (moment_rate_step, init_state),
    (relative_rate_step, init_relative_rate_state),
]


def test_state_types_are_namedtuples_with_exact_count():
    state = init_state(np.zeros((2, 3), np.float32))
    assert isinstance(state, CPropState) and state._fields == ("count", "mean", "var")
    assert state.count == 0 and type(state.count) is int
    assert state.mean.shape == (2, 3) and state.mean.dtype == np.float32
    for _ in range(3):
        state, _ = cprop_step(state, np.ones((2, 3), np.float32))
    assert state.count == 3 and type(state.count) is int
    relative = init_relative_rate_state(np.zeros(2))
    assert isinstance(relative, RelativeRateState) and relative._fields[2] == "abs_mean"


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_state_keeps_namespace_device_and_statistics_dtype(backend, dtype):
    if not backend.supports(dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    like = backend.asarray(np.zeros(4), dtype)
    for step, init in STEPS:
        state = init(like)
        state, scale = step(state, backend.asarray(np.arange(4.0) - 1.5, dtype))
        wanted = backend.dtype("float64" if dtype == "float64" else "float32")
        import array_api_compat as compat

        for leaf in (state[1], state[2], scale):
            assert compat.array_namespace(leaf) is compat.array_namespace(like) or (
                backend.name == "jax"
            )
            assert leaf.dtype == wanted
            assert compat.device(leaf) == compat.device(like)


def test_step_is_pure_on_read_only_inputs():
    """NumPy inputs marked read-only: any in-place write would raise."""
    grad = np.array([1.0, -2.0, 0.5])
    grad.flags.writeable = False
    for step, init in STEPS:
        state = init(grad)
        for leaf in state[1:]:
            leaf.flags.writeable = False
        new_state, _ = step(state, grad)
        assert new_state is not state and state.count == 0
        assert np.all(state[1] == 0) and np.all(state[2] == 0)


@pytest.mark.torch
def test_step_does_not_modify_torch_inputs():
    torch = pytest.importorskip("torch")
    grad = torch.tensor([1.0, -2.0, 0.5])
    state = init_state(grad)
    state, _ = cprop_step(state, grad)
    before = [t.clone() for t in (state.mean, state.var, grad)]
    cprop_step(state, grad * 3)
    for old, new in zip(before, (state.mean, state.var, grad)):
        assert torch.equal(old, new)


def test_trees_of_lists_tuples_dicts():
    like = {"w": [np.zeros((2, 2)), np.zeros(3)], "b": (np.zeros(()),)}
    state = init_state(like)
    grad = {"w": [np.ones((2, 2)), -np.ones(3)], "b": (np.array(2.0),)}
    state, scale = cprop_step(state, grad)
    assert set(scale) == {"w", "b"} and isinstance(scale["w"], list)
    assert isinstance(scale["b"], tuple) and scale["b"][0].shape == ()
    np.testing.assert_array_equal(scale["w"][0], np.ones((2, 2)))


def test_heuristics_match_reference():
    rng = np.random.default_rng(3)
    grads = rng.normal(0.2, 1.0, (40, 5))
    for step, init, reference in (
        (moment_rate_step, init_state, reference_moment_rate),
        (relative_rate_step, init_relative_rate_state, reference_relative_rate),
    ):
        state = init(grads[0])
        for t, g in enumerate(grads):
            state, s = step(state, g, beta=0.9, c=3.0)
            np.testing.assert_allclose(
                s, reference(grads[: t + 1], beta=0.9, c=3.0)[t], rtol=0, atol=1e-12
            )


def test_edge_cases_of_spec_section_2():
    # ε = 0 at t = 1: s = min(c, 1) where g ≠ 0, 0 where g = 0 (never 0/0).
    _, s = cprop_step(init_state(np.zeros(3)), np.array([2.0, 0.0, -1e-30]), eps=0.0, c=0.5)
    np.testing.assert_array_equal(s, [0.5, 0.0, 0.5])
    # all-zero history: exactly 0
    state = init_state(np.zeros(2))
    for _ in range(5):
        state, s = cprop_step(state, np.zeros(2))
    np.testing.assert_array_equal(s, [0.0, 0.0])
    # β = 0: every step is a first step
    state = init_state(np.zeros(1))
    for g in (1.0, -3.0, 1e-3):
        state, s = cprop_step(state, np.array([g]), beta=0.0)
        assert s[0] == 1.0 and state.var[0] == 0.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"beta": 1.0}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"c": 0.0}, "c"),
        ({"c": float("inf")}, "c"),
        ({"eps": -1e-8}, "eps"),
        ({"cdf": "cauchy"}, "cdf"),
    ],
)
def test_bad_hyperparameters_name_the_argument(kwargs, name):
    state = init_state(np.zeros(2))
    with pytest.raises(ValueError, match=rf"^{name} "):
        cprop_step(state, np.ones(2), **kwargs)
    if name in ("beta", "c"):
        with pytest.raises(ValueError, match=rf"^{name} "):
            moment_rate_step(state, np.ones(2), **kwargs)


def test_bad_gradients_are_refused_before_anything_changes():
    state = init_state({"a": np.zeros(2), "b": np.zeros(3)})
    cases = [
        ({"a": np.ones(2)}, ValueError, "tree structure"),
        ({"a": np.ones(2), "b": np.ones(4)}, ValueError, r"grad\['b'\]: shape"),
        ({"a": np.ones(2), "b": np.ones(3, dtype=np.int64)}, TypeError, "real floating"),
        ({"a": np.ones(2), "b": np.ones(3, dtype=np.complex128)}, TypeError, "complex"),
        ({"a": np.ones(2), "b": np.ones(3, dtype=np.float32)}, TypeError, "needs float32"),
    ]
    for grad, error, message in cases:
        with pytest.raises(error, match=message):
            cprop_step(state, grad)
    with pytest.raises(TypeError, match="state"):
        cprop_step((0, np.zeros(2), np.zeros(2)), np.ones(2))
    with pytest.raises(TypeError, match="state.count"):
        cprop_step(CPropState(1.5, np.zeros(2), np.zeros(2)), np.ones(2))
    with pytest.raises(TypeError, match="like"):
        init_state([1.0, 2.0])


@pytest.mark.torch
def test_namespace_and_device_mismatch():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="single array-API library"):
        cprop_step(init_state(np.zeros(2)), torch.ones(2, dtype=torch.float64))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            cprop_step(init_state(torch.zeros(2)), torch.ones(2, device="cuda"))


@pytest.mark.torch
@pytest.mark.parametrize("beta", [0.999, 0.9999])
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_equals_float32_on_upcast_gradients(half, beta):
    """SPEC §6: statistics in float32, so fp16/bf16 give exactly the float32 result."""
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    grads = torch.randn(200, 64, generator=generator) * 0.1 + 0.02
    grads[:, :8] *= 1e3  # g² > 65504 overflows float16 arithmetic, not float32 statistics
    grads = grads.to(getattr(torch, half))
    low, full = init_state(grads[0]), init_state(grads[0].float())
    assert low.mean.dtype == torch.float32
    for g in grads:
        low, s_low = cprop_step(low, g, beta=beta)
        full, s_full = cprop_step(full, g.float(), beta=beta)
        assert s_low.dtype == torch.float32 and torch.equal(s_low, s_full)
    assert torch.equal(low.mean, full.mean) and torch.equal(low.var, full.var)
    assert torch.isfinite(s_low).all()


def test_numpy_float16_equals_float32():
    rng = np.random.default_rng(1)
    grads = (rng.normal(size=(50, 16)) * 300).astype(np.float16)
    low, full = init_state(grads[0]), init_state(grads[0].astype(np.float32))
    for g in grads:
        low, s_low = cprop_step(low, g, beta=0.9999)
        full, s_full = cprop_step(full, g.astype(np.float32), beta=0.9999)
        np.testing.assert_array_equal(s_low, s_full)


def test_more_bad_arguments_found_by_review():
    state = init_state(np.zeros(2))
    with pytest.raises(ValueError, match="^c "):
        cprop_step(state, np.ones(2), c=None)
    with pytest.raises(ValueError, match="^eps "):
        cprop_step(state, np.ones(2), eps=None)
    for count in (1.0, True, np.float64(2.0)):
        with pytest.raises(TypeError, match="state.count"):
            cprop_step(CPropState(count, np.zeros(2), np.zeros(2)), np.ones(2))
    assert cprop_step(CPropState(np.int64(2), np.zeros(2), np.zeros(2)), np.ones(2))[0].count == 3
    with pytest.raises(TypeError, match="grad.*expected an array, got float"):
        cprop_step(init_state(np.zeros(())), 1.0)


def test_verify_fails_for_a_requested_backend_that_cannot_run(capsys):
    from cprop_core.cli.main import main

    assert main(
        [
            "verify",
            "--backend",
            "numpy",
            "cupy",
            "--cdf",
            "normal",
            "--steps",
            "3",
            "--dtype",
            "float64",
        ]
    ) in (0, 1)
    out = capsys.readouterr().out
    import importlib.util

    if importlib.util.find_spec("cupy") is None:
        assert "FAIL cupy: requested but unavailable" in out and "1 failed" in out
