"""Bit packing of ±1 vectors into machine words: pure functions shared by host and driver.

Convention (the accelerator's too): element ``i`` of a vector goes to word
``i // word_bits``, bit ``i % word_bits``; bit 1 means +1, bit 0 means -1; the
padding bits of the last word are 0.
"""

import numpy as np

__all__ = ["WORD_DTYPES", "pack_pm1", "unpack_pm1", "words_for"]

WORD_DTYPES = {8: np.dtype("<u1"), 16: np.dtype("<u2"), 32: np.dtype("<u4"), 64: np.dtype("<u8")}


def _check_word_bits(word_bits):
    if word_bits not in WORD_DTYPES:
        raise ValueError(f"word_bits must be one of {sorted(WORD_DTYPES)}, got {word_bits!r}")


def words_for(n, word_bits):
    """Number of ``word_bits``-bit words that hold ``n`` elements."""
    _check_word_bits(word_bits)
    if n < 0:
        raise ValueError(f"vector length must be >= 0, got {n}")
    return -(-n // word_bits)


def pack_pm1(a, word_bits=32):
    """Pack the last axis of a ±1 array into words.

    Parameters
    ----------
    a : array_like of {-1, +1}, shape ``(..., n)``
    word_bits : {8, 16, 32, 64}

    Returns
    -------
    numpy.ndarray
        Unsigned words, shape ``(..., ceil(n / word_bits))``.

    Raises
    ------
    ValueError
        If ``a`` holds anything but -1 and +1, or ``word_bits`` is not supported.
    """
    _check_word_bits(word_bits)
    a = np.asarray(a)
    if a.ndim == 0:
        raise ValueError("pack_pm1 needs at least a 1-d array")
    if not np.all((a == 1) | (a == -1)):
        raise ValueError("pack_pm1 packs only -1 and +1 values")
    n = a.shape[-1]
    nwords = words_for(n, word_bits)
    bits = np.zeros(a.shape[:-1] + (nwords * word_bits,), dtype=np.uint8)
    bits[..., :n] = a > 0
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view(WORD_DTYPES[word_bits]).reshape(a.shape[:-1] + (nwords,))


def unpack_pm1(words, n, word_bits=32):
    """Inverse of :func:`pack_pm1`: the first ``n`` elements as an ``int8`` ±1 array.

    Raises
    ------
    ValueError
        If there are too few words for ``n`` elements or a padding bit is set.
    """
    _check_word_bits(word_bits)
    words = np.ascontiguousarray(np.asarray(words).astype(WORD_DTYPES[word_bits], copy=False))
    nwords = words.shape[-1] if words.ndim else 0
    if nwords < words_for(n, word_bits):
        raise ValueError(f"{nwords} words of {word_bits} bits cannot hold {n} elements")
    bits = np.unpackbits(words.view(np.uint8).reshape(words.shape[:-1] + (-1,)), axis=-1,
                         bitorder="little")
    if np.any(bits[..., n:]):
        raise ValueError(f"padding bits beyond element {n} are set")
    return (bits[..., :n].astype(np.int8) * 2 - 1).astype(np.int8)
