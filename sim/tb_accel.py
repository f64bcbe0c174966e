"""cocotb bench of :class:`xnorlearn.hw.accelerator.Accelerator`, driven by the host driver.

The :class:`TB` owns the clock, the reset and a
:class:`~xnorlearn.sim.cocotb_transport.CocotbTransport` (cocotbext-axi bus models on
``s_axil``, ``s_axis`` and ``m_axis``, with pause generators for idle cycles and
backpressure). Every host operation (identify, configure, load, train, infer, read
back, soft reset) is a call of the host driver :class:`xnorlearn.sw.driver.Device`, the
code that runs on a board, made from a bridge thread (:func:`~xnorlearn.sim.cocotb_transport.run_host`)
while the simulation runs. Only what a driver would never send (malformed packets,
register writes at chosen moments) goes through the transport's async methods.

Every comparison with the golden :class:`~xnorlearn.sw.golden.fast.FastBMLP` goes through
:func:`xnorlearn.sim.observe.compare`: after loading and after every minibatch the bench
reads back ``H`` and ``P`` of every layer, sends an ``INFER`` and reads ``PATTERNS``,
``ERRORS`` and ``STEP``, and compares the whole
:class:`~xnorlearn.sim.observe.Observation` with the golden model's.

Tests (parameters from :func:`~xnorlearn.sim.runner.tb_params`: ``build``, the
:class:`~xnorlearn.contract.Build` as a dict; ``networks``, ``batches``; ``widths``,
``batch`` (ranges of the random networks); ``timeout_ms``; ``host_timeout_s``, the
driver's wall-clock limit per wait, 60 s by default, longer for wide builds on Icarus):

``test_networks``, ``test_networks_stalls``
    Random networks (1..``max_layers`` layers, random widths, gamma, r, weights with
    saturation corners, thresholds, reinforcement thresholds and ``STEP``), several
    random minibatches each, streams back to back or with idle cycles and
    backpressure; ``STATUS`` and the counters are polled over AXI4-Lite while the
    accelerator trains; a few minibatches go through the driver's queued
    ``train_batches``.
``test_bad_inputs``
    Every kind of bad packet and configuration: the right ``ERROR_CODE``, the packet
    dropped up to ``tlast``, nothing changed, then ``clear_error`` and a good minibatch;
    and the driver's view of a refused packet (:class:`~xnorlearn.sw.driver.PacketRefused`
    naming the code, weights unchanged).
``test_soft_reset``
    ``CONTROL.soft_reset`` a random number of cycles into a minibatch, then a clean
    load and training that match the golden model.
``test_verify``
    The run of ``xnorlearn verify`` (only with a ``verify`` parameter entry).

Each test logs and writes to ``cases.json`` how many networks, minibatches and bad
inputs it checked.
"""

import copy
import json
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from xnorlearn.contract import Build, ErrorCode, Phase, RegisterMap
from xnorlearn.sim.cocotb_transport import CocotbTransport, run_host
from xnorlearn.sim.observe import compare, expected_observation, observe
from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import case_rng, record_cases
from xnorlearn.sim.random_networks import random_batch, random_model
from xnorlearn.sw import protocol
from xnorlearn.sw.driver import CYCLE_COUNTERS, Device, PacketRefused
from xnorlearn.sw.golden.config import NetworkConfig
from xnorlearn.sw.golden.fast import FastBMLP

__all__ = ["TB", "count_cases"]

CLOCK_NS = 10


class TB:
    """Clock, reset and the host transport of an Accelerator.

    Parameters
    ----------
    dut : cocotb handle
    build : Build
        The build the DUT was made with (the driver checks it against the ``BUILD*``
        registers when it opens the device).
    rng : numpy.random.Generator, optional
        Draws the stalls; needed when ``idle`` or ``backpressure`` is not 0.
    idle, backpressure : float
        Stall probabilities of the bus models (:class:`CocotbTransport`).
    timeout : float
        Seconds the driver allows a register access (and adds to each packet's allowance).
    """

    def __init__(self, dut, build, rng=None, *, idle=0.0, backpressure=0.0, timeout=60.0):
        self.dut = dut
        self.build = build
        self.regmap = RegisterMap(build)
        self.offsets = self.regmap.offsets()
        self.timeout = timeout
        dut.rst.value = 1               # not X before the first edge (Icarus)
        for port in ("s_axis__tdata", "m_axis__tdata"):
            if len(getattr(dut, port)) != 32:
                raise AssertionError(f"{port} is {len(getattr(dut, port))} bits, expected 32")
        if (1 << len(dut.s_axil__awaddr)) < self.regmap.span:
            raise AssertionError(f"s_axil address of {len(dut.s_axil__awaddr)} bits cannot "
                                 f"reach the register map ({self.regmap.span} bytes)")
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        self.transport = CocotbTransport(dut, rng, idle=idle, backpressure=backpressure,
                                         clock_ns=CLOCK_NS)
        self.device = None

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    async def open(self):
        """Open the host driver on the DUT (it checks ``ID``, ``VERSION`` and ``BUILD*``)."""
        self.device = await run_host(Device, self.transport, build=self.build,
                                     timeout=self.timeout)
        return self.device

    async def host(self, func, *args, **kwargs):
        """Run blocking host code (driver calls) while the simulation runs."""
        return await run_host(func, *args, **kwargs)

    # -- what a driver would not do: raw register accesses and packets --------------------

    async def read_reg(self, name):
        return await self.transport.aread32(self.offsets[name], timeout=self.timeout)

    async def write_reg(self, name, value):
        await self.transport.awrite32(self.offsets[name], int(value), timeout=self.timeout)

    async def status(self):
        """``STATUS`` fields and ``ERROR_CODE`` as one dict."""
        st = self.regmap.decode("STATUS", await self.read_reg("STATUS"))
        st["error_code"] = self.regmap.decode("ERROR_CODE",
                                              await self.read_reg("ERROR_CODE"))["error_code"]
        return st

    async def control(self, **fields):
        await self.write_reg("CONTROL", self.regmap.encode("CONTROL", **fields))

    async def send(self, words):
        await self.transport.asend(words, timeout=self.timeout)

    async def wait_sent(self):
        await self.transport.await_sent(timeout=self.timeout)

    async def receive(self, max_words=1 << 20):
        return [int(w) for w in await self.transport.arecv(max_words, timeout=self.timeout)]


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
    """Trains a golden model and the DUT side by side, the DUT through the host driver;
    every check through ``compare``."""

    def __init__(self, tb, model):
        self.tb = tb
        self.dev = tb.device
        self.model = model
        self.patterns = 0
        self.errors = 0
        self.minibatches = 0

    async def start(self):
        """Load the model (counters cleared by a soft reset or counted from here)."""
        await self.tb.host(self.dev.load, self.model)
        self.base = await self.tb.host(self.dev.counters)
        mismatch, _ = await self.check(batch=0)
        assert mismatch is None, f"network {self.model.config.sizes}: {mismatch}"

    def expected(self, **kw):
        return expected_observation(self.model, patterns=self.base["PATTERNS"] + self.patterns,
                                    errors=self.base["ERRORS"] + self.errors, **kw)

    async def check(self, batch, train_errors=None, infer=None, corrupt=None):
        got = await self.tb.host(observe, self.dev, train_errors=train_errors, infer=infer)
        want = self.expected(train_errors=train_errors, infer=infer)
        if corrupt is not None:
            want = want.corrupted(corrupt["what"], corrupt.get("layer"), corrupt.get("index"))
        return compare(want, got, batch=batch), got

    def golden(self, a0, y):
        errors = self.model.train_batch(a0, y)
        self.patterns += len(y)
        self.errors += errors
        self.minibatches += 1
        return errors

    async def train(self, a0, y, *, infer=None, during=None):
        """One minibatch on both; returns ``(errors, observation)``; raises on a mismatch.
        ``during`` (an async callable) runs while the DUT trains."""
        task = cocotb.start_soon(self.tb.host(self.dev.train_batch, a0, y))
        if during is not None:
            await during(task)
        got_errors = await task
        errors = self.golden(a0, y)
        mismatch, got = await self.check(self.minibatches, train_errors=got_errors,
                                         infer=infer)
        assert mismatch is None, f"network {self.model.config.sizes}: {mismatch}"
        return errors, got

    async def train_queued(self, batches):
        """Minibatches through the driver's queued ``train_batches`` (the next packet on
        the stream while one trains), then one check."""
        got = await self.tb.host(self.dev.train_batches, batches)
        want = [self.golden(a0, y) for a0, y in batches]
        assert got == want, f"queued minibatches: errors {got}, golden model {want}"
        mismatch, _ = await self.check(self.minibatches)
        assert mismatch is None, f"network {self.model.config.sizes}, queued: {mismatch}"


# -- regression tests ------------------------------------------------------------------------

def _setup(dut, name, *, idle=0.0, backpressure=0.0):
    params = tb_params()
    build = Build(**params["build"])
    rng = case_rng(name)
    tb = TB(dut, build, rng.spawn(1)[0], idle=idle, backpressure=backpressure,
            timeout=float(params.get("host_timeout_s", 60.0)))
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
    await tb.open()
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
        await chk.train_queued([random_batch(rng, model, batch_range) for _ in range(3)])
        minibatches += chk.minibatches
        networks += 1
    st = await tb.status()
    assert not st["error"] and st["phase"] == Phase.IDLE, st
    count_cases(dut, name, networks=networks, minibatches=minibatches,
                status_polls=stats["polls"], register_reads=tb.transport.register_reads)


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
    await tb.open()
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
        await tb.wait_sent()
        await ClockCycles(dut.clk, 4)
        st = await tb.status()
        assert st["error"] and st["error_code"] == code and st["phase"] == Phase.ERROR, \
            f"{label}: status {st}, expected error {ErrorCode(code).name}"
        assert tb.transport.sink.empty(), f"{label}: a response to a refused packet"
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
        return tb.host(tb.device.configure, cfg, thresholds=model.thresholds, step=model.step)

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
    # The TRAIN goes out as raw words: the driver, polling STATUS while it waits, would
    # take the latched BUSY for a refusal of its own packet whenever the simulation is
    # slower than its first wait (a race with the host machine's load).
    a0, y = random_batch(rng, model, (build.max_batch, build.max_batch))
    width0 = await tb.read_reg("WIDTH_0")
    await tb.send(protocol.train_packet(a0, y, classes=cfg.classes))
    for _ in range(10_000):
        st = tb.regmap.decode("STATUS", await tb.read_reg("STATUS"))
        if st["phase"] == Phase.FORWARD:
            break
    else:
        raise AssertionError("the accelerator never reached FORWARD")
    await tb.write_reg("WIDTH_0", width0 ^ 1)        # ignored: the core is busy
    got_errors = protocol.parse_train_response(await tb.receive(), len(y))
    errors = chk.golden(a0, y)
    assert got_errors == errors, f"TRAIN with a locked write: {got_errors} errors, expected {errors}"
    st = await tb.status()
    assert st["error"] and st["error_code"] == ErrorCode.BUSY and st["phase"] == Phase.ERROR, st
    assert await tb.read_reg("WIDTH_0") == width0, "a locked write changed WIDTH_0"
    held = protocol.read_p_packet(0, cfg.sizes[1])
    await tb.send(held)
    await ClockCycles(dut.clk, 200)
    assert tb.transport.sink.empty() and not tb.transport.source.idle(), \
        "a packet was taken while BUSY is latched"
    await tb.control(clear_error=1)
    words = await tb.receive()
    assert np.array_equal(protocol.parse_read_response(Op.READ_P, words, width=cfg.sizes[1],
                                                       classes=cfg.classes), model.P[0])
    mismatch, _ = await chk.check(batch=chk.minibatches)
    assert mismatch is None, f"after the locked write: {mismatch}"
    checked.append("configuration write while busy")
    await good_minibatch()
    # The driver's view: a refused packet raises PacketRefused naming the code, the driver
    # resets the device to a usable state, and nothing changed.
    for reg, value in (("WIDTH_0", 0), ("LAYERS", build.max_layers + 1)):
        if value >> tb.regmap[reg].fields[0].width:
            continue
        await tb.write_reg(reg, value)
        try:
            await tb.host(tb.device.read_p, 0)
        except PacketRefused as e:
            assert e.code == ErrorCode.CONFIG and "CONFIG" in str(e), str(e)
        else:
            raise AssertionError(f"READ_P with {reg} = {value} was not refused")
        await reconfigure()
        chk.base = await tb.host(tb.device.counters)   # the driver's recovery cleared them
        chk.patterns = chk.errors = 0
        mismatch, _ = await chk.check(batch=chk.minibatches)
        assert mismatch is None, f"after a refused packet through the driver: {mismatch}"
        checked.append(f"driver: {reg} = {value}")
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
    await tb.open()
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
        await tb.host(tb.device.soft_reset, keep_step=False)
        st = await tb.status()
        assert not st["busy"] and not st["error"] and st["phase"] == Phase.IDLE, st
        counters = await tb.host(tb.device.counters)
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
    return v["cycle_limit"] * (6 * v["batches"] + 12) * CLOCK_NS


@cocotb.test(timeout_time=_verify_timeout_ns(), timeout_unit="ns",
             skip="verify" not in tb_params())
async def test_verify(dut):
    """The run of ``xnorlearn verify`` (:mod:`xnorlearn.sw.verify`): the golden model's
    initial weights loaded, the given minibatches trained, everything compared after
    each (the cycles of each counted up to the end of its reinforcement sweeps); then the
    initial weights loaded again and the same minibatches trained back to back, the next
    packet sent while one trains, and everything compared once at the end; progress as
    JSON lines, the result as JSON."""
    params = tb_params()
    v = params["verify"]
    build = Build(**params["build"])
    progress = open(v["progress"], "a")
    result = {"passed": False, "mismatch": None}

    def emit(event, **data):
        progress.write(json.dumps({"event": event, "wall": time.time(), **data}) + "\n")
        progress.flush()

    deadline = v.get("deadline_wall")

    def check_deadline(what):
        if deadline is not None and time.time() > deadline:
            raise TimeoutError(f"wall-clock limit reached before {what}")

    try:
        tb = TB(dut, build)
        emit("start")
        await tb.reset()
        await tb.open()
        model = FastBMLP(NetworkConfig.from_dict(v["config"]))
        start = copy.deepcopy(model)
        data = np.load(v["data"])
        a0_all, y_all = data["a0"], data["y"]
        bs = v["batch_size"]
        chk = _Checker(tb, model)
        t0 = time.perf_counter()
        await tb.host(tb.device.load, model)
        chk.base = await tb.host(tb.device.counters)
        mismatch, _ = await chk.check(batch=0)
        emit("loaded", sim_s=time.perf_counter() - t0, mismatch=mismatch and mismatch.to_dict())
        corrupt = v.get("corrupt")
        errors = []
        for b in range(1, v["batches"] + 1):
            if mismatch is not None:
                break
            check_deadline(f"minibatch {b}")
            a0, y = a0_all[(b - 1) * bs:b * bs], y_all[(b - 1) * bs:b * bs]
            t0 = time.perf_counter()
            before = await tb.host(tb.device.counters)
            got_errors = await tb.host(tb.device.train_batch, a0, y)
            await tb.host(tb.device.wait_idle)
            after = await tb.host(tb.device.counters)
            errors.append(got_errors)
            chk.golden(a0, y)
            mismatch, got = await chk.check(
                batch=b, train_errors=got_errors, infer=(a0, y),
                corrupt=corrupt if corrupt and corrupt.get("batch") == b else None)
            cycles = {k: (after[k] - before[k]) & 0xFFFFFFFF for k in CYCLE_COUNTERS}
            emit("batch", batch=b, patterns=len(y), errors=got_errors, cycles=cycles,
                 sim_s=time.perf_counter() - t0, mismatch=mismatch and mismatch.to_dict())
        if mismatch is None and v.get("back_to_back", True):
            check_deadline("the back-to-back run")
            t0 = time.perf_counter()
            await tb.host(tb.device.load, start)
            before = await tb.host(tb.device.counters)
            # The device counts these minibatches again, on top of what it has counted.
            chk.base = before
            n = v["batches"]
            got = await tb.host(tb.device.train_batches,
                                [(a0_all[i * bs:(i + 1) * bs], y_all[i * bs:(i + 1) * bs])
                                 for i in range(n)])
            # What the last sweeps add once the last response is out: in a longer run the
            # next minibatch would hide them.
            at_last = await tb.host(tb.device.read, "CYCLES")
            await tb.host(tb.device.wait_idle)
            after = await tb.host(tb.device.counters)
            mismatch, _ = await chk.check(batch=n)
            if mismatch is None and got != errors:
                raise AssertionError(f"back to back: errors {got}, one at a time {errors}")
            cycles = {k: (after[k] - before[k]) & 0xFFFFFFFF for k in CYCLE_COUNTERS}
            emit("back_to_back", batches=n, errors=got, cycles=cycles,
                 tail=(after["CYCLES"] - at_last) & 0xFFFFFFFF,
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
