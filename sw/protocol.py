"""Host side of the accelerator's AXI4-Stream protocol: pure functions on 32-bit words.

Every packet is a sequence of 32-bit words ending with ``tlast``; it starts with a
header word ``opcode << 24 | layer << 16 | count``. See the "Host protocol" section
of ``docs/architecture.md``; in short:

=========  ======  =====================================================  ====================
opcode     count   payload after the header                               response
=========  ======  =====================================================  ====================
TRAIN      n       n x (label word, ceil(K_0/32) words of packed a_0)     0x8100_0000 | errors
INFER      n       as TRAIN                                               n prediction words,
                                                                          0x8200_0000 | errors
WRITE_H    K_l     K_l x ceil(K_{l-1}/4) words, four int8 h, low first    none
READ_H     K_l     none                                                   the WRITE_H payload
WRITE_P    K_l     K_l words, bit c = P_l[k, c] (1: +1)                   none
READ_P     K_l     none                                                   K_l words
WRITE_T    K_l     K_l words, theta in 15..0 (signed), flip in bit 16     none
READ_T     K_l     none                                                   K_l words
=========  ======  =====================================================  ====================

Word arrays are ``numpy.uint32``. Every function checks its input and raises
:class:`ValueError` naming the problem and the allowed range.
"""

from typing import NamedTuple

import numpy as np

from xnorlearn.contract import (H_PER_WORD, LIMITS, MAX_COUNT, STATUS_TAG, THETA_MAX, THETA_MIN,
                                Opcode, header_word, split_header)
from xnorlearn.sw.packing import pack_pm1, unpack_pm1, words_for

__all__ = [
    "Opcode", "Header", "STATUS_TAG", "MAX_COUNT", "MAX_LAYERS", "MAX_WIDTH", "MAX_CLASSES",
    "THETA_MIN", "THETA_MAX", "encode_header", "decode_header",
    "pattern_words", "train_packet", "infer_packet", "parse_status", "parse_train_response",
    "parse_infer_response", "pack_h", "unpack_h", "write_h_packet", "read_h_packet",
    "pack_p", "unpack_p", "write_p_packet", "read_p_packet",
    "pack_t", "unpack_t", "write_t_packet", "read_t_packet", "parse_read_response",
]


class Header(NamedTuple):
    opcode: Opcode
    layer: int
    count: int


MAX_LAYERS = LIMITS["max_layers"][1]
MAX_WIDTH = LIMITS["max_width"][1]
MAX_CLASSES = LIMITS["classes"][1]
_H_BYTES = H_PER_WORD


# -- validation helpers ---------------------------------------------------------------------

def _int(name, value, lo, hi):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return int(value)


def _int_array(name, a, ndim):
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {a.shape}")
    if a.size and a.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _words(name, words, length=None):
    """``words`` as a 1-d uint32 array, each value checked to be in 0..2**32-1."""
    a = np.asarray(words)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-d sequence of 32-bit words, got shape {a.shape}")
    if a.size and a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers in 0..0xFFFFFFFF, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 0xFFFFFFFF):
        raise ValueError(f"{name} must hold integers in 0..0xFFFFFFFF, got values "
                         f"{a.min()}..{a.max()}")
    if length is not None and len(a) != length:
        raise ValueError(f"{name} must be {length} words long, got {len(a)}")
    return a.astype(np.uint32)


def _layer(layer):
    return _int("layer", layer, 0, MAX_LAYERS - 1)


def _width(name, value):
    return _int(name, value, 1, MAX_WIDTH)


def _classes(classes):
    return _int("classes", classes, 2, MAX_CLASSES)


# -- header ---------------------------------------------------------------------------------

def encode_header(opcode, layer, count):
    """The header word ``opcode << 24 | layer << 16 | count``.

    Raises
    ------
    ValueError
        For an unknown opcode, ``layer`` outside 0..MAX_LAYERS-1 (0 for TRAIN and
        INFER), or ``count`` outside 1..0xFFFF.
    """
    try:
        opcode = Opcode(opcode)
    except ValueError:
        raise ValueError(f"opcode must be one of {[hex(o) for o in Opcode]}, got {opcode!r}") \
            from None
    layer = _layer(layer)
    if opcode in (Opcode.TRAIN, Opcode.INFER) and layer != 0:
        raise ValueError(f"layer of a {opcode.name} packet must be 0, got {layer}")
    count = _int("count", count, 1, MAX_COUNT)
    return header_word(opcode, layer, count)


def decode_header(word):
    """Inverse of :func:`encode_header`: a :class:`Header`.

    Raises
    ------
    ValueError
        If ``word`` is not a 32-bit word or its fields are not a valid header.
    """
    word = _int("header word", word, 0, 0xFFFFFFFF)
    opcode, layer, count = split_header(word)
    encode_header(opcode, layer, count)     # same checks
    return Header(Opcode(opcode), layer, count)


# -- TRAIN / INFER --------------------------------------------------------------------------

def pattern_words(fan_in):
    """Words per pattern in a TRAIN/INFER packet: the label word and ``ceil(K_0/32)``."""
    return 1 + words_for(_width("fan_in (K_0)", fan_in), 32)


def _batch_packet(opcode, a0, labels, classes):
    classes = _classes(classes)
    a0 = np.asarray(a0)
    if a0.ndim != 2:
        raise ValueError(f"a0 must be a 2-d array (patterns, K_0), got shape {a0.shape}")
    n, k0 = a0.shape
    _int("number of patterns", n, 1, MAX_COUNT)
    _width("K_0 (a0.shape[1])", k0)
    if not np.all((a0 == 1) | (a0 == -1)):
        raise ValueError("a0 must hold only -1 and +1")
    labels = _int_array("labels", labels, 1)
    if labels.shape != (n,):
        raise ValueError(f"labels must have one entry per pattern ({n}), got shape {labels.shape}")
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels must be in 0..{classes - 1}, got {labels[i]} at pattern {i}")
    body = np.concatenate([labels.astype(np.uint32)[:, None],
                           pack_pm1(a0, 32).astype(np.uint32)], axis=1)
    header = np.uint32(encode_header(opcode, 0, n))
    return np.concatenate([[header], body.ravel()]).astype(np.uint32)


def train_packet(a0, labels, *, classes):
    """A TRAIN packet: the minibatch ``a0`` (±1, shape ``(n, K_0)``) with its labels.

    Parameters
    ----------
    a0 : array_like of {-1, +1}, shape ``(n, K_0)``
        ``n`` in 1..0xFFFF (the build accepts at most ``max_batch``), ``K_0`` in 1..4095.
    labels : array_like of int, shape ``(n,)``
        Each in ``0..classes-1``.
    classes : int
        2..16.

    Returns
    -------
    numpy.ndarray of uint32
        ``1 + n * pattern_words(K_0)`` words.
    """
    return _batch_packet(Opcode.TRAIN, a0, labels, classes)


def infer_packet(a0, labels=None, *, classes):
    """An INFER packet; as :func:`train_packet`, ``labels`` default all 0 (they only
    count the errors in the status word)."""
    if labels is None:
        labels = np.zeros(np.shape(a0)[0] if np.ndim(a0) else 0, dtype=np.int64)
    return _batch_packet(Opcode.INFER, a0, labels, classes)


def parse_status(word, opcode=Opcode.TRAIN):
    """The error count of the status word that ends a TRAIN or INFER response:
    ``(0x80 | opcode) << 24 | errors`` (``0x8100_0000 | errors`` for TRAIN,
    ``0x8200_0000 | errors`` for INFER), ``errors`` in bits 23..0.

    Raises
    ------
    ValueError
        If ``opcode`` is not TRAIN or INFER, or bits 31..24 of ``word`` are not
        ``0x80 | opcode``.
    """
    if opcode not in (Opcode.TRAIN, Opcode.INFER):
        raise ValueError(f"only TRAIN (0x01) and INFER (0x02) end with a status word, "
                         f"got opcode {opcode!r}")
    word = _int("status word", word, 0, 0xFFFFFFFF)
    tag = STATUS_TAG | int(opcode)
    if word >> 24 != tag:
        raise ValueError(f"{Opcode(opcode).name} status word must be 0x{tag:02X}00_0000 | errors "
                         f"(errors in bits 23..0), got {word:#010x}")
    return word & 0xFFFFFF


def parse_train_response(words, count):
    """The errors of a TRAIN response (one status word) for a batch of ``count`` patterns.

    Raises
    ------
    ValueError
        If the response is not one valid status word, or reports more than ``count`` errors.
    """
    count = _int("count", count, 1, MAX_COUNT)
    words = _words("TRAIN response", words, 1)
    errors = parse_status(words[0], Opcode.TRAIN)
    if errors > count:
        raise ValueError(f"status reports {errors} errors in a batch of {count}")
    return errors


def parse_infer_response(words, count, *, classes):
    """``(predictions, errors)`` of an INFER response: ``count`` prediction words
    (the class in bits 7..0, other bits 0) then the status word.

    Raises
    ------
    ValueError
        For a wrong length, a prediction ``>= classes`` or with other bits set, or a
        bad status word.
    """
    count = _int("count", count, 1, MAX_COUNT)
    classes = _classes(classes)
    words = _words("INFER response", words, count + 1)
    preds = words[:count]
    bad = preds >= classes
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"prediction words must be classes 0..{classes - 1}, "
                         f"got {int(preds[i]):#x} at pattern {i}")
    errors = parse_status(words[count], Opcode.INFER)
    if errors > count:
        raise ValueError(f"status reports {errors} errors in a batch of {count}")
    return preds.astype(np.int64), errors


# -- hidden weights -------------------------------------------------------------------------

def _h_max(h_bits):
    return (1 << (_int("h_bits", h_bits, 2, 8) - 1)) - 1


def pack_h(h, *, h_bits=8):
    """Words of a WRITE_H payload: neuron-major, ``ceil(K_{l-1}/4)`` words per neuron,
    four signed bytes per word, weight ``i`` in byte ``i % 4`` (low byte first);
    padding bytes 0.

    Parameters
    ----------
    h : array_like of int, shape ``(K_l, K_{l-1})``
        Odd integers in ``±(2**(h_bits-1) - 1)``.
    h_bits : int
        2..8.

    Returns
    -------
    numpy.ndarray of uint32, shape ``(K_l * ceil(K_{l-1}/4),)``
    """
    h_max = _h_max(h_bits)
    h = _int_array("h", h, 2)
    k, fan_in = h.shape
    _width("K_l (h.shape[0])", k)
    _width("K_{l-1} (h.shape[1])", fan_in)
    if np.any(np.abs(h) > h_max):
        raise ValueError(f"h must be in -{h_max}..{h_max} (h_bits={h_bits}), "
                         f"got {h.min()}..{h.max()}")
    if np.any(h % 2 == 0):
        raise ValueError("h must hold odd integers only")
    per = -(-fan_in // _H_BYTES)
    b = np.zeros((k, per * _H_BYTES), dtype=np.uint8)
    b[:, :fan_in] = h.astype(np.int8).view(np.uint8)
    return np.ascontiguousarray(b).view("<u4").astype(np.uint32).reshape(-1)


def unpack_h(words, width, fan_in):
    """Inverse of :func:`pack_h`: ``int8`` array ``(width, fan_in)``.

    Raises
    ------
    ValueError
        For a wrong number of words or a nonzero padding byte.
    """
    width = _width("width (K_l)", width)
    fan_in = _width("fan_in (K_{l-1})", fan_in)
    per = -(-fan_in // _H_BYTES)
    words = _words("H words", words, width * per)
    b = words.astype("<u4").view(np.uint8).reshape(width, per * _H_BYTES)
    if np.any(b[:, fan_in:]):
        raise ValueError(f"padding bytes beyond weight {fan_in} of a neuron must be 0")
    return b[:, :fan_in].view(np.int8).copy()


def write_h_packet(layer, h, *, h_bits=8):
    """A WRITE_H packet for ``layer``: header (count ``K_l``) and :func:`pack_h`."""
    payload = pack_h(h, h_bits=h_bits)
    header = encode_header(Opcode.WRITE_H, layer, np.shape(h)[0])
    return np.concatenate([[np.uint32(header)], payload]).astype(np.uint32)


def read_h_packet(layer, width):
    """A READ_H packet (header only) for ``layer`` of ``width`` neurons."""
    return np.array([encode_header(Opcode.READ_H, layer, _width("width", width))], np.uint32)


# -- classifier and threshold rows ----------------------------------------------------------

def pack_p(p):
    """Words of a WRITE_P payload: one per neuron, bit ``c`` = ``P_l[k, c]`` (1: +1).

    Parameters
    ----------
    p : array_like of {-1, +1}, shape ``(K_l, classes)``, classes 2..16
    """
    p = np.asarray(p)
    if p.ndim != 2:
        raise ValueError(f"p must be a 2-d array (K_l, classes), got shape {p.shape}")
    _width("K_l (p.shape[0])", p.shape[0])
    _classes(p.shape[1])
    if not np.all((p == 1) | (p == -1)):
        raise ValueError("p must hold only -1 and +1")
    return pack_pm1(p, 32)[:, 0].astype(np.uint32)


def unpack_p(words, classes):
    """Inverse of :func:`pack_p`: ``int8`` ±1 array ``(len(words), classes)``.

    Raises
    ------
    ValueError
        For a bit set at or above ``classes``.
    """
    classes = _classes(classes)
    words = _words("P words", words)
    _width("number of P words", len(words))
    try:
        return unpack_pm1(words[:, None], classes, 32)
    except ValueError:
        raise ValueError(f"P words must have bits {classes}..31 clear") from None


def write_p_packet(layer, p):
    """A WRITE_P packet for ``layer``: header (count ``K_l``) and :func:`pack_p`."""
    payload = pack_p(p)
    return np.concatenate([[np.uint32(encode_header(Opcode.WRITE_P, layer, len(payload)))],
                           payload]).astype(np.uint32)


def read_p_packet(layer, width):
    """A READ_P packet (header only) for ``layer`` of ``width`` neurons."""
    return np.array([encode_header(Opcode.READ_P, layer, _width("width", width))], np.uint32)


def pack_t(theta, flip):
    """Words of a WRITE_T payload: ``theta`` (signed) in bits 15..0, ``flip`` in bit 16.

    Parameters
    ----------
    theta : array_like of int, shape ``(K_l,)``, each in -32768..32767
    flip : array_like of bool or {0, 1}, shape ``(K_l,)``
    """
    theta = _int_array("theta", theta, 1)
    flip = _int_array("flip", flip, 1)
    _width("K_l (len(theta))", len(theta))
    if flip.shape != theta.shape:
        raise ValueError(f"flip must have one entry per neuron ({len(theta)}), "
                         f"got shape {flip.shape}")
    if theta.min() < THETA_MIN or theta.max() > THETA_MAX:
        raise ValueError(f"theta must be in {THETA_MIN}..{THETA_MAX}, "
                         f"got {theta.min()}..{theta.max()}")
    if np.any((flip != 0) & (flip != 1)):
        raise ValueError("flip must hold only 0 and 1")
    return ((theta & 0xFFFF) | (flip << 16)).astype(np.uint32)


def unpack_t(words):
    """Inverse of :func:`pack_t`: ``(theta int16, flip bool)`` arrays.

    Raises
    ------
    ValueError
        For a bit set above bit 16.
    """
    words = _words("T words", words)
    _width("number of T words", len(words))
    if np.any(words >> 17):
        raise ValueError("T words must have bits 31..17 clear")
    theta = (words & 0xFFFF).astype(np.uint16).view(np.int16)
    return theta, (words >> 16).astype(bool)


def write_t_packet(layer, theta, flip):
    """A WRITE_T packet for ``layer``: header (count ``K_l``) and :func:`pack_t`."""
    payload = pack_t(theta, flip)
    return np.concatenate([[np.uint32(encode_header(Opcode.WRITE_T, layer, len(payload)))],
                           payload]).astype(np.uint32)


def read_t_packet(layer, width):
    """A READ_T packet (header only) for ``layer`` of ``width`` neurons."""
    return np.array([encode_header(Opcode.READ_T, layer, _width("width", width))], np.uint32)


def parse_read_response(opcode, words, *, width, fan_in=None, classes=None):
    """Decode the response of a READ_H / READ_P / READ_T packet.

    Returns
    -------
    READ_H: ``int8`` array ``(width, fan_in)``; READ_P: ±1 array ``(width, classes)``;
    READ_T: ``(theta, flip)``.

    Raises
    ------
    ValueError
        For another opcode, a missing ``fan_in`` (READ_H) or ``classes`` (READ_P), a
        wrong number of words or a malformed word.
    """
    try:
        opcode = Opcode(opcode)
    except ValueError:
        opcode = None
    width = _width("width", width)
    if opcode is Opcode.READ_H:
        if fan_in is None:
            raise ValueError("READ_H responses need fan_in (K_{l-1}), 1..4095")
        return unpack_h(words, width, fan_in)
    if opcode is Opcode.READ_P:
        if classes is None:
            raise ValueError("READ_P responses need classes, 2..16")
        return unpack_p(_words("READ_P response", words, width), classes)
    if opcode is Opcode.READ_T:
        return unpack_t(_words("READ_T response", words, width))
    raise ValueError("opcode must be READ_H (0x11), READ_P (0x13) or READ_T (0x15)")
