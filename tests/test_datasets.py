import gzip

import numpy as np
import pytest

from xnorlearn.sw.datasets import (DatasetError, MedianBinarizer, find_dataset_dir,
                                   load_dataset, load_idx_dir, read_idx, synthetic, write_idx)


def write_set(directory, rng, n_train=30, n_test=10, shape=(4, 5), classes=3, gz=True):
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, *shape)).astype(np.uint8)
        y = rng.integers(0, classes, n).astype(np.uint8)
        write_idx(directory / f"{split}-images-idx3-ubyte{ext}", x)
        write_idx(directory / f"{split}-labels-idx1-ubyte{ext}", y)
        data[split] = (x, y)
    return data


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, rng, gz):
    data = write_set(tmp_path / "d", rng, gz=gz)
    ds = load_idx_dir(tmp_path / "d")
    assert ds.x_train.shape == (30, 20) and ds.classes >= 2
    assert np.array_equal(ds.x_train, data["train"][0].reshape(30, -1))
    assert np.array_equal(ds.y_test, data["t10k"][1])


def test_idx_dtypes_roundtrip(tmp_path, rng):
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        arr = rng.integers(-100, 100, (3, 4, 2)).astype(dtype)
        write_idx(tmp_path / "a.idx", arr)
        assert np.array_equal(read_idx(tmp_path / "a.idx"), arr)


def test_idx_errors(tmp_path, rng):
    p = tmp_path / "x.idx"
    write_idx(p, rng.integers(0, 255, (10, 3)).astype(np.uint8))
    raw = p.read_bytes()
    p.write_bytes(raw[:-5])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(p)
    p.write_bytes(raw + b"xx")
    with pytest.raises(DatasetError, match="bytes beyond"):
        read_idx(p)
    p.write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(p)
    p.write_bytes(raw[:2] + b"\x42" + raw[3:])
    with pytest.raises(DatasetError, match="unknown IDX element type"):
        read_idx(p)
    p.write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        read_idx(p)
    with pytest.raises(DatasetError, match="file not found"):
        read_idx(tmp_path / "missing.idx")


def test_dir_errors(tmp_path, rng):
    write_set(tmp_path / "d", rng)
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="missing t10k-labels"):
        load_idx_dir(tmp_path / "d")
    write_idx(tmp_path / "d" / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(DatasetError, match="10 test images but 9 labels"):
        load_idx_dir(tmp_path / "d")
    write_idx(tmp_path / "d" / "t10k-labels-idx1-ubyte.gz", np.full(10, 12, np.uint8))
    with pytest.raises(DatasetError, match="label 12 out of range 0..9"):
        load_idx_dir(tmp_path / "d", classes=10)


def test_lookup_order(tmp_path, rng, monkeypatch):
    write_set(tmp_path / "env" / "mnist", rng)
    monkeypatch.setenv("XNORLEARN_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert find_dataset_dir("mnist") == tmp_path / "env" / "mnist"
    write_set(tmp_path / "given", rng)
    assert find_dataset_dir("mnist", tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("XNORLEARN_DATA")
    assert find_dataset_dir("mnist") is None
    with pytest.raises(DatasetError, match="mnist not found"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    ds = load_dataset(str(tmp_path / "given"))
    assert ds.x_test.shape == (10, 20)


def test_synthetic_and_binarizer():
    ds = synthetic(n_train=400, n_test=100, features=32, classes=5, seed=3)
    assert ds.x_train.shape == (400, 32) and set(np.unique(ds.y_train)) <= set(range(5))
    again = synthetic(n_train=400, n_test=100, features=32, classes=5, seed=3)
    assert np.array_equal(ds.x_train, again.x_train)
    b = MedianBinarizer().fit(ds.x_train)
    a = b.transform(ds.x_test)
    assert a.dtype == np.int8 and set(np.unique(a)) <= {-1, 1}
    x = np.array([[0, 5], [10, 5], [20, 6]])
    b = MedianBinarizer().fit(x)
    assert b.transform(x).tolist() == [[-1, -1], [-1, -1], [1, 1]]  # strictly greater
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        b.transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="classes"):
        synthetic(classes=1)


@pytest.mark.skipif(find_dataset_dir("fashion-mnist") is None, reason="Fashion-MNIST not installed")
def test_fashion_mnist_if_installed():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.classes == 10 and np.bincount(ds.y_test).tolist() == [1000] * 10
