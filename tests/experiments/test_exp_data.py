"""Loaders of ``cprop reproduce``: digits, IDX folders (gz and raw), .npz, and their errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from cprop_core.experiments.data import (
    IDX_FILES,
    DataError,
    load_dataset,
    load_idx_folder,
    load_npz,
    read_idx,
)


def _idx_bytes(array: np.ndarray) -> bytes:
    magic = (0x0800 + array.ndim).to_bytes(4, "big")
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic + dims + array.astype(np.uint8).tobytes()


def _write_idx_folder(folder: Path, gz: bool, n_train=12, n_test=5, size=8) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, size, size)),
        "y_train": rng.integers(0, 10, n_train),
        "x_test": rng.integers(0, 256, (n_test, size, size)),
        "y_test": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        raw = _idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_folder_round_trip(tmp_path, gz):
    arrays = _write_idx_folder(tmp_path / "mnist", gz)
    data = load_dataset(tmp_path / "mnist")
    assert data.x_train.shape == (12, 1, 8, 8) and data.x_train.dtype == np.float32
    np.testing.assert_allclose(data.x_train[:, 0] * 255, arrays["x_train"], atol=1e-4)
    np.testing.assert_array_equal(data.y_test, arrays["y_test"])
    assert data.y_train.dtype == np.int64
    assert 0.0 <= data.x_test.min() and data.x_test.max() <= 1.0


def test_read_idx_labels(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(_idx_bytes(np.arange(7)))
    np.testing.assert_array_equal(read_idx(path, 1), np.arange(7))


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no such folder"):
        load_idx_folder(tmp_path / "nowhere")


def test_missing_file_is_named(tmp_path):
    _write_idx_folder(tmp_path, gz=False)
    (tmp_path / IDX_FILES["y_test"]).unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_idx_folder(tmp_path)


def test_wrong_magic_number(tmp_path):
    _write_idx_folder(tmp_path, gz=True)
    path = tmp_path / f"{IDX_FILES['x_train']}.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[2] = 0x0D  # float type code instead of unsigned byte
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="wrong magic number 0x00000d03"):
        load_idx_folder(tmp_path)


def test_truncated_idx(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(_idx_bytes(np.zeros((3, 4, 4)))[:-5])
    with pytest.raises(DataError, match="header says"):
        read_idx(path, 3)


def test_mismatched_counts(tmp_path):
    _write_idx_folder(tmp_path, gz=False)
    (tmp_path / IDX_FILES["y_train"]).write_bytes(_idx_bytes(np.zeros(11)))
    with pytest.raises(DataError, match="12 images, 11 labels"):
        load_idx_folder(tmp_path)


def test_npz_with_split_and_without(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (40, 6, 6)).astype(np.uint8), np.repeat(np.arange(4), 10)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    data = load_npz(tmp_path / "a.npz")
    assert len(data.y_train) + len(data.y_test) == 40 and data.x_train.shape[1:] == (1, 6, 6)
    assert data.x_train.max() <= 1.0
    np.savez(tmp_path / "b.npz", x=x.reshape(40, 36), y=y, x_test=x[:5], y_test=y[:5])
    data = load_dataset(tmp_path / "b.npz")
    assert len(data.y_train) == 40 and len(data.y_test) == 5 and data.num_classes == 4


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "no_y.npz", x=np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match=r"missing array\(s\) \['y'\]"):
        load_npz(tmp_path / "no_y.npz")
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 4, 4)), y=np.zeros(2))
    with pytest.raises(DataError, match="x has 3 images but y has 2 labels"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="no such .npz"):
        load_dataset(tmp_path / "absent.npz")


def test_digits_split_is_fixed():
    pytest.importorskip("sklearn")
    first, second = load_dataset("digits"), load_dataset("digits")
    assert first.x_train.shape == (1437, 1, 8, 8) and len(first.y_test) == 360
    np.testing.assert_array_equal(first.y_test, second.y_test)
    assert first.num_classes == 10 and first.x_train.max() == 1.0


def test_npz_content_errors(tmp_path):
    """Junk files, float labels and non-finite images are refused with the file named."""
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([object(), object()], dtype=object), y=np.array([0, 1]))
    halves = tmp_path / "halves.npz"
    np.savez(halves, x=np.zeros((10, 4, 4)), y=np.arange(10) * 0.5)
    nans = tmp_path / "nans.npz"
    np.savez(nans, x=np.full((10, 4, 4), np.nan), y=np.arange(10) % 2)
    for path, message in (
        (junk, "not a readable .npz"),
        (objects, "not a readable .npz"),
        (halves, "integer class labels"),
        (nans, "NaN or inf"),
    ):
        with pytest.raises(DataError, match=message):
            load_npz(path)
