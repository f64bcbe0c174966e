"""cocotb bench of :class:`xnorlearn.hw.accelerator.Accelerator`, driven as a host drives it.

The :class:`TB` owns the clock, the reset, a cocotbext-axi ``AxiLiteMaster`` on
``s_axil`` and an ``AxiStreamSource`` / ``AxiStreamSink`` on ``s_axis`` / ``m_axis``
(with pause generators for idle cycles and backpressure). Its host methods use only the
register map (:mod:`xnorlearn.contract`: offsets, field encodings, error codes) and the
packet functions of :mod:`xnorlearn.sw.protocol`; nothing is hard-coded.

Every comparison with the golden :class:`~xnorlearn.sw.golden.fast.FastBMLP` goes through
:func:`xnorlearn.sw.verify.compare`: after loading and after every minibatch the bench
reads back ``H`` and ``P`` of every layer (``READ_H``/``READ_P``), sends an ``INFER``
and reads ``PATTERNS``, ``ERRORS`` and ``STEP`` over AXI4-Lite, and compares the whole
:class:`~xnorlearn.sw.verify.Observation` with the golden model's.

Tests (parameters from :func:`~xnorlearn.sim.runner.tb_params`: ``build``, the
:class:`~xnorlearn.contract.Build` as a dict; ``networks``, ``batches``; ``widths``,
``batch`` (ranges of the random networks); ``timeout_ms``):

``test_networks``, ``test_networks_stalls``
    Random networks (1..``max_layers`` layers, random widths, gamma, r, weights with
    saturation corners, thresholds, reinforcement thresholds and ``STEP``), several
    random minibatches each, streams back to back or with idle cycles and
    backpressure; ``STATUS`` and the counters are polled over AXI4-Lite while the
    accelerator trains.
``test_bad_inputs``
    Every kind of bad packet and configuration: the right ``ERROR_CODE``, the packet
    dropped up to ``tlast``, nothing changed, then ``clear_error`` and a good minibatch.
``test_soft_reset``
    ``CONTROL.soft_reset`` a random number of cycles into a minibatch, then a clean
    load and training that match the golden model.
``test_verify``
    The run of ``xnorlearn verify`` (only with a ``verify`` parameter entry).

Each test logs and writes to ``cases.json`` how many networks, minibatches and bad
inputs it checked.
"""

import json
import logging
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, SimTimeoutError, with_timeout
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from xnorlearn.contract import Build, ErrorCode, Phase, RegisterMap
from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import case_rng, record_cases
from xnorlearn.sim.tb_core import divisors, random_hidden
from xnorlearn.sw import protocol
from xnorlearn.sw.golden import prng
from xnorlearn.sw.golden.config import NetworkConfig
from xnorlearn.sw.golden.fast import FastBMLP
from xnorlearn.sw.verify import (CYCLE_COUNTERS, Observation, compare, expected_observation,
                                 packet_cycle_limit)

__all__ = ["TB", "Timeout", "VERILATOR_ARGS", "FAST_VERILATOR_ARGS", "random_model", "random_batch",
           "count_cases"]

CLOCK_NS = 10
#: Verilator options: only the top-level ports visible (all the bench uses), and C++ built
#: quickly (``-O0``, for short runs) or optimised (``-O2``, for long ones).
VERILATOR_ARGS = ["--no-public-flat-rw", "--public-depth", "1", "-CFLAGS", "-O0"]
FAST_VERILATOR_ARGS = ["--no-public-flat-rw", "--public-depth", "1", "-CFLAGS", "-O2"]
_COUNTERS = ("PATTERNS", "ERRORS", "STEP") + CYCLE_COUNTERS


class Timeout(AssertionError):
    """A wait on the simulator that ran past its cycle (or wall-clock) limit."""


def _pauses(rng, p):
    while True:
        yield bool(rng.random() < p)


class TB:
    """Clock, reset, AXI4-Lite master and AXI4-Stream source/sink of an Accelerator, and
    the host operations built on them.

    Parameters
    ----------
    dut : cocotb handle
    build : Build
        The build the DUT was made with (checked against its ``BUILD*`` registers by
        :meth:`check_identity`).
    rng : numpy.random.Generator, optional
        Draws the stalls; needed when ``idle`` or ``backpressure`` is not 0.
    idle : float
        Probability of an idle cycle on ``s_axis`` and the AW/W/AR channels.
    backpressure : float
        Probability of ``tready`` low on ``m_axis`` and of B/R not ready.
    deadline : float, optional
        ``time.time()`` after which any wait fails (a wall-clock limit on top of the
        cycle limits).
    """

    def __init__(self, dut, build, rng=None, *, idle=0.0, backpressure=0.0, deadline=None):
        self.dut = dut
        self.build = build
        self.regmap = RegisterMap(build)
        self.offsets = self.regmap.offsets()
        self.deadline = deadline
        dut.rst.value = 1               # not X before the first edge (Icarus)
        for port in ("s_axis__tdata", "m_axis__tdata"):
            if len(getattr(dut, port)) != 32:
                raise AssertionError(f"{port} is {len(getattr(dut, port))} bits, expected 32")
        if (1 << len(dut.s_axil__awaddr)) < self.regmap.span:
            raise AssertionError(f"s_axil address of {len(dut.s_axil__awaddr)} bits cannot "
                                 f"reach the register map ({self.regmap.span} bytes)")
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_"), dut.clk,
                                      dut.rst, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_"), dut.clk, dut.rst,
                                  byte_lanes=1)
        for bus in (self.axil.write_if, self.axil.read_if, self.source, self.sink):
            bus.log.setLevel(logging.WARNING)     # no line per frame
        if idle or backpressure:
            if rng is None:
                raise ValueError("stalls need an rng")
            self.source.set_pause_generator(_pauses(rng, idle))
            self.sink.set_pause_generator(_pauses(rng, backpressure))
            for ch in (self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                       self.axil.read_if.ar_channel):
                ch.set_pause_generator(_pauses(rng, idle))
            for ch in (self.axil.write_if.b_channel, self.axil.read_if.r_channel):
                ch.set_pause_generator(_pauses(rng, backpressure))
        self.reg_reads = 0

    # -- time --------------------------------------------------------------------------------

    def _check_deadline(self, what):
        if self.deadline is not None and time.time() > self.deadline:
            raise Timeout(f"wall-clock limit reached while waiting for {what}")

    async def _wait_for(self, condition, cycles, what, chunk=50_000):
        """Wait until ``condition()`` (checked when the sink gets a frame, and every
        ``chunk`` cycles against the wall-clock deadline) or fail after ``cycles``."""
        waited = 0
        while not condition():
            if waited >= cycles:
                raise Timeout(f"no {what} within {cycles} cycles")
            self._check_deadline(what)
            step = min(chunk, cycles - waited)
            await self.sink.wait(step * CLOCK_NS, "ns")
            waited += step

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    # -- registers ---------------------------------------------------------------------------

    async def _bus(self, coro, what, timeout_cycles):
        self._check_deadline(what)
        try:
            return await with_timeout(coro, timeout_cycles * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise Timeout(f"no AXI4-Lite response to {what} within {timeout_cycles} "
                          f"cycles") from None

    async def read_reg(self, name, timeout_cycles=2000):
        """The word of register ``name`` (AXI4-Lite read, checked OKAY)."""
        resp = await self._bus(self.axil.read(self.offsets[name], 4), f"the read of {name}",
                               timeout_cycles)
        assert resp.resp == 0, f"read of {name}: response {resp.resp}"
        self.reg_reads += 1
        return int.from_bytes(resp.data, "little")

    async def write_reg(self, name, value, timeout_cycles=2000):
        """Write ``value`` to register ``name`` (checked OKAY)."""
        resp = await self._bus(self.axil.write(self.offsets[name],
                                               int(value).to_bytes(4, "little")),
                               f"the write of {name}", timeout_cycles)
        assert resp.resp == 0, f"write of {name}: response {resp.resp}"

    async def field(self, register, name):
        return self.regmap.decode(register, await self.read_reg(register))[name]

    async def status(self):
        """``STATUS`` fields and ``ERROR_CODE`` as one dict."""
        st = self.regmap.decode("STATUS", await self.read_reg("STATUS"))
        st["error_code"] = await self.field("ERROR_CODE", "error_code")
        return st

    async def counters(self):
        return {name: await self.read_reg(name) for name in _COUNTERS}

    async def control(self, **fields):
        await self.write_reg("CONTROL", self.regmap.encode("CONTROL", **fields))

    async def check_identity(self):
        """``ID``, ``VERSION`` and ``BUILD0..3`` read from the DUT match the build."""
        words = {name: await self.read_reg(name)
                 for name in ("ID", "VERSION", "BUILD0", "BUILD1", "BUILD2", "BUILD3")}
        self.regmap.check_build(words)
        for name, word in words.items():
            assert word == self.regmap.const_value(name), f"{name} = {word:#x}"

    async def configure(self, model, thresholds=None):
        """Write the configuration registers of ``model`` (inactive layers 0) and ``STEP``."""
        cfg = model.config
        thresholds = model.thresholds if thresholds is None else thresholds
        await self.write_reg("LAYERS", self.regmap.encode("LAYERS", layers=cfg.layers))
        await self.write_reg("INPUTS", self.regmap.encode("INPUTS", inputs=cfg.sizes[0]))
        for l in range(self.build.max_layers):
            active = l < cfg.layers
            values = {
                "WIDTH": cfg.sizes[l + 1] if active else 0,
                "GAMMA": cfg.gamma[l] if active else 0,
                "ROBUST": cfg.robustness[l] if active else 0,
                "THRESH": int(thresholds[l]) if active else 0,
                "KEY": prng.stream_key(cfg.seed, prng.STREAM_REINFORCE, l) if active else 0,
            }
            for reg, value in values.items():
                name = f"{reg}_{l}"
                await self.write_reg(name, self.regmap.encode(
                    name, **{self.regmap[name].fields[0].name: value}))
        await self.write_reg("STEP", model.step & 0xFFFFFFFF)

    # -- packets -----------------------------------------------------------------------------

    async def send(self, words):
        await self.source.send(AxiStreamFrame([int(w) for w in words]))

    async def wait_sent(self, cycles):
        """Wait until the source has sent every queued word (up to ``tlast``)."""
        self._check_deadline("the end of a packet on s_axis")
        try:
            await with_timeout(self.source.wait(), cycles * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise Timeout(f"s_axis did not take the whole packet within {cycles} cycles "
                          f"(STATUS {await self.status()})") from None

    async def receive(self, cycles, what="response"):
        await self._wait_for(lambda: not self.sink.empty(), cycles, what)
        return [int(w) for w in self.sink.recv_nowait().tdata]

    async def request(self, words, cycles, what="response"):
        await self.send(words)
        return await self.receive(cycles, what)

    @staticmethod
    def _io_cycles(words):
        """A bound on the cycles a packet (or a response) of ``words`` words takes."""
        return 64 * (words + 1) + 10_000

    async def load(self, model):
        """Configure, then write ``H``, ``P`` and ``T`` of every layer."""
        await self.configure(model)
        cfg = model.config
        for l in range(cfg.layers):
            for packet in (protocol.write_h_packet(l, model.H[l], h_bits=cfg.h_bits),
                           protocol.write_p_packet(l, model.P[l]),
                           protocol.write_t_packet(l, model.theta[l], model.flip[l])):
                await self.send(packet)
                await self.wait_sent(self._io_cycles(len(packet)))

    async def read_weights(self, model):
        """``(H, P)``: lists over the layers, read with READ_H and READ_P."""
        cfg = model.config
        H, P = [], []
        for l in range(cfg.layers):
            k, fan_in = cfg.sizes[l + 1], cfg.sizes[l]
            words = await self.request(protocol.read_h_packet(l, k),
                                       self._io_cycles(k * -(-fan_in // 4)),
                                       f"READ_H {l} response")
            H.append(protocol.parse_read_response(protocol.Opcode.READ_H, words, width=k,
                                                  fan_in=fan_in).astype(np.int64))
            words = await self.request(protocol.read_p_packet(l, k), self._io_cycles(k),
                                       f"READ_P {l} response")
            P.append(protocol.parse_read_response(protocol.Opcode.READ_P, words, width=k,
                                                  classes=cfg.classes).astype(np.int64))
        return H, P

    async def train(self, a0, y, classes, cycles):
        words = await self.request(protocol.train_packet(a0, y, classes=classes), cycles,
                                   "TRAIN response")
        return protocol.parse_train_response(words, len(y))

    async def infer(self, a0, y, classes, cycles):
        words = await self.request(protocol.infer_packet(a0, y, classes=classes), cycles,
                                   "INFER response")
        return protocol.parse_infer_response(words, len(y), classes=classes)

    async def observe(self, model, *, train_errors=None, infer=None, cycles):
        """What the host reads back: weights, the INFER of ``infer`` and the counters."""
        H, P = await self.read_weights(model)
        preds = infer_errors = None
        if infer is not None:
            preds, infer_errors = await self.infer(*infer, model.config.classes, cycles)
        return Observation(H=H, P=P, train_errors=train_errors, predictions=preds,
                           infer_errors=infer_errors, counters=await self.counters())

    async def soft_reset(self):
        """Stop the stream source and sink (as a host resets its DMA), pulse
        ``CONTROL.soft_reset``, and restart them."""
        self.source.assert_reset(True)
        self.sink.assert_reset(True)
        await self.control(soft_reset=1)
        await ClockCycles(self.dut.clk, 2)
        self.source.clear()
        while not self.sink.empty():
            self.sink.recv_nowait()
        self.source.assert_reset(False)
        self.sink.assert_reset(False)


# -- random networks -------------------------------------------------------------------------

def random_model(rng, build, *, widths=(8, 200)):
    """A random :class:`FastBMLP` that fits ``build``: 1..``max_layers`` layers, widths in
    ``widths`` (clipped to the build), a random gamma with at most ``max_groups`` groups,
    r, seed, weights (saturation corners included), thresholds ``theta``/``flip`` (a third
    of the networks), reinforcement thresholds and ``step``."""
    lo, hi = widths
    layers = int(rng.integers(1, build.max_layers + 1))
    k0 = int(rng.integers(min(lo, build.max_fan_in), min(hi, build.max_fan_in) + 1))
    ks = [int(rng.integers(min(lo, build.max_width), min(hi, build.max_width) + 1))
          for _ in range(layers)]
    gammas = []
    for k in ks:
        ok = [d for d in divisors(k) if -(-k // d) <= build.max_groups]
        gammas.append(int(rng.choice(ok)))
    cfg = NetworkConfig(sizes=(k0, *ks), classes=build.classes, gamma=tuple(gammas),
                        r=float(rng.choice([0.0, 0.25, 0.5, 1.0, 2.0])), h_bits=build.h_bits,
                        seed=int(rng.integers(0, 1 << 32)))
    model = FastBMLP(cfg)
    h_max = cfg.h_max
    for l in range(layers):
        model.H[l] = random_hidden(rng, model.H[l].shape, h_max)
        if rng.random() < 1 / 3:
            model.theta[l] = rng.integers(-cfg.sizes[l] // 4, cfg.sizes[l] // 4 + 1,
                                          size=ks[l]).astype(np.int32)
            model.flip[l] = rng.random(ks[l]) < 0.2
    model._sync()
    model.thresholds = [int(rng.choice([0, prng.DRAW_ONE, int(rng.integers(0, 20000)),
                                        int(rng.integers(0, prng.DRAW_ONE + 1))]))
                        for _ in range(layers)]
    model.step = int(rng.choice([0, int(rng.integers(0, 1 << 20)), (1 << 32) - 1]))
    return model


def random_batch(rng, model, batch_range):
    lo, hi = batch_range
    bs = int(rng.integers(lo, hi + 1))
    a0 = np.where(rng.random((bs, model.config.sizes[0])) < 0.5, 1, -1).astype(np.int8)
    y = rng.integers(0, model.config.classes, size=bs)
    return a0, y


# -- bookkeeping -----------------------------------------------------------------------------

_totals = {}


def count_cases(dut, test_name, **counts):
    """Log and record the counts of ``test_name`` (``networks``, ``minibatches``,
    ``bad_inputs``, ...): ``cases.json`` gets ``cases``/``tests`` (as
    :func:`~xnorlearn.sim.streams.record_cases` writes them) and the totals of each
    kind over the tests of the run."""
    _totals[test_name] = counts
    record_cases(dut, test_name, counts.get("minibatches", 0) + counts.get("bad_inputs", 0),
                 **counts)
    path = Path("cases.json")
    data = json.loads(path.read_text())
    for kind in sorted({k for c in _totals.values() for k in c}):
        data[kind] = sum(c.get(kind, 0) for c in _totals.values())
    data["per_test"] = _totals
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


class _Checker:
    """Trains a golden model and the DUT side by side; every check through ``compare``."""

    def __init__(self, tb, model):
        self.tb = tb
        self.model = model
        self.patterns = 0
        self.errors = 0
        self.minibatches = 0
        cfg = model.config
        self.cycles = packet_cycle_limit(tb.build, cfg.sizes, tb.build.max_batch)

    async def start(self):
        """Load the model (counters cleared by a soft reset or counted from here)."""
        await self.tb.load(self.model)
        self.base = await self.tb.counters()
        mismatch, _ = await self.check(batch=0)
        assert mismatch is None, f"network {self.model.config.sizes}: {mismatch}"

    def expected(self, **kw):
        return expected_observation(self.model, patterns=self.base["PATTERNS"] + self.patterns,
                                    errors=self.base["ERRORS"] + self.errors, **kw)

    async def check(self, batch, train_errors=None, infer=None, corrupt=None):
        got = await self.tb.observe(self.model, train_errors=train_errors, infer=infer,
                                    cycles=self.cycles)
        want = self.expected(train_errors=train_errors, infer=infer)
        if corrupt is not None:
            want = want.corrupted(corrupt["what"], corrupt.get("layer"), corrupt.get("index"))
        return compare(want, got, batch=batch), got

    async def train(self, a0, y, *, infer=None, during=None):
        """One minibatch on both; returns ``(errors, observation)``; raises on a mismatch.
        ``during`` (an async callable) runs while the DUT trains."""
        cfg = self.model.config
        task = cocotb.start_soon(self.tb.train(a0, y, cfg.classes, self.cycles))
        if during is not None:
            await during(task)
        got_errors = await task
        errors = self.model.train_batch(a0, y)
        self.patterns += len(y)
        self.errors += errors
        self.minibatches += 1
        mismatch, got = await self.check(self.minibatches, train_errors=got_errors,
                                         infer=infer)
        assert mismatch is None, f"network {cfg.sizes}: {mismatch}"
        return errors, got


# -- regression tests ------------------------------------------------------------------------

def _setup(dut, name, *, idle=0.0, backpressure=0.0):
    params = tb_params()
    build = Build(**params["build"])
    rng = case_rng(name)
    tb = TB(dut, build, rng.spawn(1)[0], idle=idle, backpressure=backpressure)
    return params, build, rng, tb


async def _poll_while(tb, task, rng, stats):
    """Read STATUS and the counters at random times until ``task`` is done; check what
    can be checked while the accelerator trains."""
    last_cycles = await tb.read_reg("CYCLES")
    while not task.done():
        await ClockCycles(tb.dut.clk, int(rng.integers(1, 300)))
        st = tb.regmap.decode("STATUS", await tb.read_reg("STATUS"))
        assert not st["error"], f"STATUS.error during training: {st}"
        assert st["phase"] in (Phase.IDLE, Phase.IO, Phase.FORWARD, Phase.UPDATE,
                               Phase.REINFORCE, Phase.RESPOND), f"phase {st['phase']}"
        assert st["busy"] == (st["phase"] != Phase.IDLE), f"busy/phase {st}"
        cycles = await tb.read_reg("CYCLES")
        assert cycles >= last_cycles, f"CYCLES went back from {last_cycles} to {cycles}"
        last_cycles = cycles
        stats["polls"] += 1


async def run_networks(dut, name, idle, backpressure):
    params, build, rng, tb = _setup(dut, name, idle=idle, backpressure=backpressure)
    await tb.reset()
    await tb.check_identity()
    widths = tuple(params.get("widths", (8, 200)))
    batch_range = (1, min(params.get("batch", 128), build.max_batch))
    stats = {"polls": 0}
    networks = minibatches = 0
    for net in range(int(params.get("networks", 3))):
        model = random_model(rng, build, widths=widths)
        chk = _Checker(tb, model)
        await chk.start()
        for b in range(int(params.get("batches", 3))):
            a0, y = random_batch(rng, model, batch_range)
            infer = random_batch(rng, model, batch_range)
            errors, got = await chk.train(
                a0, y, infer=infer, during=lambda task: _poll_while(tb, task, rng, stats))
            dut._log.info("network %d %s gamma %s: minibatch %d of %d patterns, %d errors, "
                          "%d cycles: match", net, model.config.sizes, model.config.gamma, b,
                          len(y), errors, got.counters["CYCLES"])
            # Random reads between packets: constants and state.
            for reg in rng.choice(["ID", "STATUS", "ERROR_CODE", "CYCLES_IO", "BUILD2"], 2):
                await tb.read_reg(str(reg))
        minibatches += chk.minibatches
        networks += 1
    st = await tb.status()
    assert not st["error"] and st["phase"] == Phase.IDLE, st
    count_cases(dut, name, networks=networks, minibatches=minibatches,
                status_polls=stats["polls"], register_reads=tb.reg_reads)


def _timeout_ms(default):
    return int(tb_params().get("timeout_ms", default))


@cocotb.test(timeout_time=_timeout_ms(2000), timeout_unit="ms",
             skip="verify" in tb_params())
async def test_networks(dut):
    """Random networks and minibatches, streams back to back."""
    await run_networks(dut, "test_networks", 0.0, 0.0)


@cocotb.test(timeout_time=_timeout_ms(4000), timeout_unit="ms",
             skip="verify" in tb_params())
async def test_networks_stalls(dut):
    """Random networks and minibatches with idle cycles on s_axis, AW, W, AR and
    backpressure on m_axis, B, R."""
    await run_networks(dut, "test_networks_stalls", 0.3, 0.4)


@cocotb.test(timeout_time=_timeout_ms(2000), timeout_unit="ms",
             skip="verify" in tb_params())
async def test_bad_inputs(dut):
    """Each bad packet or configuration sets STATUS.error and the right ERROR_CODE, is
    dropped up to its tlast with no response, changes no weight or counter; then
    CONTROL.clear_error and good minibatches pass. A configuration write while busy is
    ignored, latches BUSY and holds the next packet until clear_error."""
    params, build, rng, tb = _setup(dut, "test_bad_inputs")
    await tb.reset()
    await tb.check_identity()
    model = random_model(rng, build, widths=tuple(params.get("widths", (8, 200))))
    cfg = model.config
    chk = _Checker(tb, model)
    await chk.start()
    Op = protocol.Opcode
    L = cfg.layers
    a0, y = random_batch(rng, model, (1, build.max_batch))
    good = protocol.train_packet(a0, y, classes=cfg.classes)
    per = protocol.pattern_words(cfg.sizes[0])
    bad_opcode = int(rng.choice(sorted(set(range(256)) - {int(o) for o in Op})))
    checked = []

    def header(op, layer, count):
        return (int(op) << 24) | (layer << 16) | count

    def with_word(words, index, value):
        words = np.array(words, dtype=np.uint32)
        words[index] = value
        return words

    async def expect_error(label, packet, code, *, setup=None, restore=None):
        if setup is not None:
            await setup()
        await tb.send(packet)
        await tb.wait_sent(tb._io_cycles(len(packet)))
        await ClockCycles(dut.clk, 4)
        st = await tb.status()
        assert st["error"] and st["error_code"] == code and st["phase"] == Phase.ERROR, \
            f"{label}: status {st}, expected error {ErrorCode(code).name}"
        assert tb.sink.empty(), f"{label}: a response to a refused packet"
        if restore is not None:
            await restore()
        await tb.control(clear_error=1)
        st = await tb.status()
        assert not st["error"] and st["error_code"] == ErrorCode.NONE \
            and st["phase"] == Phase.IDLE, f"{label}: after clear_error {st}"
        # Ends with an INFER, so that the next bad packet follows one (an INFER leaves
        # pick lists behind that a refused TRAIN must not apply).
        mismatch, _ = await chk.check(batch=chk.minibatches,
                                      infer=random_batch(rng, model, (1, build.max_batch)))
        assert mismatch is None, f"{label}: state changed by a refused packet: {mismatch}"
        checked.append(label)
        dut._log.info("bad input %r: %s, dropped to tlast, nothing changed", label,
                      ErrorCode(code).name)
        if len(checked) % 5 == 0:
            await good_minibatch()

    async def good_minibatch():
        a0, y = random_batch(rng, model, (1, build.max_batch))
        await chk.train(a0, y, infer=random_batch(rng, model, (1, build.max_batch)))

    async def set_reg(name, value):
        await tb.write_reg(name, value)

    def reconfigure():
        return tb.configure(model)

    # Opcodes.
    await expect_error("unknown opcode, header only", [header(bad_opcode, 0, 1)],
                       ErrorCode.OPCODE)
    await expect_error("unknown opcode with payload",
                       with_word(good, 0, header(bad_opcode, 0, len(y))), ErrorCode.OPCODE)
    await expect_error("opcode 0", [header(0, 0, 1), 5, 6], ErrorCode.OPCODE)
    # Lengths.
    await expect_error("TRAIN one word short", good[:-1], ErrorCode.LENGTH)
    await expect_error("TRAIN one pattern short", good[:-per] if len(y) > 1 else good[:2],
                       ErrorCode.LENGTH)
    await expect_error("TRAIN two words long", np.concatenate([good, [7, 8]]), ErrorCode.LENGTH)
    await expect_error("TRAIN header only", good[:1], ErrorCode.LENGTH)
    await expect_error("TRAIN count 0", with_word(good, 0, header(Op.TRAIN, 0, 0)),
                       ErrorCode.LENGTH)
    await expect_error("TRAIN count > max_batch",
                       with_word(good, 0, header(Op.TRAIN, 0, build.max_batch + 1)),
                       ErrorCode.LENGTH)
    infer = protocol.infer_packet(a0, y, classes=cfg.classes)
    await expect_error("INFER one word long", np.concatenate([infer, [0]]), ErrorCode.LENGTH)
    await expect_error("READ_H with a payload word",
                       np.concatenate([protocol.read_h_packet(0, cfg.sizes[1]), [0]]),
                       ErrorCode.LENGTH)
    await expect_error("WRITE_P header only", protocol.write_p_packet(0, model.P[0])[:1],
                       ErrorCode.LENGTH)
    # Too short / too long WRITE_H of the current weights: what was written is unchanged.
    wh = protocol.write_h_packet(L - 1, model.H[L - 1], h_bits=cfg.h_bits)
    await expect_error("WRITE_H one word short", wh[:-1], ErrorCode.LENGTH)
    await expect_error("WRITE_H one word long", np.concatenate([wh, [0]]), ErrorCode.LENGTH)
    wt = protocol.write_t_packet(0, model.theta[0], model.flip[0])
    await expect_error("WRITE_T one word long", np.concatenate([wt, [0]]), ErrorCode.LENGTH)
    # Labels.
    label_at = int(rng.integers(len(y)))
    await expect_error("label = classes", with_word(good, 1 + label_at * per, cfg.classes),
                       ErrorCode.LABEL)
    await expect_error("label 0xFFFFFFFF", with_word(good, 1, 0xFFFFFFFF), ErrorCode.LABEL)
    await expect_error("INFER label = classes",
                       with_word(infer, 1 + label_at * per, cfg.classes), ErrorCode.LABEL)
    # Layer index.
    await expect_error("READ_H layer = LAYERS", [header(Op.READ_H, L, cfg.sizes[-1])],
                       ErrorCode.LAYER)
    await expect_error("WRITE_P layer 255", with_word(protocol.write_p_packet(0, model.P[0]), 0,
                                                      header(Op.WRITE_P, 255, cfg.sizes[1])),
                       ErrorCode.LAYER)
    # Configuration beyond the build (each restored before clear_error).
    wid = tb.regmap["WIDTH_0"].fields[0]
    bad_configs = [
        ("LAYERS = max_layers + 1", "LAYERS", build.max_layers + 1),
        ("LAYERS = 0", "LAYERS", 0),
        ("INPUTS = max_fan_in + 1", "INPUTS", build.max_fan_in + 1),
        ("INPUTS = field maximum", "INPUTS", (1 << tb.regmap["INPUTS"].fields[0].width) - 1),
        ("WIDTH_0 = max_width + 1", "WIDTH_0", build.max_width + 1),
        ("WIDTH_0 = field maximum", "WIDTH_0", (1 << wid.width) - 1),
        ("WIDTH_0 = 0", "WIDTH_0", 0),
        ("GAMMA_0 = 0", "GAMMA_0", 0),
        (f"WIDTH_{L - 1} / GAMMA_{L - 1} > max_groups", f"GAMMA_{L - 1}",
         cfg.sizes[L] // (build.max_groups + 1) if cfg.sizes[L] > build.max_groups else None),
    ]
    if build.max_layers > L:
        bad_configs.append((f"WIDTH_{L} = 0 with LAYERS = {L + 1}", "LAYERS", L + 1))
    for label, reg, value in bad_configs:
        if value is None or (value >> tb.regmap[reg].fields[0].width):
            continue
        for packet in (good, protocol.read_p_packet(0, cfg.sizes[1])):
            await expect_error(f"{label} ({protocol.decode_header(int(packet[0])).opcode.name})",
                               packet, ErrorCode.CONFIG,
                               setup=lambda reg=reg, value=value: set_reg(reg, value),
                               restore=reconfigure)
    # Configuration write while busy: ignored, BUSY latched, the next packet held back.
    a0, y = random_batch(rng, model, (build.max_batch, build.max_batch))
    width0 = await tb.read_reg("WIDTH_0")
    task = cocotb.start_soon(tb.train(a0, y, cfg.classes, chk.cycles))
    for _ in range(10_000):
        st = tb.regmap.decode("STATUS", await tb.read_reg("STATUS"))
        if st["phase"] == Phase.FORWARD:
            break
    else:
        raise Timeout("the accelerator never reached FORWARD")
    await tb.write_reg("WIDTH_0", width0 ^ 1)        # ignored: the core is busy
    got_errors = await task
    errors = model.train_batch(a0, y)
    assert got_errors == errors, f"TRAIN with a locked write: {got_errors} errors, expected {errors}"
    chk.patterns += len(y)
    chk.errors += errors
    chk.minibatches += 1
    st = await tb.status()
    assert st["error"] and st["error_code"] == ErrorCode.BUSY and st["phase"] == Phase.ERROR, st
    assert await tb.read_reg("WIDTH_0") == width0, "a locked write changed WIDTH_0"
    held = protocol.read_p_packet(0, cfg.sizes[1])
    await tb.send(held)
    await ClockCycles(dut.clk, 200)
    assert tb.sink.empty() and not tb.source.idle(), "a packet was taken while BUSY is latched"
    await tb.control(clear_error=1)
    words = await tb.receive(chk.cycles, "READ_P response after clear_error")
    assert np.array_equal(protocol.parse_read_response(Op.READ_P, words, width=cfg.sizes[1],
                                                       classes=cfg.classes), model.P[0])
    mismatch, _ = await chk.check(batch=chk.minibatches)
    assert mismatch is None, f"after the locked write: {mismatch}"
    checked.append("configuration write while busy")
    await good_minibatch()
    st = await tb.status()
    assert not st["error"] and st["phase"] == Phase.IDLE, st
    count_cases(dut, "test_bad_inputs", networks=1, minibatches=chk.minibatches,
                bad_inputs=len(checked))


@cocotb.test(timeout_time=_timeout_ms(2000), timeout_unit="ms",
             skip="verify" in tb_params())
async def test_soft_reset(dut):
    """CONTROL.soft_reset a random number of cycles into a minibatch (while the packet
    streams in, or while the accelerator computes): idle, no error, counters and STEP
    0; then a clean load and minibatches that match the golden model."""
    params, build, rng, tb = _setup(dut, "test_soft_reset", idle=0.1, backpressure=0.1)
    await tb.reset()
    await tb.check_identity()
    widths = tuple(params.get("widths", (8, 200)))
    resets = minibatches = 0
    for _ in range(int(params.get("networks", 3))):
        model = random_model(rng, build, widths=widths)
        cfg = model.config
        chk = _Checker(tb, model)
        await chk.start()
        a0, y = random_batch(rng, model, (1, build.max_batch))
        packet = protocol.train_packet(a0, y, classes=cfg.classes)
        await tb.send(packet)
        # Somewhere in the packet or the computation (the packet alone is len(packet) cycles).
        delay = int(rng.integers(1, 2 * len(packet) + 200))
        await ClockCycles(dut.clk, delay)
        phase = tb.regmap.decode("STATUS", await tb.read_reg("STATUS"))["phase"]
        await tb.soft_reset()
        st = await tb.status()
        assert not st["busy"] and not st["error"] and st["phase"] == Phase.IDLE, st
        counters = await tb.counters()
        assert all(v == 0 for v in counters.values()), f"after soft reset: {counters}"
        resets += 1
        dut._log.info("soft reset %d cycles into a minibatch of %d (phase %s)", delay, len(y),
                      Phase(phase).name)
        # A clean start: the model as it was before the interrupted minibatch.
        chk = _Checker(tb, model)
        await chk.start()
        for _ in range(int(params.get("batches", 3))):
            a0, y = random_batch(rng, model, (1, build.max_batch))
            await chk.train(a0, y, infer=random_batch(rng, model, (1, build.max_batch)))
        minibatches += chk.minibatches
    count_cases(dut, "test_soft_reset", networks=resets, minibatches=minibatches,
                soft_resets=resets)


# -- xnorlearn verify ------------------------------------------------------------------------

def _verify_timeout_ns():
    v = tb_params().get("verify")
    if not v:
        return 1
    return v["cycle_limit"] * (4 * v["batches"] + 8) * CLOCK_NS


@cocotb.test(timeout_time=_verify_timeout_ns(), timeout_unit="ns",
             skip="verify" not in tb_params())
async def test_verify(dut):
    """The run of ``xnorlearn verify`` (:mod:`xnorlearn.sw.verify`): the golden model's
    initial weights loaded, the given minibatches trained, everything compared after
    each; progress as JSON lines, the result as JSON."""
    params = tb_params()
    v = params["verify"]
    build = Build(**params["build"])
    progress = open(v["progress"], "a")
    result = {"passed": False, "mismatch": None}

    def emit(event, **data):
        progress.write(json.dumps({"event": event, "wall": time.time(), **data}) + "\n")
        progress.flush()

    try:
        tb = TB(dut, build, deadline=v.get("deadline_wall"))
        emit("start")
        await tb.reset()
        await tb.check_identity()
        model = FastBMLP(NetworkConfig.from_dict(v["config"]))
        data = np.load(v["data"])
        a0_all, y_all = data["a0"], data["y"]
        bs = v["batch_size"]
        chk = _Checker(tb, model)
        chk.cycles = v["cycle_limit"]
        t0 = time.perf_counter()
        await tb.load(model)
        chk.base = await tb.counters()
        mismatch, _ = await chk.check(batch=0)
        emit("loaded", sim_s=time.perf_counter() - t0, mismatch=mismatch and mismatch.to_dict())
        corrupt = v.get("corrupt")
        for b in range(1, v["batches"] + 1):
            if mismatch is not None:
                break
            a0, y = a0_all[(b - 1) * bs:b * bs], y_all[(b - 1) * bs:b * bs]
            t0 = time.perf_counter()
            before = await tb.counters()
            got_errors = await tb.train(a0, y, model.config.classes, chk.cycles)
            after = await tb.counters()
            errors = model.train_batch(a0, y)
            chk.patterns += len(y)
            chk.errors += errors
            chk.minibatches += 1
            mismatch, got = await chk.check(
                batch=b, train_errors=got_errors, infer=(a0, y),
                corrupt=corrupt if corrupt and corrupt.get("batch") == b else None)
            cycles = {k: (after[k] - before[k]) & 0xFFFFFFFF for k in CYCLE_COUNTERS}
            emit("batch", batch=b, patterns=len(y), errors=got_errors, cycles=cycles,
                 sim_s=time.perf_counter() - t0, mismatch=mismatch and mismatch.to_dict())
        result["mismatch"] = mismatch and mismatch.to_dict()
        result["passed"] = mismatch is None
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        Path(v["result"]).write_text(json.dumps(result, indent=1))
        progress.close()
    assert result["mismatch"] is None, f"first mismatch {result['mismatch']}"
    count_cases(dut, "test_verify", networks=1, minibatches=v["batches"])
