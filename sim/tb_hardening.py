"""cocotb bench of :class:`xnorlearn.hw.accelerator.Accelerator` against an adversarial host.

The host is :class:`Host`, a cycle-exact driver of the raw top-level ports: one engine
coroutine drives ``s_axil``, ``s_axis`` and ``m_axis`` just after each falling clock edge
from queues with a start cycle per item, samples every handshake before the next rising
edge and numbers the cycles, so that a register write and a packet header can be put on
their buses at any offset from each other, and every wait is bounded by a number of
cycles (a hang is a :class:`Timeout`, never a stuck simulation). Only
:mod:`xnorlearn.contract` is used for the register map, opcodes and codes; packets are
spelled out word by word here. One test, of training, takes its expectations from the
reference model (:mod:`xnorlearn.sim.protocol_model`).

Tests (parameters from :func:`~xnorlearn.sim.runner.tb_params`: ``build``, the
:class:`~xnorlearn.contract.Build` as a dict):

``test_config_after_refused_train``
    Issue 11.1: configuration writes (after ``clear_error``, or during ``ERROR``) that
    follow a ``TRAIN`` refused in the middle of its load, with its forward pass running;
    a valid packet is then taken within the documented bound, one that does not fit the
    configuration is refused with ``CONFIG``.
``test_config_races``
    Issue 11.2: a register write against a packet header at every cycle offset
    -12..+12 from the write's address/data handshake; each outcome is the packet checked
    against the new value (written before the header was taken) or the write refused
    with ``BUSY`` and the old value used (or written once the packet was done).
``test_refused_write_h``
    Issue 11.3: the reproducer of a ``WRITE_H`` refused with ``LENGTH``.
``test_refused_writes_word_for_word``
    The rule for refused ``WRITE_H``/``WRITE_P``/``WRITE_T``, word for word, over early
    and late ``tlast`` positions.
``test_decided_rules``
    Error priority, ``clear_error`` during the discard, the ``GAMMA`` limit, the
    ignored header fields, ``READ_H`` padding bytes, the settling bound.
``test_soft_reset_mid_write``
    ``soft_reset`` in the middle of a ``WRITE_H``: each memory word of the layer holds
    its old or its new contents.
``test_soft_reset_after_write_h``
    ``soft_reset`` with its B handshake in the cycles around the last word of a
    ``WRITE_H``: a packet done before it is written whole.
``test_train_keeps_padding``
    ``INPUTS`` shrinks, ``TRAIN`` runs, ``INPUTS`` grows back: the lanes that come back
    hold their old weights, ``W = sign(H)`` there, and ``READ_H`` and ``INFER`` match the
    reference model.
"""

import collections
import dataclasses

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, ReadOnly

from xnorlearn.contract import (STATUS_TAG, Build, ErrorCode, Opcode, Phase, RegisterMap,
                                header_word, max_sweep_cycles)
from xnorlearn.sim.protocol_model import ProtocolModel, pattern_payload
from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import case_rng, record_cases

__all__ = ["Host", "Timeout"]

CLOCK_NS = 10


class Timeout(AssertionError):
    """A bounded wait that ran out: the accelerator hung (or is slower than documented)."""


def _int(handle):
    try:
        return int(handle.value)
    except ValueError:          # X or Z (Icarus before the first edge)
        return 0


@dataclasses.dataclass
class _Write:
    offset: int
    data: int
    start: int
    aw: int = None              # cycle of the AW handshake
    w: int = None               # cycle of the W handshake
    b: int = None               # cycle of the B handshake
    resp: int = None


@dataclasses.dataclass
class _Read:
    offset: int
    start: int
    ar: int = None
    r: int = None
    data: int = None
    resp: int = None


@dataclasses.dataclass
class Packet:
    words: list
    lasts: list
    start: int
    accepted: list = dataclasses.field(default_factory=list)   # cycle of each word

    @property
    def header_cycle(self):
        return self.accepted[0] if self.accepted else None

    @property
    def sent(self):
        return len(self.accepted) == len(self.words)


class Host:
    """Cycle-exact host on the accelerator's ports (see the module docstring).

    ``t`` is the current cycle: what is queued with ``start <= t`` is driven in it.
    A write is presented on AW and W together and answered with ``bready`` high; reads
    likewise with ``rready`` high; ``m_axis`` is always ready.
    """

    def __init__(self, dut, build):
        self.dut = dut
        self.build = build
        self.regmap = RegisterMap(build)
        self.offsets = self.regmap.offsets()
        self.t = 0
        self.rst = 1
        self.src = collections.deque()        # (packet, index)
        self.writes = collections.deque()
        self.reads = collections.deque()
        self.responses = collections.deque()  # (cycle of tlast, words)
        self._resp = []
        self._tick = Event()
        dut.rst.value = 1
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        cocotb.start_soon(self._run())

    # -- engine ------------------------------------------------------------------------------

    async def _run(self):
        while True:
            await FallingEdge(self.dut.clk)
            self._drive()
            await ReadOnly()
            self._sample()
            self.t += 1
            tick, self._tick = self._tick, Event()
            tick.set()

    def _drive(self):
        d, t = self.dut, self.t
        d.rst.value = self.rst
        item = self.src[0] if self.src and self.src[0][0].start <= t else None
        d.s_axis__tvalid.value = int(item is not None)
        if item is not None:
            pkt, i = item
            d.s_axis__tdata.value = pkt.words[i]
            d.s_axis__tlast.value = pkt.lasts[i]
        w = self.writes[0] if self.writes and self.writes[0].start <= t else None
        d.s_axil__awvalid.value = int(w is not None and w.aw is None)
        d.s_axil__wvalid.value = int(w is not None and w.w is None)
        if w is not None:
            d.s_axil__awaddr.value = w.offset
            d.s_axil__wdata.value = w.data
        d.s_axil__wstrb.value = 0xF
        d.s_axil__awprot.value = 0
        d.s_axil__bready.value = 1
        r = self.reads[0] if self.reads and self.reads[0].start <= t else None
        d.s_axil__arvalid.value = int(r is not None and r.ar is None)
        if r is not None:
            d.s_axil__araddr.value = r.offset
        d.s_axil__arprot.value = 0
        d.s_axil__rready.value = 1
        d.m_axis__tready.value = 1

    def _sample(self):
        d, t = self.dut, self.t
        if self.rst:
            return
        if _int(d.s_axis__tvalid) and _int(d.s_axis__tready):
            pkt, i = self.src.popleft()
            pkt.accepted.append(t)
        w = self.writes[0] if self.writes else None
        if w is not None and w.start <= t:
            if w.aw is None and _int(d.s_axil__awvalid) and _int(d.s_axil__awready):
                w.aw = t
            if w.w is None and _int(d.s_axil__wvalid) and _int(d.s_axil__wready):
                w.w = t
            if _int(d.s_axil__bvalid) and w.aw is not None and w.w is not None:
                w.b, w.resp = t, _int(d.s_axil__bresp)
                self.writes.popleft()
        r = self.reads[0] if self.reads else None
        if r is not None and r.start <= t:
            if r.ar is None and _int(d.s_axil__arvalid) and _int(d.s_axil__arready):
                r.ar = t
            elif r.ar is not None and _int(d.s_axil__rvalid):
                r.r, r.data, r.resp = t, _int(d.s_axil__rdata), _int(d.s_axil__rresp)
                self.reads.popleft()
        if _int(d.m_axis__tvalid):
            self._resp.append(_int(d.m_axis__tdata))
            if _int(d.m_axis__tlast):
                self.responses.append((t, self._resp))
                self._resp = []

    # -- time --------------------------------------------------------------------------------

    async def step(self, n=1):
        for _ in range(n):
            await self._tick.wait()

    async def until(self, condition, max_cycles, what):
        """Wait until ``condition()``; :class:`Timeout` after ``max_cycles`` cycles."""
        for _ in range(max_cycles):
            if condition():
                return
            await self.step()
        if not condition():
            raise Timeout(f"{what}: not within {max_cycles} cycles")

    async def hard_reset(self):
        """``rst`` for 4 cycles; every queue emptied (registers back to reset values)."""
        self.rst = 1
        self.src.clear()
        self.writes.clear()
        self.reads.clear()
        self.responses.clear()
        self._resp = []
        await self.step(4)
        self.rst = 0
        await self.step(2)

    # -- registers ---------------------------------------------------------------------------

    def write_at(self, name, value, start=None):
        """Queue a write of ``value`` to register ``name``, presented from cycle ``start``."""
        w = _Write(self.offsets[name], int(value) & 0xFFFFFFFF,
                   self.t if start is None else start)
        self.writes.append(w)
        return w

    async def write(self, name, value, max_cycles=None):
        """A write and its response; by default within 100 cycles plus the longest
        background sweeps of the build, which hold register writes."""
        if max_cycles is None:
            max_cycles = 100 + max_sweep_cycles(self.build)
        w = self.write_at(name, value)
        await self.until(lambda: w.b is not None, max_cycles, f"the write of {name}")
        assert w.resp == 0, f"write of {name}: response {w.resp}"
        return w

    async def set(self, name, value):
        """Write the single field of register ``name``."""
        field = self.regmap[name].fields[0].name
        return await self.write(name, self.regmap.encode(name, **{field: value}))

    async def read(self, name, max_cycles=100):
        r = _Read(self.offsets[name], self.t)
        self.reads.append(r)
        await self.until(lambda: r.r is not None, max_cycles, f"the read of {name}")
        assert r.resp == 0, f"read of {name}: response {r.resp}"
        return r.data

    async def get(self, name):
        """The single field of register ``name``."""
        reg = self.regmap[name]
        return self.regmap.decode(name, await self.read(name))[reg.fields[0].name]

    async def status(self):
        st = self.regmap.decode("STATUS", await self.read("STATUS"))
        st["error_code"] = self.regmap.decode("ERROR_CODE",
                                              await self.read("ERROR_CODE"))["error_code"]
        return st

    async def control(self, **fields):
        return await self.write("CONTROL", self.regmap.encode("CONTROL", **fields))

    async def clear_error(self):
        w = await self.control(clear_error=1)
        st = await self.status()
        assert not st["error"] and st["error_code"] == ErrorCode.NONE, \
            f"after clear_error: {st}"
        return w

    async def soft_reset(self):
        """Stop the sender (as a host stops its DMA), pulse ``soft_reset``, drop the
        partial response."""
        self.src.clear()
        w = await self.control(soft_reset=1)
        await self.step(2)
        self._resp = []
        self.responses.clear()
        return w

    async def configure(self, *, layers, inputs, widths, gammas, robust=None, thresh=None,
                        keys=None):
        """Write ``LAYERS``, ``INPUTS`` and every layer's registers (missing layers 0)."""
        ml = self.build.max_layers
        pad = lambda values: list(values or []) + [0] * (ml - len(values or []))
        await self.set("LAYERS", layers)
        await self.set("INPUTS", inputs)
        for l, (k, g, r, th, key) in enumerate(zip(pad(widths), pad(gammas), pad(robust),
                                                     pad(thresh), pad(keys))):
            await self.set(f"WIDTH_{l}", k)
            await self.set(f"GAMMA_{l}", g)
            await self.set(f"ROBUST_{l}", r)
            await self.set(f"THRESH_{l}", th)
            await self.set(f"KEY_{l}", key)

    # -- packets -----------------------------------------------------------------------------

    def send(self, words, *, start=None, lasts=None):
        """Queue a packet (``tlast`` on its last word unless ``lasts`` says otherwise)."""
        words = [int(w) & 0xFFFFFFFF for w in words]
        if lasts is None:
            lasts = [0] * (len(words) - 1) + [1]
        pkt = Packet(words, list(lasts), self.t if start is None else start)
        self.src.extend((pkt, i) for i in range(len(words)))
        return pkt

    async def wait_sent(self, pkt, max_cycles=5000):
        await self.until(lambda: pkt.sent, max_cycles,
                         f"s_axis taking all {len(pkt.words)} words of a packet "
                         f"({len(pkt.accepted)} taken)")

    async def response(self, max_cycles=5000, what="response"):
        await self.until(lambda: self.responses, max_cycles, what)
        return self.responses.popleft()[1]

    async def request(self, words, max_cycles=5000, what="response"):
        pkt = self.send(words)
        return await self.response(max_cycles, what), pkt

    async def expect_refused(self, pkt, code, what, max_cycles=5000):
        """``pkt`` is taken to its ``tlast`` and refused with ``code``, no response."""
        await self.wait_sent(pkt, max_cycles)
        await self.step(4)
        st = await self.status()
        assert st["error"] and st["error_code"] == code and st["phase"] == Phase.ERROR, \
            f"{what}: status {st}, expected {ErrorCode(code).name}"
        assert not self.responses and not self._resp, f"{what}: a response to a refused packet"

    async def wait_idle(self, max_cycles, what):
        """Poll ``STATUS`` until the core is not busy (idle or in error)."""
        start = self.t
        while True:
            st = await self.status()
            if not st["busy"]:
                return st
            if self.t - start > max_cycles:
                raise Timeout(f"{what}: still busy after {max_cycles} cycles: {st}")


# -- packets, spelled out --------------------------------------------------------------------

def hdr(op, layer=0, count=0):
    return header_word(op, layer, count)


def h_words(h):
    """WRITE_H payload of ``h`` (K x F, -128..127): weight ``i`` of neuron ``k`` in word
    ``k * ceil(F/4) + i // 4``, byte ``i % 4``, padding bytes 0."""
    k, f = h.shape
    w = -(-f // 4)
    padded = np.zeros((k, 4 * w), dtype=np.int64)
    padded[:, :f] = h
    b = (padded & 0xFF).reshape(k, w, 4)
    return [int(x) for x in (b[..., 0] | b[..., 1] << 8 | b[..., 2] << 16 | b[..., 3] << 24)
            .reshape(-1)]


def h_from_words(words, k, f):
    w = -(-f // 4)
    a = np.array(words, dtype=np.int64).reshape(k, w)
    b = np.stack([(a >> (8 * i)) & 0xFF for i in range(4)], axis=-1).reshape(k, 4 * w)
    b = np.where(b >= 128, b - 256, b)
    return b[:, :f]


def train_words(rng, labels, fan_in, op=Opcode.TRAIN):
    """A TRAIN (INFER) packet of random patterns with the given labels (unchecked)."""
    words = [hdr(op, 0, len(labels))]
    for y in labels:
        words.append(int(y))
        words += [int(x) for x in rng.integers(0, 1 << 32, size=-(-fan_in // 32))]
        if fan_in % 32:
            words[-1] &= (1 << (fan_in % 32)) - 1
    return words


def h_units(k, f, lanes):
    """The WRITE_H payload words written together: ``(first, last)`` index pairs, one per
    memory word (``lanes / 4`` payload words, fewer at the end of a neuron)."""
    w, q = -(-f // 4), lanes // 4
    return [(n * w + j, n * w + min(j + q, w) - 1) for n in range(k) for j in range(0, w, q)]


def failing_word(sent, expected):
    """Index of the payload word at which a WRITE_* of ``sent`` words (tlast on the last)
    goes wrong when ``expected`` were due: the early ``tlast``, or the last due word
    arriving without one; None if the length is right."""
    if sent == expected:
        return None
    return sent - 1 if sent < expected else expected - 1


def _setup(dut):
    params = tb_params()
    build = Build(**params["build"])
    return build, Host(dut, build)


def _bound(build):
    """Cycles from the B handshake of the last register write to a header taken."""
    return build.max_layers + 6


# -- issue 11.1: configuration after a refused TRAIN -----------------------------------------

@cocotb.test()
async def test_config_after_refused_train(dut):
    """A TRAIN of 16 patterns refused with LABEL at pattern 15 (its forward pass still
    running), then configuration writes after clear_error or during ERROR: a valid READ_P
    is answered, a READ_P that does not fit the new configuration is refused with CONFIG,
    both with the header taken within the bound after the last write."""
    build, host = _setup(dut)
    rng = case_rng("test_config_after_refused_train")
    bound = _bound(build)
    failures = []

    async def variant(name, writes_in_error, writes_after, packet, outcome):
        await host.hard_reset()
        await host.configure(layers=1, inputs=64, widths=[64], gammas=[8])
        labels = list(rng.integers(0, build.classes, size=16))
        labels[15] = build.classes
        pkt = host.send(train_words(rng, labels, 64))
        await host.expect_refused(pkt, ErrorCode.LABEL, f"{name}: the TRAIN")
        for reg, value in writes_in_error:
            await host.set(reg, value)
        last = await host.control(clear_error=1)
        for reg, value in writes_after:
            last = await host.set(reg, value)
        pkt = host.send(packet)             # on s_axis from the last write's B on
        await host.until(lambda: pkt.header_cycle is not None, 2000,
                         f"{name}: the header of {packet[0]:#010x} taken")
        took = pkt.header_cycle - max(last.b, pkt.start)
        assert took <= bound, f"{name}: header taken {took} cycles after the last write's B " \
                              f"or its own arrival (bound {bound})"
        if outcome == "response":
            words = await host.response(2000, f"{name}: the READ_P response")
            assert len(words) == packet[0] & 0xFFFF, f"{name}: {len(words)} words"
        else:
            await host.expect_refused(pkt, outcome, name)
        dut._log.info("%s: header taken %d cycles after the last write, %s", name, took,
                      outcome if outcome == "response" else ErrorCode(outcome).name)

    cases = [
        ("WIDTH_0=8, GAMMA_0=4 after clear_error", [],
         [("WIDTH_0", 8), ("GAMMA_0", 4)], [0x13000008], "response"),
        ("WIDTH_0=8, GAMMA_0=4 during ERROR", [("WIDTH_0", 8), ("GAMMA_0", 4)], [],
         [0x13000008], "response"),
        ("old values written back", [], [("WIDTH_0", 64), ("GAMMA_0", 8)], [0x13000040],
         "response"),
        ("INPUTS=0 after clear_error", [], [("INPUTS", 0)], [0x13000040], ErrorCode.CONFIG),
        ("WIDTH_0=0 after clear_error", [], [("WIDTH_0", 0)], [0x13000040], ErrorCode.CONFIG),
        ("INPUTS=0 during ERROR", [("INPUTS", 0)], [], [0x13000040], ErrorCode.CONFIG),
    ]
    for case in cases:
        try:
            await variant(*case)
        except AssertionError as e:
            failures.append(f"{case[0]}: {e}")
            dut._log.error("%s: FAILED: %s", case[0], e)
    assert not failures, "; ".join(failures)
    record_cases(dut, "test_config_after_refused_train", len(cases))


# -- issue 11.2: register writes racing a header ----------------------------------------------

@dataclasses.dataclass
class Race:
    name: str
    base: dict          # configure() arguments
    register: str
    value: int
    packet: list
    old: tuple          # outcome under the old value: ("error", code) or ("response", check)
    new: tuple


def _status_word(op):
    return lambda words: (len(words) == 1 and words[0] >> 24 == STATUS_TAG | op
                          and words[0] & 0xFFFFFF <= 1)


def _outcome_ok(outcome, got):
    kind, what = outcome
    if kind != got[0]:
        return False
    return got[1] == what if kind == "error" else what(got[1])


@cocotb.test()
async def test_config_races(dut):
    """A register write and a header at every offset -12..+12 cycles from the write's
    AW/W handshake: the header is checked against the new value (the write took effect
    first), or the write is refused with BUSY and the old value used, or the write lands
    after the packet is done; never a mix, never a hang."""
    build, host = _setup(dut)
    rng = case_rng("test_config_races")
    k = 16
    rows = [[int(x) for x in rng.integers(0, 1 << build.classes, size=k)] for _ in range(2)]
    one_pattern = train_words(rng, [1], 64)
    two = dict(layers=2, inputs=64, widths=[k, k], gammas=[4, 4])
    one = dict(layers=1, inputs=64, widths=[64], gammas=[8])
    refused = lambda code: ("error", code)
    races = [
        Race("LAYERS 2->3 vs READ_P of layer 2", two, "LAYERS", 3, [hdr(Opcode.READ_P, 2, k)],
             refused(ErrorCode.LAYER), refused(ErrorCode.CONFIG)),
        Race("LAYERS 2->3 vs WRITE_P of layer 2", two, "LAYERS", 3,
             [hdr(Opcode.WRITE_P, 2, k)] + [0x3F] * k,
             refused(ErrorCode.LAYER), refused(ErrorCode.CONFIG)),
        Race("WIDTH_0 64->0 vs TRAIN of one pattern", one, "WIDTH_0", 0, one_pattern,
             ("response", _status_word(Opcode.TRAIN)), refused(ErrorCode.CONFIG)),
        Race("LAYERS 1->2 (WIDTH_1=0) vs READ_P of layer 1", one, "LAYERS", 2,
             [hdr(Opcode.READ_P, 1, k)], refused(ErrorCode.LAYER), refused(ErrorCode.CONFIG)),
        Race("INPUTS 64->0 vs TRAIN of one pattern", one, "INPUTS", 0, one_pattern,
             ("response", _status_word(Opcode.TRAIN)), refused(ErrorCode.CONFIG)),
        Race("LAYERS 1->2 (WIDTH_1=16) vs READ_P of layer 1",
             dict(layers=1, inputs=64, widths=[k, k], gammas=[4, 4]), "LAYERS", 2,
             [hdr(Opcode.READ_P, 1, k)], refused(ErrorCode.LAYER),
             ("response", lambda words: words == rows[1])),
    ]

    async def load_rows():
        await host.hard_reset()
        await host.configure(**two)
        for l in range(2):
            pkt = host.send([hdr(Opcode.WRITE_P, l, k)] + rows[l])
            await host.wait_sent(pkt)

    await load_rows()
    failures = []
    checked = 0
    for race in races:
        seen = []
        for off in range(-12, 13):
            try:
                seen.append(await _race(host, race, off, rows, k))
            except AssertionError as e:
                failures.append(f"{race.name}, offset {off:+d}: {e}")
                dut._log.error("%s, offset %+d: FAILED: %s", race.name, off, e)
                seen.append("FAIL")
                await load_rows()           # the next race starts from the known rows
            checked += 1
        dut._log.info("%s: %s", race.name,
                      " ".join(f"{off:+d}:{s}" for off, s in zip(range(-12, 13), seen)))
    assert not failures, f"{len(failures)} of {checked} races failed: " + "; ".join(failures[:8])
    record_cases(dut, "test_config_races", checked)


async def _race(host, race, off, rows, k):
    """One race; returns "new", "busy" or "after" (the outcome seen)."""
    build = host.build
    await host.hard_reset()
    await host.configure(**race.base)
    old_value = await host.read(race.register)
    await host.step(20)                       # settled, idle
    t0 = host.t + 16
    w = host.write_at(race.register, race.value, start=t0)
    pkt = host.send(race.packet, start=t0 + off)
    await host.until(lambda: w.b is not None, 200, "the racing write's B response")
    assert w.aw == t0 and w.w == t0, f"write handshake at {w.aw}/{w.w}, expected {t0}"
    await host.wait_sent(pkt, 3000)
    st = await host.wait_idle(3000, "after the racing packet")
    await host.step(8)
    if host.responses:
        got = ("response", host.responses.popleft()[1])
    elif host._resp:
        raise AssertionError(f"a response without tlast ({len(host._resp)} words)")
    else:
        got = ("error", st["error_code"] if st["error"] else ErrorCode.NONE)
    st = await host.status()
    value = await host.read(race.register)
    h = pkt.header_cycle
    assert value in (old_value, race.value), f"register reads {value:#x}"
    applied = value == race.value
    what = f"header taken at {h - t0:+d}, write in effect from {w.b - t0:+d}, got {got!r:.80}"
    if applied and _outcome_ok(race.new, got):
        assert h >= w.b, f"new value used by a header taken before the write: {what}"
        seen = "new"
    elif applied and _outcome_ok(race.old, got):
        assert h < w.b - 1, f"old value used though the write was in effect: {what}"
        seen = "after"
    elif not applied:
        assert st["error"], f"the write was ignored without BUSY: {st}; {what}"
        if race.old[0] == "response":
            assert st["error_code"] == ErrorCode.BUSY, f"{st}; {what}"
        assert _outcome_ok(race.old, got), f"write refused, old value not used: {what}"
        seen = "busy"
    else:
        raise AssertionError(f"outcome of neither value: {what}")
    # Nothing else changed, and the core takes packets again.
    if st["error"]:
        await host.clear_error()
    if race.base["layers"] < 2 or applied:
        await host.set("LAYERS", 2)
        for l in range(2):
            await host.set(f"WIDTH_{l}", k)
            await host.set(f"GAMMA_{l}", 4)
        await host.set("INPUTS", 64)
    for l in range(2):
        words, _ = await host.request([hdr(Opcode.READ_P, l, k)], 2000, "READ_P after a race")
        assert words == rows[l], f"P of layer {l} changed: {words} ({what})"
    return seen


# -- issue 11.3 and the rule for refused writes ----------------------------------------------

@cocotb.test()
async def test_refused_write_h(dut):
    """INPUTS=4, WIDTH_0=2, both neurons 0x01010101; WRITE_H [0x10000002, 0x7F7F7F7F
    (tlast)] is refused with LENGTH and writes nothing (its only word is the failing one)."""
    build, host = _setup(dut)
    await host.hard_reset()
    await host.configure(layers=1, inputs=4, widths=[2], gammas=[1])
    pkt = host.send([0x10000002, 0x01010101, 0x01010101])
    await host.wait_sent(pkt)
    words, _ = await host.request([0x11000002])
    assert words == [0x01010101, 0x01010101], [hex(x) for x in words]
    pkt = host.send([0x10000002, 0x7F7F7F7F])
    await host.expect_refused(pkt, ErrorCode.LENGTH, "WRITE_H one word short")
    await host.clear_error()
    words, _ = await host.request([0x11000002])
    assert words == [0x01010101, 0x01010101], \
        f"after the refused WRITE_H: {[hex(x) for x in words]}"
    record_cases(dut, "test_refused_write_h", 1)


@cocotb.test()
async def test_refused_writes_word_for_word(dut):
    """A WRITE_* refused with LENGTH writes exactly the payload words before the failing
    one (the word with an early tlast, or the layer's last word without tlast), WRITE_H in
    whole memory words: a memory word is written only if all its payload words come
    before the failing one."""
    build, host = _setup(dut)
    rng = case_rng("test_refused_writes_word_for_word")
    lanes, q = build.lanes, build.lanes // 4
    checked = 0
    await host.hard_reset()
    for f, kk in ((4, 2), (6, 3), (64, 2), (70, 3), (128, 2)):
        await host.configure(layers=1, inputs=f, widths=[kk], gammas=[1])
        w = -(-f // 4)
        n_due = kk * w
        for sent in sorted({1, 2, q - 1, q, q + 1, w, w + 1, n_due - 1, n_due + 1, n_due + 4}):
            if not 1 <= sent or sent == n_due:
                continue
            old = rng.integers(-127, 128, size=(kk, f))
            new = rng.integers(-127, 128, size=(kk, f))
            pkt = host.send([hdr(Opcode.WRITE_H, 0, kk)] + h_words(old))
            await host.wait_sent(pkt)
            payload = h_words(new)
            payload += [int(x) for x in rng.integers(0, 1 << 32, size=max(0, sent - n_due))]
            pkt = host.send([hdr(Opcode.WRITE_H, 0, kk)] + payload[:sent])
            await host.expect_refused(pkt, ErrorCode.LENGTH, f"WRITE_H F={f} K={kk} {sent} words")
            await host.clear_error()
            words, _ = await host.request([hdr(Opcode.READ_H, 0, kk)])
            j = failing_word(sent, n_due)
            want = list(h_words(old))
            for first, last in h_units(kk, f, lanes):
                if last < j:
                    want[first:last + 1] = payload[first:last + 1]
            assert words == want, (
                f"WRITE_H F={f} K={kk} of {sent} words (failing word {j}): got "
                f"{h_from_words(words, kk, f).tolist()}, expected "
                f"{h_from_words(want, kk, f).tolist()}")
            checked += 1
        # WRITE_P / WRITE_T: one row per word.
        for op, rd, mask in ((Opcode.WRITE_P, Opcode.READ_P, (1 << build.classes) - 1),
                             (Opcode.WRITE_T, Opcode.READ_T, 0x1FFFF)):
            for sent in sorted({1, kk - 1, kk + 1, kk + 3}):
                if sent < 1 or sent == kk:
                    continue
                old = [int(x) & mask for x in rng.integers(0, 1 << 32, size=kk)]
                new = [int(x) & mask for x in rng.integers(0, 1 << 32, size=max(kk, sent))]
                pkt = host.send([hdr(op, 0, kk)] + old)
                await host.wait_sent(pkt)
                pkt = host.send([hdr(op, 0, kk)] + new[:sent])
                await host.expect_refused(pkt, ErrorCode.LENGTH, f"{op.name} {sent} of {kk}")
                await host.clear_error()
                words, _ = await host.request([hdr(rd, 0, kk)])
                j = failing_word(sent, kk)
                want = new[:j] + old[j:]
                assert words == want, f"{op.name} of {sent} words for {kk} rows: {words}, " \
                                      f"expected {want}"
                checked += 1
    record_cases(dut, "test_refused_writes_word_for_word", checked)


# -- the decided open points ---------------------------------------------------------------

@cocotb.test()
async def test_decided_rules(dut):
    """Error priority (OPCODE, CONFIG, LAYER, LENGTH at the header; then the first bad
    payload word, LENGTH before LABEL in one word); clear_error before the refused
    packet's tlast ignored; 1 <= GAMMA_l <= WIDTH_l; count of WRITE_*/READ_* and layer of
    TRAIN/INFER ignored; READ_H padding bytes 0; a header taken within the bound after
    the last register write."""
    build, host = _setup(dut)
    rng = case_rng("test_decided_rules")
    checked = []
    await host.hard_reset()
    k = 8

    async def refused(words, code, what, **kw):
        pkt = host.send(words, **kw)
        await host.expect_refused(pkt, code, what)
        await host.clear_error()
        checked.append(what)

    base = dict(layers=1, inputs=64, widths=[k], gammas=[4])
    await host.configure(**base)
    # Error priority at the header.
    await host.set("LAYERS", build.max_layers + 1)
    await refused([hdr(0x7E, 0, 1)], ErrorCode.OPCODE, "bad opcode with a bad configuration")
    await refused([hdr(Opcode.READ_P, 5, k), 0], ErrorCode.CONFIG,
                  "CONFIG before LAYER and LENGTH")
    await refused([hdr(Opcode.TRAIN, 0, 0)], ErrorCode.CONFIG, "CONFIG before a TRAIN's LENGTH")
    await host.set("LAYERS", 1)
    await refused([hdr(Opcode.READ_P, 1, k), 0], ErrorCode.LAYER, "LAYER before LENGTH")
    await refused([hdr(Opcode.WRITE_P, 1, k)], ErrorCode.LAYER, "LAYER before a header-only LENGTH")
    await refused([hdr(Opcode.TRAIN, 0, build.max_batch + 1), 0, 0, 0], ErrorCode.LENGTH,
                  "TRAIN count above max_batch")
    # Payload: the first bad word decides; in a label word with tlast, LENGTH.
    words = train_words(rng, [0, build.classes], 64)
    await refused(words[:5], ErrorCode.LENGTH, "tlast on a bad label word")
    await refused(words, ErrorCode.LABEL, "bad label of the second pattern")
    await refused(train_words(rng, [build.classes, 0], 64)[:3], ErrorCode.LABEL,
                  "bad label before an early tlast")
    # clear_error before the refused packet's tlast is ignored.
    pkt = host.send([hdr(0x7E, 0, 1), 1, 2], lasts=[0, 0, 0])
    await host.wait_sent(pkt)
    await host.control(clear_error=1)
    st = await host.status()
    assert st["error"] and st["error_code"] == ErrorCode.OPCODE and st["phase"] == Phase.ERROR, st
    pkt = host.send([3, 4])
    await host.expect_refused(pkt, ErrorCode.OPCODE, "the rest of the refused packet")
    await host.clear_error()
    words, _ = await host.request([hdr(Opcode.READ_P, 0, k)], 2000)
    assert len(words) == k
    checked.append("clear_error during the discard")
    # GAMMA: 1 <= GAMMA_l <= WIDTH_l (and WIDTH_l <= GAMMA_l * max_groups).
    for gamma, ok in ((k, True), (k + 1, False), (255, False), (256, False), (0, False),
                      (1, k <= build.max_groups)):
        await host.set("GAMMA_0", gamma)
        pkt = host.send([hdr(Opcode.READ_P, 0, k)])
        if ok:
            words = await host.response(2000)
            assert len(words) == k, f"GAMMA_0={gamma}"
        else:
            await host.expect_refused(pkt, ErrorCode.CONFIG, f"GAMMA_0={gamma}")
            await host.clear_error()
        checked.append(f"GAMMA_0={gamma}")
    await host.set("GAMMA_0", 4)
    await host.set("GAMMA_1", 4095)             # inactive layer: not checked
    words, _ = await host.request([hdr(Opcode.READ_P, 0, k)], 2000)
    assert len(words) == k
    # Count of WRITE_*/READ_* and layer of TRAIN/INFER are ignored.
    rows = [int(x) for x in rng.integers(0, 1 << build.classes, size=k)]
    pkt = host.send([hdr(Opcode.WRITE_P, 0, 0)] + rows)
    await host.wait_sent(pkt)
    for count in (0, 1, k + 1, 0xFFFF):
        words, _ = await host.request([hdr(Opcode.READ_P, 0, count)], 2000)
        assert words == rows, f"READ_P with count {count}: {words}"
    infer = train_words(rng, [0, 1], 64, Opcode.INFER)
    infer[0] |= 7 << 16
    words, _ = await host.request(infer, 2000)
    assert len(words) == 3 and words[-1] >> 24 == STATUS_TAG | Opcode.INFER, words
    checked.append("count and layer fields ignored")
    # READ_H padding bytes read 0 after INPUTS shrinks (the weights stay in H).
    await host.configure(layers=1, inputs=8, widths=[2], gammas=[1])
    pkt = host.send([hdr(Opcode.WRITE_H, 0, 2)] + [0x05050505] * 4)
    await host.wait_sent(pkt)
    await host.set("INPUTS", 6)
    words, _ = await host.request([hdr(Opcode.READ_H, 0, 2)], 2000)
    assert words == [0x05050505, 0x00000505] * 2, [hex(x) for x in words]
    await host.set("INPUTS", 5)
    words, _ = await host.request([hdr(Opcode.READ_H, 0, 2)], 2000)
    assert words == [0x05050505, 0x00000005] * 2, [hex(x) for x in words]
    checked.append("READ_H padding bytes 0")
    # The bound: a header waiting on s_axis is taken within it after any register write.
    bound = _bound(build)
    worst = 0
    for reg in ("INPUTS", "ROBUST_0", "STEP", "KEY_1", "CONTROL"):
        value = 0 if reg == "CONTROL" else await host.read(reg)
        w = host.write_at(reg, value)
        pkt = host.send([hdr(Opcode.READ_P, 0, 2)], start=host.t + 1)
        words = await host.response(2000)
        assert w.b is not None and len(words) == 2, (reg, words)
        worst = max(worst, pkt.header_cycle - w.b)
    assert worst <= bound, f"header taken {worst} cycles after a write's B (bound {bound})"
    dut._log.info("header taken at most %d cycles after a write's B (bound %d)", worst, bound)
    checked.append("settling bound")
    record_cases(dut, "test_decided_rules", len(checked))


@cocotb.test()
async def test_soft_reset_mid_write(dut):
    """soft_reset a random number of cycles into a WRITE_H: every memory
    word of the layer then holds its old or its new contents, and the core works."""
    build, host = _setup(dut)
    rng = case_rng("test_soft_reset_mid_write")
    await host.hard_reset()
    f, kk = 128, 4
    await host.configure(layers=1, inputs=f, widths=[kk], gammas=[1])
    units = h_units(kk, f, build.lanes)
    checked = 0
    for _ in range(6):
        old = h_words(rng.integers(-127, 128, size=(kk, f)))
        new = h_words(rng.integers(-127, 128, size=(kk, f)))
        pkt = host.send([hdr(Opcode.WRITE_H, 0, kk)] + old)
        await host.wait_sent(pkt)
        pkt = host.send([hdr(Opcode.WRITE_H, 0, kk)] + new)
        await host.step(int(rng.integers(2, len(new) + 8)))
        await host.soft_reset()
        words, _ = await host.request([hdr(Opcode.READ_H, 0, kk)], 3000)
        for first, last in units:
            got = words[first:last + 1]
            assert got in (old[first:last + 1], new[first:last + 1]), \
                f"memory word of payload words {first}..{last}: neither old nor new"
        checked += 1
    record_cases(dut, "test_soft_reset_mid_write", checked)


# -- soft_reset just after a WRITE_H, padding through a TRAIN ---------------------------------

@cocotb.test()
async def test_soft_reset_after_write_h(dut):
    """soft_reset with its B handshake in the cycles around the one in which the last
    word of a WRITE_H is taken: a WRITE_H whose last word was taken before the B is done,
    every memory word new; otherwise each holds its old or its new contents."""
    build, host = _setup(dut)
    rng = case_rng("test_soft_reset_after_write_h")
    await host.hard_reset()
    reset_bits = host.regmap.encode("CONTROL", soft_reset=1)
    w = await host.control()                    # no field set: a write that does nothing
    write_latency = w.b - w.start
    gaps = collections.Counter()

    def weights(k, f):
        # Byte 3 of each word is negative (0x81..0xFF, no opcode): the words of a packet
        # cut off by the reset are refused as headers and change nothing.
        h = rng.integers(-127, 128, size=(k, f))
        h[:, 3::4] = rng.integers(-127, 0, size=h[:, 3::4].shape)
        return h_words(h)

    for f, kk in ((2, 4), (70, 3), (128, 4)):
        await host.configure(layers=1, inputs=f, widths=[kk], gammas=[1])
        units = h_units(kk, f, build.lanes)
        pkt = host.send([hdr(Opcode.WRITE_H, 0, kk)] + weights(kk, f), start=host.t + 2)
        await host.wait_sent(pkt)
        span = pkt.accepted[-1] - pkt.start
        for d in range(-10, 4):
            old, new = weights(kk, f), weights(kk, f)
            pkt = host.send([hdr(Opcode.WRITE_H, 0, kk)] + old)
            await host.wait_sent(pkt)
            await host.step(4)
            t0 = host.t + 2
            pkt = host.send([hdr(Opcode.WRITE_H, 0, kk)] + new, start=t0)
            w = host.write_at("CONTROL", reset_bits, start=t0 + span - write_latency + d)
            await host.until(lambda: w.b is not None, 200, "the soft_reset's B")
            host.src.clear()
            await host.soft_reset()             # ends a refused leftover's discard
            done = pkt.sent and pkt.accepted[-1] < w.b
            if pkt.sent:
                gaps[w.b - pkt.accepted[-1]] += 1
            words, _ = await host.request([hdr(Opcode.READ_H, 0, kk)], 3000)
            if done:
                assert words == new, (f"F={f} K={kk}: WRITE_H done {w.b - pkt.accepted[-1]} "
                                      f"cycles before the soft_reset's B, READ_H not all new")
            for first, last in units:
                assert words[first:last + 1] in (old[first:last + 1], new[first:last + 1]), \
                    f"F={f} K={kk} d={d}: memory word {first}..{last} neither old nor new"
    dut._log.info("B minus the last word's cycle: %s", dict(sorted(gaps.items())))
    assert {1, 2} <= set(gaps), f"the cycles just after the last word not covered: {gaps}"
    record_cases(dut, "test_soft_reset_after_write_h", sum(gaps.values()))


class _Mirror:
    """The host's register writes and packets, also fed to the reference model."""

    def __init__(self, host, model):
        self.host, self.model = host, model

    async def set(self, name, value):
        w = await self.host.set(name, value)
        self.model.write(self.host.offsets[name], w.data)

    def send(self, words):
        for i, x in enumerate(words):
            self.model.word(int(x), i == len(words) - 1)
        return self.host.send(words)

    async def request(self, words):
        self.send(words)
        got = await self.host.response()
        want = self.model.responses.pop(0)
        self.model.response_done()
        return got, want


@cocotb.test()
async def test_train_keeps_padding(dut):
    """A TRAIN leaves the lanes past each neuron's fan-in alone, W = sign(H) there too:
    INPUTS shrinks, TRAINs run, INPUTS grows back; READ_H and INFER then match the
    reference model, which expects the old weights in the lanes that came back."""
    build, host = _setup(dut)
    rng = case_rng("test_train_keeps_padding")
    checked = 0
    for f, shrunk, kk in ((8, 1, 8), (40, 33, 6), (100, 70, 4)):
        await host.hard_reset()
        mirror = _Mirror(host, ProtocolModel(build))
        mirror.model.t_known[:] = True
        for name, value in (("LAYERS", 1), ("INPUTS", f), ("WIDTH_0", kk), ("GAMMA_0", 1),
                            ("ROBUST_0", 0), ("THRESH_0", 1 << 15), ("KEY_0", 7)):
            await mirror.set(name, value)
        h = 2 * rng.integers(-20, 20, size=(kk, f)) + 1
        p = [int(x) for x in rng.integers(1, 1 << build.classes, size=kk)]
        t = [int(x) & 0xFFFF for x in rng.integers(-2, 3, size=kk)]
        for op, payload in ((Opcode.WRITE_H, h_words(h)), (Opcode.WRITE_P, p),
                            (Opcode.WRITE_T, t)):
            pkt = mirror.send([hdr(op, 0, kk)] + payload)
            await host.wait_sent(pkt)
        await mirror.set("INPUTS", shrunk)
        for _ in range(3):
            n = int(rng.integers(4, build.max_batch + 1))
            words = [hdr(Opcode.TRAIN, 0, n)]
            for y in rng.integers(0, build.classes, size=n):
                words += [int(y)] + pattern_payload(rng.integers(0, 2, size=shrunk) * 2 - 1)
            got, want = await mirror.request(words)
            assert got == want.words, f"TRAIN F={shrunk}: {got} != {want.words}"
        await mirror.set("INPUTS", f)
        got, _ = await host.request([hdr(Opcode.READ_H, 0, kk)])
        problems, _ = mirror.model.check_read(Opcode.READ_H, 0, got)
        assert not problems, f"READ_H after F {f}->{shrunk}->{f}: {problems[:3]}"
        n = build.max_batch
        words = [hdr(Opcode.INFER, 0, n)]
        for y in rng.integers(0, build.classes, size=n):
            words += [int(y)] + pattern_payload(rng.integers(0, 2, size=f) * 2 - 1)
        got, want = await mirror.request(words)
        assert got == want.words, (f"INFER after F {f}->{shrunk}->{f}: predictions "
                                   f"{got[:-1]}, the model's {want.words[:-1]}")
        checked += 1
    record_cases(dut, "test_train_keeps_padding", checked)
