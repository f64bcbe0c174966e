"""Datasets: IDX files (Fashion-MNIST, MNIST, any directory of them), a generated
dataset for tests, and the per-feature median binarisation.

Where Fashion-MNIST is looked for, in order: the directory given to the loader
(``--data-dir``), ``$XNORLEARN_FASHION_MNIST``, ``$XNORLEARN_DATA/fashion-mnist``,
``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``), and
``~/.cache/xnorlearn/fashion-mnist`` (``$XDG_CACHE_HOME`` honoured). MNIST is
looked for the same way (``$XNORLEARN_MNIST``, ``.../mnist``) from files the
user supplies; no package ships it.
"""

import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["DatasetError", "Dataset", "read_idx", "write_idx", "load_idx_dir", "find_dataset_dir",
           "load_dataset", "synthetic", "MedianBinarizer", "IDX_NAMES", "DATASET_NAMES"]

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
DATASET_NAMES = ("fashion-mnist", "mnist", "synthetic")

_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DatasetError(ValueError):
    """A dataset that cannot be found or read; the message says which file and why."""


@dataclasses.dataclass
class Dataset:
    """Images flattened to ``(n, features)`` ``uint8``/int rows, labels ``int64``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    source: str = ""

    @property
    def features(self):
        return self.x_train.shape[1]

    def limit(self, train=None, test=None):
        """A copy keeping the first ``train`` / ``test`` patterns."""
        return dataclasses.replace(
            self,
            x_train=self.x_train[:train], y_train=self.y_train[:train],
            x_test=self.x_test[:test], y_test=self.y_test[:test])


def read_idx(path):
    """Read one IDX file (raw or gzip-compressed).

    Raises
    ------
    DatasetError
        If the file is missing, not IDX, of an unknown element type, truncated
        or longer than its header says.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            raw = gzip.decompress(f.read()) if head == b"\x1f\x8b" else f.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: cannot read ({e}); the file may be corrupt or truncated") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    dtype = _IDX_TYPES.get(raw[2])
    if dtype is None:
        raise DatasetError(f"{path}: unknown IDX element type 0x{raw[2]:02x}")
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: IDX header truncated ({ndim} dimensions)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - offset
    if have < need:
        raise DatasetError(f"{path}: truncated: header says {dims} ({need} bytes of data), "
                           f"file has {have}")
    if have > need:
        raise DatasetError(f"{path}: {have - need} bytes beyond the {dims} array the header "
                           f"declares; the file is corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path, array, compress=None):
    """Write ``array`` (uint8, int8, >i2, >i4, >f4 or >f8 data) as an IDX file.

    ``compress`` defaults to whether ``path`` ends in ``.gz``.
    """
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}")
    if array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(_IDX_TYPES[code], copy=False).tobytes()
    if compress is None:
        compress = str(path).endswith(".gz")
    Path(path).write_bytes(gzip.compress(raw) if compress else raw)


def _find_file(directory, stem):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        p = Path(directory) / name
        if p.exists():
            return p
    return None


def load_idx_dir(directory, name=None, classes=None):
    """Load the four standard IDX files of a directory (``.gz`` or raw).

    Raises
    ------
    DatasetError
        On missing files, unreadable files, or arrays that do not fit together.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: not a directory")
    arrays = {}
    for key, stem in IDX_NAMES.items():
        path = _find_file(directory, stem)
        if path is None:
            raise DatasetError(f"{directory}: missing {stem}.gz (or {stem}); an IDX dataset "
                               f"directory needs {', '.join(IDX_NAMES.values())}")
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if y.ndim != 1:
            raise DatasetError(f"{directory}: {split} labels must be 1-d, got shape {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise DatasetError(f"{directory}: {x.shape[0]} {split} images but {y.shape[0]} labels")
        arrays[f"x_{split}"] = x.reshape(x.shape[0], -1)
        arrays[f"y_{split}"] = y.astype(np.int64)
    if arrays["x_train"].shape[1] != arrays["x_test"].shape[1]:
        raise DatasetError(f"{directory}: train images have {arrays['x_train'].shape[1]} features, "
                           f"test images {arrays['x_test'].shape[1]}")
    labels = np.concatenate([arrays["y_train"], arrays["y_test"]])
    if labels.min() < 0:
        raise DatasetError(f"{directory}: negative label {labels.min()}")
    n_classes = int(labels.max()) + 1 if classes is None else classes
    if labels.max() >= n_classes:
        raise DatasetError(f"{directory}: label {labels.max()} out of range 0..{n_classes - 1}")
    if n_classes < 2:
        raise DatasetError(f"{directory}: labels hold a single class")
    return Dataset(name=name or directory.name, classes=n_classes, source=str(directory), **arrays)


def _cache_dir():
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xnorlearn"


def find_dataset_dir(name, data_dir=None):
    """The first directory holding ``name`` (``fashion-mnist`` or ``mnist``), or ``None``."""
    env_var = {"fashion-mnist": "XNORLEARN_FASHION_MNIST", "mnist": "XNORLEARN_MNIST"}[name]
    candidates = []
    if data_dir:
        candidates += [Path(data_dir), Path(data_dir) / name]
    if os.environ.get(env_var):
        candidates.append(Path(os.environ[env_var]))
    if os.environ.get("XNORLEARN_DATA"):
        candidates.append(Path(os.environ["XNORLEARN_DATA"]) / name)
    candidates += [Path("/usr/share/datasets") / name, _cache_dir() / name]
    for c in candidates:
        if c.is_dir() and _find_file(c, IDX_NAMES["x_train"]) is not None:
            return c
    return None


def load_dataset(name, data_dir=None, seed=0):
    """Load ``fashion-mnist``, ``mnist``, ``synthetic``, or a directory of IDX files.

    Raises
    ------
    DatasetError
        If the dataset is unknown or cannot be found, saying where it was looked for.
    """
    if name in ("fashion-mnist", "mnist"):
        directory = find_dataset_dir(name, data_dir)
        if directory is None:
            hint = ("install Debian's dataset-fashion-mnist, or " if name == "fashion-mnist" else "")
            raise DatasetError(
                f"{name} not found: {hint}put its four IDX files in a directory and pass "
                f"--data-dir DIR (or set XNORLEARN_{name.upper().replace('-', '_')}); looked in "
                f"{'--data-dir, ' if data_dir else ''}/usr/share/datasets/{name}, {_cache_dir() / name}")
        return load_idx_dir(directory, name=name, classes=10)
    if name == "synthetic":
        return synthetic(seed=seed)
    path = Path(name)
    if path.is_dir():
        return load_idx_dir(path)
    raise DatasetError(f"unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)} "
                       f"or a directory of IDX files")


def synthetic(n_train=2000, n_test=500, features=64, classes=4, flip=0.15, seed=0):
    """Noisy class prototypes as ``uint8`` images (0 or 255 per pixel).

    Each class has a random binary prototype; every pattern copies its class's
    prototype with each pixel flipped with probability ``flip``.
    """
    for name, value, lo in (("n_train", n_train, 1), ("n_test", n_test, 1),
                            ("features", features, 1), ("classes", classes, 2)):
        if not isinstance(value, (int, np.integer)) or value < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    if not 0 <= flip < 0.5:
        raise ValueError(f"flip must be in [0, 0.5), got {flip}")
    rng = np.random.default_rng([seed, 0x5E7])
    protos = rng.random((classes, features)) < 0.5

    def draw(n):
        y = rng.integers(0, classes, n)
        noise = rng.random((n, features)) < flip
        return ((protos[y] ^ noise) * np.uint8(255)).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset("synthetic", x_train, y_train, x_test, y_test, classes,
                   source=f"generated (seed {seed})")


class MedianBinarizer:
    """``a_i = +1 if x_i > t_i else -1`` with ``t_i`` the per-feature training median."""

    def __init__(self, thresholds=None):
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)

    def fit(self, x):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"fit needs a non-empty (patterns, features) array, got shape {x.shape}")
        self.thresholds = np.median(x, axis=0)
        return self

    def transform(self, x):
        if self.thresholds is None:
            raise RuntimeError("MedianBinarizer.transform called before fit")
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.thresholds.shape[0]:
            raise ValueError(f"inputs must have shape (n, {self.thresholds.shape[0]}), got {x.shape}")
        return np.where(x > self.thresholds, np.int8(1), np.int8(-1))
