"""Data sets for ``cprop reproduce``: scikit-learn's digits, MNIST-style IDX folders, ``.npz``.

Every loader returns a :class:`Dataset` of float32 images shaped ``(N, C, H, W)`` in [0, 1]
and int64 labels, with a fixed train/test split. Problems with the input raise
:class:`DataError` with a message that names the file and what is wrong.

>>> data = load_dataset("digits")
>>> data.x_train.shape[1:], data.num_classes
((1, 8, 8), 10)
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DataError", "Dataset", "load_dataset", "read_idx", "load_idx_folder", "load_npz"]

TEST_FRACTION = 0.2
SPLIT_SEED = 0
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# IDX magic numbers: two zero bytes, a type code (0x08 = unsigned byte), the number of dims.
IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}


class DataError(ValueError):
    """The data given to ``cprop reproduce`` is missing or malformed."""


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays; images ``(N, C, H, W)`` float32 in [0, 1], labels int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def describe(self) -> str:
        c, h, w = self.image_shape
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_test)} test images "
            f"{c}x{h}x{w}, {self.num_classes} classes"
        )


def load_dataset(source: str | Path = "digits") -> Dataset:
    """``"digits"`` (bundled), a folder of IDX files, or a ``.npz`` file with ``x``/``y``."""
    if str(source) == "digits":
        return load_digits()
    path = Path(source)
    if path.suffix == ".npz":
        return load_npz(path)
    if not path.exists():
        raise DataError(
            f"--data {str(source)!r}: no such folder or file (give 'digits', a folder with "
            f"MNIST/Fashion-MNIST IDX files, or a .npz file with arrays x and y)"
        )
    if path.is_dir():
        return load_idx_folder(path)
    raise DataError(f"--data {str(source)!r}: expected a folder of IDX files or a .npz file")


def load_digits() -> Dataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits, pixel values 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = bunch.images.astype(np.float32)[:, None] / 16.0
    return _split("digits", images, bunch.target.astype(np.int64))


def _split(name: str, x: np.ndarray, y: np.ndarray) -> Dataset:
    """A fixed, stratified hold-out split (same for every run and seed)."""
    from sklearn.model_selection import train_test_split

    stratify = y if np.bincount(y).min() >= 2 else None
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=stratify
    )
    return Dataset(name, x_train, y_train, x_test, y_test)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes (optionally gzipped) with ``ndim`` dimensions."""
    path = Path(path)
    with _open(path) as handle:
        raw = handle.read()
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != IDX_MAGIC[ndim]:
        raise DataError(
            f"{path}: wrong magic number 0x{magic:08x}, expected 0x{IDX_MAGIC[ndim]:08x} "
            f"(unsigned-byte IDX with {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise DataError(
            f"{path}: header says {dims} ({math.prod(dims)} bytes of data) but the file has "
            f"{body.size}"
        )
    return body.reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: missing {stem} (or {stem}.gz), one of the four MNIST IDX files")


def load_idx_folder(folder: str | Path) -> Dataset:
    """MNIST or Fashion-MNIST from the four standard IDX files (gzipped or not) in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    arrays = {
        key: read_idx(_find(folder, stem), 3 if key.startswith("x") else 1)
        for key, stem in IDX_FILES.items()
    }
    for part in ("train", "test"):
        images, labels = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if len(images) != len(labels):
            raise DataError(
                f"{folder}: {part} images and labels disagree: {len(images)} images, "
                f"{len(labels)} labels"
            )
    convert = lambda x: x.astype(np.float32)[:, None] / 255.0  # noqa: E731
    return Dataset(
        folder.name or str(folder),
        convert(arrays["x_train"]),
        arrays["y_train"].astype(np.int64),
        convert(arrays["x_test"]),
        arrays["y_test"].astype(np.int64),
    )


def _images(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    """(N, H, W), (N, C, H, W) or (N, D) with D a square → float32 (N, C, H, W) in [0, 1]."""
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1]:
            raise DataError(f"{path}: {key} has {array.shape[1]} features, not a square image")
        array = array.reshape(len(array), side, side)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise DataError(
            f"{path}: {key} must be (N, H, W), (N, C, H, W) or (N, D), got {array.shape}"
        )
    if array.dtype.kind not in "iuf":
        raise DataError(f"{path}: {key} must be a numeric array, got {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise DataError(f"{path}: {key} contains NaN or inf")
    scale = 255.0 if array.dtype == np.uint8 else max(float(np.max(array)), 1.0)
    return array.astype(np.float32) / scale


def load_npz(path: str | Path) -> Dataset:
    """A ``.npz`` with ``x``, ``y`` (split here) or also ``x_test``, ``y_test``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file")
    try:
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError) as error:  # not a zip, pickled objects, truncated
        raise DataError(f"{path}: not a readable .npz of numeric arrays ({error})") from None
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing array(s) {missing}; found {sorted(arrays)}")
    pairs = [("x", "y")] + ([("x_test", "y_test")] if "x_test" in arrays else [])
    for x_key, y_key in pairs:
        if y_key not in arrays:
            raise DataError(f"{path}: has {x_key} but no {y_key}")
        if len(arrays[x_key]) != len(arrays[y_key]):
            raise DataError(
                f"{path}: {x_key} has {len(arrays[x_key])} images but {y_key} has "
                f"{len(arrays[y_key])} labels"
            )
    for _, key in pairs:
        raw = np.asarray(arrays[key])
        numeric = raw.dtype.kind in "iub" or (raw.dtype.kind == "f" and np.all(np.isfinite(raw)))
        if not numeric or not np.array_equal(raw, np.round(raw) if raw.dtype.kind == "f" else raw):
            raise DataError(f"{path}: {key} must hold integer class labels, got {raw.dtype}")
    labels = {key: np.asarray(arrays[key]).astype(np.int64).reshape(-1) for _, key in pairs}
    if any(values.min() < 0 for values in labels.values()):
        raise DataError(f"{path}: labels must be non-negative integers")
    x = _images(arrays["x"], path, "x")
    if "x_test" not in arrays:
        return _split(path.stem, x, labels["y"])
    return Dataset(
        path.stem, x, labels["y"], _images(arrays["x_test"], path, "x_test"), labels["y_test"]
    )
