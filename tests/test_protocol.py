"""Host stream protocol: round trips on random data, exact word layouts, and every refusal."""

import numpy as np
import pytest

from xnorlearn.sw import protocol as p
from xnorlearn.sw.packing import unpack_pm1


def pm1(rng, shape):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)


def odd_h(rng, shape, h_max=127):
    h = rng.integers(-(h_max // 2) - 1, h_max // 2 + 1, size=shape) * 2 + 1
    # the ends of the range among them
    flat = h.reshape(-1)
    flat[rng.integers(flat.size, size=max(1, flat.size // 8))] = h_max
    flat[rng.integers(flat.size, size=max(1, flat.size // 8))] = -h_max
    return h


# -- header ---------------------------------------------------------------------------------

def test_header_round_trip(rng):
    for _ in range(500):
        op = p.Opcode(rng.choice(list(p.Opcode)))
        layer = 0 if op in (p.Opcode.TRAIN, p.Opcode.INFER) else int(rng.integers(p.MAX_LAYERS))
        count = int(rng.integers(1, p.MAX_COUNT + 1))
        word = p.encode_header(op, layer, count)
        assert word == (int(op) << 24) | (layer << 16) | count
        assert p.decode_header(word) == (op, layer, count)
    assert p.encode_header(0x15, 7, 0xFFFF) == 0x1507FFFF
    assert p.decode_header(0x01000080) == p.Header(p.Opcode.TRAIN, 0, 128)


@pytest.mark.parametrize("args, text", [
    ((0x03, 0, 1), r"opcode must be one of \['0x1', '0x2', '0x10'"),
    ((0x01, 1, 1), "layer of a TRAIN packet must be 0, got 1"),
    ((0x10, 8, 1), r"layer must be in 0..7, got 8"),
    ((0x10, -1, 1), r"layer must be in 0..7, got -1"),
    ((0x10, 0, 0), r"count must be in 1..65535, got 0"),
    ((0x10, 0, 0x10000), r"count must be in 1..65535, got 65536"),
    ((0x10, 0, 1.0), r"count must be an integer in 1..65535, got 1.0"),
])
def test_header_errors(args, text):
    with pytest.raises(ValueError, match=text):
        p.encode_header(*args)


@pytest.mark.parametrize("word, text", [
    (0x00000001, "opcode must be one of"),
    (0x10080001, r"layer must be in 0..7, got 8"),
    (0x10000000, r"count must be in 1..65535, got 0"),
    (1 << 32, r"header word must be in 0..4294967295"),
    (-1, r"header word must be in 0..4294967295"),
])
def test_decode_header_errors(word, text):
    with pytest.raises(ValueError, match=text):
        p.decode_header(word)


# -- TRAIN / INFER --------------------------------------------------------------------------

@pytest.mark.parametrize("k0", [1, 31, 32, 33, 784, 1024, 4095])
def test_train_packet_layout(rng, k0):
    n, classes = int(rng.integers(1, 20)), int(rng.integers(2, 17))
    a0 = pm1(rng, (n, k0))
    labels = rng.integers(classes, size=n)
    words = p.train_packet(a0, labels, classes=classes)
    per = p.pattern_words(k0)
    assert per == 1 + -(-k0 // 32)
    assert words.dtype == np.uint32 and words.shape == (1 + n * per,)
    assert p.decode_header(words[0]) == (p.Opcode.TRAIN, 0, n)
    body = words[1:].reshape(n, per)
    assert list(body[:, 0]) == list(labels)
    np.testing.assert_array_equal(unpack_pm1(body[:, 1:], k0, 32), a0)
    # bit i of the pattern is element i (little-endian), bit 1 = +1
    i = int(rng.integers(k0))
    assert [(int(body[m, 1 + i // 32]) >> (i % 32)) & 1 for m in range(n)] == list(a0[:, i] > 0)
    infer = p.infer_packet(a0, labels, classes=classes)
    assert p.decode_header(infer[0]) == (p.Opcode.INFER, 0, n)
    np.testing.assert_array_equal(infer[1:], words[1:])
    no_labels = p.infer_packet(a0, classes=classes).reshape(-1)[1:].reshape(n, per)
    assert not no_labels[:, 0].any()


@pytest.mark.parametrize("call, text", [
    (lambda: p.train_packet(np.ones(5), [0], classes=10), r"a0 must be a 2-d array"),
    (lambda: p.train_packet(np.zeros((2, 5)), [0, 1], classes=10), "a0 must hold only -1 and"),
    (lambda: p.train_packet(np.full((2, 5), 0.5), [0, 1], classes=10), "a0 must hold only"),
    (lambda: p.train_packet(np.ones((0, 5)), [], classes=10),
     r"number of patterns must be in 1..65535, got 0"),
    (lambda: p.train_packet(np.ones((1, 4096)), [0], classes=10),
     r"K_0 \(a0.shape\[1\]\) must be in 1..4095, got 4096"),
    (lambda: p.train_packet(np.ones((2, 5)), [0], classes=10),
     r"labels must have one entry per pattern \(2\)"),
    (lambda: p.train_packet(np.ones((2, 5)), [0, 10], classes=10),
     r"labels must be in 0..9, got 10 at pattern 1"),
    (lambda: p.train_packet(np.ones((2, 5)), [-1, 0], classes=10),
     r"labels must be in 0..9, got -1 at pattern 0"),
    (lambda: p.train_packet(np.ones((2, 5)), [0.5, 0], classes=10), "labels must hold integers"),
    (lambda: p.train_packet(np.ones((2, 5)), [0, 0], classes=17), r"classes must be in 2..16"),
    (lambda: p.infer_packet(np.ones((2, 5)), classes=1), r"classes must be in 2..16, got 1"),
    (lambda: p.pattern_words(0), r"fan_in \(K_0\) must be in 1..4095, got 0"),
])
def test_batch_packet_errors(call, text):
    with pytest.raises(ValueError, match=text):
        call()


def test_responses(rng):
    for _ in range(200):
        n, classes = int(rng.integers(1, 300)), int(rng.integers(2, 17))
        preds = rng.integers(classes, size=n)
        errors = int(rng.integers(n + 1))
        assert p.parse_status(0x81000000 | errors) == errors
        assert p.parse_status(0x82000000 | errors, p.Opcode.INFER) == errors
        assert p.parse_train_response([0x81000000 | errors], n) == errors
        got, e = p.parse_infer_response(np.append(preds, 0x82000000 | errors).astype(np.uint32),
                                        n, classes=classes)
        np.testing.assert_array_equal(got, preds)
        assert e == errors
    assert p.parse_status(0x81FFFFFF) == 0xFFFFFF


@pytest.mark.parametrize("call, text", [
    (lambda: p.parse_status(0x82000001), r"TRAIN status word must be 0x8100_0000 \| errors "
                                         r"\(errors in bits 23..0\), got 0x82000001"),
    (lambda: p.parse_status(0x81000001, p.Opcode.INFER), r"INFER status word must be 0x8200_0000"),
    (lambda: p.parse_status(0x81000001, p.Opcode.READ_H), "only TRAIN .* and INFER .* end with"),
    (lambda: p.parse_status(1 << 32), r"status word must be in 0..4294967295"),
    (lambda: p.parse_train_response([0x81000000, 0x81000000], 4), "must be 1 words long, got 2"),
    (lambda: p.parse_train_response([0x81000005], 4), "5 errors in a batch of 4"),
    (lambda: p.parse_train_response([0x82000000], 4), "TRAIN status word must be"),
    (lambda: p.parse_train_response([-1], 4), r"must hold integers in 0..0xFFFFFFFF"),
    (lambda: p.parse_infer_response([1, 2, 0x82000000], 3, classes=10), "must be 4 words long"),
    (lambda: p.parse_infer_response([1, 10, 0x82000000], 2, classes=10),
     r"prediction words must be classes 0..9, got 0xa at pattern 1"),
    (lambda: p.parse_infer_response([1, 0x100, 0x82000000], 2, classes=10),
     r"got 0x100 at pattern 1"),
    (lambda: p.parse_infer_response([1, 2, 0x82000003], 2, classes=10), "3 errors in a batch of 2"),
    (lambda: p.parse_infer_response([1, 2, 0x81000000], 2, classes=10), "INFER status word"),
    (lambda: p.parse_infer_response([[1, 2, 0x82000000]], 2, classes=10), "must be a 1-d"),
])
def test_response_errors(call, text):
    with pytest.raises(ValueError, match=text):
        call()


# -- H --------------------------------------------------------------------------------------

@pytest.mark.parametrize("k, fan_in", [(1, 1), (3, 4), (7, 5), (256, 1024), (10, 4095)])
def test_h_round_trip(rng, k, fan_in):
    h = odd_h(rng, (k, fan_in))
    words = p.pack_h(h)
    per = -(-fan_in // 4)
    assert words.dtype == np.uint32 and words.shape == (k * per,)
    # weight i of neuron n: word n * per + i // 4, byte i % 4, two's complement
    for _ in range(20):
        n, i = int(rng.integers(k)), int(rng.integers(fan_in))
        assert (int(words[n * per + i // 4]) >> (8 * (i % 4))) & 0xFF == h[n, i] & 0xFF
    back = p.unpack_h(words, k, fan_in)
    assert back.dtype == np.int8
    np.testing.assert_array_equal(back, h)
    packet = p.write_h_packet(2, h)
    assert p.decode_header(packet[0]) == (p.Opcode.WRITE_H, 2, k)
    np.testing.assert_array_equal(packet[1:], words)
    np.testing.assert_array_equal(p.parse_read_response(p.Opcode.READ_H, words, width=k,
                                                        fan_in=fan_in), h)
    assert list(p.read_h_packet(2, k)) == [(0x11 << 24) | (2 << 16) | k]


def test_h_bytes_low_first():
    h = np.array([[1, -1, 127, -127, 3]])
    assert list(p.pack_h(h)) == [0x81_7F_FF_01, 0x00_00_00_03]
    assert list(p.pack_h([[-3, 3]], h_bits=3)) == [0x03FD]


@pytest.mark.parametrize("call, text", [
    (lambda: p.pack_h([1, 3]), r"h must be a 2-d array, got shape \(2,\)"),
    (lambda: p.pack_h([[1, 129]]), r"h must be in -127..127 \(h_bits=8\), got 1..129"),
    (lambda: p.pack_h([[-128, 1]]), r"h must be in -127..127"),
    (lambda: p.pack_h([[5, 1]], h_bits=3), r"h must be in -3..3 \(h_bits=3\)"),
    (lambda: p.pack_h([[1, 2]]), "h must hold odd integers only"),
    (lambda: p.pack_h([[1.0, 3.0]]), "h must hold integers"),
    (lambda: p.pack_h([[1]], h_bits=9), r"h_bits must be in 2..8, got 9"),
    (lambda: p.pack_h(np.ones((1, 4096), int)), r"K_\{l-1\} \(h.shape\[1\]\) must be in 1..4095"),
    (lambda: p.pack_h(np.ones((0, 3), int)), r"K_l \(h.shape\[0\]\) must be in 1..4095, got 0"),
    (lambda: p.unpack_h([0], 1, 5), "H words must be 2 words long, got 1"),
    (lambda: p.unpack_h([1, 0], 3, 4), "H words must be 3 words long, got 2"),
    (lambda: p.unpack_h([0x01, 0x0100], 1, 5),
     "padding bytes beyond weight 5 of a neuron must be 0"),
    (lambda: p.unpack_h([0x1_0000_0000], 1, 4), r"H words must hold integers in 0..0xFFFFFFFF"),
    (lambda: p.write_h_packet(8, [[1]]), r"layer must be in 0..7, got 8"),
    (lambda: p.read_h_packet(0, 0), r"width must be in 1..4095, got 0"),
])
def test_h_errors(call, text):
    with pytest.raises(ValueError, match=text):
        call()


# -- P and T --------------------------------------------------------------------------------

@pytest.mark.parametrize("classes", [2, 10, 16])
def test_p_round_trip(rng, classes):
    k = int(rng.integers(1, 300))
    pm = pm1(rng, (k, classes))
    words = p.pack_p(pm)
    assert words.shape == (k,)
    for _ in range(20):
        n, c = int(rng.integers(k)), int(rng.integers(classes))
        assert (int(words[n]) >> c) & 1 == int(pm[n, c] > 0)
    assert not np.any(words >> classes)
    np.testing.assert_array_equal(p.unpack_p(words, classes), pm)
    packet = p.write_p_packet(1, pm)
    assert p.decode_header(packet[0]) == (p.Opcode.WRITE_P, 1, k)
    np.testing.assert_array_equal(packet[1:], words)
    np.testing.assert_array_equal(
        p.parse_read_response(p.Opcode.READ_P, words, width=k, classes=classes), pm)
    assert list(p.read_p_packet(1, k)) == [(0x13 << 24) | (1 << 16) | k]


def test_t_round_trip(rng):
    k = 500
    theta = rng.integers(p.THETA_MIN, p.THETA_MAX + 1, size=k)
    theta[:4] = [p.THETA_MIN, p.THETA_MAX, 0, -1]
    flip = rng.integers(2, size=k).astype(bool)
    words = p.pack_t(theta, flip)
    assert list(words[:4]) == [0x8000 | flip[0] << 16, 0x7FFF | flip[1] << 16,
                               flip[2] << 16, 0xFFFF | flip[3] << 16]
    t, f = p.unpack_t(words)
    np.testing.assert_array_equal(t, theta)
    np.testing.assert_array_equal(f, flip)
    packet = p.write_t_packet(3, theta, flip)
    assert p.decode_header(packet[0]) == (p.Opcode.WRITE_T, 3, k)
    t, f = p.parse_read_response(p.Opcode.READ_T, packet[1:], width=k)
    np.testing.assert_array_equal(t, theta)
    np.testing.assert_array_equal(f, flip)
    assert list(p.read_t_packet(3, k)) == [(0x15 << 24) | (3 << 16) | k]


@pytest.mark.parametrize("call, text", [
    (lambda: p.pack_p([1, -1]), r"p must be a 2-d array \(K_l, classes\)"),
    (lambda: p.pack_p(np.ones((3, 17), int)), r"classes must be in 2..16, got 17"),
    (lambda: p.pack_p(np.ones((3, 1), int)), r"classes must be in 2..16, got 1"),
    (lambda: p.pack_p([[1, 0]]), "p must hold only -1 and"),
    (lambda: p.unpack_p([0x400], 10), "P words must have bits 10..31 clear"),
    (lambda: p.unpack_p([], 10), r"number of P words must be in 1..4095, got 0"),
    (lambda: p.pack_t([0, 1], [0]), r"flip must have one entry per neuron \(2\)"),
    (lambda: p.pack_t([32768], [0]), r"theta must be in -32768..32767, got 32768..32768"),
    (lambda: p.pack_t([-32769], [0]), r"theta must be in -32768..32767"),
    (lambda: p.pack_t([0], [2]), "flip must hold only 0 and 1"),
    (lambda: p.pack_t([0.5], [0]), "theta must hold integers"),
    (lambda: p.unpack_t([1 << 17]), "T words must have bits 31..17 clear"),
    (lambda: p.parse_read_response(p.Opcode.READ_T, [0, 0], width=3),
     "READ_T response must be 3 words long, got 2"),
    (lambda: p.parse_read_response(p.Opcode.READ_P, [0], width=1),
     "READ_P responses need classes"),
    (lambda: p.parse_read_response(p.Opcode.READ_H, [0], width=1), "READ_H responses need fan_in"),
    (lambda: p.parse_read_response(p.Opcode.WRITE_T, [0], width=1),
     r"opcode must be READ_H \(0x11\), READ_P \(0x13\) or READ_T \(0x15\)"),
])
def test_p_t_errors(call, text):
    with pytest.raises(ValueError, match=text):
        call()
