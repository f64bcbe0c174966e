"""Reference model of the accelerator's register file and host protocol.

Written from ``docs/architecture.md`` ("Host protocol", "Refused packets", "Register
writes and packets", "Soft reset in the middle of a packet", "The top level",
"Registers") and ``docs/registers.md``, not from the gateware: the protocol fuzzer
(:mod:`xnorlearn.sim.tb_fuzz`) feeds it what the host saw happen on the ports, in order,
and compares its predictions with the accelerator.

The model is event-ordered, not cycle-exact. Its inputs are the words the accelerator
took on ``s_axis`` (:meth:`ProtocolModel.word`), the register writes as they took
effect (:meth:`ProtocolModel.write`), and the end of each response seen on ``m_axis``
(:meth:`ProtocolModel.response_done`, which tells the model that the core finished the
packet, so that a register write after it is no longer refused with ``BUSY``). Its
predictions are the responses (:attr:`ProtocolModel.responses`), the register values
(:meth:`ProtocolModel.read`, ``STATUS`` and ``ERROR_CODE`` included), whether a new
packet may be taken (:attr:`ProtocolModel.stream_open`) and every weight
(:meth:`ProtocolModel.expected_read`, :meth:`ProtocolModel.check_read`).

State
-----
Configuration registers, ``STEP`` and the counters, the core's error (code, and whether
the refused packet is still being discarded up to its ``tlast``), the top level's
``BUSY`` latch, the packet being received, and the memories as the docs lay them out
("Memories"): ``H`` as ``weight_words`` words of ``P`` weights (neuron ``k`` of layer
``l`` in the ``n_l = ceil(K_{l-1}/P)`` words from ``base_l + k * n_l``), ``P`` and ``T``
as rows ``(l, k)``. A weight whose value the docs leave open is *unknown*: ``H`` and
``P`` before they are first written, the padding lanes of a neuron's last word after a
``TRAIN`` (updates write whole words; only the lanes inside the fan-in are defined),
and words that a ``soft_reset`` in the middle of a ``TRAIN`` or ``WRITE_*`` left at one
of several documented values (kept as the list of those values, checked when read
back). :meth:`ProtocolModel.check_read` accepts any value for an unknown weight, a
value of the list for a word with candidates, and adopts what it read.

The core is busy from the cycle after it takes a header (a header it refuses included)
until the packet is done; the caller marks the end of that cycle with
:meth:`ProtocolModel.header_checked`.

The training itself is delegated to the golden model
(:class:`~xnorlearn.sw.golden.fast.FastBMLP`), configured from the registers: widths
and group sizes, ``ROBUST_l`` as the robustness threshold, ``THRESH_l`` as the
reinforcement threshold, ``KEY_l`` as the sweep's stream key and ``STEP`` as ``t``.
:class:`Unpredictable` is raised where the docs give no result: a ``TRAIN`` with a
``GAMMA_l`` that does not divide ``WIDTH_l``, or a ``TRAIN``/``INFER`` over weights that
are unknown or outside the golden model's domain (odd, ``|h| <= h_max``).
"""

import copy
import dataclasses

import numpy as np

from xnorlearn.contract import (STATUS_TAG, Access, Build, ErrorCode, Opcode, Phase,
                                RegisterMap, split_header)
from xnorlearn.sw.golden import prng
from xnorlearn.sw.golden.config import NetworkConfig
from xnorlearn.sw.golden.fast import FastBMLP

__all__ = ["OKAY", "SLVERR", "Unpredictable", "StreamViolation", "Config",
           "Expected", "ProtocolModel", "config_of", "fit_problem", "sweep_indices",
           "h_payload", "pattern_payload", "t_word", "words_per_neuron", "h_units"]

OKAY, SLVERR = 0, 2
MASK32 = 0xFFFFFFFF
_READS = {Opcode.READ_H: Opcode.WRITE_H, Opcode.READ_P: Opcode.WRITE_P,
          Opcode.READ_T: Opcode.WRITE_T}
_WRITES = {v: k for k, v in _READS.items()}     # WRITE_* -> READ_*


def _same_cands(a, b):
    """Two candidate lists (of tuples of arrays or values) hold the same candidates."""
    def same(x, y):
        if x is None or y is None:
            return x is y
        if isinstance(x, tuple) and isinstance(y, tuple):
            return len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
        return np.array_equal(x, y)

    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


class Unpredictable(Exception):
    """The docs leave the outcome of what was asked open (see the module docstring)."""


class StreamViolation(AssertionError):
    """The accelerator took a word on ``s_axis`` while the docs say it takes none."""


# -- payload encodings (docs: "Host protocol") --------------------------------------------------

def words_per_neuron(fan_in, lanes):
    """``n_l = ceil(F / P)``: memory words of one neuron of fan-in ``F``."""
    return -(-fan_in // lanes)


def h_payload(h):
    """``WRITE_H`` payload of ``h`` (``K x F`` integers, only their low 8 bits are sent):
    weight ``i`` of neuron ``k`` in word ``k*ceil(F/4) + i//4``, byte ``i%4``."""
    h = np.asarray(h, dtype=np.int64)
    k, f = h.shape
    w = -(-f // 4)
    padded = np.zeros((k, 4 * w), dtype=np.int64)
    padded[:, :f] = h & 0xFF
    b = padded.reshape(k, w, 4)
    return [int(x) for x in (b[..., 0] | b[..., 1] << 8 | b[..., 2] << 16 | b[..., 3] << 24)
            .reshape(-1)]


def _h_from_payload(words, k, f):
    """``K x F`` signed bytes of a ``WRITE_H``/``READ_H`` payload (padding dropped)."""
    w = -(-f // 4)
    a = np.asarray(words, dtype=np.int64).reshape(k, w)
    b = np.stack([(a >> (8 * i)) & 0xFF for i in range(4)], axis=-1).reshape(k, 4 * w)
    return np.where(b >= 128, b - 256, b)[:, :f]


def pattern_payload(a0_row):
    """Packed ``a_0`` of one pattern: element ``i`` in word ``i//32``, bit ``i%32``,
    bit 1 = +1, padding bits 0."""
    bits = (np.asarray(a0_row) > 0).astype(np.uint64)
    words = []
    for j in range(0, len(bits), 32):
        chunk = bits[j:j + 32]
        words.append(int(np.sum(chunk << np.arange(len(chunk), dtype=np.uint64))))
    return words


def _pattern_from_payload(words, fan_in):
    bits = [(words[i // 32] >> (i % 32)) & 1 for i in range(fan_in)]
    return np.where(np.array(bits) == 1, 1, -1).astype(np.int8)


def t_word(theta, flip):
    """``WRITE_T`` word: ``theta`` in bits 15..0 (two's complement), ``flip`` in bit 16."""
    return (int(theta) & 0xFFFF) | (int(bool(flip)) << 16)


def h_units(k, fan_in, lanes):
    """The units of a ``WRITE_H`` payload: ``(first, last, neuron, j)`` per memory word,
    payload words ``first..last`` (``P/4`` of them, fewer at a neuron's end)."""
    w, q = -(-fan_in // 4), lanes // 4
    return [(n * w + j, n * w + min(j + q, w) - 1, n, j // q)
            for n in range(k) for j in range(0, w, q)]


# -- the reinforcement sweep of a KEY register (docs: "One training minibatch", step 4) -----------

def sweep_indices(key, step, count, threshold):
    """Indices ``j`` of the weights a sweep reinforces: draw ``j`` of the stream with key
    ``mix32(KEY + STEP * 0x9E3779B9)`` below ``threshold`` (draw ``j`` is the high half of
    word ``j // 2`` for even ``j``, the low half for odd ``j``)."""
    if threshold <= 0 or count == 0:
        return np.empty(0, dtype=np.intp)
    if threshold >= prng.DRAW_ONE:
        return np.arange(count, dtype=np.intp)
    sweep_key = prng.mix32((key + step * prng.GOLDEN) & MASK32)
    pairs = (count + 1) // 2
    x = np.arange(pairs, dtype=np.uint32) * np.uint32(prng.GOLDEN) + np.uint32(sweep_key)
    prng.mix32_array(x)
    draws = np.empty(2 * pairs, dtype=np.uint32)
    draws[0::2] = x >> np.uint32(16)
    draws[1::2] = x & np.uint32(0xFFFF)
    return np.flatnonzero(draws[:count] < threshold)


@dataclasses.dataclass(frozen=True)
class _RegisterConfig(NetworkConfig):
    """A golden configuration whose robustness thresholds are the ``ROBUST_l`` values."""

    robust: tuple = ()

    @property
    def robustness(self):
        return self.robust


class _RegisterBMLP(FastBMLP):
    """The golden model with the sweep keyed by ``KEY_l`` (any value, not only those a
    seed gives), recording the CP picks for the soft-reset rule."""

    def __init__(self, config, keys):
        self.keys = tuple(keys)
        self.picks = {}
        super().__init__(config)

    def _cp_update(self, l, a_prev, y, mus, ks):
        self.picks[l] = (np.array(self.H[l], copy=True), a_prev.copy(), np.array(y),
                         np.array(mus), np.array(ks))
        super()._cp_update(l, a_prev, y, mus, ks)

    def _reinforce(self, l):
        cfg = self.config
        H = self.H[l]
        idx = sweep_indices(self.keys[l], self.step & MASK32, H.size, self.thresholds[l])
        if idx.size:
            flat = H.reshape(-1)
            v = flat[idx]
            v += np.where(v > 0, 2, -2).astype(v.dtype)
            np.clip(v, v.dtype.type(-cfg.h_max), v.dtype.type(cfg.h_max), out=v)
            flat[idx] = v


# -- configuration -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Config:
    """The runtime configuration the registers give the core (active layers only)."""

    layers: int
    inputs: int
    widths: tuple
    gammas: tuple
    robust: tuple
    thresh: tuple
    keys: tuple

    @property
    def sizes(self):
        return (self.inputs, *self.widths)

    def fan_in(self, l):
        return self.sizes[l]

    def layout(self, lanes):
        """``[(base_l, n_l)]`` of the active layers (docs: "Memories")."""
        out, base = [], 0
        for l in range(self.layers):
            n = words_per_neuron(self.fan_in(l), lanes)
            out.append((base, n))
            base += self.widths[l] * n
        return out

    def payload_words(self, opcode, l):
        """Words of a ``WRITE_*`` payload (and ``READ_*`` response) of layer ``l``."""
        k = self.widths[l]
        return k * -(-self.fan_in(l) // 4) if opcode in (Opcode.WRITE_H, Opcode.READ_H) else k

    def pattern_words(self):
        return 1 + -(-self.inputs // 32)

    def trainable(self):
        """Why the golden model cannot train this configuration, or None."""
        for l in range(self.layers):
            if self.widths[l] % self.gammas[l]:
                return f"GAMMA_{l}={self.gammas[l]} does not divide WIDTH_{l}={self.widths[l]}"
        return None


def fit_problem(build, regs):
    """Why the register values ``regs`` do not fit ``build`` (docs: "Build parameters"),
    or None."""
    L, k0 = regs["LAYERS"], regs["INPUTS"]
    if not 1 <= L <= build.max_layers:
        return f"LAYERS={L} not in 1..{build.max_layers}"
    if not 1 <= k0 <= build.max_fan_in:
        return f"INPUTS={k0} not in 1..{build.max_fan_in}"
    words, fan_in = 0, k0
    for l in range(L):
        k, g = regs[f"WIDTH_{l}"], regs[f"GAMMA_{l}"]
        if not 1 <= k <= build.max_width:
            return f"WIDTH_{l}={k} not in 1..{build.max_width}"
        if not 1 <= g <= k:
            return f"GAMMA_{l}={g} not in 1..WIDTH_{l}={k}"
        if k > g * build.max_groups:
            return f"WIDTH_{l}={k} > GAMMA_{l}={g} * max_groups={build.max_groups}"
        words += k * words_per_neuron(fan_in, build.lanes)
        fan_in = k
    if words > build.weight_words:
        return f"{words} weight words > weight_words={build.weight_words}"
    return None


def config_of(build, regs):
    """The :class:`Config` that register values ``regs`` give, or None if they do not fit
    ``build``."""
    if fit_problem(build, regs) is not None:
        return None
    L = regs["LAYERS"]
    get = lambda name: tuple(regs[f"{name}_{l}"] for l in range(L))
    return Config(L, regs["INPUTS"], get("WIDTH"), get("GAMMA"), get("ROBUST"),
                  get("THRESH"), get("KEY"))


# -- what the model expects of a packet ---------------------------------------------------------

@dataclasses.dataclass
class Expected:
    """A response the model expects on ``m_axis`` (in order)."""

    opcode: int
    words: list
    what: str
    layer: int = 0
    #: For a ``READ_*``: the memories and registers when the core read them (its header),
    #: which the response is checked against (a later packet may have changed them
    #: before the response's last word leaves the output slice).
    state: dict = None


@dataclasses.dataclass
class _Rx:
    """The packet being received (its header taken and found valid)."""

    opcode: int
    layer: int
    count: int
    due: int
    payload: list = dataclasses.field(default_factory=list)
    old: dict = dataclasses.field(default_factory=dict)     # unit -> contents before


# -- the model ----------------------------------------------------------------------------------

class ProtocolModel:
    """The register file, the packet protocol and the memories of one build.

    Parameters
    ----------
    build : Build

    Attributes
    ----------
    responses : list of Expected
        Responses predicted and not yet consumed (the bench pops them in order).
    refusals : list of tuple
        ``(code, opcode, index)`` of each refused packet, ``index`` the word that
        decided (0 for the header).
    log : list of str
        What happened, one line per event (for the report of a finding).
    """

    def __init__(self, build):
        if not isinstance(build, Build):
            raise TypeError(f"build must be a Build, got {build!r}")
        self.build = build
        self.regmap = RegisterMap(build)
        self._by_offset = {r.offset: r for r in self.regmap}
        P, ml, mw = build.lanes, build.max_layers, build.max_width
        self.h = np.zeros((build.weight_words, P), dtype=np.int16)
        self.h_known = np.zeros((build.weight_words, P), dtype=bool)
        self.h_cands = {}                        # address -> [(values, known)]
        self.p = np.zeros((ml, mw), dtype=np.int64)
        self.p_known = np.zeros((ml, mw), dtype=bool)
        self.theta = np.zeros((ml, mw), dtype=np.int64)     # 0 / 0 at power-up
        self.flip = np.zeros((ml, mw), dtype=bool)
        self.t_known = np.ones((ml, mw), dtype=bool)
        self.row_cands = {}                      # ("P"|"T", l, k) -> [(value, ...)]
        self.responses = []
        self.refusals = []
        self.log = []
        self.hard_reset()

    def copy(self):
        return copy.deepcopy(self)

    #: What a ``READ_*`` reads and what decides its layout.
    _READ_STATE = ("regs", "h", "h_known", "h_cands", "p", "p_known", "theta", "flip",
                   "t_known", "row_cands")

    def _snapshot(self):
        return {name: copy.deepcopy(getattr(self, name)) for name in self._READ_STATE}

    def _restore(self, state):
        for name, value in state.items():
            setattr(self, name, copy.deepcopy(value))

    # -- reset and state -------------------------------------------------------------------

    def hard_reset(self):
        """``rst``: every register to its reset value; the memories keep their contents."""
        self.regs = {}
        for reg in self.regmap:
            if reg.access.stored:
                self.regs[reg.name] = self.regmap.reset_value(reg.name)
        self._core_reset()
        self.dropped = []
        self.busy_latch = False
        self.log.append("hard reset")

    def _core_reset(self):
        self.patterns = 0
        self.errors = 0
        self.core_error = ErrorCode.NONE
        self.discarding = False
        self.rx = None
        self.header_pending = False   # the cycle after a header, see header_checked
        self.inflight = None          # the packet whose response (or run) is not done
        self.responses = []

    @property
    def busy(self):
        """The core is processing a packet (``STATUS.busy``): from the cycle after it
        takes a header (even one it refuses) until the packet is done."""
        return self.rx is not None or self.inflight is not None or self.header_pending

    @property
    def error(self):
        return self.core_error != ErrorCode.NONE or self.busy_latch

    @property
    def error_code(self):
        if self.core_error != ErrorCode.NONE:
            return self.core_error
        return ErrorCode.BUSY if self.busy_latch else ErrorCode.NONE

    @property
    def stream_open(self):
        """A new packet's header would be taken (no error, no ``BUSY`` latched)."""
        return not self.error

    def status(self):
        """``STATUS`` fields and ``ERROR_CODE`` as the host reads them when the core is
        not busy; ``phase`` None while busy (its sub-phase is the core's timing)."""
        if self.busy:
            phase = None
        elif self.error:
            phase = Phase.ERROR
        else:
            phase = Phase.IDLE
        return {"busy": int(self.busy), "error": int(self.error), "phase": phase,
                "error_code": int(self.error_code)}

    def config(self):
        """The :class:`Config` of the registers, or None if it does not fit the build."""
        return config_of(self.build, self.regs)

    # -- registers -------------------------------------------------------------------------

    def register_at(self, offset):
        """The register at byte ``offset`` (low two bits ignored), or None if unmapped."""
        return self._by_offset.get(offset & ~3 & 0xFFF)

    def write(self, offset, data, strobe=0xF):
        """A register write taking effect now; returns ``(resp, effect)``, effect one of
        ``"slverr"``, ``"busy"`` (ignored, ``BUSY`` latched), ``"stored"``, ``"control"``.
        ``late_write`` is passed on to :meth:`soft_reset`."""
        reg = self.register_at(offset)
        if reg is None or not reg.access.writable:
            self.log.append(f"write {offset:#05x} <- {data:#x}: SLVERR")
            return SLVERR, "slverr"
        bytemask = sum(0xFF << (8 * i) for i in range(4) if strobe >> i & 1)
        if reg.access is Access.W1P:
            bits = data & bytemask
            fields = {f.name for f in reg.fields if bits & f.mask}
            self.log.append(f"write CONTROL {sorted(fields)}")
            if "soft_reset" in fields:
                self.soft_reset()
            elif "clear_error" in fields:
                self.clear_error()
            return OKAY, "control"
        if self.busy:
            self.busy_latch = True
            self.log.append(f"write {reg.name} <- {data:#x} while busy: ignored, BUSY")
            return OKAY, "busy"
        mask = sum(f.mask for f in reg.fields)
        value = (self.regs[reg.name] & ~bytemask | data & bytemask) & mask
        self.regs[reg.name] = value
        self.log.append(f"write {reg.name} <- {value:#x}")
        return OKAY, "stored"

    def read(self, offset):
        """``(resp, value)`` of a register read while the core is not busy; value None for
        the cycle counters (not modelled)."""
        reg = self.register_at(offset)
        if reg is None:
            return SLVERR, 0
        if reg.access is Access.CONST:
            return OKAY, self.regmap.const_value(reg.name)
        if reg.access is Access.W1P:
            return OKAY, 0
        if reg.access.stored:
            return OKAY, self.regs[reg.name]
        if reg.name == "STATUS":
            st = self.status()
            phase = int(Phase.IDLE if st["phase"] is None else st["phase"])
            return OKAY, st["busy"] | st["error"] << 1 | phase << 4
        if reg.name == "ERROR_CODE":
            return OKAY, int(self.error_code)
        if reg.name == "PATTERNS":
            return OKAY, self.patterns
        if reg.name == "ERRORS":
            return OKAY, self.errors
        return OKAY, None

    def clear_error(self):
        """``CONTROL.clear_error``: ignored before the refused packet's ``tlast``; else
        clears the core's error and the ``BUSY`` latch."""
        if self.discarding:
            self.log.append("clear_error before the refused packet's tlast: ignored")
            return
        self.header_pending = False
        self.core_error = ErrorCode.NONE
        self.busy_latch = False

    def soft_reset(self):
        """``CONTROL.soft_reset``: the core's registers to reset (error, counters, ``STEP``),
        the packet in progress dropped; the memories keep what the docs say they keep."""
        rx, inflight = self.rx, self.inflight
        dropped = self.responses
        if rx is not None and rx.opcode in _WRITES:
            self._soft_reset_mid_write(rx)
        if inflight is not None and inflight[0] == Opcode.TRAIN:
            self._soft_reset_mid_train(inflight[1])
        self._core_reset()
        self.dropped = dropped
        self.busy_latch = False
        self.regs["STEP"] = 0
        self.log.append("soft reset" + (" mid-packet" if rx or inflight else ""))

    # -- the stream ------------------------------------------------------------------------

    def word(self, data, last):
        """One word taken on ``s_axis``. Raises :class:`StreamViolation` if the docs say
        the core takes no word now (error or ``BUSY`` latched between packets)."""
        data &= MASK32
        last = bool(last)
        self.header_pending = False
        if self.discarding:
            if last:
                self.discarding = False
            return
        if self.rx is None:
            self._header(data, last)
        else:
            self._payload(data, last)

    def response_done(self):
        """The response of the packet in flight ended (its ``tlast`` seen): the core is
        done with it."""
        self.inflight = None
        self.header_pending = False

    def header_checked(self):
        """The cycle after a header has passed. The docs make the core busy "from the cycle
        after it takes a header", a refused one included: a register write that lands in
        that cycle is ignored with ``BUSY`` (hidden under the packet's code)."""
        self.header_pending = False

    def _refuse(self, code, index, last, opcode):
        self.core_error = ErrorCode(code)
        self.discarding = not last
        self.refusals.append((ErrorCode(code), opcode, index))
        self.log.append(f"refused {ErrorCode(code).name} at word {index} of opcode {opcode:#x}")
        self.rx = None

    def _header(self, data, last):
        if self.error:
            raise StreamViolation(f"header {data:#010x} taken while "
                                  f"{ErrorCode(self.error_code).name} is latched")
        # A header taken while a response is still on its way: the core had finished.
        self.inflight = None
        self.header_pending = True
        op, layer, count = split_header(data)
        self.log.append(f"header {data:#010x}{' (tlast)' if last else ''}")
        try:
            opcode = Opcode(op)
        except ValueError:
            return self._refuse(ErrorCode.OPCODE, 0, last, op)
        cfg = self.config()
        if cfg is None:
            return self._refuse(ErrorCode.CONFIG, 0, last, op)
        io = opcode not in (Opcode.TRAIN, Opcode.INFER)
        if io and layer >= cfg.layers:
            return self._refuse(ErrorCode.LAYER, 0, last, op)
        if opcode in _READS:
            if not last:
                return self._refuse(ErrorCode.LENGTH, 0, last, op)
            words = self.expected_read(opcode, layer)[0]
            self.responses.append(Expected(opcode, words, f"{opcode.name} of layer {layer}",
                                           layer, self._snapshot()))
            self.inflight = (opcode, None)
            return
        if not io and not 1 <= count <= self.build.max_batch:
            return self._refuse(ErrorCode.LENGTH, 0, last, op)
        if last:
            return self._refuse(ErrorCode.LENGTH, 0, last, op)
        due = count * cfg.pattern_words() if not io else cfg.payload_words(opcode, layer)
        self.rx = _Rx(opcode, layer, count, due)

    def _payload(self, data, last):
        rx = self.rx
        i = len(rx.payload)
        if last != (i == rx.due - 1):
            return self._refuse(ErrorCode.LENGTH, i + 1, last, rx.opcode)
        if rx.opcode in (Opcode.TRAIN, Opcode.INFER):
            if i % self.config().pattern_words() == 0 and data >= self.build.classes:
                return self._refuse(ErrorCode.LABEL, i + 1, last, rx.opcode)
            rx.payload.append(data)
            if last:
                self.rx = None
                self._run_batch(rx)
            return
        rx.payload.append(data)
        self._write_units(rx, i)
        if last:
            self.rx = None
            self.log.append(f"{rx.opcode.name} of layer {rx.layer} done")

    # -- WRITE_*: units written as they arrive ----------------------------------------------

    def _write_units(self, rx, i):
        """Write the unit that payload word ``i`` completes (docs: "Refused WRITE_*")."""
        cfg = self.config()
        l = rx.layer
        if rx.opcode == Opcode.WRITE_P:
            rx.old[i] = ("P", l, i, self._row("P", l, i))
            self.p[l, i] = rx.payload[i] & ((1 << self.build.classes) - 1)
            self.p_known[l, i] = True
            self.row_cands.pop(("P", l, i), None)
            return
        if rx.opcode == Opcode.WRITE_T:
            rx.old[i] = ("T", l, i, self._row("T", l, i))
            w = rx.payload[i]
            self.theta[l, i] = (w & 0xFFFF) - ((w & 0x8000) << 1)
            self.flip[l, i] = bool(w >> 16 & 1)
            self.t_known[l, i] = True
            self.row_cands.pop(("T", l, i), None)
            return
        f = cfg.fan_in(l)
        w = -(-f // 4)
        for first, lastw, k, j in h_units(cfg.widths[l], f, self.build.lanes):
            if lastw == i:
                break
        else:
            return
        base, n = cfg.layout(self.build.lanes)[l]
        addr = base + k * n + j
        rx.old[addr] = (self.h[addr].copy(), self.h_known[addr].copy(),
                        self.h_cands.pop(addr, None))
        # Bytes 4*(first - k*w) .. of the neuron; those past the fan-in are padding,
        # written as 0 whatever the host sent.
        lo = 4 * (first - k * w)
        unit = [(rx.payload[q] >> (8 * b)) & 0xFF for q in range(first, lastw + 1)
                for b in range(4)]
        unit = [x - 256 if x >= 128 else x for x in unit]
        real = max(0, min(len(unit), f - lo))
        self.h[addr] = 0
        self.h[addr, :real] = unit[:real]
        self.h_known[addr] = True

    def _row(self, kind, l, k):
        if kind == "P":
            return (int(self.p[l, k]), bool(self.p_known[l, k]), self.row_cands.get(("P", l, k)))
        return (int(self.theta[l, k]), bool(self.flip[l, k]), bool(self.t_known[l, k]),
                self.row_cands.get(("T", l, k)))

    def _soft_reset_mid_write(self, rx):
        """Each unit this packet wrote holds its old or its new contents."""
        for key, old in rx.old.items():
            if rx.opcode == Opcode.WRITE_H:
                new = (self.h[key].copy(), self.h_known[key].copy())
                cands = [new] + (old[2] if old[2] is not None else [(old[0], old[1])])
                self.h_cands[key] = cands
                self.h_known[key] = False
            else:
                kind, l, k, row = old
                if kind == "P":
                    new = (int(self.p[l, k]),)
                    olds = row[2] if row[2] is not None else [(row[0],) if row[1] else None]
                    self.p_known[l, k] = False
                else:
                    new = (int(self.theta[l, k]), bool(self.flip[l, k]))
                    olds = row[3] if row[3] is not None else [(row[0], row[1]) if row[2]
                                                             else None]
                    self.t_known[l, k] = False
                self.row_cands[(kind, l, k)] = [new] + olds
        self.log.append(f"soft reset in {rx.opcode.name}: {len(rx.old)} units old or new")

    # -- TRAIN / INFER ------------------------------------------------------------------------

    def _weights(self, cfg, need_domain=True):
        """Per-layer ``H`` (``K_l x F_l``), ``P`` (``K_l x c``), theta, flip from memory."""
        P, c = self.build.lanes, self.build.classes
        h_max = (1 << (self.build.h_bits - 1)) - 1
        H, Pm, th, fl = [], [], [], []
        for l, (base, n) in enumerate(cfg.layout(P)):
            k, f = cfg.widths[l], cfg.fan_in(l)
            rows = self.h[base:base + k * n].reshape(k, n * P)[:, :f].astype(np.int32)
            known = self.h_known[base:base + k * n].reshape(k, n * P)[:, :f]
            if need_domain:
                if not known.all():
                    raise Unpredictable(f"layer {l}: {int((~known).sum())} weights of H unknown")
                bad = (rows % 2 == 0) | (np.abs(rows) > h_max)
                if bad.any():
                    raise Unpredictable(f"layer {l}: {int(bad.sum())} weights of H even or "
                                        f"beyond +-{h_max}")
                if not self.p_known[l, :k].all() or not self.t_known[l, :k].all():
                    raise Unpredictable(f"layer {l}: rows of P or T unknown")
            H.append(rows)
            bits = (self.p[l, :k, None] >> np.arange(c)) & 1
            Pm.append(np.where(bits == 1, 1, -1).astype(np.int8))
            th.append(self.theta[l, :k].astype(np.int32))
            fl.append(self.flip[l, :k].copy())
        return H, Pm, th, fl

    def golden(self, cfg=None, train=False):
        """The golden model of the current registers and memories.

        Raises
        ------
        Unpredictable
            If the configuration does not fit, a ``GAMMA_l`` does not divide
            ``WIDTH_l`` (only when ``train``), or a weight is unknown or out of domain.
        """
        cfg = cfg or self.config()
        if cfg is None:
            raise Unpredictable("the configuration does not fit the build")
        problem = cfg.trainable()
        gammas = cfg.gammas
        if problem:
            if train:
                raise Unpredictable(problem)
            gammas = tuple(1 for _ in cfg.widths)    # the forward pass does not use them
        H, Pm, th, fl = self._weights(cfg)
        nc = _RegisterConfig(sizes=cfg.sizes, classes=self.build.classes, gamma=gammas,
                             r=0.0, h_bits=self.build.h_bits, seed=0, robust=cfg.robust)
        model = _RegisterBMLP(nc, cfg.keys)
        model.H, model.P, model.theta, model.flip = H, Pm, th, fl
        model.thresholds = list(cfg.thresh)
        model.step = self.regs["STEP"]
        model._sync()
        return model

    def _run_batch(self, rx):
        cfg = self.config()
        n = rx.count
        pw = cfg.pattern_words()
        y = np.array([rx.payload[m * pw] for m in range(n)], dtype=np.int64)
        a0 = np.stack([_pattern_from_payload(rx.payload[m * pw + 1:(m + 1) * pw], cfg.inputs)
                       for m in range(n)])
        if rx.opcode == Opcode.INFER:
            model = self.golden(cfg)
            pred = np.argmax(model.forward(a0)[-1][2], axis=1)
            errors = int(np.count_nonzero(pred != y))
            words = [int(p) for p in pred] + [(STATUS_TAG | Opcode.INFER) << 24 | errors]
            self.responses.append(Expected(Opcode.INFER, words, f"INFER of {n}"))
            self.inflight = (Opcode.INFER, None)
            self.log.append(f"INFER of {n}: {errors} errors")
            return
        model = self.golden(cfg, train=True)
        before = [h.copy() for h in model.H]
        errors = model.train_batch(a0, y)
        trace = (cfg, model, before)
        self._store_h(cfg, model.H)
        self.regs["STEP"] = (self.regs["STEP"] + 1) & MASK32
        self.patterns = (self.patterns + n) & MASK32
        self.errors = (self.errors + errors) & MASK32
        self.responses.append(Expected(Opcode.TRAIN, [(STATUS_TAG | Opcode.TRAIN) << 24 | errors],
                                       f"TRAIN of {n}"))
        self.inflight = (Opcode.TRAIN, trace)
        self.log.append(f"TRAIN of {n}: {errors} errors, STEP -> {self.regs['STEP']}")

    def _store_h(self, cfg, H):
        """A TRAIN's new weights; the lanes past each neuron's fan-in keep theirs (the
        update engine passes them through, ``W = sign(H)`` there too)."""
        P = self.build.lanes
        for l, (base, n) in enumerate(cfg.layout(P)):
            k, f = H[l].shape
            block = self.h[base:base + k * n].reshape(k, n * P)
            block[:, :f] = H[l]
            known = self.h_known[base:base + k * n].reshape(k, n * P)
            known[:, :f] = True
            for addr in range(base, base + k * n):
                self.h_cands.pop(addr, None)

    def _train_trace(self, cfg, model, before):
        """Per memory word of every active layer, the values a ``TRAIN`` may leave there
        if stopped by ``soft_reset``: before, after each CP update of its neuron, after."""
        P = self.build.lanes
        h_max = model.config.h_max
        trace = {}
        for l, (base, n) in enumerate(cfg.layout(P)):
            k, f = before[l].shape
            rows = {kk: [before[l][kk].copy()] for kk in range(k)}
            if l in model.picks:
                H, a_prev, y, mus, ks = model.picks[l]
                H = H.astype(np.int32)
                for mu, kk in zip(mus, ks):
                    rho = int(model.P[l][kk, y[mu]])
                    H[kk] = np.clip(H[kk] + 2 * rho * a_prev[mu].astype(np.int32),
                                    -h_max, h_max)
                    rows[kk].append(H[kk].copy())
            for kk in range(k):
                rows[kk].append(model.H[l][kk].astype(np.int32))
                for j in range(n):
                    lo, hi = j * P, min((j + 1) * P, f)
                    addr = base + kk * n + j
                    seen = []
                    for r in rows[kk]:
                        # The lanes past the fan-in are not updated.
                        v = self.h[addr].copy()
                        v[:hi - lo] = r[lo:hi]
                        if not any(np.array_equal(v, s) for s in seen):
                            seen.append(v)
                    known = self.h_known[addr].copy()
                    known[:hi - lo] = True
                    trace[addr] = [(v, known) for v in seen]
        return trace

    def _soft_reset_mid_train(self, run):
        trace = self._train_trace(*run)
        for addr, cands in trace.items():
            self.h_cands[addr] = cands
            self.h_known[addr] = False
        self.log.append(f"soft reset mid-TRAIN: {len(trace)} words of H old or updated")

    # -- read-back ----------------------------------------------------------------------------

    def expected_read(self, opcode, layer):
        """``(words, known)`` of a ``READ_*`` of ``layer`` under the current configuration:
        the expected response and, per word, whether it is fully determined."""
        opcode = Opcode(opcode)
        cfg = self.config()
        k = cfg.widths[layer]
        if opcode == Opcode.READ_P:
            return ([int(x) for x in self.p[layer, :k]],
                    [bool(x) and ("P", layer, i) not in self.row_cands
                     for i, x in enumerate(self.p_known[layer, :k])])
        if opcode == Opcode.READ_T:
            return ([t_word(t, f) for t, f in zip(self.theta[layer, :k], self.flip[layer, :k])],
                    [bool(x) and ("T", layer, i) not in self.row_cands
                     for i, x in enumerate(self.t_known[layer, :k])])
        P = self.build.lanes
        f = cfg.fan_in(layer)
        base, n = cfg.layout(P)[layer]
        rows = self.h[base:base + k * n].reshape(k, n * P)[:, :f]
        known = self.h_known[base:base + k * n].reshape(k, n * P)[:, :f]
        words = h_payload(rows)
        w = -(-f // 4)
        kw = np.zeros((k, 4 * w), dtype=bool)
        kw[:, f:] = True
        kw[:, :f] = known
        return words, [bool(x) for x in kw.reshape(k, w, 4).all(axis=2).reshape(-1)]

    def check_read(self, opcode, layer, words, at=None):
        """Compare a ``READ_*`` response with the model; adopt what the docs leave open.

        ``at`` (:attr:`Expected.state`) checks it against the memories as they were when
        the core took the packet; what it adopts then goes to the current memories only
        where nothing has changed them since.

        Returns
        -------
        (list of str, int)
            The mismatches (empty when the response is one the docs allow) and the
            number of weights or rows adopted from the response.
        """
        if at is not None:
            now = self._snapshot()
            self._restore(at)
            result = self.check_read(opcode, layer, words)
            learnt = self._snapshot()
            self._restore(now)
            self._adopt_unchanged(at, learnt)
            return result
        opcode = Opcode(opcode)
        want, known = self.expected_read(opcode, layer)
        cfg = self.config()
        k = cfg.widths[layer]
        problems = []
        if len(words) != len(want):
            return [f"{opcode.name} of layer {layer}: {len(words)} words, expected "
                    f"{len(want)}"], 0
        if opcode != Opcode.READ_H:
            return self._check_rows(opcode, layer, words, want, known)
        f = cfg.fan_in(layer)
        P = self.build.lanes
        base, n = cfg.layout(P)[layer]
        got = _h_from_payload(words, k, f)
        w = -(-f // 4)
        pad = np.array(words, dtype=np.int64).reshape(k, w)
        if f % 4:
            mask = ~((1 << (8 * (f % 4))) - 1) & MASK32
            for kk in np.flatnonzero(pad[:, -1] & mask):
                problems.append(f"READ_H layer {layer} neuron {kk}: padding bytes "
                                f"{int(pad[kk, -1]):#010x} not 0")
        adopted = 0
        for kk in range(k):
            for j in range(n):
                addr = base + kk * n + j
                lo, hi = j * P, min((j + 1) * P, f)
                g = got[kk, lo:hi]
                cands = self.h_cands.get(addr)
                if cands is not None:
                    ok = any(np.array_equal(g[ck[:hi - lo]], cv[:hi - lo][ck[:hi - lo]])
                             for cv, ck in cands)
                    if not ok:
                        problems.append(
                            f"READ_H layer {layer} neuron {kk} word {j} (address {addr}): "
                            f"{g.tolist()} is none of the {len(cands)} values the docs allow")
                    adopted += hi - lo
                    self.h_cands.pop(addr)
                    self.h[addr, :hi - lo] = g
                    self.h_known[addr, :hi - lo] = True
                    continue
                kn = self.h_known[addr, :hi - lo]
                exp = self.h[addr, :hi - lo]
                bad = np.flatnonzero(kn & (exp != g))
                for b in bad[:4]:
                    problems.append(f"READ_H layer {layer} neuron {kk} weight {lo + b}: "
                                    f"{int(g[b])}, expected {int(exp[b])}")
                adopted += int((~kn).sum())
                self.h[addr, :hi - lo] = g
                self.h_known[addr, :hi - lo] = True
        return problems, adopted

    def _adopt_unchanged(self, before, after):
        """Copy what a check adopted (``before`` -> ``after``) into the current state, for
        each word of ``H`` and each row of ``P``/``T`` that is still as it was ``before``."""
        for addr in range(len(self.h)):
            same = (np.array_equal(self.h[addr], before["h"][addr])
                    and np.array_equal(self.h_known[addr], before["h_known"][addr])
                    and _same_cands(self.h_cands.get(addr), before["h_cands"].get(addr)))
            if same:
                self.h[addr] = after["h"][addr]
                self.h_known[addr] = after["h_known"][addr]
                if addr in after["h_cands"]:
                    self.h_cands[addr] = after["h_cands"][addr]
                else:
                    self.h_cands.pop(addr, None)
        for kind, arrays in (("P", ("p", "p_known")), ("T", ("theta", "flip", "t_known"))):
            for l in range(self.p.shape[0]):
                for i in range(self.p.shape[1]):
                    key = (kind, l, i)
                    same = all(getattr(self, a)[l, i] == before[a][l, i] for a in arrays) \
                        and _same_cands(self.row_cands.get(key), before["row_cands"].get(key))
                    if same:
                        for a in arrays:
                            getattr(self, a)[l, i] = after[a][l, i]
                        if key in after["row_cands"]:
                            self.row_cands[key] = after["row_cands"][key]
                        else:
                            self.row_cands.pop(key, None)

    def _check_rows(self, opcode, layer, words, want, known):
        problems, adopted = [], 0
        kind = "P" if opcode == Opcode.READ_P else "T"
        if kind == "P":
            extra = ~((1 << self.build.classes) - 1) & MASK32
            want = [x & ~extra for x in want]
        else:
            extra = ~0x1FFFF & MASK32
        for i, (g, e, kn) in enumerate(zip(words, want, known)):
            if g & extra:
                problems.append(f"{opcode.name} layer {layer} row {i}: {g:#x} has padding bits set")
            cands = self.row_cands.pop((kind, layer, i), None)
            if cands is not None:
                if kind == "P":
                    allowed = [c[0] for c in cands if c is not None]
                else:
                    allowed = [t_word(*c) for c in cands if c is not None]
                if None not in cands and g not in allowed:
                    problems.append(f"{opcode.name} layer {layer} row {i}: {g:#x}, none of "
                                    f"{[hex(a) for a in allowed]} the docs allow")
                adopted += 1
            elif not kn:
                adopted += 1
            elif g != e:
                problems.append(f"{opcode.name} layer {layer} row {i}: {g:#x}, expected {e:#x}")
            if kind == "P":
                self.p[layer, i] = g & ((1 << self.build.classes) - 1)
                self.p_known[layer, i] = True
            else:
                self.theta[layer, i] = (g & 0xFFFF) - ((g & 0x8000) << 1)
                self.flip[layer, i] = bool(g >> 16 & 1)
                self.t_known[layer, i] = True
        return problems, adopted

    # -- what the bench asks -----------------------------------------------------------------

    def predictable(self, opcode):
        """Why the model could not predict a valid ``opcode`` packet now, or None."""
        try:
            if opcode == Opcode.TRAIN:
                self.golden(train=True)
            elif opcode == Opcode.INFER:
                self.golden()
        except Unpredictable as e:
            return str(e)
        return None

    def layout_words(self):
        """Addresses of ``H`` that the active layers use."""
        cfg = self.config()
        if cfg is None:
            return []
        return [a for l, (base, n) in enumerate(cfg.layout(self.build.lanes))
                for a in range(base, base + cfg.widths[l] * n)]
