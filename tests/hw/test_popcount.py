# amaranth: UnusedElaboratable=no
"""XnorPopcount: Amaranth simulation against the golden model, cocotb benches, Verilog export."""

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from xnorlearn.hw.popcount import XnorPopcount
from xnorlearn.sim.runner import run_cocotb
from xnorlearn.sim.tb_popcount import (corner_vectors, expected_result, random_vectors,
                                       vector_words)


def simulate(dut, words, *, rng, idle=0.0, stall=0.0):
    """Stream ``words`` into ``dut`` and collect its results.

    Returns ``(results, cycles, handshakes)``: the output payloads as dicts, the
    cycles until the last one, and the cycle of each input and output handshake.
    Also checks that a valid output payload holds until accepted.
    """
    results, in_cycles, out_cycles = [], [], []
    cycles = 0
    max_cycles = 10 * len(words) + 1000   # a wedged unit fails fast
    expected_count = sum(w["last"] for w in words)

    async def bench(ctx):
        nonlocal cycles
        pending = list(reversed(words))
        beat = None
        held = None
        while len(results) < expected_count:
            assert cycles < max_cycles, f"only {len(results)} of {expected_count} results"
            if beat is None and pending and rng.random() >= idle:
                beat = pending.pop()
            ctx.set(dut.i.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.i.payload, beat)
            ready = bool(rng.random() >= stall)
            ctx.set(dut.o.ready, ready)
            _, _, i_ready, o_valid, o_payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload)
            if held is not None:
                assert o_valid and o_payload.as_value().value == held, "output payload withdrawn"
            held = o_payload.as_value().value if o_valid and not ready else None
            if beat is not None and i_ready:
                beat = None
                in_cycles.append(cycles)
            if o_valid and ready:
                results.append({"z": o_payload.z, "z_sat": o_payload.z_sat})
                out_cycles.append(cycles)
            cycles += 1
        ctx.set(dut.i.valid, 0)
        for _ in range(dut.latency + 2):
            _, _, o_valid = await ctx.tick().sample(dut.o.valid)
            assert not o_valid, "result nobody asked for"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results, cycles, (in_cycles, out_cycles)


def check_cases(dut, cases, rng, **kwargs):
    words = [w for a, w in cases for w in vector_words(a, w, dut.lanes, rng=rng)]
    results, cycles, _ = simulate(dut, words, rng=rng, **kwargs)
    assert results == [expected_result(a, w, dut.z_max) for a, w in cases]
    return len(words), cycles


# -- parameters --------------------------------------------------------------------------------

def test_parameters():
    dut = XnorPopcount(lanes=64, max_fan_in=784, z_bits=8)
    assert (dut.lanes, dut.max_fan_in, dut.z_bits, dut.levels_per_stage) == (64, 784, 8, 3)
    assert dut.z_width == 11 and dut.z_max == 127
    assert dut.word_layout.size == 64 + 64 + 7 + 1
    assert dut.result_layout.size == 11 + 8
    assert XnorPopcount(lanes=8, max_fan_in=8).z_max is None
    assert XnorPopcount(lanes=8, max_fan_in=8).result_layout.size == 2 * 5
    assert [XnorPopcount(lanes=n, max_fan_in=n).tree_stages for n in (8, 64, 256, 1024)] == \
        [1, 2, 3, 4]
    assert XnorPopcount(lanes=1024, max_fan_in=8, levels_per_stage=1).latency == 13


@pytest.mark.parametrize("kwargs, error, text", [
    ({"lanes": 4, "max_fan_in": 10}, ValueError, "lanes must be in 8..1024, got 4"),
    ({"lanes": 2048, "max_fan_in": 10}, ValueError, "lanes must be in 8..1024, got 2048"),
    ({"lanes": 8.0, "max_fan_in": 10}, TypeError, "lanes must be an integer, got 8.0"),
    ({"lanes": True, "max_fan_in": 10}, TypeError, "lanes must be an integer"),
    ({"lanes": 8, "max_fan_in": 0}, ValueError, "max_fan_in must be in 1..16777216, got 0"),
    ({"lanes": 8, "max_fan_in": 10, "z_bits": 1}, ValueError, "z_bits must be in 2..32, got 1"),
    ({"lanes": 8, "max_fan_in": 10, "z_bits": "8"}, TypeError, "z_bits must be an integer"),
    ({"lanes": 8, "max_fan_in": 10, "levels_per_stage": 0}, ValueError, "levels_per_stage"),
])
def test_bad_parameters(kwargs, error, text):
    with pytest.raises(error, match=text):
        XnorPopcount(**kwargs)


def test_keyword_only():
    with pytest.raises(TypeError):
        XnorPopcount(64, 784)


# -- Amaranth simulation -----------------------------------------------------------------------

@pytest.mark.parametrize("lanes, max_fan_in, z_bits, levels, cases", [
    (8, 40, 4, 3, 800),      # saturation bound 7, vectors of 1..5 words
    (24, 100, 6, 2, 500),    # lanes not a power of two
    (64, 200, None, 3, 400),
    (64, 64, 8, 1, 400),     # K = max_fan_in = lanes: single-word vectors only
])
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.5)])
def test_random_vectors(rng, lanes, max_fan_in, z_bits, levels, cases, idle, stall):
    dut = XnorPopcount(lanes=lanes, max_fan_in=max_fan_in, z_bits=z_bits, levels_per_stage=levels)
    vectors = corner_vectors(rng, lanes=lanes, max_fan_in=max_fan_in, z_max=dut.z_max)
    vectors += random_vectors(rng, cases, lanes=lanes, max_fan_in=max_fan_in)
    words, cycles = check_cases(dut, vectors, rng, idle=idle, stall=stall)
    if idle == stall == 0:
        assert cycles <= words + dut.latency + 1


def test_1024_lanes(rng):
    dut = XnorPopcount(lanes=1024, max_fan_in=2500, z_bits=8)
    vectors = corner_vectors(rng, lanes=1024, max_fan_in=2500, z_max=127)
    vectors += random_vectors(rng, 10, lanes=1024, max_fan_in=2500)
    check_cases(dut, vectors, rng, idle=0.2, stall=0.3)


def test_saturation_bounds(rng):
    """z exactly at, one inside and beyond ±z_max, single- and multi-word."""
    dut = XnorPopcount(lanes=8, max_fan_in=30, z_bits=4)
    vectors = []
    for k in (7, 8, 9, 16, 30):
        for matches in range(k + 1):
            a = [1 if rng.random() < 0.5 else -1 for _ in range(k)]
            w = [ai if i < matches else -ai for i, ai in enumerate(a)]
            vectors.append((a, w))
    check_cases(dut, vectors, rng, stall=0.3)
    assert {expected_result(a, w, 7)["z"] for a, w in vectors} >= set(range(-9, 10))


def test_padding_ignored(rng):
    """Bits at and above ``count`` must not count, whatever their value."""
    dut = XnorPopcount(lanes=8, max_fan_in=20)
    words = [{"a": 0xFF, "w": 0xFF, "count": 3, "last": 1},   # z = 3
             {"a": 0x00, "w": 0xFF, "count": 8, "last": 0},   # -8
             {"a": 0xF0, "w": 0x0F, "count": 4, "last": 1},   # -4 -> -12
             {"a": 0xAA, "w": 0x55, "count": 0, "last": 1}]   # empty word, z = 0
    results, _, _ = simulate(dut, words, rng=rng)
    assert results == [{"z": 3, "z_sat": 3}, {"z": -12, "z_sat": -12}, {"z": 0, "z_sat": 0}]


def test_latency_and_throughput(rng):
    for lanes in (8, 64, 256):
        dut = XnorPopcount(lanes=lanes, max_fan_in=lanes)
        words = [{"a": 0, "w": 0, "count": lanes, "last": 1} for _ in range(20)]
        results, _, (ins, outs) = simulate(dut, words, rng=rng)
        assert results == [{"z": lanes, "z_sat": lanes}] * 20
        assert ins == list(range(20)), "input not ready every cycle"
        assert outs == [c + dut.latency for c in ins]


def test_stall_keeps_order(rng):
    """Output blocked for a long time: the FIFO fills, the input stops, nothing is lost."""
    dut = XnorPopcount(lanes=8, max_fan_in=8)
    words = [{"a": k, "w": 0, "count": 8, "last": 1} for k in range(40)]
    results, _, _ = simulate(dut, words, rng=rng, stall=0.9)
    assert [r["z"] for r in results] == [8 - 2 * bin(k).count("1") for k in range(40)]


# -- cocotb ------------------------------------------------------------------------------------

L16 = {"lanes": 16, "max_fan_in": 100, "z_bits": 5, "levels_per_stage": 3}
L256 = {"lanes": 256, "max_fan_in": 784, "z_bits": 8, "levels_per_stage": 3}
L1024 = {"lanes": 1024, "max_fan_in": 3000, "z_bits": 8, "levels_per_stage": 2}
L100 = {"lanes": 100, "max_fan_in": 1000, "z_bits": None, "levels_per_stage": 1}

# A Verilator build takes 20-40 s here, so the default run builds one design on it.
COCOTB_RUNS = [
    pytest.param("verilator", dict(L256, cases=1000), id="verilator-l256"),
    pytest.param("icarus", dict(L256, cases=300), id="icarus-l256"),
    pytest.param("icarus", dict(L16, cases=600), id="icarus-l16"),
    pytest.param("verilator", dict(L16, cases=3000), id="verilator-l16", marks=pytest.mark.slow),
    pytest.param("verilator", dict(L1024, cases=1000), id="verilator-l1024",
                 marks=pytest.mark.slow),
    pytest.param("icarus", dict(L1024, cases=300), id="icarus-l1024", marks=pytest.mark.slow),
    pytest.param("verilator", dict(L100, cases=3000), id="verilator-l100", marks=pytest.mark.slow),
    pytest.param("icarus", dict(L100, cases=1000), id="icarus-l100", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("simulator, params", COCOTB_RUNS)
def test_cocotb(simulator, params, build_root):
    hdl = {k: v for k, v in params.items() if k != "cases"}
    name = "_".join(f"{k}{v}" for k, v in hdl.items())
    run_cocotb(XnorPopcount(**hdl), name="xnor_popcount", test_module="xnorlearn.sim.tb_popcount",
               simulator=simulator, build_dir=f"{build_root}/popcount_{simulator}_{name}",
               params=params)


# -- Verilog export ----------------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [8, 64, 256, 1024])
def test_verilog_export(lanes):
    dut = XnorPopcount(lanes=lanes, max_fan_in=4 * lanes, z_bits=8)
    text = verilog.convert(dut, name="xnor_popcount", emit_src=False)
    assert "module xnor_popcount(" in text
    assert f"input [{dut.word_layout.size - 1}:0] i__payload;" in text
    assert f"output [{dut.result_layout.size - 1}:0] o__payload;" in text
