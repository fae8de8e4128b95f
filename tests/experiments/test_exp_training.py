"""Training loop, lr search and tables of ``cprop reproduce`` (plain optimizers, tiny budget)."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from cprop_core.experiments.data import load_dataset  # noqa: E402
from cprop_core.experiments.lr_search import LrCache, factor3_search  # noqa: E402
from cprop_core.experiments.models import build_model  # noqa: E402
from cprop_core.experiments.report import checkpoint_iterations, format_table  # noqa: E402
from cprop_core.experiments.training import RunConfig, log_iterations, to_tensors, train  # noqa: E402


@pytest.fixture(scope="module")
def tensors():
    torch.set_num_threads(1)
    return to_tensors(load_dataset("digits"), eval_samples=200)


@pytest.mark.parametrize("model", ["fc", "cnn"])
def test_same_seed_same_weights(model):
    first = build_model(model, (1, 8, 8), 10, seed=3)
    second = build_model(model, (1, 8, 8), 10, seed=3, dropout=0.5)
    other = build_model(model, (1, 8, 8), 10, seed=4)
    pairs = zip(first.state_dict().values(), second.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(next(iter(first.parameters())), next(iter(other.parameters())))
    assert build_model(model, (1, 8, 8), 10, seed=0)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("model", ["fc", "cnn"])
def test_run_is_deterministic_and_learns(tensors, model):
    config = RunConfig(model=model, optimizer="adam", lr=3e-3, iterations=20, log_points=2)
    first, second = train(config, tensors), train(config, tensors)
    assert first.iterations == [0, 1, 3, 10, 20]
    assert first.train_loss == second.train_loss
    assert first.train_loss[-1] < first.train_loss[0]
    assert 0.0 <= first.test_accuracy <= 1.0 and not first.diverged and first.mean_scale == []


def test_dropout_seeded(tensors):
    config = RunConfig(optimizer="sgd", lr=0.1, iterations=5, log_points=1, dropout=0.5, seed=2)
    assert train(config, tensors).train_loss == train(config, tensors).train_loss


def test_divergence_is_reported(tensors):
    config = RunConfig(optimizer="sgd", lr=1e6, iterations=30, log_points=3)
    result = train(config, tensors)
    assert result.diverged and result.final_loss == math.inf and math.isnan(result.test_accuracy)


def test_labels():
    assert RunConfig(optimizer="adam").label == "Adam"
    assert RunConfig(optimizer="adam", cprop=True).label == "CProp-Adam"
    assert RunConfig(optimizer="sgd", cprop=True, c=3.0).label == "CProp-SGD c=3"
    config = RunConfig(optimizer="rmsprop", cprop=True, rule="moment_rate", c=27.0, seed=4)
    assert config.label == "MomentRate-RMSProp c=27"
    assert config.twin() == RunConfig(optimizer="rmsprop", seed=4)


def test_log_and_checkpoint_iterations():
    assert log_iterations(10, 5) == [0, 1, 2, 3, 4, 6, 8, 10]
    assert log_iterations(3, 10) == [0, 1, 2, 3]
    assert log_iterations(600, 2) == [0, 1, 3, 10, 300, 600]
    assert checkpoint_iterations(log_iterations(600, 20)) == [60, 180, 600]
    assert checkpoint_iterations([0, 1, 2]) == [0, 1, 2]


def test_factor3_search_both_directions():
    down = {0.1: 0.5, 0.3: 0.9, 0.1 / 3: 0.2, 0.1 / 9: 0.3}
    best, trials = factor3_search(
        lambda lr: min(down.items(), key=lambda kv: abs(kv[0] - lr))[1], 0.1
    )
    assert best == pytest.approx(0.1 / 3) and len(trials) == 4
    best, trials = factor3_search(lambda lr: math.inf, 1.0, max_trials=3)
    assert best == pytest.approx(1 / 3) and len(trials) == 3  # all diverged: go down, stop
    with pytest.raises(ValueError, match="max_trials"):
        factor3_search(lambda lr: 0.0, 1.0, max_trials=1)


def test_lr_cache_round_trip(tmp_path):
    cache = LrCache(tmp_path / "lr.json")
    key = LrCache.key(model="fc", optimizer="sgd")
    assert cache.get(key) is None
    cache.store(key, 0.3, [(0.1, 1.0), (0.3, 0.5), (0.9, math.inf)])
    reloaded = LrCache(tmp_path / "lr.json")
    assert reloaded.get(key) == 0.3
    assert reloaded.entries[key]["trials"][2]["final_train_loss"] is None


def test_format_table():
    rows = [{"method": "SGD", "loss": "0.1 ± 0.01"}, {"method": "CProp-SGD", "loss": "0.2"}]
    text = format_table(rows)
    assert text.splitlines()[0].startswith("method") and "CProp-SGD" in text
    assert format_table(rows, markdown=True).splitlines()[1] == "|---|---|"


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_cnn_uses_every_tap(shape):
    """No 3x3 conv runs on a 1x1 map (whose 8 outer taps would never get a gradient)."""
    model = build_model("cnn", shape, 10, seed=0)
    torch.nn.functional.cross_entropy(
        model(torch.rand(16, *shape)), torch.arange(16) % 10
    ).backward()
    for layer in model:
        if isinstance(layer, torch.nn.Conv2d) and layer.kernel_size == (3, 3):
            assert (layer.weight.grad.abs().sum(dim=(0, 1)) > 0).all()
