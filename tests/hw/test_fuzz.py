# amaranth: UnusedElaboratable=no
"""The protocol fuzzer (:mod:`xnorlearn.sim.tb_fuzz`): random interleavings of valid and
malformed packets, register writes racing headers and phases, ``clear_error`` and
``soft_reset`` at random points, each case checked against the reference model
(:mod:`xnorlearn.sim.protocol_model`) and followed by a golden check of every weight; a
short run on Verilator and Icarus, a long one under ``slow``. The reference model
itself is checked here against the host protocol and the golden model."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from xnorlearn.contract import Build, ErrorCode, Opcode, RegisterMap, header_word
from xnorlearn.sim.protocol_model import (OKAY, SLVERR, ProtocolModel, StreamViolation,
                                          h_payload, sweep_indices)
from xnorlearn.sim.random_networks import random_batch, random_model
from xnorlearn.sim.runner import FAST_VERILATOR_ARGS, VERILATOR_ARGS, run_cocotb
from xnorlearn.sw import protocol
from xnorlearn.sw.golden import prng

SMALL = Build(lanes=32, max_layers=2, max_width=24, max_fan_in=40, classes=3, max_batch=6,
              max_groups=6)
WIDE = Build(lanes=64, max_layers=2, max_width=64, max_fan_in=128, classes=6, max_batch=16,
             max_groups=8, weight_words=160, fwd_patterns=3)
SMALL_PAIRS = dataclasses.replace(SMALL, fwd_patterns=2)


# -- the reference model ---------------------------------------------------------------------

def test_sweep_indices_match_the_golden_streams(rng):
    for _ in range(200):
        seed, layer = int(rng.integers(0, 1 << 32)), int(rng.integers(0, 8))
        t, count = int(rng.integers(0, 1 << 32)), int(rng.integers(1, 600))
        threshold = int(rng.choice([0, 1, rng.integers(0, 1 << 16), 1 << 16, 1 << 17]))
        key = prng.stream_key(seed, prng.STREAM_REINFORCE, layer)
        assert np.array_equal(sweep_indices(key, t, count, threshold),
                              prng.reinforce_mask_indices(seed, layer, t, count, threshold))


def _configured(build, golden):
    """A model configured and loaded (through its ports) with the golden model's network."""
    m = ProtocolModel(build)
    off = RegisterMap(build).offsets()
    cfg = golden.config

    def write(name, value):
        assert m.write(off[name], value) == (OKAY, "stored")

    write("LAYERS", cfg.layers)
    write("INPUTS", cfg.sizes[0])
    for l in range(cfg.layers):
        write(f"WIDTH_{l}", cfg.sizes[l + 1])
        write(f"GAMMA_{l}", cfg.gamma[l])
        write(f"ROBUST_{l}", cfg.robustness[l])
        write(f"THRESH_{l}", golden.thresholds[l])
        write(f"KEY_{l}", prng.stream_key(cfg.seed, prng.STREAM_REINFORCE, l))
    write("STEP", golden.step & 0xFFFFFFFF)
    for l in range(cfg.layers):
        _send(m, protocol.write_h_packet(l, golden.H[l]))
        _send(m, protocol.write_p_packet(l, golden.P[l]))
        _send(m, protocol.write_t_packet(l, golden.theta[l], golden.flip[l]))
    return m, off


def _send(model, words, lasts=None):
    for i, w in enumerate(words):
        model.word(int(w), lasts[i] if lasts is not None else i == len(words) - 1)


@pytest.mark.parametrize("build", [SMALL, WIDE], ids=["small", "wide"])
def test_model_trains_as_the_golden_model(build, rng):
    """Packets from sw/protocol.py: the model's responses, counters and weights are the
    golden model's."""
    for _ in range(8):
        golden = random_model(rng, build, widths=(4, build.max_width))
        m, off = _configured(build, golden)
        assert m.error_code == ErrorCode.NONE, m.log[-3:]
        patterns = errors = 0
        for _ in range(3):
            a0, y = random_batch(rng, golden, (1, build.max_batch))
            _send(m, protocol.train_packet(a0, y, classes=build.classes))
            e = golden.train_batch(a0, y)
            patterns, errors = patterns + len(y), errors + e
            assert [r.words for r in m.responses] == [[0x81000000 | e]]
            m.responses.pop()
            m.response_done()
            for l in range(golden.config.layers):
                words = m.expected_read(Opcode.READ_H, l)[0]
                h = protocol.unpack_h(np.array(words, dtype=np.uint32), *golden.H[l].shape)
                assert np.array_equal(h, golden.H[l])
            a0, y = random_batch(rng, golden, (1, build.max_batch))
            _send(m, protocol.infer_packet(a0, y, classes=build.classes))
            pred = golden.predict(a0)
            assert m.responses.pop().words == [int(p) for p in pred] + [
                0x82000000 | int(np.count_nonzero(pred != y))]
            m.response_done()
        assert (m.patterns, m.errors) == (patterns, errors)
        assert m.read(off["STEP"]) == (OKAY, golden.step & 0xFFFFFFFF)


def test_model_protocol_rules(rng):
    """The documented rules, spelled out: error priority, refused WRITE_* units, padding,
    clear_error before tlast, BUSY, SLVERR, the stream held while an error is latched."""
    build = WIDE
    golden = random_model(rng, build, widths=(8, 8))
    m, off = _configured(build, golden)
    k, f = golden.config.sizes[1], golden.config.sizes[0]

    def refused(words, code, lasts=None):
        _send(m, words, lasts)
        assert m.error_code == code, (m.log[-2:], code)
        m.clear_error()
        assert m.error_code == ErrorCode.NONE

    refused([header_word(0x7E, 0, 0)], ErrorCode.OPCODE)
    refused([header_word(Opcode.READ_P, 5, 0), 1], ErrorCode.LAYER)
    refused([header_word(Opcode.READ_P, 0, 0), 1], ErrorCode.LENGTH)
    refused([header_word(Opcode.TRAIN, 0, 0), 1], ErrorCode.LENGTH)
    refused([header_word(Opcode.WRITE_P, 0, k)], ErrorCode.LENGTH)
    pw = 1 + -(-f // 32)
    words = [header_word(Opcode.TRAIN, 0, 2)] + [0] * pw + [build.classes] + [0] * (pw - 1)
    refused(words, ErrorCode.LABEL)
    refused(words[:pw + 2], ErrorCode.LENGTH)          # tlast on the bad label: LENGTH
    # WRITE_P too long writes rows 0..K-2; READ_P masks bits >= classes.
    old = m.expected_read(Opcode.READ_P, 0)[0]
    new = [int(x) | 0xF000 for x in rng.integers(0, 1 << build.classes, size=k + 3)]
    refused([header_word(Opcode.WRITE_P, 0, k)] + new, ErrorCode.LENGTH)
    cls = (1 << build.classes) - 1
    assert m.expected_read(Opcode.READ_P, 0)[0] == [x & cls for x in new[:k - 1]] + old[k - 1:]
    # WRITE_H: a unit is written only if all its words come before the failing word.
    m.write(off["INPUTS"], 70)
    m.write(off["GAMMA_0"], 1)
    h_old = m.expected_read(Opcode.READ_H, 0)
    payload = h_payload(rng.integers(-127, 128, size=(k, 70)))
    w = 18                                               # ceil(70 / 4) words per neuron
    refused([header_word(Opcode.WRITE_H, 0, k)] + payload[:w + 16], ErrorCode.LENGTH)
    got = m.expected_read(Opcode.READ_H, 0)[0]
    assert got[:w] == payload[:w]                        # neuron 0, both memory words
    assert got[w:] == h_old[0][w:]                       # neuron 1's first unit: failing
    # clear_error before the refused packet's tlast is ignored; the stream is held.
    _send(m, [header_word(0x7E, 0, 0), 1], [0, 0])
    m.clear_error()
    assert m.error_code == ErrorCode.OPCODE and m.discarding
    _send(m, [2])
    m.clear_error()
    assert m.error_code == ErrorCode.NONE
    _send(m, [header_word(0x7E, 0, 0)])
    with pytest.raises(StreamViolation):
        _send(m, [header_word(Opcode.READ_P, 0, 0)])
    m.clear_error()
    # A configuration write while busy: ignored, BUSY; CONTROL and SLVERR.
    m.word(header_word(Opcode.WRITE_T, 0, 0), False)
    assert m.write(off["WIDTH_0"], 3) == (OKAY, "busy") and m.regs["WIDTH_0"] == k
    assert m.write(off["ID"], 1) == (SLVERR, "slverr")
    assert m.write(0x0FC, 1) == (SLVERR, "slverr")
    _send(m, [0] * k)
    assert m.error_code == ErrorCode.BUSY and not m.stream_open
    m.write(off["CONTROL"], 2)
    assert m.error_code == ErrorCode.NONE
    # The cycle after a header is busy, for a header refused at once too.
    m.word(header_word(0x7E, 0, 0), True)
    assert m.write(off["ROBUST_0"], 5) == (OKAY, "busy")
    m.write(off["CONTROL"], 2)
    m.word(header_word(0x7E, 0, 0), True)
    m.header_checked()
    assert m.write(off["ROBUST_0"], 5) == (OKAY, "stored")
    m.write(off["CONTROL"], 2)
    # Strobes and reserved bits.
    m.write(off["THRESH_0"], 0xFFFFFFFF, strobe=0b0100)
    assert m.regs["THRESH_0"] & 0x10000
    # soft_reset: counters and STEP to 0, configuration kept.
    m.write(off["CONTROL"], 1)
    assert m.read(off["STEP"]) == (OKAY, 0) and m.regs["WIDTH_0"] == k


def test_model_soft_reset_mid_train(rng):
    """After a soft_reset mid-TRAIN every word of H may be old or one the minibatch
    wrote: a read-back of the old weights and one of the trained weights both pass."""
    build = SMALL
    golden = random_model(rng, build, widths=(6, 12))
    m, off = _configured(build, golden)
    a0, y = random_batch(rng, golden, (4, 6))
    before = [m.expected_read(Opcode.READ_H, l)[0] for l in range(golden.config.layers)]
    _send(m, protocol.train_packet(a0, y, classes=build.classes))
    after = [m.expected_read(Opcode.READ_H, l)[0] for l in range(golden.config.layers)]
    for read in (before, after):
        c = m.copy()
        c.write(off["CONTROL"], 1)
        assert c.predictable(Opcode.INFER) is not None      # words left open
        for l in range(golden.config.layers):
            assert c.check_read(Opcode.READ_H, l, read[l])[0] == []
        assert c.predictable(Opcode.INFER) is None          # adopted from the read-back
    wrong = [x ^ 0x01 for x in after[0]]                     # an even weight: neither
    c = m.copy()
    c.write(off["CONTROL"], 1)
    assert c.check_read(Opcode.READ_H, 0, wrong)[0]


def test_model_read_checked_as_read(rng):
    """A READ_H response is checked against the memory the core read: a TRAIN taken
    behind it (its last word in the cycle the response's last word leaves the output
    slice) changes H before the response is checked, and the response still passes; the
    current state keeps the TRAIN's weights. Checked against the current state instead,
    the same response fails."""
    golden = random_model(rng, SMALL, widths=(8, 8))
    m, _ = _configured(SMALL, golden)
    _send(m, [header_word(Opcode.READ_H, 0, 0)])
    before = m.expected_read(Opcode.READ_H, 0)[0]
    a0, y = random_batch(rng, golden, (3, 3))
    _send(m, protocol.train_packet(a0, y, classes=SMALL.classes))
    after = m.expected_read(Opcode.READ_H, 0)[0]
    assert after != before
    read = m.responses.pop(0)
    assert read.opcode == Opcode.READ_H
    assert m.copy().check_read(Opcode.READ_H, 0, before)[0]           # the current state
    assert m.check_read(Opcode.READ_H, 0, before, at=read.state) == ([], 0)
    assert m.expected_read(Opcode.READ_H, 0)[0] == after


def test_model_padding_kept_by_train(rng):
    """A TRAIN leaves H (and W = sign(H)) in the lanes past each neuron's fan-in as they
    were: after INPUTS shrinks by one, a TRAIN, and INPUTS grows back, the model expects
    the old weights of that lane, and an INFER over it is predictable."""
    golden = random_model(rng, SMALL, widths=(8, 8))
    m, off = _configured(SMALL, golden)
    inputs = golden.config.sizes[0]
    kept = golden.H[0][:, inputs - 1].copy()
    m.write(off["INPUTS"], inputs - 1)
    a0, y = random_batch(rng, golden, (2, 2))
    _send(m, protocol.train_packet(a0[:, :inputs - 1], y, classes=SMALL.classes))
    assert m.responses.pop().opcode == Opcode.TRAIN
    m.response_done()
    m.write(off["INPUTS"], inputs)
    assert m.predictable(Opcode.INFER) is None
    words, known = m.expected_read(Opcode.READ_H, 0)
    w = -(-inputs // 4)
    shift = 8 * ((inputs - 1) % 4)
    lane = [(words[k * w + (inputs - 1) // 4] >> shift) & 0xFF for k in range(len(kept))]
    assert lane == [int(h) & 0xFF for h in kept]
    assert all(known)
    wrong = list(words)
    wrong[(inputs - 1) // 4] ^= 2 << shift                  # still odd, but not what was kept
    assert m.check_read(Opcode.READ_H, 0, wrong)[0]


# -- the fuzzer on the RTL -----------------------------------------------------------------------

def _fuzz(build_root, simulator, build, tag, *, verilator_args=VERILATOR_ARGS, **params):
    from xnorlearn.hw.accelerator import Accelerator
    build_dir = Path(build_root) / f"fuzz_{tag}_{simulator}"
    params = {"build": dataclasses.asdict(build), **params}
    run_cocotb(Accelerator(build=build), name="xnorlearn_accelerator",
               test_module="xnorlearn.sim.tb_fuzz", simulator=simulator,
               build_dir=build_dir, params=params,
               extra_build_args=verilator_args if simulator == "verilator" else ())
    cases = json.loads((build_dir / "cases.json").read_text())
    print(json.dumps({k: cases[k] for k in ("cases", "adversarial_cases", "cases_per_kind",
                                            "counts", "cycles", "wall_s", "seed")},
                     sort_keys=True))
    assert not cases["findings"]
    return cases


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_fuzz_short(build_root, simulator):
    """A short run: every kind of case, a golden check after each. Icarus runs the build
    whose forward pass takes two patterns at once."""
    n = 300 if simulator == "verilator" else 100
    build = SMALL if simulator == "verilator" else SMALL_PAIRS
    cases = _fuzz(build_root, simulator, build, "short", cases=n, stalls=0.3)
    assert cases["cases"] == n
    assert cases["counts"]["golden_checks"] >= n
    assert set(cases["cases_per_kind"]) >= {"train", "write_race", "soft_reset", "bad_length"}


#: The long run: (simulator, build, cases, adversarial cases at least). About 69.5 % of the
#: cases are adversarial; each floor is 4 standard deviations or more below its mean, and
#: the floors add up to more than 10,000.
LONG = [("verilator", SMALL, 10000, 6700), ("verilator", WIDE, 4500, 3000),
        ("icarus", SMALL, 1000, 640)]


@pytest.mark.slow
@pytest.mark.parametrize("simulator,build,n,adversarial", LONG,
                         ids=["verilator-small", "verilator-wide", "icarus-small"])
def test_fuzz_long(build_root, simulator, build, n, adversarial):
    """The long run, Verilator optimised (-O2)."""
    assert sum(a for *_, a in LONG) >= 10000
    tag = "long_small" if build == SMALL else "long_wide"
    cases = _fuzz(build_root, simulator, build, tag, verilator_args=FAST_VERILATOR_ARGS,
                  cases=n, stalls=0.3)
    assert cases["cases"] == n
    assert cases["adversarial_cases"] >= adversarial
    assert cases["counts"]["golden_checks"] >= n
