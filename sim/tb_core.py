"""Host side and cocotb bench of :class:`xnorlearn.hw.core.TrainerCore`.

The packet builders and parsers here are the bench's own (independent of
``sw/protocol.py``), written from ``docs/architecture.md``. A scenario
(:func:`random_scenario`) draws a small random network, loads a
:class:`~xnorlearn.sw.golden.fast.FastBMLP` into the core over the stream
(``WRITE_H``, ``WRITE_P``), sets the configuration ports from the golden
configuration, trains both on the same minibatches and, after every minibatch,
reads ``H`` and ``P`` back (``READ_H``, ``READ_P``) and compares them whole with
the golden model, together with the batch's error count (status word) and the
``errors``, ``patterns`` and ``step`` counters.

Parameters (``tb_params()``): ``networks``, ``batches`` (per network) and the
build parameters the DUT was made with (``build``), which the scenarios must fit.

``test_benchmark`` (run by ``benchmarks/core_cycles.py``, skipped unless the parameters
have a ``benchmark`` entry) trains given minibatches of a given network with a
:class:`LeanHost`, which lets the simulator run freely while the core computes, checks
``H`` and ``P`` whole after each minibatch and writes the core's cycle counters to
``bench.json``.
"""

import json
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotb.utils import get_sim_time

from xnorlearn.hw.core import AXIS_LAYOUT
from xnorlearn.sim.random_networks import divisors, random_hidden
from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import StreamSink, StreamSource, case_rng, record_cases
from xnorlearn.sw.golden import prng
from xnorlearn.sw.golden.config import NetworkConfig
from xnorlearn.sw.golden.fast import FastBMLP

__all__ = ["TRAIN", "INFER", "WRITE_H", "READ_H", "WRITE_P", "READ_P", "WRITE_T", "READ_T",
           "header", "write_h_packet", "parse_h", "write_p_packet", "parse_p", "train_packet",
           "config_values", "random_model", "random_batch", "Scenario", "TB", "LeanHost",
           "configure", "run_benchmark"]

CLOCK_NS = 10
TRAIN, INFER = 0x01, 0x02
WRITE_H, READ_H, WRITE_P, READ_P, WRITE_T, READ_T = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15


def header(op, layer=0, count=0):
    return (op << 24) | (layer << 16) | count


def write_h_packet(H, layer):
    """``WRITE_H`` packet of one layer: per neuron, ``ceil(K_in / 4)`` words of four bytes."""
    H = np.asarray(H, dtype=np.int64)
    k_out, k_in = H.shape
    padded = np.zeros((k_out, -(-k_in // 4) * 4), dtype=np.int64)
    padded[:, :k_in] = H
    b = (padded & 0xFF).reshape(k_out, -1, 4)
    words = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16) | (b[..., 3] << 24)
    return [header(WRITE_H, layer)] + [int(w) for w in words.reshape(-1)]


def parse_h(words, k_out, k_in):
    """Inverse of :func:`write_h_packet` (payload only); returns a ``(k_out, k_in)`` array."""
    w = np.asarray(words, dtype=np.int64).reshape(k_out, -1)
    b = np.stack([(w >> (8 * i)) & 0xFF for i in range(4)], axis=-1).reshape(k_out, -1)
    b = np.where(b >= 128, b - 256, b)
    return b[:, :k_in]


def write_p_packet(P, layer):
    P = np.asarray(P)
    return [header(WRITE_P, layer)] + [sum(1 << c for c in range(P.shape[1]) if row[c] > 0)
                                       for row in P]


def parse_p(words, classes):
    return np.array([[1 if (w >> c) & 1 else -1 for c in range(classes)] for w in words],
                    dtype=np.int8)


def train_packet(a0, y, op=TRAIN):
    """``TRAIN`` / ``INFER`` packet: per pattern, the label then ``ceil(K_0 / 32)`` words."""
    a0 = np.asarray(a0)
    bs, k0 = a0.shape
    words = [header(op, 0, bs)]
    nw = -(-k0 // 32)
    for mu in range(bs):
        words.append(int(y[mu]))
        bits = np.zeros(nw * 32, dtype=np.int64)
        bits[:k0] = a0[mu] > 0
        for v in range(nw):
            words.append(int(sum(int(bit) << i for i, bit in enumerate(bits[32 * v:32 * v + 32]))))
    return words


def config_values(model):
    """Values of the core's configuration ports for ``model`` (lists indexed by layer)."""
    cfg = model.config
    return {
        "layers": cfg.layers,
        "width": list(cfg.sizes),
        "gamma": list(cfg.gamma),
        "robust": list(cfg.robustness),
        "thresh": [int(t) for t in model.thresholds],
        "key": [prng.stream_key(cfg.seed, prng.STREAM_REINFORCE, l) for l in range(cfg.layers)],
        "step": int(model.step),
    }


def random_model(rng, build, sizes=None):
    """A random :class:`FastBMLP` that fits ``build`` (dict of TrainerCore parameters):
    random H (odd, saturation corners included), thresholds and step; random sizes
    unless ``sizes`` (inputs, then each layer's width) are given."""
    lanes, fixed = build["lanes"], sizes
    for _ in range(1000):
        if fixed is None:
            layers = int(rng.integers(1, build["max_layers"] + 1))
            k0 = int(rng.integers(8, build["max_fan_in"] + 1))
            widths = [int(rng.integers(8, build["max_width"] + 1)) for _ in range(layers)]
        else:
            k0, *widths = fixed
            layers = len(widths)
        sizes = (k0, *widths)
        words = sum(k * -(-kin // lanes) for kin, k in zip(sizes, sizes[1:]))
        gammas = []
        for k in widths:
            ok = [d for d in divisors(k) if k // d <= build["max_groups"]]
            gammas.append(int(rng.choice(ok)))
        if words <= build["weight_words"]:
            break
    classes = build["classes"]  # a build parameter: the classifier has exactly this many
    cfg = NetworkConfig(sizes=sizes, classes=classes, gamma=tuple(gammas),
                        r=float(rng.choice([0.0, 0.25, 0.5, 1.0])),
                        seed=int(rng.integers(0, 1 << 32)))
    model = FastBMLP(cfg)
    h_max = cfg.h_max
    for l in range(layers):
        model.H[l] = random_hidden(rng, model.H[l].shape, h_max)
    model._sync()
    model.thresholds = [int(rng.choice([0, prng.DRAW_ONE, int(rng.integers(0, 20000)),
                                        int(rng.integers(0, prng.DRAW_ONE + 1))]))
                        for _ in range(layers)]
    model.step = int(rng.integers(0, 1 << 20))
    return model


def random_batch(rng, model, max_batch):
    cfg = model.config
    bs = int(rng.integers(1, max_batch + 1))
    a0 = np.where(rng.random((bs, cfg.sizes[0])) < 0.5, 1, -1).astype(np.int8)
    y = rng.integers(0, cfg.classes, size=bs)
    return a0, y


class Scenario:
    """One random network and its minibatches, with the expected responses.

    ``steps()`` yields ``(packet words, expected response or None, check)`` where
    ``check(response_words)`` raises on a mismatch (whole matrices compared).
    """

    def __init__(self, rng, build, batches, model=None, sizes=None):
        self.rng = rng
        self.build = build
        self.model = random_model(rng, build, sizes) if model is None else model
        self.batches = [random_batch(rng, self.model, build["max_batch"]) for _ in range(batches)]
        self.config = config_values(self.model)

    def load_packets(self):
        cfg = self.model.config
        packets = []
        for l in range(cfg.layers):
            packets.append(write_h_packet(self.model.H[l], l))
            packets.append(write_p_packet(self.model.P[l], l))
        return packets

    def readback_packets(self):
        """``(packet, check)`` pairs that read every layer's H and P and compare them."""
        cfg = self.model.config
        out = []
        for l in range(cfg.layers):
            k_out, k_in = cfg.sizes[l + 1], cfg.sizes[l]
            want_h = np.array(self.model.H[l], dtype=np.int64)
            want_p = np.array(self.model.P[l], dtype=np.int8)

            def check_h(words, l=l, k_out=k_out, k_in=k_in, want=want_h):
                assert len(words) == k_out * -(-k_in // 4), f"READ_H {l}: {len(words)} words"
                got = parse_h(words, k_out, k_in)
                if not np.array_equal(got, want):
                    bad = np.argwhere(got != want)
                    raise AssertionError(f"layer {l}: H differs at {len(bad)} places, first "
                                         f"{bad[:5].tolist()}: got {got[tuple(bad[0])]}, "
                                         f"expected {want[tuple(bad[0])]}")

            def check_p(words, l=l, want=want_p):
                got = parse_p(words, want.shape[1])
                assert np.array_equal(got, want), f"layer {l}: P differs"

            out.append(([header(READ_H, l)], check_h))
            out.append(([header(READ_P, l)], check_p))
        return out

    def train(self, n):
        """Packet of minibatch ``n``, and the check of its response (golden model trained)."""
        a0, y = self.batches[n]
        before = self.model.step
        errors = self.model.train_batch(a0, y)
        assert self.model.step == before + 1

        def check(words):
            assert words == [0x81000000 | errors], (f"status {[hex(w) for w in words]}, "
                                                    f"expected {0x81000000 | errors:#x}")
        return train_packet(a0, y), check, errors


# -- cocotb bench ------------------------------------------------------------------------------

def _set_array(dut, name, values, count):
    port = getattr(dut, name)
    width = len(port) // count
    packed = 0
    for i, v in enumerate(values):
        packed |= (int(v) & ((1 << width) - 1)) << (i * width)
    port.value = packed


async def configure(dut, cfg, max_layers):
    """Set the configuration ports from ``cfg`` (:func:`config_values`), load ``step`` and
    wait until the core's derived configuration has settled."""
    dut.layers.value = cfg["layers"]
    _set_array(dut, "width", cfg["width"], max_layers + 1)
    for name in ("gamma", "robust", "thresh", "key"):
        _set_array(dut, name, cfg[name], max_layers)
    dut.step_value.value = cfg["step"]
    dut.step_load.value = 1
    await RisingEdge(dut.clk)
    dut.step_load.value = 0
    await ClockCycles(dut.clk, max_layers + 6)   # TrainerCore.config_latency + 1



class TB:
    """Clock, reset, command source, response sink and configuration of a TrainerCore DUT."""

    def __init__(self, dut, rng, *, idle=0.0, stall=0.0):
        self.dut = dut
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        src_rng, sink_rng = rng.spawn(2)
        self.source = StreamSource(dut, "s_axis", dut.clk, AXIS_LAYOUT, rng=src_rng, idle=idle)
        self.sink = StreamSink(dut, "m_axis", dut.clk, AXIS_LAYOUT, self._on_word, rng=sink_rng,
                               backpressure=stall)
        self.responses = []
        self._current = []

    def _on_word(self, item):
        self._current.append(item["data"])
        if item["last"]:
            self.responses.append(self._current)
            self._current = []

    async def reset(self):
        dut = self.dut
        for name in ("step_load", "soft_reset", "clear_error"):
            getattr(dut, name).value = 0
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0

    async def configure(self, cfg, max_layers):
        await configure(self.dut, cfg, max_layers)

    def send(self, words):
        for n, w in enumerate(words):
            self.source.send({"data": w, "last": int(n == len(words) - 1)})

    async def request(self, words, timeout_cycles=200_000):
        """Send a packet and wait for its response packet (returned as a list of words)."""
        count = len(self.responses)
        self.send(words)
        for _ in range(timeout_cycles):
            await RisingEdge(self.dut.clk)
            if len(self.responses) > count:
                return self.responses[count]
        raise AssertionError("no response")

    async def idle(self, timeout_cycles=200_000):
        for _ in range(timeout_cycles):
            await RisingEdge(self.dut.clk)
            if self.source.empty and not self.dut.busy.value and not self.dut.s_axis__valid.value:
                await ClockCycles(self.dut.clk, 2)
                if not self.dut.busy.value:
                    return
        dut = self.dut
        raise AssertionError(f"core stays busy: phase {dut.phase.value} busy {dut.busy.value} "
                             f"s_axis valid {dut.s_axis__valid.value} ready "
                             f"{dut.s_axis__ready.value} queue empty {self.source.empty} "
                             f"error_code {dut.error_code.value}")


async def run_scenarios(dut, name, idle, stall):
    params = tb_params()
    build = params["build"]
    rng = case_rng(name)
    tb = TB(dut, rng, idle=idle, stall=stall)
    await tb.reset()
    checked = 0
    for net in range(int(params.get("networks", 2))):
        sc = Scenario(rng, build, int(params.get("batches", 3)))
        await tb.configure(sc.config, build["max_layers"])
        for packet in sc.load_packets():
            tb.send(packet)
        await tb.idle()
        assert not dut.error.value, f"error {int(dut.error_code.value)} after loading"
        patterns0, errors0 = int(dut.patterns.value), int(dut.errors.value)
        total_bs, total_err = 0, 0
        for n in range(len(sc.batches)):
            c0 = {k: int(getattr(dut, k).value) for k in ("cycles", "cycles_forward",
                                                          "cycles_update", "cycles_reinforce",
                                                          "cycles_io")}
            packet, check, errors = sc.train(n)
            check(await tb.request(packet))
            total_bs += len(sc.batches[n][1])
            total_err += errors
            dc = {k: int(getattr(dut, k).value) - v for k, v in c0.items()}
            cfg = sc.model.config
            groups = -(-len(sc.batches[n][1]) // build.get("fwd_patterns", 1))
            ideal = groups * sum(
                k * -(-kin // build["lanes"]) for kin, k in zip(cfg.sizes, cfg.sizes[1:]))
            dut._log.info("net %d %s bs %d batch %d: %s (groups*sum n_l*K_l = %d)", net, cfg.sizes,
                          len(sc.batches[n][1]), n, dc, ideal)
            assert sum(v for k, v in dc.items() if k != "cycles") == dc["cycles"], dc
            assert dc["cycles_forward"] >= ideal, dc
            for packet, check in sc.readback_packets():
                check(await tb.request(packet))
            assert int(dut.step.value) == sc.model.step & 0xFFFFFFFF
            assert int(dut.patterns.value) - patterns0 == total_bs
            assert int(dut.errors.value) - errors0 == total_err
            checked += 1
        assert not dut.error.value
    record_cases(dut, name, checked)


@cocotb.test(timeout_time=400, timeout_unit="ms")
async def test_train(dut):
    """Random networks, minibatches back to back, output always ready."""
    await run_scenarios(dut, "test_train", 0.0, 0.0)


@cocotb.test(timeout_time=800, timeout_unit="ms")
async def test_train_stalls(dut):
    """Random networks with idle cycles on s_axis and backpressure on m_axis."""
    await run_scenarios(dut, "test_train_stalls", 0.3, 0.4)


# -- cycle benchmark -----------------------------------------------------------------------------

class LeanHost:
    """A host for long runs: drives ``s_axis`` and ``m_axis.ready`` itself, one word per
    cycle, and sleeps on an edge of ``m_axis.valid`` while the core computes, so Python is
    not woken once per cycle during the forward pass and the updates.

    ``max_cycles`` bounds every wait (``AssertionError`` when exceeded).
    """

    def __init__(self, dut, max_cycles):
        self.dut = dut
        self.max_cycles = max_cycles
        self.clock_ns = CLOCK_NS
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        dut.s_axis__valid.value = 0
        dut.m_axis__ready.value = 1

    async def send(self, words):
        dut = self.dut
        for n, w in enumerate(words):
            dut.s_axis__payload.value = int(w) | (int(n == len(words) - 1) << 32)
            dut.s_axis__valid.value = 1
            for _ in range(self.max_cycles):
                await RisingEdge(dut.clk)
                if dut.s_axis__ready.value == 1:
                    break
            else:
                raise AssertionError(f"s_axis not ready for {self.max_cycles} cycles "
                                     f"(word {n} of {len(words)})")
        dut.s_axis__valid.value = 0

    async def receive(self):
        """One response packet (list of words)."""
        dut = self.dut
        words = []
        if dut.m_axis__valid.value != 1:
            limit = Timer(self.max_cycles * self.clock_ns, unit="ns")
            fired = await First(RisingEdge(dut.m_axis__valid), limit)
            if fired is limit:
                raise AssertionError(f"no response within {self.max_cycles} cycles "
                                     f"(phase {int(dut.phase.value)})")
        for _ in range(self.max_cycles):
            await RisingEdge(dut.clk)
            if dut.m_axis__valid.value == 1:  # ready is held high: a transfer at this edge
                payload = int(dut.m_axis__payload.value)
                words.append(payload & 0xFFFFFFFF)
                if payload >> 32:
                    return words
        raise AssertionError(f"response incomplete after {self.max_cycles} cycles "
                             f"({len(words)} words)")

    async def request(self, words):
        await self.send(words)
        return await self.receive()

    async def idle(self):
        for _ in range(self.max_cycles):
            await RisingEdge(self.dut.clk)
            if not self.dut.busy.value:
                return
        raise AssertionError(f"core busy for {self.max_cycles} cycles")

    async def reinforced(self):
        """Until the last TRAIN's background reinforcement sweeps are done."""
        for _ in range(self.max_cycles):
            if not self.dut.reinforcing.value:
                return
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"core reinforcing for {self.max_cycles} cycles")


COUNTERS = ("cycles", "cycles_forward", "cycles_update", "cycles_reinforce", "cycles_io")


async def run_benchmark(dut):
    """Train the benchmark's minibatches (``tb_params()["benchmark"]``) on the DUT and the
    golden model; check ``H`` and ``P`` whole after each; write the counters to
    ``bench.json`` in the cwd (the build directory)."""
    params = tb_params()
    build, bench = params["build"], params["benchmark"]
    data = np.load(bench["data"])
    a0_all, y_all = data["a0"], data["y"]
    cfg = NetworkConfig(sizes=tuple(bench["sizes"]), classes=build["classes"],
                        gamma=tuple(bench["gamma"]), r=bench["r"], p_r=bench["p_r"],
                        seed=bench["seed"])
    model = FastBMLP(cfg)
    bs = bench["batch_size"]
    per_batch = bs * sum(k * -(-kin // build["lanes"]) for kin, k in zip(cfg.sizes, cfg.sizes[1:]))
    host = LeanHost(dut, max_cycles=4 * per_batch + 100_000)
    for name in ("step_load", "soft_reset", "clear_error"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await configure(dut, config_values(model), build["max_layers"])
    sc = Scenario(None, build, 0, model=model)
    for packet in sc.load_packets():
        await host.send(packet)
    await host.idle()
    assert not dut.error.value, f"error {int(dut.error_code.value)} after loading"
    results = []
    for n in range(bench["batches"]):
        a0, y = a0_all[n * bs:(n + 1) * bs], y_all[n * bs:(n + 1) * bs]
        before = {k: int(getattr(dut, k).value) for k in COUNTERS}
        packet = train_packet(a0, y)
        errors = model.train_batch(a0, y)
        await host.send(packet)
        # Simulation speed while the core computes on its own (the bench sleeps meanwhile).
        t0, ns0 = time.perf_counter(), get_sim_time(unit="ns")
        response = await host.receive()
        wall = time.perf_counter() - t0
        free_cycles = round((get_sim_time(unit="ns") - ns0) / CLOCK_NS)
        assert response == [0x81000000 | errors], (response, errors)
        await host.reinforced()
        delta = {k: int(getattr(dut, k).value) - v for k, v in before.items()}
        for rd_packet, rd_check in sc.readback_packets():
            rd_check(await host.request(rd_packet))
        assert int(dut.step.value) == model.step
        results.append({"batch": n, "errors": errors, "free_cycles": free_cycles, "wall_s": wall,
                        **delta})
        dut._log.info("batch %d: %s, %d errors, %.0f cycles/s, weights match", n, delta,
                      errors, free_cycles / wall)
    Path("bench.json").write_text(json.dumps({"results": results}, indent=1))
    record_cases(dut, "test_benchmark", len(results))


@cocotb.test(timeout_time=60, timeout_unit="sec", skip="benchmark" not in tb_params())
async def test_benchmark(dut):
    """Cycle counts of training minibatches (``benchmarks/core_cycles.py``); skipped unless the
    parameters carry a ``benchmark`` entry."""
    await run_benchmark(dut)
