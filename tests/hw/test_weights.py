# amaranth: UnusedElaboratable=no
"""WeightStore against a cycle model: random update and host writes (both at once: the
update word wins), H read every cycle, W read under a random enable; every read word
compared with the memory contents the latencies say it sees."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from xnorlearn.hw.weights import WeightStore


@pytest.mark.parametrize("lanes, h_bits, depth, seed", [
    (8, 8, 40, 1), (32, 8, 1500, 2), (64, 4, 300, 3), (16, 16, 1, 4)])
def test_against_model(lanes, h_bits, depth, seed):
    dut = WeightStore(lanes=lanes, h_bits=h_bits, depth=depth)
    rng = np.random.default_rng(seed)
    cycles = 1500
    hot = rng.integers(0, depth, size=min(depth, 6))      # a few addresses, often reused

    def addr():
        return int(rng.choice(hot)) if rng.random() < 0.6 else int(rng.integers(0, depth))

    def bits(n):
        return int.from_bytes(rng.bytes(-(-n // 8)), "little") & ((1 << n) - 1)

    def word():
        return {"addr": addr(), "h": bits(lanes * h_bits), "w": bits(lanes)}

    # Per cycle: what is presented.
    plan = []
    for _ in range(cycles):
        plan.append({"upd": word() if rng.random() < 0.3 else None,
                     "host": word() if rng.random() < 0.3 else None,
                     "h_rd": addr(), "w_rd": addr(), "w_en": rng.random() < 0.7})
    # The memory before each clock edge: a word presented in cycle t is written at the
    # edge that ends cycle t + write_latency.
    h, w = [0] * depth, [0] * depth
    before = []
    for t in range(cycles):
        before.append((list(h), list(w)))
        if t >= dut.write_latency:
            p = plan[t - dut.write_latency]
            src = p["upd"] or p["host"]
            if src is not None:
                h[src["addr"]], w[src["addr"]] = src["h"], src["w"]
    counts = {"h": 0, "w": 0, "both": sum(p["upd"] is not None and p["host"] is not None
                                          for p in plan)}

    async def bench(ctx):
        w_edges = []                 # cycles whose edge moved the W read pipeline
        for t, p in enumerate(plan):
            for port in ("upd", "host"):
                stream = dut.update if port == "upd" else dut.host
                ctx.set(stream.valid, p[port] is not None)
                if p[port] is not None:
                    ctx.set(stream.payload, p[port])
            ctx.set(dut.h_rd_addr, p["h_rd"])
            ctx.set(dut.w_rd_addr, p["w_rd"])
            ctx.set(dut.w_rd_en, p["w_en"])
            if t >= dut.h_read_latency:
                r = t - dut.h_read_latency
                assert ctx.get(dut.h_rd_data) == before[r][0][plan[r]["h_rd"]], f"H at {t}"
                counts["h"] += 1
            if len(w_edges) >= dut.w_read_latency:
                r = w_edges[-dut.w_read_latency]
                assert ctx.get(dut.w_rd_data) == before[r][1][plan[r]["w_rd"]], f"W at {t}"
                counts["w"] += 1
            if p["w_en"]:
                w_edges.append(t)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert counts["h"] > cycles - 10 and counts["w"] > cycles // 2 and counts["both"] > 50


@pytest.mark.parametrize("kwargs, error, match", [
    ({"lanes": 4}, ValueError, r"lanes must be in 8\.\.1024, got 4"),
    ({"h_bits": 17}, ValueError, r"h_bits must be in 2\.\.16, got 17"),
    ({"depth": 0}, ValueError, r"depth must be in 1\.\.1048576, got 0"),
    ({"depth": 1.5}, TypeError, r"depth must be an integer"),
])
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        WeightStore(**{"lanes": 64, "h_bits": 8, "depth": 100, **kwargs})
