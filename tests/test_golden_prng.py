import numpy as np
import pytest

from xnorlearn.sw.golden import prng


def lowbias32_bitwise(x):
    """lowbias32 written from its definition with explicit modular arithmetic."""
    x = x % 2**32
    x = x ^ (x // 2**16)
    x = (x * 0x7FEB352D) % 2**32
    x = x ^ (x // 2**15)
    x = (x * 0x846CA68B) % 2**32
    return x ^ (x // 2**16)


def test_mix32_matches_definition(rng):
    xs = [0, 1, 0xFFFFFFFF, 0x80000000] + [int(v) for v in rng.integers(0, 2**32, 2000)]
    arr = np.array(xs, dtype=np.uint32)
    got = prng.mix32_array(arr.copy())
    for x, g in zip(xs, got):
        assert prng.mix32(x) == lowbias32_bitwise(x) == int(g)


def test_mix32_array_rejects_other_dtypes():
    with pytest.raises(TypeError, match="uint32"):
        prng.mix32_array(np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize("count", [1, 2, 7, 64, 1001])
def test_reinforce_draws_match_scalar_reference(rng, count):
    seed = int(rng.integers(0, 2**32))
    for _ in range(3):
        layer, t = int(rng.integers(0, 8)), int(rng.integers(0, 10**6))
        draws = prng.reinforce_draws(seed, layer, t, count)
        assert draws.shape == (count,)
        ref = [prng.reinforce_draw(seed, layer, t, j) for j in range(count)]
        assert draws.tolist() == ref
        assert draws.max() < prng.DRAW_ONE


@pytest.mark.parametrize("count", [1, 5, 6, 333])
def test_reinforce_mask_indices_match_draws(rng, count):
    seed = int(rng.integers(0, 2**32))
    for thr in [0, 1, 300, 20000, 65535, 65536]:
        t = int(rng.integers(0, 1000))
        draws = prng.reinforce_draws(seed, 1, t, count)
        idx = prng.reinforce_mask_indices(seed, 1, t, count, thr)
        assert idx.tolist() == np.flatnonzero(draws < thr).tolist()


def test_draws_look_uniform(rng):
    draws = prng.reinforce_draws(int(rng.integers(0, 2**32)), 0, 0, 200000)
    counts = np.bincount(draws >> 12, minlength=16)
    chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum()
    assert chi2 < 60  # 15 degrees of freedom; p ~ 1e-7 for a uniform source


def test_pm1_bits_follow_stream_words(rng):
    seed = int(rng.integers(0, 2**32))
    vals = prng.pm1_bits(seed, prng.STREAM_INIT_H, 2, 100)
    key = prng.stream_key(seed, prng.STREAM_INIT_H, 2)
    for j in range(100):
        bit = (prng.word(key, j >> 5) >> (j & 31)) & 1
        assert vals[j] == (1 if bit else -1)


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "3", True])
def test_check_seed_rejects(bad):
    with pytest.raises((TypeError, ValueError), match="seed"):
        prng.check_seed(bad)
