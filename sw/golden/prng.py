"""Counter-based pseudo-random numbers that hardware can reproduce bit for bit.

Every random quantity of the training algorithm that the accelerator may have to
produce itself (the initial hidden weights ``H``, the fixed classifier weights
``P`` and, above all, the reinforcement draws) is a pure function of a 32-bit
seed and a few integer counters.  Nothing here keeps hidden state, so a run can
be stopped and resumed anywhere, and hardware with any number of parallel lanes
can compute any draw without stepping a generator sequentially.

The one primitive is ``mix32``, the "lowbias32" integer hash (two constant
multiplications and three xor-shifts, all modulo 2**32)::

    x ^= x >> 16
    x  = x * 0x7FEB352D
    x ^= x >> 15
    x  = x * 0x846CA68B
    x ^= x >> 16

In an FPGA each multiplication by a constant maps onto DSP blocks (three
18x18 multipliers for the low 32 bits of a 32x32 product) and can be pipelined.

Streams
-------
``stream_key(seed, stream, layer) = mix32(mix32(seed) ^ (stream << 24) ^ layer)``
gives one key per (purpose, layer); ``stream`` is one of :data:`STREAM_REINFORCE`,
:data:`STREAM_INIT_H`, :data:`STREAM_INIT_P`.  ``layer`` counts from 0.

Words of a stream: ``word(key, n) = mix32((key + n * GOLDEN) mod 2**32)`` for
the counter ``n`` (a Weyl sequence fed through the hash).

Reinforcement draws
    For layer ``l`` and minibatch number ``t`` (0 for the first minibatch ever
    trained, counting across epochs) the sweep key is
    ``kt = mix32((stream_key(seed, STREAM_REINFORCE, l) + t * GOLDEN) mod 2**32)``.
    Hidden weight ``j`` of the layer (``j = k * fan_in + i`` for neuron ``k`` and
    input ``i``, i.e. neuron-major order) takes the 16-bit draw
    ``x >> 16`` if ``j`` is even and ``x & 0xFFFF`` if ``j`` is odd, where
    ``x = word(kt, j >> 1)``.  The weight is reinforced when
    ``draw < threshold``, ``threshold`` in ``0 .. 65536``.

Initial hidden weights
    Weight ``j`` of layer ``l`` is ``+1`` if bit ``j & 31`` of
    ``word(stream_key(seed, STREAM_INIT_H, l), j >> 5)`` is set, else ``-1``.

Classifier weights
    Entry ``j = k * classes + c`` of ``P_l`` is defined the same way from
    ``stream_key(seed, STREAM_INIT_P, l)``.
"""

import numpy as np

__all__ = [
    "GOLDEN", "MASK32", "DRAW_BITS", "DRAW_ONE",
    "STREAM_REINFORCE", "STREAM_INIT_H", "STREAM_INIT_P",
    "mix32", "mix32_array", "stream_key", "word", "reinforce_key",
    "reinforce_draw", "reinforce_draws", "pm1_bits", "check_seed",
]

GOLDEN = 0x9E3779B9
MASK32 = 0xFFFFFFFF
_M1 = 0x7FEB352D
_M2 = 0x846CA68B

DRAW_BITS = 16
DRAW_ONE = 1 << DRAW_BITS  # threshold that reinforces every weight

STREAM_REINFORCE = 1
STREAM_INIT_H = 2
STREAM_INIT_P = 3


def check_seed(seed):
    """Return ``seed`` as an int after checking it is a 32-bit unsigned value."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, not {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= MASK32:
        raise ValueError(f"seed must be in 0..{MASK32}, got {seed}")
    return seed


def mix32(x):
    """The lowbias32 hash of one 32-bit value (plain Python integers)."""
    x &= MASK32
    x ^= x >> 16
    x = (x * _M1) & MASK32
    x ^= x >> 15
    x = (x * _M2) & MASK32
    x ^= x >> 16
    return x


def mix32_array(x):
    """:func:`mix32` applied elementwise to a ``uint32`` array, in place; returns it."""
    if x.dtype != np.uint32:
        raise TypeError(f"mix32_array needs a uint32 array, got {x.dtype}")
    x ^= x >> np.uint32(16)
    x *= np.uint32(_M1)
    x ^= x >> np.uint32(15)
    x *= np.uint32(_M2)
    x ^= x >> np.uint32(16)
    return x


def stream_key(seed, stream, layer):
    """Key of one (purpose, layer) stream; see the module docstring."""
    return mix32(mix32(seed) ^ (stream << 24) ^ layer)


def word(key, n):
    """Word ``n`` of the stream with key ``key`` (plain Python integers)."""
    return mix32((key + n * GOLDEN) & MASK32)


def _words(key, count):
    n = np.arange(count, dtype=np.uint32)
    n *= np.uint32(GOLDEN)
    n += np.uint32(key)
    return mix32_array(n)


def reinforce_key(seed, layer, t):
    """Sweep key of layer ``layer`` for minibatch number ``t``."""
    return mix32((stream_key(seed, STREAM_REINFORCE, layer) + t * GOLDEN) & MASK32)


def reinforce_draw(seed, layer, t, j):
    """The 16-bit reinforcement draw of hidden weight ``j`` (scalar reference)."""
    x = word(reinforce_key(seed, layer, t), j >> 1)
    return (x >> 16) if j % 2 == 0 else (x & 0xFFFF)


class _PairCache:
    """Caches ``n * GOLDEN`` for the pair counters of a layer (saves one pass)."""

    def __init__(self):
        self._table = {}

    def weyl(self, pairs):
        table = self._table.get(pairs)
        if table is None:
            table = np.arange(pairs, dtype=np.uint32) * np.uint32(GOLDEN)
            self._table[pairs] = table
        return table


_pair_cache = _PairCache()


def reinforce_draws(seed, layer, t, count):
    """All ``count`` 16-bit draws of one reinforcement sweep, as a ``uint32`` array."""
    pairs = (count + 1) // 2
    x = _pair_cache.weyl(pairs) + np.uint32(reinforce_key(seed, layer, t))
    mix32_array(x)
    out = np.empty(2 * pairs, dtype=np.uint32)
    out[0::2] = x >> np.uint32(16)
    out[1::2] = x & np.uint32(0xFFFF)
    return out[:count]


def reinforce_mask_indices(seed, layer, t, count, threshold):
    """Flat indices ``j`` whose draw is below ``threshold`` (sorted ascending)."""
    if threshold <= 0:
        return np.empty(0, dtype=np.intp)
    if threshold >= DRAW_ONE:
        return np.arange(count, dtype=np.intp)
    pairs = (count + 1) // 2
    x = _pair_cache.weyl(pairs) + np.uint32(reinforce_key(seed, layer, t))
    mix32_array(x)
    # Viewed as little-endian uint16 pairs, element 2m is the low half (weight 2m+1)
    # and element 2m+1 the high half (weight 2m): the weight index is q XOR 1.
    halves = x.astype("<u4", copy=False).view("<u2")
    idx = np.flatnonzero(halves < np.uint16(threshold)) ^ 1
    idx.sort()
    if count % 2 and idx.size and idx[-1] == count:
        idx = idx[:-1]
    return idx


def pm1_bits(seed, stream, layer, count):
    """``count`` values in {-1, +1} (``int8``) from the bits of a stream."""
    words = _words(stream_key(seed, stream, layer), (count + 31) // 32)
    bits = (words[:, None] >> np.arange(32, dtype=np.uint32)[None, :]) & np.uint32(1)
    return (bits.reshape(-1)[:count].astype(np.int8) * 2 - 1).astype(np.int8)
