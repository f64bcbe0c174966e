import numpy as np
import pytest

from xnorlearn.sw.packing import pack_pm1, unpack_pm1, words_for


@pytest.mark.parametrize("word_bits", [8, 16, 32, 64])
def test_roundtrip_random(rng, word_bits):
    for _ in range(20):
        n = int(rng.integers(1, 300))
        a = np.where(rng.random((int(rng.integers(1, 5)), n)) < 0.5, 1, -1)
        words = pack_pm1(a, word_bits)
        assert words.shape == (a.shape[0], words_for(n, word_bits))
        assert np.array_equal(unpack_pm1(words, n, word_bits), a)


def test_bit_order_is_little_endian():
    a = -np.ones(40, dtype=np.int8)
    a[[0, 3, 33]] = 1
    w = pack_pm1(a, 32)
    assert w.tolist() == [0b1001, 0b10]
    assert pack_pm1(a, 8).tolist() == [0b1001, 0, 0, 0, 0b10]


def test_bad_inputs():
    with pytest.raises(ValueError, match="only -1 and \\+1"):
        pack_pm1([1, 0, -1])
    with pytest.raises(ValueError, match="word_bits"):
        pack_pm1([1, -1], 12)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_pm1(np.zeros(1, np.uint32), 40)
    with pytest.raises(ValueError, match="padding bits"):
        unpack_pm1(np.array([1 << 10], np.uint32), 8)
