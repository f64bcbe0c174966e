"""The fast golden model equals the literal one, weight for weight."""

import numpy as np
import pytest

from xnorlearn.sw.golden import (FastBMLP, LiteralBMLP, NetworkConfig, check_batch,
                                 default_gamma)


def random_config(rng):
    layers = int(rng.integers(1, 4))
    sizes = [int(rng.integers(1, 40))] + [int(rng.choice([1, 2, 4, 6, 9, 12, 15, 20, 24]))
                                          for _ in range(layers)]
    gamma = tuple(int(rng.choice([d for d in range(1, k + 1) if k % d == 0])) for k in sizes[1:])
    return NetworkConfig(
        sizes=tuple(sizes), classes=int(rng.integers(2, 7)), gamma=gamma,
        r=float(rng.choice([0, 0.1, 0.25, 0.5, 1.0])),
        h_bits=[None, 2, 3, 4, 8][int(rng.integers(5))],
        z_bits=[None, 2, 3, 5, 8][int(rng.integers(5))],
        p_r=float(rng.choice([0.0, 0.5, 5.0, 50.0, 1e4])),
        schedule=str(rng.choice(["code", "paper"])),
        reinforce_n=str(rng.choice(["fan_in", "width"])),
        init=str(rng.choice(["pm1", "normal"])), init_sigma=float(rng.choice([1.0, 4.0, 64.0])),
        seed=int(rng.integers(0, 2**32)))


def random_batch(rng, cfg, bs):
    a0 = np.where(rng.random((bs, cfg.sizes[0])) < rng.uniform(0.2, 0.8), 1, -1).astype(np.int8)
    if rng.random() < 0.2:  # identical patterns: ties in every comparison
        a0[:] = a0[0]
    return a0, rng.integers(0, cfg.classes, bs)


@pytest.mark.parametrize("case", range(60))
def test_fast_equals_literal(rng, case):
    cfg = random_config(rng)
    lit, fast = LiteralBMLP(cfg), FastBMLP(cfg)
    assert lit.same_state(fast) is None
    for epoch in range(2):
        for _ in range(int(rng.integers(1, 4))):
            a0, y = random_batch(rng, cfg, int(rng.integers(1, 33)))
            assert lit.train_batch(a0, y) == fast.train_batch(a0, y)
            diff = lit.same_state(fast)
            assert diff is None, f"{cfg}: {diff}"
        assert lit.end_epoch() == fast.end_epoch()
        assert lit.thresholds == fast.thresholds
    a0, _ = random_batch(rng, cfg, 17)
    assert np.array_equal(lit.predict(a0), fast.predict(a0))
    for (zl, al, yl), (zf, af, yf) in zip(lit.forward(a0), fast.forward(a0)):
        assert np.array_equal(np.array(zl), zf)
        assert np.array_equal(np.array(al), af)
        assert np.array_equal(np.array(yl), yf)


def test_saturation_is_reached_and_respected(rng):
    cfg = NetworkConfig(sizes=(16, 8), classes=3, gamma=(1,), h_bits=3, p_r=1e4, seed=7)
    lit, fast = LiteralBMLP(cfg), FastBMLP(cfg)
    for _ in range(4):
        a0, y = random_batch(rng, cfg, 24)
        lit.train_batch(a0, y)
        fast.train_batch(a0, y)
        assert lit.same_state(fast) is None
    assert np.abs(fast.H[0]).max() == cfg.h_max == 3
    assert np.all(fast.H[0] % 2 != 0)


def test_neuron_updated_more_often_than_h_max(rng):
    """bs > h_max with one group: one neuron takes many saturating steps in a batch."""
    cfg = NetworkConfig(sizes=(5, 1), classes=2, gamma=(1,), h_bits=2, r=2.0, seed=3)
    lit, fast = LiteralBMLP(cfg), FastBMLP(cfg)
    for _ in range(5):
        a0, y = random_batch(rng, cfg, 30)
        lit.train_batch(a0, y)
        fast.train_batch(a0, y)
        assert lit.same_state(fast) is None


def test_theta_and_flip_are_shared(rng):
    cfg = NetworkConfig(sizes=(20, 12, 6), classes=3, seed=11)
    lit, fast = LiteralBMLP(cfg), FastBMLP(cfg)
    for m in (lit, fast):
        m.theta[0][:] = np.arange(12) - 6
        m.flip[1][::2] = True
    a0, y = random_batch(rng, cfg, 10)
    assert np.array_equal(lit.predict(a0), fast.predict(a0))
    lit.train_batch(a0, y)
    fast.train_batch(a0, y)
    assert lit.same_state(fast) is None


def test_argmax_and_margin_ties():
    from xnorlearn.sw.golden.literal import argmax_margin, needs_update, select_easiest
    assert argmax_margin([3, 3, 1]) == (0, 0)
    assert argmax_margin([1, 5, 5]) == (1, 0)
    assert argmax_margin([-2, -2]) == (0, 0)
    assert needs_update([4, 0], 0, 5) and not needs_update([6, 0], 0, 5)
    assert needs_update([6, 0], 1, 0)
    assert select_easiest([-1, -1, 3, -5, 0, 2], 3) == [0, 3]
    assert select_easiest([0, 1, 2], 3) == [None]


def test_default_gamma():
    assert default_gamma(135) == 45
    assert default_gamma(1035) == 69
    assert default_gamma(2025) == 75
    assert default_gamma(150) == 75
    assert default_gamma(7) == 7


@pytest.mark.parametrize("kwargs,match", [
    ({"sizes": (10,)}, "at least one layer"),
    ({"sizes": (10, 0)}, r"sizes\[1\]"),
    ({"classes": 1}, "classes"),
    ({"gamma": (7,)}, "does not divide"),
    ({"gamma": (5, 5)}, "one group size per hidden layer"),
    ({"h_bits": 1}, "h_bits"),
    ({"z_bits": 40}, "z_bits"),
    ({"schedule": "cosine"}, "schedule"),
    ({"init": "zeros"}, "init"),
    ({"seed": -1}, "seed"),
    ({"r": -0.5}, "r must"),
])
def test_config_rejects_bad_values(kwargs, match):
    args = {"sizes": (10, 20), "classes": 3, **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        NetworkConfig(**args)


@pytest.mark.parametrize("a0,y,match", [
    (np.ones((2, 5)), [0, 1], r"shape \(batch, 4\)"),
    (np.zeros((2, 4)), [0, 1], "only -1 and \\+1"),
    (np.ones((2, 4)), [0, 3], "label 3 out of range 0..2"),
    (np.ones((2, 4)), [0], r"labels must have shape \(2,\)"),
    (np.ones((2, 4)), [0.5, 1.0], "integers"),
])
def test_bad_batches_are_rejected(a0, y, match):
    cfg = NetworkConfig(sizes=(4, 6), classes=3)
    with pytest.raises(ValueError, match=match):
        check_batch(cfg, a0, np.asarray(y))
    with pytest.raises(ValueError, match=match):
        FastBMLP(cfg).train_batch(a0, np.asarray(y))


@pytest.mark.parametrize("impl", [FastBMLP, LiteralBMLP])
def test_save_load_is_bit_exact(tmp_path, rng, impl):
    cfg = NetworkConfig(sizes=(12, 8, 6), classes=3, gamma=(4, 3), h_bits=4, p_r=50.0,
                        schedule="paper", seed=int(rng.integers(0, 2**32)))
    m = impl(cfg)
    for _ in range(3):
        m.train_batch(*random_batch(rng, cfg, 9))
    m.end_epoch()
    m.train_batch(*random_batch(rng, cfg, 9))
    m.theta[1][2] = 5
    m.flip[0][1] = True
    m.save(tmp_path / "m.npz")
    for cls in (FastBMLP, LiteralBMLP):
        back = cls.load(tmp_path / "m.npz")
        assert back.same_state(m) is None
        assert back.config == m.config


def test_interrupted_run_resumes_exactly(tmp_path, rng):
    cfg = NetworkConfig(sizes=(20, 12, 8), classes=4, gamma=(4, 4), p_r=20.0,
                        seed=int(rng.integers(0, 2**32)))
    batches = [[random_batch(rng, cfg, 10) for _ in range(3)] for _ in range(3)]
    straight = FastBMLP(cfg)
    for epoch in batches:
        for b in epoch:
            straight.train_batch(*b)
        straight.end_epoch()
    first = FastBMLP(cfg)
    for b in batches[0]:
        first.train_batch(*b)
    first.end_epoch()
    first.save(tmp_path / "k.npz")
    resumed = FastBMLP.load(tmp_path / "k.npz")
    for epoch in batches[1:]:
        for b in epoch:
            resumed.train_batch(*b)
        resumed.end_epoch()
    assert resumed.same_state(straight) is None


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable xnorlearn model"):
        FastBMLP.load(bad)
    cfg = NetworkConfig(sizes=(4, 6), classes=3)
    m = FastBMLP(cfg)
    meta, arrays = m.state_dict()
    arrays["H0"] = arrays["H0"][:, :3]
    with pytest.raises(ValueError, match="H0 has shape"):
        FastBMLP.from_state_dict(meta, arrays)
    meta, arrays = m.state_dict()
    arrays["H0"] = arrays["H0"] * 0 + 2
    with pytest.raises(ValueError, match="always odd"):
        FastBMLP.from_state_dict(meta, arrays)
    meta, arrays = m.state_dict()
    arrays["H0"] = arrays["H0"] * 0 + 255
    with pytest.raises(ValueError, match="exceeds"):
        FastBMLP.from_state_dict(meta, arrays)


def test_schedule_thresholds():
    cfg = NetworkConfig(sizes=(784, 135, 135), classes=10)
    m = FastBMLP(cfg)
    # p = 0.5 * sqrt(2 / (pi * 784)) = 0.01425; * 65536 = 933.9
    assert m.thresholds == [934, 2250]  # 135 inputs: 2250.3
    m.epoch_errors, m.epoch_seen = 25, 100
    assert m.end_epoch() == 0.25
    assert m.thresholds == [467, 1125]
