# amaranth: UnusedElaboratable=no
"""Mix32 and ReinforceDraws against the golden PRNG (amaranth.sim and cocotb)."""

import json

import numpy as np
import pytest
from amaranth import unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from xnorlearn.hw.prng import Mix32, ReinforceDraws
from xnorlearn.sim.runner import run_cocotb
from xnorlearn.sw.golden.prng import mix32, reinforce_draw, reinforce_draws, reinforce_key


def run_stream(dut, requests, rng, *, idle=0.0, stall=0.0, max_cycles=100_000):
    """Push ``requests`` into ``dut.i`` and collect as many items from ``dut.o``.

    Idle cycles on the input and backpressure on the output are random; the
    consumer also checks that a stalled output holds its payload.
    """
    src_rng, sink_rng = (np.random.default_rng(s) for s in rng.integers(1 << 32, size=2))
    outputs = []

    async def producer(ctx):
        for item in requests:
            while idle and src_rng.random() < idle:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, item)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        held = None
        for _ in range(max_cycles):
            if len(outputs) == len(requests):
                break
            ready = not (stall and sink_rng.random() < stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if held is not None:
                assert valid and payload.as_value().value == held, "stalled output changed"
            held = None
            if valid and ready:
                outputs.append(payload)
            elif valid:
                held = payload.as_value().value
        else:
            raise AssertionError(f"only {len(outputs)} of {len(requests)} outputs came out")
        # nothing more may come out
        ctx.set(dut.o.ready, 1)
        for _ in range(30):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "extra output"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return outputs


def measure_latency(dut, item):
    """Cycles from the accepting edge of one input to the edge where its output is valid."""
    result = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload, item)
        ctx.set(dut.i.valid, 1)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        cycles = 0
        while not ctx.get(dut.o.valid):
            await ctx.tick()
            cycles += 1
        result.append(cycles + 1)  # + the edge that registers the output

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return result[0]


CORNER_WORDS = [0, 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x0000FFFF, 0xFFFF0000, 0x12345678]


# -- Mix32 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes, mul_stages, soft", [(1, 2, False), (3, 1, False), (4, 3, False),
                                                     (1, 2, True), (3, 2, True)])
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.4)])
def test_mix32_random(rng, lanes, mul_stages, soft, idle, stall):
    dut = Mix32(lanes=lanes, mul_stages=mul_stages, tag_shape=7, soft_multipliers=soft)
    words = [int(x) for x in rng.integers(0, 1 << 32, size=120 * lanes, dtype=np.uint64)]
    words[: len(CORNER_WORDS)] = CORNER_WORDS
    requests = [{"x": words[n * lanes:(n + 1) * lanes], "tag": n % 128} for n in range(120)]
    outputs = run_stream(dut, requests, rng, idle=idle, stall=stall)
    for req, out in zip(requests, outputs):
        assert [out.x[n] for n in range(lanes)] == [mix32(x) for x in req["x"]]
        assert out.tag == req["tag"]


@pytest.mark.parametrize("mul_stages", [1, 2, 4])
def test_mix32_latency(mul_stages):
    dut = Mix32(mul_stages=mul_stages)
    assert dut.latency == 3 + 2 * mul_stages
    assert measure_latency(dut, {"x": [5]}) == dut.latency


def test_mix32_soft_multipliers_latency():
    dut = Mix32(soft_multipliers=True)
    assert dut.soft_multipliers and dut.latency == 9
    assert measure_latency(dut, {"x": [5]}) == dut.latency


def test_mix32_layout():
    dut = Mix32(lanes=2)
    assert dut.i.payload.shape() == data.StructLayout({"x": data.ArrayLayout(32, 2)})
    assert dut.o.payload.shape() == dut.i.payload.shape()
    assert (dut.lanes, dut.mul_stages, dut.tag_shape) == (2, 2, None)
    tagged = Mix32(tag_shape=unsigned(3))
    assert tagged.o.payload.shape()["tag"].shape == unsigned(3)


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"lanes": 0}, ValueError, "lanes must be in 1..1024, got 0"),
    ({"lanes": 2.0}, TypeError, "lanes must be an integer"),
    ({"lanes": True}, TypeError, "lanes must be an integer"),
    ({"mul_stages": 5}, ValueError, "mul_stages must be in 1..4, got 5"),
    ({"tag_shape": "x"}, TypeError, "tag_shape must be None or a shape-like"),
    ({"tag_shape": 0}, ValueError, "at least 1 bit wide"),
    ({"soft_multipliers": 1}, TypeError, "soft_multipliers must be a bool, not 1"),
])
def test_mix32_bad_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        Mix32(**kwargs)


# -- ReinforceDraws ------------------------------------------------------------------------------

def random_draw_requests(rng, lanes, count):
    top = (1 << 32) - 1
    corners = [0, 1, 2, 3, lanes - 1, lanes + 1, top, top - 1, top - lanes, 1 << 31]
    starts = [int(s) for s in rng.integers(0, 1 << 32, size=count, dtype=np.uint64)]
    starts[: len(corners)] = corners
    reqs = []
    for n, start in enumerate(starts):
        seed, layer, t = int(rng.integers(0, 1 << 32)), int(rng.integers(0, 4)), int(rng.integers(0, 1 << 16))
        reqs.append(((seed, layer, t), {"key": reinforce_key(seed, layer, t), "start": start,
                                        "tag": n % 64}))
    return reqs


@pytest.mark.parametrize("lanes, mul_stages", [(2, 2), (8, 1), (10, 2)])
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.4)])
def test_draws_random(rng, lanes, mul_stages, idle, stall):
    dut = ReinforceDraws(lanes=lanes, mul_stages=mul_stages, tag_shape=6)
    reqs = random_draw_requests(rng, lanes, 150)
    outputs = run_stream(dut, [r for _, r in reqs], rng, idle=idle, stall=stall)
    for ((seed, layer, t), req), out in zip(reqs, outputs):
        got = [out.draw[n] for n in range(lanes)]
        assert got == [reinforce_draw(seed, layer, t, req["start"] + n) for n in range(lanes)], req
        assert out.tag == req["tag"]


@pytest.mark.parametrize("j0", [0, 1, 6, 7])
def test_draws_sweep(rng, j0):
    """A sequential sweep (any start) reproduces the golden ``reinforce_draws`` array."""
    lanes, words = 8, 40
    seed, layer, t = int(rng.integers(0, 1 << 32)), 2, int(rng.integers(0, 5000))
    key = reinforce_key(seed, layer, t)
    dut = ReinforceDraws(lanes=lanes)
    outputs = run_stream(dut, [{"key": key, "start": j0 + w * lanes} for w in range(words)], rng,
                         stall=0.2)
    got = np.array([out.draw[n] for out in outputs for n in range(lanes)], dtype=np.uint32)
    want = reinforce_draws(seed, layer, t, j0 + words * lanes)[j0:]
    np.testing.assert_array_equal(got, want)


def test_draws_latency():
    for mul_stages in (1, 2, 3):
        dut = ReinforceDraws(lanes=4, mul_stages=mul_stages)
        assert dut.latency == 5 + 3 * mul_stages
        assert measure_latency(dut, {"key": 1, "start": 3}) == dut.latency


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"lanes": 7}, ValueError, "lanes must be even"),
    ({"lanes": 0}, ValueError, "lanes must be in 2..1024, got 0"),
    ({"lanes": 2048}, ValueError, "lanes must be in 2..1024, got 2048"),
    ({"lanes": "8"}, TypeError, "lanes must be an integer"),
    ({"lanes": 8, "mul_stages": 0}, ValueError, "mul_stages must be in 1..4, got 0"),
    ({"lanes": 8, "tag_shape": []}, TypeError, "tag_shape must be None or a shape-like"),
])
def test_draws_bad_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        ReinforceDraws(**kwargs)


def test_draws_layout():
    dut = ReinforceDraws(lanes=4, tag_shape=3)
    assert dut.i.payload.shape() == data.StructLayout({"key": 32, "start": 32, "tag": 3})
    assert dut.o.payload.shape() == data.StructLayout({"draw": data.ArrayLayout(16, 4), "tag": 3})
    assert (dut.lanes, dut.mul_stages, dut.tag_shape) == (4, 2, 3)


# -- cocotb --------------------------------------------------------------------------------------

COCOTB_PARAMS = [
    pytest.param({"lanes": 8, "tag_bits": 5, "mul_stages": 2}, id="l8t5"),
    pytest.param({"lanes": 64, "tag_bits": 0, "mul_stages": 1}, id="l64", marks=pytest.mark.slow),
    pytest.param({"lanes": 2, "tag_bits": 1, "mul_stages": 3}, id="l2t1", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("params", COCOTB_PARAMS)
def test_draws_cocotb(simulator, params, build_root):
    tag = params["tag_bits"] or None
    dut = ReinforceDraws(lanes=params["lanes"], mul_stages=params["mul_stages"], tag_shape=tag)
    build_dir = f"{build_root}/prng_{simulator}_" + "_".join(f"{k}{v}" for k, v in sorted(params.items()))
    run_cocotb(dut, name="reinforce_draws", test_module="xnorlearn.sim.tb_prng",
               simulator=simulator, build_dir=build_dir,
               params={"tag_bits": params["tag_bits"], "cases": 1000})
    with open(f"{build_dir}/cases.json") as f:
        assert json.load(f)["cases"] >= 2000
