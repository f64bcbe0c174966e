"""Protocol fuzzer of :class:`xnorlearn.hw.accelerator.Accelerator` against the reference
model :class:`xnorlearn.sim.protocol_model.ProtocolModel`.

The host is :class:`FuzzHost`, a cycle-exact driver of the raw top-level ports (in the
manner of :class:`xnorlearn.sim.tb_hardening.Host`, with stalls added): it drives just
after each falling clock edge and samples every handshake before the next rising edge,
with random idle cycles on ``s_axis`` and the AW/W/AR channels, backpressure on
``m_axis``, B and R, and AW and W of a write apart by a few cycles. It checks the
handshake rules of the accelerator's outputs on every cycle (``m_axis``: once ``tvalid``
is high it stays high with ``tdata``/``tlast`` stable until ``tready``; AXI4-Lite: B and
R held until taken with their data stable, no response without a request) and the
settling rule of the top level (no header taken from the cycle after a write's address
and data are in up to ``max_layers + 5`` cycles after its B handshake). Every wait is
bounded by a number of cycles; a hang is a finding.

A run is a sequence of random *cases* (:data:`KINDS`). The host logs what happened on
the ports (words taken, writes with the cycle they took effect, reads, responses); at the
end of a case the log is replayed into a copy of the model. A write that races the
accelerator (a configuration write around a header or during a phase, ``clear_error``
or ``soft_reset`` at a random point) is the one event whose order the host cannot read
off the ports exactly: it is placed where its effect edge says, and also next to any
response end within two cycles (the response register slice) and, for ``CONTROL``,
next to any word within one cycle; each placement is a candidate, and the case passes if
one candidate explains everything observed. A register write and a header taken at the
same clock edge are ordered header first (the core is busy after it, so the write is
refused with ``BUSY``), a write and a payload word at the same edge write first; the
cycle after every header is busy (its end is a ``checked`` event of the replay).

Every case ends with the same observation: ``STATUS``, ``ERROR_CODE``, every
configuration register, ``STEP``, ``PATTERNS`` and ``ERRORS``, then (after
``clear_error`` if an error is latched, and the last good configuration written back if
the registers do not fit) a golden check: ``READ_H``, ``READ_P`` and ``READ_T`` of every
layer, every weight compared with the model. Weights that the docs leave open (see the
model) are adopted from the read-back and counted as ``adopted``.

The model holds the gateware to the docs alone. Each case is logged to ``cases.log`` in
the build directory; a finding at case ``i`` is replayed with the same seed and
parameters plus ``stop = i + 1`` (``stop`` does not change the cases).

Tests (parameters from :func:`~xnorlearn.sim.runner.tb_params`: ``build``, the
:class:`~xnorlearn.contract.Build` as a dict; ``cases``; ``stalls``, the share of cases
run with random stalls; ``max_width``/``max_fan_in``, caps on the random networks;
``stop``, see above):

``test_fuzz``
    ``cases`` random cases; writes the counts (cases per kind, adversarial cases, golden
    checks, words compared, racing writes and their outcomes, the orders the replay had
    to move them to, findings) to ``cases.json``.
"""

import collections
import dataclasses
import itertools
import json
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, ReadOnly

from xnorlearn.contract import (Build, Opcode, Phase, RegisterMap, header_word,
                                max_sweep_cycles)
from xnorlearn.sim.protocol_model import (OKAY, ProtocolModel,
                                          StreamViolation,
                                          Unpredictable, config_of, fit_problem, h_payload,
                                          pattern_payload, t_word)
from xnorlearn.sim.runner import default_seed, tb_params
from xnorlearn.sim.streams import case_rng, record_cases

__all__ = ["FuzzHost", "Timeout", "Finding", "Fuzzer", "KINDS", "ADVERSARIAL"]

CLOCK_NS = 10

#: The case kinds, with their weights in the draw.
KINDS = {
    "train": 6, "infer": 4, "write_h": 3, "write_p": 2, "write_t": 2, "read": 2,
    "queued": 3, "bad_opcode": 3, "bad_layer": 3, "bad_length": 6, "bad_label": 3,
    "bad_count": 2, "bad_config": 4, "write_race": 10, "write_phase": 8,
    "clear_error": 4, "soft_reset": 8, "registers": 4, "blocked": 2, "reconfigure": 3,
}
#: The kinds that are adversarial (everything but valid packets and reconfiguration).
ADVERSARIAL = frozenset(KINDS) - {"train", "infer", "write_h", "write_p", "write_t", "read",
                                  "queued", "reconfigure"}
LAYER_REGS = ("WIDTH", "GAMMA", "ROBUST", "THRESH", "KEY")
OPCODES = [int(op) for op in Opcode]
WRITE_OPS = (Opcode.WRITE_H, Opcode.WRITE_P, Opcode.WRITE_T)
READ_OPS = (Opcode.READ_H, Opcode.READ_P, Opcode.READ_T)


class Timeout(AssertionError):
    """A bounded wait that ran out: the accelerator hung (or is slower than documented)."""


class Finding(AssertionError):
    """The accelerator and the reference model disagree (or a port rule was broken)."""


def _int(handle):
    try:
        return int(handle.value)
    except ValueError:          # X or Z (Icarus before the first edge)
        return 0


# -- the host on the ports ----------------------------------------------------------------------

@dataclasses.dataclass
class Write:
    offset: int
    data: int
    strobe: int
    aw_start: int
    w_start: int
    racing: bool = False
    aw: int = None              # cycle of the AW handshake
    w: int = None               # cycle of the W handshake
    bv: int = None              # first cycle bvalid was seen high
    b: int = None               # cycle of the B handshake
    resp: int = None

    @property
    def t_in(self):
        return max(self.aw, self.w)


@dataclasses.dataclass
class Read:
    offset: int
    start: int
    check: bool = False
    ar: int = None
    r: int = None
    data: int = None
    resp: int = None


@dataclasses.dataclass
class Packet:
    words: list
    lasts: list
    start: int
    what: str = ""
    accepted: list = dataclasses.field(default_factory=list)

    @property
    def header_cycle(self):
        return self.accepted[0] if self.accepted else None

    @property
    def sent(self):
        return len(self.accepted) == len(self.words)


class FuzzHost:
    """Cycle-exact host on the accelerator's ports, with stalls and port monitors.

    ``t`` is the current cycle: what is queued with a start ``<= t`` may be driven in it.
    Everything that happens is appended to :attr:`log` as tuples (see
    :meth:`Fuzzer.replay`); port-rule violations are appended to :attr:`violations`.
    """

    def __init__(self, dut, build, rng):
        self.dut = dut
        self.build = build
        self.rng = rng
        self.regmap = RegisterMap(build)
        self.offsets = self.regmap.offsets()
        self.latency = build.max_layers + 5
        self.t = 0
        self.rst = 1
        self.idle = 0.0
        self.backpressure = 0.0
        self.src = collections.deque()
        self.writes = collections.deque()
        self.reads = collections.deque()
        self.resp = []
        self.resp_cycles = []
        self.responses = collections.deque()
        self.log = []
        self.violations = []
        self.in_packet = False
        self.hold_until = -1          # no header up to this cycle (settling)
        self.hold_writes = []         # writes whose window is open
        self.quiet_until = -1         # no header checks (around a soft reset)
        self.flush_until = -1         # m_axis may drop a word (soft_reset)
        self._waits = []
        self._driven = {}
        self._presenting = False
        self._m_prev = None           # (data, last) offered last cycle and not taken
        self._b_prev = None
        self._r_prev = None
        h = lambda name: getattr(dut, name)
        self._h = {n: h(n) for n in (
            "rst", "s_axis__tdata", "s_axis__tvalid", "s_axis__tready", "s_axis__tlast",
            "m_axis__tdata", "m_axis__tvalid", "m_axis__tready", "m_axis__tlast",
            "s_axil__awaddr", "s_axil__awvalid", "s_axil__awready", "s_axil__awprot",
            "s_axil__wdata", "s_axil__wstrb", "s_axil__wvalid", "s_axil__wready",
            "s_axil__bresp", "s_axil__bvalid", "s_axil__bready",
            "s_axil__araddr", "s_axil__arvalid", "s_axil__arready", "s_axil__arprot",
            "s_axil__rdata", "s_axil__rresp", "s_axil__rvalid", "s_axil__rready")}
        dut.rst.value = 1
        self._set("s_axil__awprot", 0)
        self._set("s_axil__arprot", 0)
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        cocotb.start_soon(self._run())

    # -- engine ------------------------------------------------------------------------------

    def _set(self, name, value):
        if self._driven.get(name) != value:
            self._h[name].value = value
            self._driven[name] = value

    def _get(self, name):
        return _int(self._h[name])

    async def _run(self):
        while True:
            await FallingEdge(self.dut.clk)
            self._drive()
            await ReadOnly()
            if not self.rst:
                self._sample()
            self.t += 1
            if self._waits:
                self._wake()

    def _wake(self):
        keep = []
        for w in self._waits:
            cond, deadline, event, box = w
            if cond():
                box[0] = True
                event.set()
            elif self.t >= deadline:
                event.set()
            else:
                keep.append(w)
        self._waits = keep

    def _drive(self):
        t, rng = self.t, self.rng
        self._set("rst", self.rst)
        item = self.src[0] if self.src and self.src[0][0].start <= t else None
        if item is not None and not self._presenting and self.idle and rng.random() < self.idle:
            item = None
        self._tvalid = item is not None
        self._set("s_axis__tvalid", int(self._tvalid))
        if item is not None:
            pkt, i = item
            self._set("s_axis__tdata", pkt.words[i])
            self._set("s_axis__tlast", pkt.lasts[i])
        w = self.writes[0] if self.writes else None
        self._awvalid = w is not None and w.aw is None and w.aw_start <= t
        self._wvalid = w is not None and w.w is None and w.w_start <= t
        self._set("s_axil__awvalid", int(self._awvalid))
        self._set("s_axil__wvalid", int(self._wvalid))
        if w is not None:
            self._set("s_axil__awaddr", w.offset)
            self._set("s_axil__wdata", w.data)
            self._set("s_axil__wstrb", w.strobe)
        bp = self.backpressure
        self._bready = not (bp and rng.random() < bp)
        self._set("s_axil__bready", int(self._bready))
        r = self.reads[0] if self.reads and self.reads[0].start <= t else None
        self._arvalid = r is not None and r.ar is None
        self._set("s_axil__arvalid", int(self._arvalid))
        if r is not None:
            self._set("s_axil__araddr", r.offset)
        self._rready = not (bp and rng.random() < bp)
        self._set("s_axil__rready", int(self._rready))
        self._tready = not (bp and rng.random() < bp)
        self._set("m_axis__tready", int(self._tready))

    def _violation(self, text):
        self.violations.append(f"cycle {self.t}: {text}")

    def _sample(self):
        t, g = self.t, self._get
        # s_axis: words taken; the settling rule on headers.
        if self._tvalid:
            if g("s_axis__tready"):
                pkt, i = self.src.popleft()
                pkt.accepted.append(t)
                header = not self.in_packet
                if header and t <= self.hold_until and t > self.quiet_until:
                    ws = [w for w in self.hold_writes if w.t_in < t <= (w.b or t) + self.latency]
                    if ws:
                        self._violation(f"header {pkt.words[i]:#010x} taken in the settling "
                                        f"window of the write of {ws[-1].data:#x} to "
                                        f"{ws[-1].offset:#05x} (AW/W in at {ws[-1].t_in}, "
                                        f"B at {ws[-1].b})")
                self.in_packet = not pkt.lasts[i]
                self.log.append(("word", t, pkt.words[i], pkt.lasts[i], header, pkt))
                self._presenting = False
            else:
                self._presenting = True
        # AXI4-Lite write channel.
        w = self.writes[0] if self.writes else None
        bvalid = g("s_axil__bvalid")
        if self._b_prev is not None:
            if not bvalid:
                self._violation("bvalid dropped before bready")
            elif g("s_axil__bresp") != self._b_prev:
                self._violation("bresp changed while bvalid waited")
        self._b_prev = None
        if w is not None:
            if self._awvalid and g("s_axil__awready"):
                w.aw = t
            if self._wvalid and g("s_axil__wready"):
                w.w = t
        if bvalid:
            if w is None or w.aw is None or w.w is None or (w.t_in == t):
                self._violation("bvalid without a write whose address and data are in")
            else:
                if w.bv is None:
                    w.bv = t
                    if w.offset & ~3 == self.offsets["CONTROL"] and w.data & w.strobe & 1:
                        self.flush_until = t + 2     # soft_reset empties the response slice
                resp = g("s_axil__bresp")
                if self._bready:
                    w.b, w.resp = t, resp
                    self.writes.popleft()
                    self.hold_writes = [x for x in self.hold_writes
                                        if x.b is None or x.b + self.latency >= t] + [w]
                    self.hold_until = max(self.hold_until, t + self.latency)
                    self.log.append(("write", w.bv - 1, w))
                else:
                    self._b_prev = resp
        if w is not None and w.aw is not None and w.w is not None and w.b is None:
            self.hold_until = max(self.hold_until, t + self.latency + 2)
            if w not in self.hold_writes:
                self.hold_writes.append(w)
        # AXI4-Lite read channel.
        r = self.reads[0] if self.reads else None
        rvalid = g("s_axil__rvalid")
        if self._r_prev is not None:
            if not rvalid:
                self._violation("rvalid dropped before rready")
            elif (g("s_axil__rdata"), g("s_axil__rresp")) != self._r_prev:
                self._violation("rdata/rresp changed while rvalid waited")
        self._r_prev = None
        if r is not None and r.start <= t and self._arvalid and g("s_axil__arready"):
            r.ar = t
        if rvalid:
            if r is None or r.ar is None or r.ar == t:
                self._violation("rvalid without a read request")
            elif self._rready:
                r.r, r.data, r.resp = t, g("s_axil__rdata"), g("s_axil__rresp")
                self.reads.popleft()
                self.log.append(("read", t, r))
            else:
                self._r_prev = (g("s_axil__rdata"), g("s_axil__rresp"))
        # m_axis: responses; the stream rule.
        tvalid = g("m_axis__tvalid")
        if self._m_prev is not None and t > self.flush_until:
            if not tvalid:
                self._violation("m_axis tvalid dropped before tready")
            elif (g("m_axis__tdata"), g("m_axis__tlast")) != self._m_prev:
                self._violation(f"m_axis tdata/tlast changed while waiting: "
                                f"{self._m_prev} -> {(g('m_axis__tdata'), g('m_axis__tlast'))}")
        self._m_prev = None
        if tvalid:
            data, last = g("m_axis__tdata"), g("m_axis__tlast")
            if self._tready:
                self.resp.append(data)
                self.resp_cycles.append(t)
                if last:
                    self.responses.append((t, self.resp))
                    self.log.append(("resp", t, self.resp))
                    self.resp, self.resp_cycles = [], []
            else:
                self._m_prev = (data, last)

    # -- time --------------------------------------------------------------------------------

    async def until(self, condition, max_cycles, what):
        """Wait until ``condition()``; :class:`Timeout` after ``max_cycles`` cycles."""
        if condition():
            return
        box = [False]
        event = Event()
        self._waits.append((condition, self.t + max_cycles, event, box))
        await event.wait()
        if not box[0]:
            raise Timeout(f"{what}: not within {max_cycles} cycles")

    async def step(self, n=1):
        target = self.t + n
        await self.until(lambda: self.t >= target, n + 1, "step")

    async def hard_reset(self):
        """``rst`` for 4 cycles; every queue emptied."""
        self.rst = 1
        self.src.clear()
        self.writes.clear()
        self.reads.clear()
        self.responses.clear()
        self.resp, self.resp_cycles = [], []
        self._presenting = False
        self._m_prev = self._b_prev = self._r_prev = None
        self.in_packet = False
        self.hold_writes = []
        self.hold_until = -1
        await self.step(4)
        self.rst = 0
        await self.step(2)
        self.log.append(("hard_reset", self.t))

    # -- registers ---------------------------------------------------------------------------

    def write_at(self, offset, data, *, start=None, skew=0, strobe=0xF, racing=False):
        """Queue a write; AW from ``start``, W from ``start + skew`` (negative: W first)."""
        start = self.t if start is None else start
        w = Write(offset, int(data) & 0xFFFFFFFF, strobe, start + max(0, -skew),
                  start + max(0, skew), racing)
        self.writes.append(w)
        return w

    async def write(self, offset, data, max_cycles=200, **kw):
        w = self.write_at(offset, data, **kw)
        await self.until(lambda: w.b is not None, max_cycles,
                         f"the write of {data:#x} to {offset:#05x}")
        return w

    def read_at(self, offset, *, start=None, check=False):
        r = Read(offset, self.t if start is None else start, check)
        self.reads.append(r)
        return r

    async def read(self, offset, max_cycles=200, check=False):
        r = self.read_at(offset, check=check)
        await self.until(lambda: r.r is not None, max_cycles, f"the read of {offset:#05x}")
        return r

    # -- packets -----------------------------------------------------------------------------

    def send(self, words, *, start=None, lasts=None, what=""):
        """Queue a packet (``tlast`` on its last word unless ``lasts`` says otherwise)."""
        words = [int(w) & 0xFFFFFFFF for w in words]
        if lasts is None:
            lasts = [0] * (len(words) - 1) + [1]
        pkt = Packet(words, [int(x) for x in lasts], self.t if start is None else start, what)
        self.src.extend((pkt, i) for i in range(len(words)))
        return pkt

    def stop_sender(self):
        """Drop every word not yet taken (a host stopping its DMA)."""
        self.src.clear()
        self._presenting = False

    def drop_partial(self):
        """Log the words of a response cut short (by ``soft_reset``) and forget them."""
        if self.resp:
            self.log.append(("partial", self.t, self.resp))
        self.resp, self.resp_cycles = [], []


# -- the fuzzer -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    index: int
    kind: str
    what: list = dataclasses.field(default_factory=list)
    start: int = 0          # index into the host's log

    def note(self, text):
        self.what.append(text)


class Fuzzer:
    """Random cases against the model; see the module docstring."""

    def __init__(self, dut, build, rng, *, stalls=0.3, max_width=None, max_fan_in=None):
        self.dut = dut
        self.build = build
        self.rng = rng
        self.host = FuzzHost(dut, build, rng.spawn(1)[0])
        self.regmap = self.host.regmap
        self.off = self.host.offsets
        self.reinforcing_mask = self.regmap.encode("STATUS", reinforcing=1)
        self.sweep_cycles = max_sweep_cycles(build)
        self.model = ProtocolModel(build)
        self.stalls = stalls
        self.max_width = min(max_width or build.max_width, build.max_width)
        self.max_fan_in = min(max_fan_in or build.max_fan_in, build.max_fan_in)
        self.good = None                  # the last good configuration: {register: value}
        self.counts = collections.Counter()
        self.kinds = collections.Counter()
        self.subkinds = collections.Counter()
        self.findings = []
        self.moves = collections.Counter()
        self._mark = 0
        self.case = None

    # -- bookkeeping --------------------------------------------------------------------------

    def _begin(self, kind, index):
        self.case = Case(index, kind, start=len(self.host.log))

    def _cfg(self):
        return self.model.config()

    # -- replay ------------------------------------------------------------------------------

    def _events(self):
        """The log since the last commit, in effect order (see the module docstring)."""
        rank = {"hard_reset": 0, "header": 1, "write": 2, "checked": 2.5, "word": 3, "resp": 4,
                "partial": 5, "read": 6}
        events = []
        for entry in self.host.log[self._mark:]:
            kind, key = entry[0], entry[1]
            if kind == "word" and entry[4]:
                kind = "header"
                # The cycle after the header: writes landing at its end see the core busy.
                events.append((key + 1, rank["checked"], len(events), "checked", entry))
            events.append((key, rank[kind], len(events), kind, entry))
        events.sort(key=lambda e: e[:3])
        return events

    def _candidates(self, events):
        """Orders of ``events`` to try, the natural one first: each racing write also
        placed just after or before a soft neighbour (a response end within 2 cycles of
        its effect edge; for CONTROL, also a word within 1 cycle), nearest first."""
        racing = [i for i, e in enumerate(events) if e[3] == "write" and e[4][2].racing]
        if not racing:
            return [events]
        options = []
        for i in racing:
            ev = events[i]
            control = ev[4][2].offset & ~3 == self.off["CONTROL"]
            alts = []
            for j, s in enumerate(events):
                if j in racing:
                    continue
                near = abs(s[0] - ev[0])
                if (s[3] == "resp" and near <= 2) or \
                        (control and s[3] in ("word", "header") and near <= 1):
                    alts += [((near, 0), (s[0], s[1], s[2] + 0.5)),
                             ((near, 1), (s[0], s[1], s[2] - 0.5))]
            # Nearest neighbours first, the write after one before the write before one.
            options.append([ev[:3]] + [key for _, key in sorted(alts)])
        orders, seen = [], set()
        for combo in itertools.product(*options):
            keys = [e[:3] for e in events]
            for i, key in zip(racing, combo):
                keys[i] = key
            order = [events[n] for n in sorted(range(len(events)), key=lambda n: keys[n])]
            sig = tuple(e[2] for e in order)
            if sig not in seen:
                seen.add(sig)
                orders.append(order)
            if len(orders) >= 64:
                break
        return orders

    def _count_move(self, natural, chosen):
        """Count the neighbours a racing write had to pass: what it is, which side, and
        the neighbour's cycle minus the write's effect edge."""
        for ev in natural:
            if ev[3] == "write" and ev[4][2].racing:
                w = ev[4][2]
                if w.offset & ~3 != self.off["CONTROL"]:
                    what = "register write"
                else:
                    what = "soft_reset" if w.data & 1 else "clear_error"
                a, b = natural.index(ev), chosen.index(ev)
                passed = natural[a + 1:b + 1] if b > a else chosen[b + 1:a + 1]
                side = "after" if b > a else "before"
                for p in passed:
                    move = f"{what} moved {side} {p[3]} at {p[0] - ev[0]:+d}"
                    self.moves[move] += 1
                    self.case.note(f"replay: {move}")

    def _run_events(self, model, events):
        """Replay ``events`` into ``model``; returns the mismatches."""
        problems = []
        for key, _, _, kind, entry in events:
            try:
                if kind == "hard_reset":
                    model.hard_reset()
                elif kind in ("word", "header"):
                    model.word(entry[2], entry[3])
                elif kind == "checked":
                    model.header_checked()
                elif kind == "write":
                    w = entry[2]
                    resp, effect = model.write(w.offset, w.data, w.strobe)
                    if resp != w.resp:
                        problems.append(f"write of {w.data:#x} to {w.offset:#05x}: response "
                                        f"{w.resp}, expected {resp}")
                    if w.racing:
                        self._effect = effect
                elif kind == "resp":
                    words = entry[2]
                    if not model.responses:
                        problems.append(f"response of {len(words)} words at cycle {key} "
                                        f"with none expected: {[hex(x) for x in words[:6]]}")
                        continue
                    exp = model.responses.pop(0)
                    model.response_done()
                    if exp.opcode in READ_OPS:
                        bad, adopted = model.check_read(exp.opcode, exp.layer, words,
                                                        at=exp.state)
                        problems += bad
                        self._adopted += adopted
                        self._compared += len(words)
                    elif words != exp.words:
                        problems.append(f"{exp.what}: response {[hex(x) for x in words]}, "
                                        f"expected {[hex(x) for x in exp.words]}")
                elif kind == "partial":
                    words = entry[2]
                    dropped = getattr(model, "dropped", [])
                    if dropped and dropped[0].opcode in (Opcode.TRAIN, Opcode.INFER):
                        want = dropped[0].words[:len(words)]
                        if words != want or len(words) > len(dropped[0].words):
                            problems.append(f"partial response {[hex(x) for x in words]} is "
                                            f"no prefix of {[hex(x) for x in dropped[0].words]}")
                elif kind == "read":
                    r = entry[2]
                    if not r.check:
                        continue
                    resp, value = model.read(r.offset)
                    data = r.data
                    if r.offset == self.off["STATUS"]:
                        # When the background sweeps end is the core's timing.
                        data &= ~self.reinforcing_mask
                    if resp != r.resp:
                        problems.append(f"read of {r.offset:#05x}: response {r.resp}, "
                                        f"expected {resp}")
                    elif resp == OKAY and value is not None and value != data:
                        reg = model.register_at(r.offset)
                        problems.append(f"read of {reg.name}: {r.data:#x}, expected {value:#x}")
            except StreamViolation as e:
                problems.append(f"cycle {key}: {e}")
            except Unpredictable as e:
                problems.append(f"cycle {key}: the model cannot predict: {e} (bench error)")
            if len(problems) > 12:
                break
        if model.responses and not problems:
            problems.append(f"{len(model.responses)} responses expected and not seen: "
                            f"{model.responses[0].what}")
        return problems

    def commit(self):
        """Replay the log since the last commit; keep the first candidate order that
        explains it, or record a finding."""
        events = self._events()
        orders = self._candidates(events)
        first = None
        for n, order in enumerate(orders):
            model = self.model.copy()
            model.log = []
            self._effect = None
            self._adopted = 0
            self._compared = 0
            problems = self._run_events(model, order)
            if not problems:
                if self._effect is not None:
                    self.counts["racing_writes"] += 1
                    self.counts[f"racing_write_{self._effect}"] += 1
                if len(orders) > 1:
                    self.counts["racing_writes_with_alternatives"] += 1
                    if n:
                        self.counts["racing_writes_moved"] += 1
                        self._count_move(orders[0], order)
                        self.case.note(f"replay: the natural order failed: {first[0][0]}")
                self.counts["adopted"] += self._adopted
                self.counts["words_compared"] += self._compared
                self.model = model
                self._mark = len(self.host.log)
                return True
            if first is None:
                first = (problems, model.log)
            elif len(first[0]) < 40:
                first[0].append(f"(order {n} of {len(orders)}): " + "; ".join(problems[:3]))
        self._finding(first[0], first[1])
        return False

    def _finding(self, problems, log=()):
        case = self.case
        lines = [f"case {case.index} ({case.kind}), seed {default_seed()}:"]
        lines += [f"  {p}" for p in problems[:12]]
        lines += [f"  {p}" for p in problems[12:] if p.startswith("(order")]
        lines.append("  case: " + "; ".join(case.what))
        lines.append(f"  registers: {self._regs_text()}")
        lines.append("  timeline: " + self._timeline())
        lines.append("  model: " + " | ".join(list(log)[-14:]))
        text = "\n".join(lines)
        self.findings.append(text)
        self.dut._log.error("FINDING %s", text)
        raise Finding(text)

    def _timeline(self, n=40):
        """The case's port events around its racing write (cycle: what)."""
        entries = self.host.log[self.case.start:]
        racing = [i for i, e in enumerate(entries) if e[0] == "write" and e[2].racing]
        centre = racing[0] if racing else 0
        out = []
        for e in entries[max(0, centre - n // 2):centre + n // 2]:
            if e[0] in ("word", "header"):
                out.append(f"{e[1]}: {'header ' if e[4] else ''}{e[2]:08x}"
                           f"{' last' if e[3] else ''}")
            elif e[0] == "write":
                w = e[2]
                out.append(f"{e[1]}: write {w.data:#x} to {w.offset:#05x} (AW {w.aw}, W {w.w}, "
                           f"bvalid {w.bv}, B {w.b}){' racing' if w.racing else ''}")
            elif e[0] == "resp":
                out.append(f"{e[1]}: response of {len(e[2])} words")
            elif e[0] == "partial":
                out.append(f"{e[1]}: partial response of {len(e[2])} words")
        return "; ".join(out)

    def _regs_text(self):
        return ", ".join(f"{k}={v}" for k, v in self.model.regs.items() if v)

    # -- host actions ------------------------------------------------------------------------

    async def set_reg(self, name, value, **kw):
        field = self.regmap[name].fields[0]
        return await self.host.write(self.off[name], int(value) & field.mask >> field.lsb, **kw)

    async def wait_sent(self, pkt, max_cycles=None):
        n = len(pkt.words)
        await self.host.until(lambda: pkt.sent, max_cycles or 400 + 8 * n + self.sweep_cycles,
                              f"s_axis taking the {n} words of {pkt.what or 'a packet'} "
                              f"({len(pkt.accepted)} taken)")

    async def wait_quiet(self, max_cycles=None):
        """Until nothing is queued, no response is coming and the core is neither busy nor
        reinforcing."""
        host = self.host
        max_cycles = max_cycles or 20000 + self.sweep_cycles
        start = host.t
        await host.until(lambda: not host.src and not host.writes and not host.reads,
                         max_cycles, "the host's queues to empty")
        while True:
            r = await host.read(self.off["STATUS"])
            if not r.data & (1 | self.reinforcing_mask):
                break
            if host.t - start > max_cycles:
                raise Timeout(f"STATUS.busy or STATUS.reinforcing still set after "
                              f"{max_cycles} cycles")
            await host.step(int(self.rng.integers(4, 40)))
        await host.step(6)

    async def observe(self):
        """Read every register the model predicts (compared in the replay)."""
        names = ["STATUS", "ERROR_CODE", "LAYERS", "INPUTS", "STEP", "PATTERNS", "ERRORS"]
        for l in range(self.build.max_layers):
            names += [f"{r}_{l}" for r in LAYER_REGS]
        regs = {}
        for name in names:
            r = await self.host.read(self.off[name], check=True)
            regs[name] = r.data
        return regs

    async def settle(self):
        """After a case: observe, clear an error, restore a good configuration, the golden
        check; then one commit of the whole case."""
        host = self.host
        host.idle = host.backpressure = 0.0
        await self.wait_quiet()
        regs = await self.observe()
        if regs["STATUS"] >> 1 & 1:
            await host.write(self.off["CONTROL"], 2)
        if fit_problem(self.build, regs) is not None:
            for name, value in self.good.items():
                if regs.get(name) != value:
                    await self.set_reg(name, value)
            regs.update(self.good)
        await host.step(2)
        await self.golden_check(regs)
        self.good = {name: regs[name] for name in self.good}

    async def golden_check(self, regs=None):
        """READ_H, READ_P and READ_T of every layer of the configuration ``regs`` (default:
        the model's), every weight against the model; commits."""
        cfg = config_of(self.build, regs) if regs is not None else self._cfg()
        assert cfg is not None, "golden check without a good configuration"
        pkts = []
        self.host.responses.clear()
        for l in range(cfg.layers):
            for op in READ_OPS:
                pkts.append(self.host.send([header_word(op, l, int(self.rng.integers(0, 1 << 16)))],
                                           what=f"{op.name} of layer {l}"))
        n = sum(cfg.payload_words(Opcode.WRITE_H, l) + 2 * cfg.widths[l]
                for l in range(cfg.layers))
        await self.host.until(lambda: len(self.host.responses) >= len(pkts), 600 + 4 * n,
                              "the golden check's responses")
        self.host.responses.clear()
        await self.host.step(2)
        if self.commit():
            self.counts["golden_checks"] += 1

    async def write_good_config(self, regs):
        """Write a configuration (``{register: value}``) while idle; it becomes the good one."""
        for name, value in regs.items():
            await self.set_reg(name, value)
        self.good = dict(regs)

    # -- random content ------------------------------------------------------------------------

    def random_config(self, *, divide=True):
        """A configuration that fits the build: ``{register: value}`` of every layer."""
        b, rng = self.build, self.rng
        for _ in range(100):
            L = int(rng.integers(1, b.max_layers + 1))
            size = lambda hi: int(rng.choice([rng.integers(1, hi + 1),
                                              rng.integers(1, min(hi, 12) + 1), hi]))
            k0 = size(self.max_fan_in)
            ks = [size(self.max_width) for _ in range(L)]
            regs = {"LAYERS": L, "INPUTS": k0}
            for l in range(b.max_layers):
                k = ks[l] if l < L else int(rng.integers(0, b.max_width + 1))
                if l < L:
                    ok = [g for g in range(1, k + 1) if k <= g * b.max_groups
                          and (not divide or k % g == 0)]
                    if not ok:
                        break
                    g = int(rng.choice(ok))
                else:
                    g = int(rng.integers(0, 4096))
                regs[f"WIDTH_{l}"] = k
                regs[f"GAMMA_{l}"] = g
                regs[f"ROBUST_{l}"] = int(rng.choice([0, rng.integers(0, 2 * k + 2),
                                                      rng.integers(0, 1 << 16)]))
                regs[f"THRESH_{l}"] = int(rng.choice([0, 1 << 16, rng.integers(0, 20000),
                                                      rng.integers(0, 1 << 17)]))
                regs[f"KEY_{l}"] = int(rng.integers(0, 1 << 32))
            else:
                if fit_problem(b, regs) is None:
                    return regs
        raise AssertionError("no configuration found")

    def hidden(self, k, f):
        rng = self.rng
        h_max = (1 << (self.build.h_bits - 1)) - 1
        kind = rng.integers(3)
        if kind == 0:
            h = 2 * rng.integers(-2, 2, size=(k, f)) + 1
        elif kind == 1:
            h = 2 * rng.integers(-(h_max + 1) // 2, (h_max + 1) // 2, size=(k, f)) + 1
        else:
            h = rng.choice([-h_max, -h_max + 2, -1, 1, h_max - 2, h_max], size=(k, f))
        return h

    def write_payload(self, op, l, junk=False):
        """A valid payload of ``op`` (a WRITE_*) for layer ``l``; ``junk`` puts random bits
        where the docs say they are ignored (padding bytes, bits >= classes, bits 31..17)."""
        cfg, rng = self._cfg(), self.rng
        k, f = cfg.widths[l], cfg.fan_in(l)
        if op == Opcode.WRITE_H:
            words = h_payload(self.hidden(k, f))
            if junk and f % 4:
                w = -(-f // 4)
                keep = (1 << (8 * (f % 4))) - 1
                for kk in range(k):
                    words[kk * w + w - 1] |= int(rng.integers(0, 1 << 32)) & ~keep
            return words
        if op == Opcode.WRITE_P:
            c = self.build.classes
            words = [int(x) for x in rng.integers(0, 1 << c, size=k)]
            if junk:
                words = [x | (int(rng.integers(0, 1 << 32)) & ~((1 << c) - 1)) for x in words]
            return words
        theta = rng.integers(-(1 << 15), 1 << 15, size=k)
        if rng.random() < 0.5:
            theta = rng.integers(-f - 2, f + 3, size=k)
        words = [t_word(t, rng.random() < 0.3) for t in theta]
        if junk:
            words = [x | (int(rng.integers(0, 1 << 32)) & ~0x1FFFF) for x in words]
        return words

    def batch_payload(self, n, labels=None):
        cfg, rng = self._cfg(), self.rng
        labels = list(rng.integers(0, self.build.classes, size=n)) if labels is None else labels
        words = []
        for y in labels:
            words.append(int(y))
            words += pattern_payload(np.where(rng.random(cfg.inputs) < 0.5, 1, -1))
        return words

    def batch_size(self):
        b = self.build.max_batch
        return int(self.rng.choice([1, self.rng.integers(1, b + 1), b,
                                    self.rng.integers(1, min(b, 4) + 1)]))

    def valid_packet(self, op=None):
        """``(words, what)`` of a valid packet of ``op`` (random if None) now."""
        cfg, rng = self._cfg(), self.rng
        if op is None:
            op = Opcode(int(rng.choice(OPCODES)))
        if op in (Opcode.TRAIN, Opcode.INFER):
            n = self.batch_size()
            hdr = header_word(op, int(rng.integers(0, 256)), n)
            return [hdr] + self.batch_payload(n), f"{op.name} of {n}"
        l = int(rng.integers(0, cfg.layers))
        hdr = header_word(op, l, int(rng.choice([cfg.widths[l], 0, rng.integers(0, 1 << 16)])))
        if op in READ_OPS:
            return [hdr], f"{op.name} of layer {l}"
        return [hdr] + self.write_payload(op, l, junk=rng.random() < 0.3), f"{op.name} of layer {l}"

    def packet_cycles(self, words):
        """About how many cycles a valid packet keeps the core busy (docs: "Cycle budget
        and counters")."""
        cfg, b = self._cfg(), self.build
        op = words[0] >> 24
        if op in (Opcode.TRAIN, Opcode.INFER):
            n = words[0] & 0xFFFF
            sizes = cfg.sizes
            weight_words = sum(sizes[l + 1] * -(-sizes[l] // b.lanes) for l in range(cfg.layers))
            cycles = len(words) + 30 + 13 * cfg.layers + n * weight_words
            if op == Opcode.TRAIN:     # and its sweeps, in the background
                cycles += weight_words * b.lanes // b.draw_lanes
            return cycles
        if op in READ_OPS:
            return 10 + cfg.payload_words(op, words[0] >> 16 & 0xFF)
        return len(words) + 10

    async def ensure(self, op):
        """Make a valid ``op`` packet predictable: group sizes that divide the widths (for
        TRAIN), every weight known and in the golden model's domain (committed)."""
        cfg = self._cfg()
        changed = False
        if op == Opcode.TRAIN and cfg.trainable():
            for l in range(cfg.layers):
                k = cfg.widths[l]
                if k % cfg.gammas[l]:
                    ok = [g for g in range(1, k + 1)
                          if k % g == 0 and k <= g * self.build.max_groups]
                    g = int(self.rng.choice(ok))
                    await self.set_reg(f"GAMMA_{l}", g)
                    self.good[f"GAMMA_{l}"] = g
                    changed = True
        if changed:
            await self.host.step(2)
            self.commit()
        why = self.model.predictable(op) if op in (Opcode.TRAIN, Opcode.INFER) else None
        if why:
            self.counts["reloads"] += 1
            await self.load_weights()

    async def load_weights(self, layers=None):
        """Valid WRITE_H, WRITE_P and WRITE_T of every layer (committed)."""
        cfg = self._cfg()
        for l in range(cfg.layers) if layers is None else layers:
            for op in WRITE_OPS:
                words = [header_word(op, l, cfg.widths[l])] + self.write_payload(op, l)
                pkt = self.host.send(words, what=f"{op.name} of layer {l}")
        await self.wait_sent(pkt, 400 + self.sweep_cycles + 8 * sum(
            cfg.payload_words(op, l) for op in WRITE_OPS for l in range(cfg.layers)))
        await self.host.step(4)
        self.counts["loads"] += 1
        self.commit()

    # -- setup ------------------------------------------------------------------------------------

    async def start(self):
        host = self.host
        await host.hard_reset()
        self._begin("setup", -1)
        await self.write_good_config(self.random_config())
        await host.step(host.latency + 2)
        self.commit()
        await self.load_weights()
        await self.golden_check()

    async def recover(self):
        """After a finding: hard reset, a new configuration and all weights written."""
        host = self.host
        host.stop_sender()
        host.idle = host.backpressure = 0.0
        await host.hard_reset()
        self.model = ProtocolModel(self.build)
        self.model.t_known[:] = False           # T kept its contents through rst
        self._mark = len(host.log)
        self._begin("recover", -1)
        await self.write_good_config(self.random_config())
        await host.step(host.latency + 2)
        self.commit()
        await self.load_weights()
        await self.golden_check()

    # -- the cases ------------------------------------------------------------------------------

    async def run_case(self, index, kind):
        self._begin(kind, index)
        host, rng = self.host, self.rng
        if kind in ("train", "infer", "queued", "write_race", "write_phase", "soft_reset",
                    "blocked"):
            await self.ensure(Opcode.TRAIN if kind != "infer" else Opcode.INFER)
            self._begin(kind, index)
        stalled = rng.random() < self.stalls
        if stalled and kind not in ("write_race", "write_phase", "clear_error"):
            host.idle = float(rng.choice([0.1, 0.3, 0.6]))
            host.backpressure = float(rng.choice([0.1, 0.3, 0.6]))
            self.counts["stalled_cases"] += 1
        await getattr(self, f"case_{kind}")()
        host.idle = host.backpressure = 0.0
        await self.settle()
        self.kinds[kind] += 1

    async def _send_valid(self, op):
        words, what = self.valid_packet(op)
        self.case.note(f"{what}: {_hex(words)}")
        pkt = self.host.send(words, what=what)
        await self.wait_sent(pkt)
        return pkt

    async def case_train(self):
        await self._send_valid(Opcode.TRAIN)

    async def case_infer(self):
        await self._send_valid(Opcode.INFER)

    async def case_write_h(self):
        await self._send_valid(Opcode.WRITE_H)

    async def case_write_p(self):
        await self._send_valid(Opcode.WRITE_P)

    async def case_write_t(self):
        await self._send_valid(Opcode.WRITE_T)

    async def case_read(self):
        await self._send_valid(Opcode(int(self.rng.choice(READ_OPS))))

    async def case_queued(self):
        """Two to four valid packets back to back (the next one waiting while one runs)."""
        ops = [Opcode(int(x)) for x in self.rng.choice(
            [Opcode.TRAIN, Opcode.TRAIN, Opcode.INFER, Opcode.READ_H, Opcode.READ_P,
             Opcode.WRITE_T], size=int(self.rng.integers(2, 5)))]
        pkts = []
        for op in ops:
            words, what = self.valid_packet(op)
            self.case.note(what)
            pkts.append(self.host.send(words, what=what))
        for pkt in pkts:
            await self.wait_sent(pkt, 20000)

    # -- malformed packets ----------------------------------------------------------------------

    def _tail(self, n):
        return [int(x) for x in self.rng.integers(0, 1 << 32, size=n)]

    async def _send_refused(self, words, what, lasts=None):
        self.case.note(f"{what}: {_hex(words)}")
        pkt = self.host.send(words, what=what, lasts=lasts)
        await self.wait_sent(pkt)
        return pkt

    async def case_bad_opcode(self):
        rng = self.rng
        op = int(rng.choice([x for x in range(256) if x not in OPCODES]))
        words = [header_word(op, int(rng.integers(0, 256)), int(rng.integers(0, 1 << 16)))]
        words += self._tail(int(rng.choice([0, 1, rng.integers(0, 40)])))
        self.subkinds["opcode"] += 1
        await self._send_refused(words, f"opcode {op:#04x}")

    async def case_bad_layer(self):
        cfg, rng = self._cfg(), self.rng
        op = Opcode(int(rng.choice(WRITE_OPS + READ_OPS)))
        layer = int(rng.choice([cfg.layers, rng.integers(cfg.layers, 256), 255]))
        words = [header_word(op, layer, int(rng.integers(0, 1 << 16)))]
        if op in WRITE_OPS:
            words += self._tail(int(rng.integers(1, 30)))
        elif rng.random() < 0.3:
            words += self._tail(int(rng.integers(1, 4)))
        await self._send_refused(words, f"{op.name} of layer {layer}")

    async def case_bad_length(self):
        cfg, rng = self._cfg(), self.rng
        op = Opcode(int(rng.choice(OPCODES)))
        words, what = self.valid_packet(op)
        n = len(words) - 1
        if op in READ_OPS:
            extra = int(rng.choice([1, rng.integers(1, 20)]))
            words += self._tail(extra)
            what += f" with {extra} payload words"
        elif rng.random() < 0.5:
            keep = int(rng.choice([0, 1, n - 1, rng.integers(0, n)]))
            words = words[:1 + max(0, min(keep, n - 1))]
            what += f" cut to {len(words) - 1} of {n} payload words"
        else:
            extra = int(rng.choice([1, 2, rng.integers(1, 40)]))
            if op in (Opcode.TRAIN, Opcode.INFER):
                more = self.batch_payload(1 + extra // cfg.pattern_words())[:extra]
            else:
                more = self.write_payload(op, words[0] >> 16 & 0xFF)[:extra]
                more += self._tail(extra - len(more))
            words += more
            what += f" with {extra} words too many"
        self.subkinds[f"length_{op.name}"] += 1
        await self._send_refused(words, what)

    async def case_bad_label(self):
        rng, b = self.rng, self.build
        op = Opcode(int(rng.choice([Opcode.TRAIN, Opcode.INFER])))
        n = self.batch_size()
        labels = list(rng.integers(0, b.classes, size=n))
        bad = int(rng.integers(0, n))
        labels[bad] = int(rng.choice([b.classes, rng.integers(b.classes, 256),
                                      rng.integers(0, 1 << 32), 1 << int(rng.integers(8, 32))]))
        words = [header_word(op, 0, n)] + self.batch_payload(n, labels)
        what = f"{op.name} of {n}, label {labels[bad]:#x} at pattern {bad}"
        variant = str(rng.choice(["label", "label", "tlast_on_label", "tlast_anywhere"]))
        if variant == "tlast_on_label":      # LENGTH and LABEL in one word: LENGTH
            cut = 1 + bad * self._cfg().pattern_words()
        elif variant == "tlast_anywhere":
            cut = int(rng.integers(1, len(words)))
        if variant != "label":
            words = words[:cut + 1]
            what += f", cut to {cut} payload words"
        self.subkinds[f"label_{variant}"] += 1
        await self._send_refused(words, what)

    async def case_bad_count(self):
        rng, b = self.rng, self.build
        op = Opcode(int(rng.choice([Opcode.TRAIN, Opcode.INFER])))
        n = int(rng.choice([0, b.max_batch + 1, rng.integers(b.max_batch + 1, 1 << 16)]))
        words = [header_word(op, 0, n)] + self.batch_payload(int(rng.integers(0, 3)))
        await self._send_refused(words, f"{op.name} with count {n}")

    async def case_bad_config(self):
        """An invalid configuration value, then a packet (refused with CONFIG unless its
        opcode is unknown), then the good configuration back."""
        cfg, rng, b = self._cfg(), self.rng, self.build
        L = cfg.layers
        l = int(rng.integers(0, L))
        choices = [("LAYERS", 0), ("LAYERS", int(rng.integers(b.max_layers + 1, 16))),
                   ("INPUTS", 0), ("INPUTS", int(rng.integers(b.max_fan_in + 1, 4096))),
                   (f"WIDTH_{l}", 0), (f"WIDTH_{l}", int(rng.integers(b.max_width + 1, 4096))),
                   (f"GAMMA_{l}", 0), (f"GAMMA_{l}", cfg.widths[l] + int(rng.integers(1, 100)))]
        if cfg.widths[l] > b.max_groups:
            choices.append((f"GAMMA_{l}", int(rng.integers(1, -(-cfg.widths[l] // b.max_groups)))))
        # Too many weight words: every layer as wide and deep as allowed.
        if b.max_layers * b.max_width * -(-b.max_width // b.lanes) > b.weight_words or \
                b.max_width * -(-b.max_fan_in // b.lanes) > b.weight_words:
            choices.append(("weight_words", None))
        name, value = choices[int(rng.integers(len(choices)))]
        if name == "weight_words":
            regs = {"LAYERS": b.max_layers, "INPUTS": b.max_fan_in}
            for ll in range(b.max_layers):
                regs[f"WIDTH_{ll}"] = b.max_width
                regs[f"GAMMA_{ll}"] = b.max_width
            for r, v in regs.items():
                await self.set_reg(r, v)
            self.case.note("weight_words exceeded")
        else:
            await self.set_reg(name, value)
            self.case.note(f"{name}={value}")
        self.subkinds[f"config_{name.split('_')[0]}"] += 1
        words, what = self.valid_packet(Opcode(int(rng.choice(OPCODES))))
        if rng.random() < 0.2:
            words[0] = (words[0] & 0xFFFFFF) | int(rng.choice([0x00, 0x20, 0xFF])) << 24
            what = "unknown opcode"
        await self._send_refused(words, what)
        if rng.random() < 0.5:      # the good configuration back, during ERROR
            for r, v in self.good.items():
                await self.set_reg(r, v)

    # -- register writes racing packets ---------------------------------------------------------

    def racing_write(self):
        """A register and a value for a racing write: same value, another good one, or
        one that does not fit; chosen so that the packet stays predictable either way."""
        rng, b = self.rng, self.build
        ml = b.max_layers
        if rng.random() < 0.08:     # SLVERR, and no BUSY, even while busy
            name = str(rng.choice(["ID", "BUILD2", "STATUS", "ERROR_CODE", "PATTERNS",
                                   "CYCLES"]))
            return name, int(rng.integers(0, 1 << 32)), "readonly"
        name = str(rng.choice(["LAYERS", "INPUTS", "STEP"] + [f"{r}_{l}" for r in LAYER_REGS
                                                             for l in range(ml)]))
        field = self.regmap[name].fields[0]
        cur = self.model.regs[name]
        kind = rng.choice(["same", "good", "bad", "random"], p=[0.2, 0.4, 0.25, 0.15])
        if kind == "same":
            value = cur
        elif kind == "random":
            value = int(rng.integers(0, 1 << field.width))
        elif kind == "bad":
            value = int(rng.choice([0, (1 << field.width) - 1]))
        else:
            good = self.random_config()
            value = good.get(name, int(rng.integers(0, 1 << min(field.width, 20))))
        return name, int(value), str(kind)

    def _predictable_after(self, name, value, op, strobe=0xF):
        m = self.model.copy()
        m.write(self.off[name], value, strobe)
        if m.config() is None or op not in (Opcode.TRAIN, Opcode.INFER):
            return True
        return m.predictable(op) is None

    def race_packet(self):
        rng = self.rng
        if rng.random() < 0.75:
            op = Opcode(int(rng.choice(OPCODES)))
            return self.valid_packet(op) + (op,)
        op = Opcode(int(rng.choice(OPCODES)))
        words, what = self.valid_packet(op)
        if len(words) > 2 and rng.random() < 0.5:
            words = words[:int(rng.integers(2, len(words)))]
            what += " cut short"
        else:
            words[0] = (words[0] & 0xFFFFFF) | 0x7E << 24
            what = "unknown opcode"
        return words, what, op

    async def case_write_race(self):
        """A register write whose AW/W handshake is a random number of cycles (-12..+12,
        or further) from the moment a packet's header is offered."""
        host, rng = self.host, self.rng
        words, what, op = self.race_packet()
        for _ in range(20):
            name, value, kind = self.racing_write()
            strobe = 0xF if rng.random() < 0.85 else int(rng.integers(1, 16))
            if self._predictable_after(name, value, op, strobe):
                break
        else:
            name, value, kind, strobe = "ROBUST_0", self.model.regs["ROBUST_0"], "same", 0xF
        await host.step(host.latency + 4)
        off = int(rng.choice([rng.integers(-12, 13), rng.integers(-300, 300)]))
        t0 = host.t + 20
        skew = int(rng.choice([0, 0, 0, rng.integers(-3, 4)]))
        w = host.write_at(self.off[name], value, start=t0, skew=skew, racing=True,
                          strobe=strobe)
        pkt = host.send(words, start=max(host.t, t0 + off), what=what)
        self.case.note(f"{name} <- {value:#x} ({kind}, strobe {strobe:#x}) at t0, "
                       f"skew {skew}; {what} offered at "
                       f"t0{off:+d}: {_hex(words)}")
        self.subkinds[f"race_{kind}"] += 1
        await host.until(lambda: w.b is not None, 400 + self.sweep_cycles,
                         "the racing write's B")
        if self.model.stream_open or pkt.accepted:
            await self.wait_sent(pkt, 20000)
        if pkt.header_cycle is not None:
            h = pkt.header_cycle
            d = h - w.bv + 1
            self.counts["race_offsets_near"] += int(abs(d) <= 12)
            self.case.note(f"header taken {d:+d} cycles from the write's effect edge")
            # The bound: a header waiting is taken max_layers + 6 cycles after the B
            # handshake at the latest, at once with no write in that many cycles.
            bound = max(pkt.start, w.b + host.latency + 1)
            if h > w.t_in and h > bound:
                host._violation(f"header offered at {pkt.start} taken at {h}, after the "
                                f"bound {bound} (write B at {w.b})")
            if h < w.t_in and h != pkt.start:
                host._violation(f"header offered at {pkt.start}, idle, taken at {h}")

    async def _wait_phase(self, phases, max_cycles):
        """Poll STATUS until its phase is one of ``phases``; returns it or None."""
        host = self.host
        start = host.t
        while host.t - start < max_cycles:
            r = await host.read(self.off["STATUS"])
            phase = r.data >> 4 & 0xF
            busy = r.data & 1
            if phase not in set(int(p) for p in Phase):
                host._violation(f"STATUS.phase {phase} is no phase")
            if busy != (phase not in (Phase.IDLE, Phase.ERROR)):
                host._violation(f"STATUS {r.data:#x}: busy {busy} in phase {Phase(phase).name}")
            if phase in phases:
                return phase
        return None

    async def case_write_phase(self):
        """A register write while the core is in a chosen phase (IO, FORWARD, UPDATE,
        REINFORCE, RESPOND, or ERROR while a refused packet is discarded)."""
        host, rng = self.host, self.rng
        target = Phase(int(rng.choice([Phase.IO, Phase.FORWARD, Phase.UPDATE,
                                       Phase.REINFORCE, Phase.RESPOND, Phase.ERROR])))
        if target == Phase.ERROR:
            op = Opcode(int(rng.choice(OPCODES)))
            words, what = self.valid_packet(op)
            words[0] = (words[0] & 0xFFFFFF) | 0x7E << 24
            words += self._tail(int(rng.integers(2, 8)))
            lasts = [0] * len(words)
            pkt = host.send(words, lasts=lasts, what="refused, tlast held back")
            what = "unknown opcode, tlast held back"
        else:
            op = Opcode(int(rng.choice([Opcode.TRAIN, Opcode.TRAIN, Opcode.INFER,
                                        Opcode.WRITE_H, Opcode.READ_H]
                                       if target in (Phase.IO, Phase.RESPOND) else
                                       [Opcode.TRAIN, Opcode.TRAIN, Opcode.INFER])))
            if target in (Phase.UPDATE, Phase.REINFORCE):
                op = Opcode.TRAIN
            words, what = self.valid_packet(op)
            pkt = host.send(words, what=what)
        for _ in range(20):
            name, value, kind = self.racing_write()
            if self._predictable_after(name, value, op):
                break
        else:
            name, value, kind = "ROBUST_0", self.model.regs["ROBUST_0"], "same"
        phase = await self._wait_phase({target}, 400 + 8 * len(words) + self.sweep_cycles)
        w = host.write_at(self.off[name], value, racing=True)
        self.case.note(f"{what}: {_hex(words)}; {name} <- {value:#x} ({kind}) in phase "
                       f"{phase if phase is None else Phase(phase).name}")
        self.subkinds[f"phase_{target.name}" + ("" if phase == target else "_missed")] += 1
        await host.until(lambda: w.b is not None, 400 + self.sweep_cycles, "the write's B")
        if target == Phase.ERROR:
            await host.step(int(rng.integers(0, 10)))
            host.send([0x7E000000], what="the tlast")
        await self.wait_sent(pkt, 20000)

    async def case_clear_error(self):
        """clear_error at a random point: before the refused packet's tlast (ignored),
        during the discard, while the core is busy (clears a BUSY latch), while idle."""
        host, rng = self.host, self.rng
        where = str(rng.choice(["discard", "discard", "busy", "idle", "tlast"]))
        self.subkinds[f"clear_{where}"] += 1
        if where == "idle":
            host.write_at(self.off["CONTROL"], 2, racing=True)
            self.case.note("clear_error while idle")
            await host.step(20)
            return
        if where == "busy":
            words, what = self.valid_packet(Opcode(int(rng.choice([Opcode.WRITE_H, Opcode.READ_H,
                                                                     Opcode.INFER]))))
            if self.model.predictable(Opcode.INFER) and words[0] >> 24 == Opcode.INFER:
                words, what = self.valid_packet(Opcode.READ_H)
            pkt = host.send(words, what=what)
            await self._wait_phase({Phase.IO, Phase.FORWARD, Phase.RESPOND}, 200)
            await self.set_reg("ROBUST_0", self.model.regs["ROBUST_0"])     # BUSY (probably)
            host.write_at(self.off["CONTROL"], 2, racing=True)
            self.case.note(f"{what}; ROBUST_0 rewritten and clear_error while busy")
            await self.wait_sent(pkt, 20000)
            return
        # A refused packet whose tail comes later.
        words = [header_word(0x7E, 0, 0)] + self._tail(int(rng.integers(1, 6)))
        cut = int(rng.integers(1, len(words)))
        pkt = host.send(words[:cut], lasts=[0] * cut, what="refused head")
        await self.wait_sent(pkt)
        await host.step(int(rng.integers(0, 6)))
        if where == "tlast":
            tail = host.send(words[cut:], what="refused tail")
            t_last = host.t + len(words) - cut + int(rng.integers(-3, 4))
            host.write_at(self.off["CONTROL"], 2, start=max(host.t, t_last), racing=True)
            self.case.note(f"refused packet {_hex(words)}; clear_error around its tlast")
            await self.wait_sent(tail)
        else:
            host.write_at(self.off["CONTROL"], 2, racing=True)
            await host.step(10)
            tail = host.send(words[cut:], what="refused tail")
            self.case.note(f"refused packet {_hex(words)}; clear_error after {cut} words")
            await self.wait_sent(tail)
            await host.step(4)
            await host.read(self.off["STATUS"], check=True)

    async def case_soft_reset(self):
        """soft_reset a random number of cycles after a packet is offered (mid-packet,
        mid-training, or after); the sender is stopped, or (a quarter of the cases) goes
        on, its remaining words then read as new packets."""
        host, rng = self.host, self.rng
        op = Opcode(int(rng.choice([Opcode.TRAIN, Opcode.TRAIN, Opcode.TRAIN, Opcode.INFER,
                                    Opcode.WRITE_H, Opcode.WRITE_P, Opcode.WRITE_T,
                                    Opcode.READ_H])))
        words, what = self.valid_packet(op)
        if rng.random() < 0.15:
            words = words[:max(2, len(words) // 2)]
            what += " cut short"
        at_end = op in WRITE_OPS and len(words) == len(self.valid_packet(op)[0]) \
            and rng.random() < 0.5
        if at_end:
            # Aimed at the packet's end: bvalid -3..+3 cycles from its last word (the
            # configuration settled, the stream flowing one word a cycle from the header).
            host.idle = host.backpressure = 0.0
            await host.step(host.latency + 4)
            t_s = host.t + 4
            d = int(rng.integers(-3, 4))
            pkt = host.send(words, start=t_s, what=what)
            w = host.write_at(self.off["CONTROL"], 1, start=t_s + len(words) - 1 + d - 2,
                              racing=True)
            keep_sending = False
            self.case.note(f"{what}: {_hex(words)}; soft_reset with bvalid {d:+d} cycles "
                           f"from its last word")
            self.subkinds[f"reset_{op.name}_at_end"] += 1
        else:
            pkt = host.send(words, what=what)
            delay = int(rng.integers(0, int(1.3 * self.packet_cycles(words)) + 4))
            keep_sending = rng.random() < 0.25
            self.case.note(f"{what}: {_hex(words)}; soft_reset {delay} cycles after it is "
                           f"offered" + (", sender not stopped" if keep_sending else ""))
            self.subkinds[f"reset_{op.name}"] += 1
            await host.step(delay)
            if not keep_sending:
                host.stop_sender()
            w = host.write_at(self.off["CONTROL"], 1, racing=True)
        host.quiet_until = host.t + 40
        await host.until(lambda: w.b is not None,
                         400 + self.sweep_cycles + max(0, w.aw_start - host.t),
                         "the soft_reset's B")
        if at_end:
            host.stop_sender()
            if pkt.accepted:
                self.case.note(f"bvalid {w.bv - pkt.accepted[-1]:+d} cycles from the last "
                               f"word taken ({len(pkt.accepted)} of {len(words)})")
        await host.step(2)
        host.drop_partial()
        host.quiet_until = host.t + 4
        host.in_packet = False
        if keep_sending:
            # The rest arrives as new packets: taken until one of them is refused (its
            # error is cleared in settle, the words after it wait and are dropped).
            try:
                await host.until(lambda: pkt.sent, 2000 + 8 * len(words), "the rest")
            except Timeout:
                pass
            host.stop_sender()
        # STEP back, as a host does after a soft reset.
        if rng.random() < 0.5:
            await self.set_reg("STEP", int(rng.integers(0, 1 << 32)))

    async def case_registers(self):
        """Register accesses while idle: partial strobes, AW/W apart, reserved bits,
        read-only, constant and unmapped offsets (SLVERR), reads of everything."""
        host, rng, b = self.host, self.rng, self.build
        span = 0x100 + b.max_layers * 0x20
        for _ in range(int(rng.integers(2, 8))):
            what = str(rng.choice(["strobe", "reserved", "readonly", "unmapped", "read",
                                   "read_unmapped"]))
            self.subkinds[f"reg_{what}"] += 1
            skew = int(rng.choice([0, rng.integers(-4, 5)]))
            if what in ("strobe", "reserved"):
                name = str(rng.choice(["STEP", "ROBUST_0", "THRESH_0", "KEY_0"] +
                                      [f"{r}_{l}" for r in ("ROBUST", "THRESH", "KEY")
                                       for l in range(b.max_layers)]))
                strobe = int(rng.integers(0, 16)) if what == "strobe" else 0xF
                value = int(rng.integers(0, 1 << 32))
                await host.write(self.off[name] | int(rng.integers(0, 4)), value, skew=skew,
                                 strobe=strobe)
                self.case.note(f"{name} <- {value:#x} strobe {strobe:#x}")
            elif what == "readonly":
                name = str(rng.choice(["ID", "VERSION", "BUILD0", "BUILD3", "STATUS",
                                       "ERROR_CODE", "PATTERNS", "CYCLES", "CYCLES_IO"]))
                await host.write(self.off[name], int(rng.integers(0, 1 << 32)), skew=skew)
                self.case.note(f"write to {name}")
            elif what == "unmapped":
                offset = self._unmapped(span)
                await host.write(offset, int(rng.integers(0, 1 << 32)), skew=skew)
                self.case.note(f"write to {offset:#05x}")
            elif what == "read":
                name = str(rng.choice(list(self.off)))
                if not name.startswith("CYCLES"):
                    await host.read(self.off[name], check=True)
            else:
                await host.read(self._unmapped(span), check=True)
        # The counters add up (the core is idle, so they hold still).
        parts = [(await host.read(self.off[n])).data for n in
                 ("CYCLES", "CYCLES_FORWARD", "CYCLES_UPDATE", "CYCLES_REINFORCE", "CYCLES_IO")]
        if sum(parts[1:]) & 0xFFFFFFFF != parts[0]:
            host._violation(f"CYCLES {parts[0]} is not the sum of its parts {parts[1:]}")

    def _unmapped(self, span):
        mapped = {o & ~3 for o in self.off.values()}
        while True:
            o = int(self.rng.integers(0, 0x1000)) & ~3
            if o not in mapped:
                return o | int(self.rng.integers(0, 4))

    async def case_blocked(self):
        """With an error latched, a valid packet is not taken; after clear_error it is."""
        host, rng = self.host, self.rng
        await self._send_refused([header_word(0x7E, 0, 0)], "refused")
        words, what = self.valid_packet(Opcode(int(rng.choice([Opcode.TRAIN, Opcode.INFER,
                                                               Opcode.READ_P]))))
        pkt = host.send(words, what=what)
        await host.step(int(rng.integers(20, 80)))
        if pkt.accepted:
            host._violation(f"{what} taken while an error was latched")
        host.write_at(self.off["CONTROL"], 2)
        self.case.note(f"refused, then {what} waits for clear_error")
        await self.wait_sent(pkt, 20000)

    async def case_reconfigure(self):
        """A new good configuration (group sizes that do not divide the width in a
        fifth), then all weights written (in half of the cases)."""
        rng = self.rng
        regs = self.random_config(divide=rng.random() < 0.8)
        self.case.note(f"configuration {regs}")
        await self.write_good_config(regs)
        await self.host.step(self.host.latency + 2)
        if rng.random() < 0.5:
            self.commit()
            await self.load_weights()

    # -- the run ----------------------------------------------------------------------------------

    async def run(self, cases, *, stop=None, deadline_s=None, max_findings=5):
        await self.start()
        names = list(KINDS)
        p = np.array([KINDS[k] for k in names], dtype=float)
        p /= p.sum()
        t0 = time.monotonic()
        trace = open("cases.log", "w")
        for index in range(min(cases, stop or cases)):
            kind = str(self.rng.choice(names, p=p))
            try:
                await self.run_case(index, kind)
                trace.write(f"{index} {kind} cycle {self.host.t}: {'; '.join(self.case.what)}\n")
            except (AssertionError, Unpredictable) as e:
                if not isinstance(e, Finding):
                    self.findings.append(f"case {index} ({kind}): {type(e).__name__}: {e}; "
                                         f"case: {'; '.join(self.case.what)}")
                    self.dut._log.error("FINDING %s", self.findings[-1])
                if len(self.findings) >= max_findings:
                    break
                await self.recover()
            if self.host.violations:
                self.findings.append(f"case {index} ({kind}): port rules: "
                                     + "; ".join(self.host.violations[:6])
                                     + f"; case: {'; '.join(self.case.what)}")
                self.dut._log.error("FINDING %s", self.findings[-1])
                self.host.violations.clear()
                if len(self.findings) >= max_findings:
                    break
            if deadline_s is not None and time.monotonic() - t0 > deadline_s:
                break
        trace.close()
        return self.findings


def _hex(words, n=8):
    text = " ".join(f"{w:08x}" for w in words[:n])
    return text + (f" ... ({len(words)} words)" if len(words) > n else "")


@cocotb.test()
async def test_fuzz(dut):
    """Random protocol cases against the reference model; a golden check after each."""
    params = tb_params()
    build = Build(**params["build"])
    # stop replays a run up to a case: it does not change the cases.
    rng = case_rng("test_fuzz", {k: v for k, v in params.items() if k != "stop"})
    fuzzer = Fuzzer(dut, build, rng, stalls=float(params.get("stalls", 0.3)),
                    max_width=params.get("max_width"), max_fan_in=params.get("max_fan_in"))
    t0 = time.monotonic()
    findings = await fuzzer.run(int(params.get("cases", 100)), stop=params.get("stop"),
                                deadline_s=params.get("deadline_s"))
    wall = time.monotonic() - t0
    cases = sum(fuzzer.kinds.values())
    info = {"cases_per_kind": dict(sorted(fuzzer.kinds.items())),
            "adversarial_cases": sum(n for k, n in fuzzer.kinds.items() if k in ADVERSARIAL),
            "subkinds": dict(sorted(fuzzer.subkinds.items())),
            "counts": dict(sorted(fuzzer.counts.items())),
            "moves": dict(sorted(fuzzer.moves.items())),
            "findings": findings, "cycles": fuzzer.host.t, "wall_s": round(wall, 1),
            "seed": default_seed()}
    record_cases(dut, "test_fuzz", cases, golden_checks=fuzzer.counts["golden_checks"],
                 cycles=fuzzer.host.t, wall_s=round(wall, 1))
    path = Path("cases.json")
    data = json.loads(path.read_text())
    data.update(info)
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
    assert not findings, f"{len(findings)} findings:\n" + "\n".join(findings)
