# amaranth: UnusedElaboratable=no
"""UpdateEngine against the golden cp_step / reinforce_step (amaranth.sim, cocotb, export)."""

import json

import numpy as np
import pytest
from amaranth import Cat, Module, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from xnorlearn.hw.prng import ReinforceDraws
from xnorlearn.hw.update import UpdateEngine, UpdateOp, update_input_layout, update_output_layout
from xnorlearn.sim.runner import run_cocotb
from xnorlearn.sim.tb_update import (corner_words, golden_update, pack_input, random_words,
                                     unpack_output)
from xnorlearn.sw.golden.literal import reinforce_step
from xnorlearn.sw.golden.prng import DRAW_ONE, reinforce_draw, reinforce_key


def run_words(dut, values, rng, *, idle=0.0, stall=0.0, max_cycles=200_000):
    """Push packed input values through ``dut`` (random idle input cycles and output
    backpressure); return the packed output values. Checks that a stalled output holds."""
    src_rng, sink_rng = (np.random.default_rng(s) for s in rng.integers(1 << 32, size=2))
    outputs = []

    async def producer(ctx):
        for value in values:
            while idle and src_rng.random() < idle:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload.as_value(), value)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        held = None
        for _ in range(max_cycles):
            if len(outputs) == len(values):
                break
            ready = not (stall and sink_rng.random() < stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
            if held is not None:
                assert valid and payload == held, "stalled output changed"
            held = None
            if valid and ready:
                outputs.append(payload)
            elif valid:
                held = payload
        else:
            raise AssertionError(f"only {len(outputs)} of {len(values)} outputs came out")
        ctx.set(dut.o.ready, 1)
        for _ in range(10):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "extra output"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return outputs


def check_engine(dut, words, rng, tag_bits=0, **stalls):
    shape = dict(lanes=dut.lanes, h_bits=dut.h_bits, tag_bits=tag_bits)
    outputs = run_words(dut, [pack_input(w, **shape) for w in words], rng, **stalls)
    assert len(outputs) == len(words)
    for n, (word, value) in enumerate(zip(words, outputs)):
        assert unpack_output(value, **shape) == golden_update(word, h_bits=dut.h_bits), (n, word)


ENGINE_PARAMS = [(8, 8, 5), (9, 3, None), (12, 2, None), (16, 16, 1)]


@pytest.mark.parametrize("lanes, h_bits, tag_bits", ENGINE_PARAMS)
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.4)])
def test_engine_random(rng, lanes, h_bits, tag_bits, idle, stall):
    dut = UpdateEngine(lanes=lanes, h_bits=h_bits, tag_shape=tag_bits)
    words = random_words(rng, 300, lanes=lanes, h_bits=h_bits, tag_bits=tag_bits or 0)
    check_engine(dut, words, rng, tag_bits or 0, idle=idle, stall=stall)


@pytest.mark.parametrize("lanes, h_bits", [(8, 8), (10, 3)])
def test_engine_corners(rng, lanes, h_bits):
    dut = UpdateEngine(lanes=lanes, h_bits=h_bits)
    words = corner_words(lanes=lanes, h_bits=h_bits)
    check_engine(dut, words, rng, stall=0.2)


def test_engine_saturation_explicit(rng):
    """Hand-written expectations, independent of the bench's golden wrapper."""
    dut = UpdateEngine(lanes=8)
    full = 0xFF
    h = [127, -127, 125, -125, 1, -1, 3, -3]
    cp_up = {"op": UpdateOp.CP.value, "h": h, "a": full, "rho": 1, "mask": full, "hit": 0}
    cp_down = dict(cp_up, rho=0)
    reinforce_all = {"op": UpdateOp.REINFORCE.value, "h": h, "a": 0, "rho": 0, "mask": full,
                     "hit": full}
    reinforce_none = dict(reinforce_all, hit=0)
    partial = dict(cp_up, mask=0x0F)
    outputs = run_words(dut, [pack_input(w, lanes=8, h_bits=8)
                              for w in (cp_up, cp_down, reinforce_all, reinforce_none, partial)], rng)
    got = [unpack_output(v, lanes=8, h_bits=8) for v in outputs]
    assert got[0] == {"h": [127, -125, 127, -123, 3, 1, 5, -1], "w": 0b01110101}
    assert got[1] == {"h": [125, -127, 123, -127, -1, -3, 1, -5], "w": 0b01000101}
    assert got[2] == {"h": [127, -127, 127, -127, 3, -3, 5, -5], "w": 0b01010101}
    assert got[3] == {"h": h, "w": 0b01010101}
    # Masked lanes keep H, and their W is still sign(H).
    assert got[4] == {"h": [127, -125, 127, -123, 1, -1, 3, -3], "w": 0b01010101}


def test_engine_latency():
    """The result of a word accepted at cycle 0 is valid ``latency`` cycles later."""
    dut = UpdateEngine(lanes=8)
    assert dut.latency == 2
    cycles = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for cycle in range(1, 5):
            if ctx.get(dut.o.valid):
                cycles.append(cycle)
                break
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert cycles == [dut.latency]


class SweepUnit(wiring.Component):
    """ReinforceDraws feeding UpdateEngine: the draws' tag carries the rest of the word and
    the threshold; each draw below it sets its lane's ``hit``."""

    def __init__(self, lanes, h_bits):
        self.engine = UpdateEngine(lanes=lanes, h_bits=h_bits)
        self.rest = data.StructLayout({
            **{name: field.shape for name, field in self.engine.input_layout if name != "hit"},
            "threshold": unsigned(17)})
        self.draws = ReinforceDraws(lanes=lanes, tag_shape=self.rest)
        super().__init__({
            "i": In(stream.Signature(self.draws.i.payload.shape())),
            "o": Out(stream.Signature(self.engine.output_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.draws, m.submodules.engine = self.draws, self.engine
        wiring.connect(m, wiring.flipped(self.i), self.draws.i)
        src, dst = self.draws.o, self.engine.i
        threshold = src.payload.tag.threshold
        m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready),
                     dst.payload.hit.eq(Cat(src.payload.draw[n] < threshold
                                            for n in range(self.engine.lanes)))]
        for name, _ in self.rest:
            if name != "threshold":
                m.d.comb += dst.payload[name].eq(src.payload.tag[name])
        wiring.connect(m, self.engine.o, wiring.flipped(self.o))
        return m


@pytest.mark.parametrize("j0", [0, 3])
def test_reinforcement_sweep(rng, j0):
    """A whole layer swept through ReinforceDraws + UpdateEngine equals the golden sweep,
    partial last word included (the sweep starts at weight ``j0``)."""
    lanes, h_bits, count = 8, 4, 61
    h_max = (1 << (h_bits - 1)) - 1
    seed, layer, t = int(rng.integers(0, 1 << 32)), 1, int(rng.integers(0, 1000))
    threshold = int(rng.integers(DRAW_ONE // 4, DRAW_ONE // 2))
    H = [int(v) for v in 2 * rng.integers(-(h_max + 1) // 2, (h_max + 1) // 2, size=count) + 1]
    H[:4] = [h_max, -h_max, h_max, -h_max]
    dut = SweepUnit(lanes, h_bits)
    requests, words = [], (count + lanes - 1) // lanes
    for w in range(words):
        chunk = H[w * lanes:(w + 1) * lanes]
        valid = len(chunk)
        chunk = chunk + [0] * (lanes - valid)
        requests.append({"key": reinforce_key(seed, layer, t), "start": j0 + w * lanes,
                         "tag": {"op": UpdateOp.REINFORCE.value, "h": chunk, "a": 0, "rho": 0,
                                 "mask": (1 << valid) - 1, "threshold": threshold}})
    outputs = []

    async def producer(ctx):
        for req in requests:
            ctx.set(dut.i.payload, req)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in requests:
            (value,) = await ctx.tick().sample(dut.o.payload.as_value()).until(dut.o.valid)
            outputs.append(unpack_output(value, lanes=lanes, h_bits=h_bits))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    got_h = [h for out in outputs for h in out["h"]][:count]
    want_h = [reinforce_step(h, reinforce_draw(seed, layer, t, j0 + j), threshold, h_max)
              for j, h in enumerate(H)]
    assert got_h == want_h
    assert want_h != H  # the sweep did reinforce something
    got_w = [(outputs[j // lanes]["w"] >> (j % lanes)) & 1 for j in range(words * lanes)]
    assert got_w == [int(h > 0) for h in want_h] + [0] * (words * lanes - count)


def test_engine_layout():
    dut = UpdateEngine(lanes=8, h_bits=6, tag_shape=unsigned(3))
    assert (dut.lanes, dut.h_bits, dut.h_max, dut.tag_shape) == (8, 6, 31, unsigned(3))
    assert dut.i.payload.shape() == update_input_layout(lanes=8, h_bits=6, tag_shape=unsigned(3))
    assert dut.o.payload.shape() == update_output_layout(lanes=8, h_bits=6, tag_shape=unsigned(3))
    layout = dut.input_layout
    assert layout["h"].shape == data.ArrayLayout(signed(6), 8)
    assert layout["hit"].shape == unsigned(8)
    assert layout["op"].shape is UpdateOp
    assert "tag" not in dict(UpdateEngine(lanes=8).output_layout)


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"lanes": 4}, ValueError, "lanes must be in 8..1024, got 4"),
    ({"lanes": 2048}, ValueError, "lanes must be in 8..1024, got 2048"),
    ({"lanes": 8.0}, TypeError, "lanes must be an integer"),
    ({"lanes": 8, "h_bits": 1}, ValueError, "h_bits must be in 2..16, got 1"),
    ({"lanes": 8, "h_bits": None}, TypeError, "h_bits must be an integer"),
    ({"lanes": 8, "tag_shape": 0}, ValueError, "tag_shape must be None or at least 1 bit"),
    ({"lanes": 8, "tag_shape": "tag"}, TypeError, "tag_shape must be None or a shape-like"),
])
def test_engine_bad_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        UpdateEngine(**kwargs)


@pytest.mark.parametrize("lanes", [8, 64, 256, 1024])
def test_engine_export(lanes):
    """Every supported size elaborates and converts to Verilog (no simulation)."""
    dut = UpdateEngine(lanes=lanes)
    text = verilog.convert(dut, name=f"update_engine_{lanes}", emit_src=False)
    in_bits = update_input_layout(lanes=lanes).size
    out_bits = update_output_layout(lanes=lanes).size
    assert f"module update_engine_{lanes}(" in text
    assert f"input [{in_bits - 1}:0] i__payload;" in text
    assert f"output [{out_bits - 1}:0] o__payload;" in text
    assert in_bits == 2 + 8 * lanes + lanes + 1 + lanes + lanes


# -- cocotb --------------------------------------------------------------------------------------

def _cocotb_cases():
    """(simulator, params) sets: two per simulator by default (Verilator builds are the
    slow part, so its 64-lane build runs only with ``-m slow``), more behind ``slow``."""
    small = {"lanes": 8, "h_bits": 8, "tag_bits": 6}
    wide = {"lanes": 64, "h_bits": 4, "tag_bits": 0}
    extra = [{"lanes": 256, "h_bits": 8, "tag_bits": 0}, {"lanes": 13, "h_bits": 2, "tag_bits": 1}]
    slow = pytest.mark.slow
    cases = [pytest.param("verilator", small, id="verilator-l8h8t6"),
             pytest.param("icarus", small, id="icarus-l8h8t6"),
             pytest.param("icarus", wide, id="icarus-l64h4"),
             pytest.param("verilator", wide, id="verilator-l64h4", marks=slow)]
    for params in extra:
        name = "l{lanes}h{h_bits}t{tag_bits}".format(**params)
        cases += [pytest.param(sim, params, id=f"{sim}-{name}", marks=slow)
                  for sim in ("verilator", "icarus")]
    return cases


@pytest.mark.parametrize("simulator, params", _cocotb_cases())
def test_engine_cocotb(simulator, params, build_root):
    dut = UpdateEngine(lanes=params["lanes"], h_bits=params["h_bits"],
                       tag_shape=params["tag_bits"] or None)
    build_dir = f"{build_root}/update_{simulator}_" + "_".join(f"{k}{v}" for k, v in sorted(params.items()))
    cases = 600
    run_cocotb(dut, name="update_engine", test_module="xnorlearn.sim.tb_update",
               simulator=simulator, build_dir=build_dir,
               params={"tag_bits": params["tag_bits"], "cases": cases})
    with open(f"{build_dir}/cases.json") as f:
        assert json.load(f)["cases"] >= 2 * cases + len(corner_words(lanes=params["lanes"], h_bits=2))
