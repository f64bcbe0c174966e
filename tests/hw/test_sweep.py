# amaranth: UnusedElaboratable=no
"""ReinforceSweep against the golden model: several sweeps of random layers back to back,
with and without gaps in ``enable``, the key late or early, thresholds 0, 65536 and
between; every weight's decision (its golden draw below the threshold), every address
and count compared."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from xnorlearn.hw.sweep import ReinforceSweep
from xnorlearn.sw.golden.prng import DRAW_ONE, reinforce_draws, reinforce_key

WIDTH_BITS = 10


def geometry(kin, kout, lanes, draw_lanes):
    words = -(-kin // lanes)
    last = kin - (words - 1) * lanes
    return {"kin": kin, "kout_m1": kout - 1, "words_m1": words - 1, "last": last,
            "chunks_m1": -(-last // draw_lanes) - 1}


def run_sweeps(dut, sweeps, *, rng, idle):
    """Run ``sweeps`` (dicts of base, kin, kout, key, key_delay) one after the other.

    Returns, per sweep, the words seen on ``o`` as ``(addr, count, hits)`` and the
    cycles it took. Checks that ``h_addr`` led each word by one cycle.
    """
    P, D = dut.lanes, dut.draw_lanes
    results = []

    async def bench(ctx):
        for sw in sweeps:
            ctx.set(dut.clear, 1)
            ctx.set(dut.enable, 0)
            ctx.set(dut.key.valid, 0)
            ctx.set(dut.base, sw["base"])
            ctx.set(dut.layer, geometry(sw["kin"], sw["kout"], P, D))
            ctx.set(dut.threshold, sw["threshold"])
            for _ in range(int(rng.integers(1, 3))):
                await ctx.tick()
            ctx.set(dut.clear, 0)
            words, prev_h, t = [], None, 0
            words_total = sw["kout"] * -(-sw["kin"] // P)
            limit = 100 + sw["key_delay"] + 4 * words_total * (P // D) / (1 - idle)
            while True:
                assert t < limit, f"sweep not done after {t} cycles ({len(words)} words)"
                ctx.set(dut.key.valid, t == sw["key_delay"])
                ctx.set(dut.key.payload, sw["key"])
                ctx.set(dut.enable, bool(rng.random() >= idle))
                if ctx.get(dut.o.valid):
                    addr = ctx.get(dut.o.payload.addr)
                    assert prev_h == addr, f"h_addr {prev_h} did not lead word {addr}"
                    raw = ctx.get(dut.o.payload.hit)
                    hits = [(raw >> j) & 1 for j in range(P)]
                    words.append((addr, ctx.get(dut.o.payload.count), hits))
                if ctx.get(dut.done):
                    assert t > sw["key_delay"], "done before the key came"
                    break
                prev_h = ctx.get(dut.h_addr)
                await ctx.tick()
                t += 1
            results.append((words, t))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def expected_words(sw, lanes):
    """The golden sweep as the words it is made of: ``(addr, count, hits)``."""
    kin, kout = sw["kin"], sw["kout"]
    words = -(-kin // lanes)
    flat = (reinforce_draws(sw["seed"], sw["layer"], sw["t"], kin * kout)
            < sw["threshold"]).astype(int)
    out = []
    for k in range(kout):
        for w in range(words):
            count = min(lanes, kin - w * lanes)
            first = k * kin + w * lanes
            out.append((sw["base"] + k * words + w, count, flat[first:first + count].tolist()))
    return out


def random_sweeps(rng, lanes, draw_lanes, n, max_kin):
    sweeps = []
    for _ in range(n):
        kin = int(rng.choice([1, draw_lanes, lanes, lanes + 1, 2 * lanes - 1,
                              int(rng.integers(1, max_kin + 1))]))
        kin = min(kin, max_kin)
        seed, layer, t = (int(rng.integers(0, 2 ** 32)), int(rng.integers(0, 8)),
                          int(rng.integers(0, 2 ** 20)))
        sweeps.append({"base": int(rng.integers(0, 200)), "kin": kin,
                       "kout": int(rng.integers(1, 6)), "seed": seed, "layer": layer, "t": t,
                       "key": reinforce_key(seed, layer, t),
                       "threshold": int(rng.choice([0, DRAW_ONE, int(rng.integers(0, DRAW_ONE)),
                                                    DRAW_ONE // 2, DRAW_ONE // 2])),
                       "key_delay": int(rng.choice([0, 1, int(rng.integers(2, 40))]))})
    return sweeps


@pytest.mark.parametrize("lanes, draw_lanes", [(32, 2), (32, 32), (64, 16), (64, 8), (96, 32)])
@pytest.mark.parametrize("idle", [0.0, 0.4])
def test_against_golden(rng, lanes, draw_lanes, idle):
    max_kin = 3 * lanes + 5
    dut = ReinforceSweep(lanes=lanes, draw_lanes=draw_lanes, width_bits=WIDTH_BITS,
                         max_words=-(-max_kin // lanes), addr_bits=9)
    sweeps = random_sweeps(rng, lanes, draw_lanes, 6, max_kin)
    results = run_sweeps(dut, sweeps, rng=rng, idle=idle)
    for sw, (words, cycles) in zip(sweeps, results):
        want = expected_words(sw, lanes)
        assert [(a, c) for a, c, _ in words] == [(a, c) for a, c, _ in want], sw
        got_hits = np.concatenate([d[:c] for _, c, d in words])
        want_hits = np.concatenate([d for _, _, d in want])
        np.testing.assert_array_equal(got_hits, want_hits)
        if idle == 0.0:
            # One request per cycle once the key is in: requests plus the pipeline.
            requests = sum(-(-c // draw_lanes) for _, c, _ in want)
            assert cycles <= sw["key_delay"] + requests + dut.latency + 4


def test_parameters():
    dut = ReinforceSweep(lanes=64, draw_lanes=16, width_bits=10, max_words=13, addr_bits=12)
    assert (dut.lanes, dut.draw_lanes, dut.width_bits, dut.max_words, dut.addr_bits,
            dut.mul_stages) == (64, 16, 10, 13, 12, 3)
    assert dut.latency > 0
    assert len(dut.o.payload.hit) == 64 and len(dut.threshold) == 17


@pytest.mark.parametrize("kwargs, error, text", [
    ({"lanes": 48}, ValueError, "multiple of 32"),
    ({"draw_lanes": 12}, ValueError, "dividing lanes"),
    ({"draw_lanes": 128}, ValueError, "draw_lanes"),
    ({"width_bits": 0}, ValueError, "width_bits"),
    ({"addr_bits": "8"}, TypeError, "addr_bits"),
])
def test_bad_parameters(kwargs, error, text):
    args = {"lanes": 64, "draw_lanes": 16, "width_bits": 10, "max_words": 13,
            "addr_bits": 12, **kwargs}
    with pytest.raises(error, match=text):
        ReinforceSweep(**args)
