# amaranth: UnusedElaboratable=no
"""UpdatePath with the core's weight store and real memories against the golden model:
layers of random shapes updated one after the other (a CP job over a random pick list
with neurons picked again, then a sweep job at thresholds from none to all), every
hidden weight of the layer, padding lanes included, read back and compared with
``cp_step`` and ``reinforce_step`` applied in the golden order."""

import pytest
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from xnorlearn.hw.update_path import UpdatePath
from xnorlearn.hw.weights import WeightStore
from xnorlearn.sw.golden.literal import cp_step, reinforce_step
from xnorlearn.sw.golden.prng import (DRAW_ONE, STREAM_REINFORCE, reinforce_draws,
                                      stream_key)

LANES, H_BITS, CLASSES, MAX_BATCH, MAX_WIDTH, A_WORDS, DEPTH = 32, 8, 10, 9, 8, 3, 64
H_MAX = (1 << (H_BITS - 1)) - 1
LIST_DEPTH, A_DEPTH = 2 * 32, 2 * 30


class Harness(wiring.Component):
    def __init__(self, *, draw_lanes):
        self.dut = UpdatePath(
            lanes=LANES, draw_lanes=draw_lanes, h_bits=H_BITS, max_batch=MAX_BATCH,
            max_width=MAX_WIDTH, classes=CLASSES, a_words=A_WORDS,
            width_bits=8, addr_bits=6, a_depth=A_DEPTH, list_depth=LIST_DEPTH,
            row_depth=2 * MAX_WIDTH, max_layers=2, h_read_latency=3)
        self.weights = WeightStore(lanes=LANES, h_bits=H_BITS, depth=DEPTH)
        self.picks = Memory(shape=self.dut.pick_rd.data.shape(), depth=LIST_DEPTH, init=[])
        self.rows = Memory(shape=CLASSES, depth=2 * MAX_WIDTH, init=[])
        self.labels = Memory(shape=4, depth=MAX_BATCH, init=[])
        # One word of a pattern's activations per row: word `w` of pattern `mu` at
        # `a_base + mu * A_WORDS + w`.
        self.a_mem = Memory(shape=LANES, depth=A_DEPTH, init=[])
        self.rd_addr = Signal(6)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        dut, weights = self.dut, self.weights
        m.submodules.dut, m.submodules.weights = dut, weights
        for name in ("picks", "rows", "labels", "a_mem"):
            m.submodules[name] = getattr(self, name)
        wiring.connect(m, dut.pick_rd, self.picks.read_port())
        wiring.connect(m, dut.row_rd, self.rows.read_port())
        wiring.connect(m, dut.label_rd, self.labels.read_port())
        a_rd = self.a_mem.read_port()
        m.d.comb += [
            a_rd.addr.eq(dut.a_addr), dut.a_data.eq(a_rd.data),
            weights.h_rd_addr.eq(Mux(dut.running, dut.h_addr, self.rd_addr)),
            dut.h_data.eq(weights.h_rd_data),
            weights.update.valid.eq(dut.update.valid),
            weights.update.payload.eq(dut.update.payload),
        ]
        return m


def pack(values, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (bits * n) for n, v in enumerate(values))


def unpack(word, bits, count):
    out = []
    for n in range(count):
        v = (word >> (bits * n)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


def random_layer(rng, index, t):
    kin = int(rng.choice([1, LANES, LANES + 1, int(rng.integers(2, A_WORDS * LANES + 1))]))
    kout = int(rng.integers(1, MAX_WIDTH + 1))
    words = -(-kin // LANES)
    bs = int(rng.integers(1, MAX_BATCH + 1))
    picks = []
    for _ in range(int(rng.choice([0, int(rng.integers(1, 25))]))):
        k = picks[-1][1] if picks and rng.random() < 0.25 else int(rng.integers(0, kout))
        picks.append((int(rng.integers(0, bs)), k))
    seed = int(rng.integers(0, 2 ** 32))
    return {
        "index": index, "t": t, "kin": kin, "kout": kout, "words": words, "bs": bs,
        "base": int(rng.integers(0, DEPTH - kout * words + 1)), "picks": picks,
        # odd hidden weights, as training keeps them, and padding lanes of any value
        "H": rng.integers(-(H_MAX + 1) // 2, (H_MAX + 1) // 2, size=(kout, words * LANES)) * 2 + 1,
        "A": rng.integers(0, 2, size=(bs, words * LANES)),
        "rows": rng.integers(0, 1 << CLASSES, size=kout),
        "labels": rng.integers(0, CLASSES, size=bs),
        "thresh": int(rng.choice([0, DRAW_ONE, int(rng.integers(1, 30000))])),
        "seed": seed, "key": stream_key(seed, STREAM_REINFORCE, index),
    }


def golden(layer):
    """The layer's hidden weights after the golden CP step over the pick list, then the
    reinforcement of every weight; padding lanes unchanged."""
    kin = layer["kin"]
    H = [list(row) for row in layer["H"].tolist()]
    for mu, k in layer["picks"]:
        a = [1 if b else -1 for b in layer["A"][mu][:kin]]
        rho = 1 if (int(layer["rows"][k]) >> int(layer["labels"][mu])) & 1 else -1
        H[k][:kin] = cp_step(H[k][:kin], a, rho, H_MAX)
    draws = reinforce_draws(layer["seed"], layer["index"], layer["t"], kin * layer["kout"])
    for k in range(layer["kout"]):
        for i in range(kin):
            H[k][i] = reinforce_step(H[k][i], int(draws[k * kin + i]), layer["thresh"], H_MAX)
    return H


@pytest.mark.parametrize("draw_lanes", [16, 2, 32])
def test_against_golden(rng, draw_lanes):
    top = Harness(draw_lanes=draw_lanes)
    dut = top.dut
    layers = [random_layer(rng, index, t) for t, index in ((5, 0), (5, 1), (6, 0), (9, 1))]
    results = []

    async def bench(ctx):
        for layer in layers:
            words, kout, index = layer["words"], layer["kout"], layer["index"]
            for k in range(kout):
                for w in range(words):
                    h = layer["H"][k][w * LANES:(w + 1) * LANES]
                    ctx.set(top.weights.host.valid, 1)
                    ctx.set(top.weights.host.payload, {
                        "addr": layer["base"] + k * words + w, "h": pack(h, H_BITS),
                        "w": pack(h > 0, 1)})
                    await ctx.tick()
            ctx.set(top.weights.host.valid, 0)
            list_base, row_base = index * 32, index * MAX_WIDTH
            a_base = index * 30
            for i, (mu, k) in enumerate(layer["picks"]):
                ctx.set(top.picks.data[list_base + i], {"mu": mu, "k": k})
            for k, row in enumerate(layer["rows"]):
                ctx.set(top.rows.data[row_base + k], int(row))
            for mu, y in enumerate(layer["labels"]):
                ctx.set(top.labels.data[mu], int(y))
            for mu in range(layer["bs"]):
                for w in range(words):
                    ctx.set(top.a_mem.data[a_base + mu * A_WORDS + w],
                            pack(layer["A"][mu][w * LANES:(w + 1) * LANES], 1))
            ctx.set(dut.layer, {
                "words": words, "words_m1": words - 1, "last": layer["kin"] - (words - 1) * LANES,
                "base": layer["base"], "kin": layer["kin"], "kout_m1": kout - 1,
                "chunks_m1": -(-(layer["kin"] - (words - 1) * LANES) // draw_lanes) - 1,
                "thresh": layer["thresh"], "key": layer["key"]})
            ctx.set(dut.index, index)
            ctx.set(dut.step, layer["t"])
            ctx.set(dut.picks, len(layer["picks"]))
            ctx.set(dut.list_base, list_base)
            ctx.set(dut.row_base, row_base)
            ctx.set(dut.a_base, a_base)
            # The CP job, then the sweep job, as the core runs them.
            limit = 200 + len(layer["picks"]) * (words + 8) + kout * words * (LANES // draw_lanes)
            for job in (dut.go, dut.sweep):
                ctx.set(job, 1)
                for cycle in range(limit):
                    if ctx.get(dut.done):
                        break
                    assert ctx.get(dut.reinforcing) == (job is dut.sweep) or not ctx.get(
                        dut.running)
                    await ctx.tick()
                else:
                    raise AssertionError(f"layer {index} not done after {limit} cycles")
                ctx.set(job, 0)
                await ctx.tick()
                assert not ctx.get(dut.running)
            got = []
            for k in range(kout):
                row = []
                for w in range(words):
                    ctx.set(top.rd_addr, layer["base"] + k * words + w)
                    await ctx.tick().repeat(3)
                    row += unpack(ctx.get(top.weights.h_rd_data), H_BITS, LANES)
                got.append(row)
            results.append(got)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for layer, got in zip(layers, results):
        assert got == golden(layer), (layer["index"], layer["t"])


def test_waits_for_its_key():
    """``sweep`` with a new ``step``: nothing starts before the sweep key's input is the
    one of this ``(step, index)``."""
    top = Harness(draw_lanes=16)
    dut = top.dut
    seen = []

    async def bench(ctx):
        ctx.set(dut.layer, {"words": 1, "words_m1": 0, "last": 5, "base": 0, "kin": 5,
                            "kout_m1": 0, "chunks_m1": 0, "thresh": 0, "key": 7})
        ctx.set(dut.step, 1)
        await ctx.tick().repeat(20)
        ctx.set(dut.step, 2)
        ctx.set(dut.sweep, 1)
        for _ in range(40):
            seen.append(ctx.get(dut.running))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not seen[0] and not seen[2] and any(seen)
