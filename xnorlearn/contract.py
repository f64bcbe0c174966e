"""The hardware/software contract of the accelerator, declared once.

Everything the gateware, the host driver and the benches must agree on lives here, in
plain Python with no dependencies (no Amaranth, no NumPy), so that every layer can import
it: the packet opcodes and header layout (:class:`Opcode`, :func:`header_word`), the
status tags, the error codes and phases, the build limits (:data:`LIMITS`, :class:`Build`)
and the AXI4-Lite register map.

Register map
------------

:data:`REGISTERS` is the table. Everything else is derived from it: the gateware's
register file and bus decoder (:class:`xnorlearn.hw.axil.AxiLiteRegisters`), the
driver's offsets (:func:`driver_offsets`), and the documentation
(:func:`markdown_table`, written to ``docs/registers.md`` by
``benchmarks/gen_regmap_doc.py``).

The table is parametrised by the build (:class:`Build`): the per-layer registers
(``per_layer=True``) are repeated ``max_layers`` times, ``LAYER_STRIDE`` bytes apart,
and the constant ``BUILD0..BUILD3`` registers report the build's parameters so that a
driver can refuse a bitstream that does not match its model (:meth:`RegisterMap.check_build`).

This module is plain Python (no Amaranth), so that the host driver can import it.

Access kinds
------------
``const``
    Read-only constant of the build; writes answer SLVERR.
``ro``
    Read-only, sampled from an ``In`` port of the core when the read is accepted;
    writes answer SLVERR.
``rw``
    Read/write, held in the register file, drives an ``Out`` port towards the core.
``rwl``
    As ``rw``, and also loadable by the core (``In`` ports ``<field>_next`` and
    ``<field>_load``; a host write in the same cycle wins), with an ``Out`` pulse
    ``<field>_written`` in the cycle after each host write (when the port already
    shows the new value), so that a core that keeps the value itself can take it.
``w1p``
    Write 1 to pulse: each field bit written as 1 gives a one-cycle pulse on the
    field's ``Out`` port; reads return 0.

A host write to an ``rw``/``rwl`` register while the register file's ``lock`` input is
high (the core is busy) changes nothing, answers OKAY, and pulses ``locked_write`` so
that the core can latch error ``BUSY``.
"""

import dataclasses
import enum

__all__ = [
    "check_int", "Opcode", "STATUS_TAG", "OPCODE_SHIFT", "LAYER_SHIFT", "LAYER_MASK",
    "COUNT_MASK", "MAX_COUNT", "THETA_MIN", "THETA_MAX", "H_PER_WORD", "header_word",
    "split_header", "Access", "Field", "Register", "Build", "PRESETS", "preset", "PYNQ_Z2", "ULX3S_85F", "REGISTERS", "LAYER_STRIDE",
    "ID_VALUE", "VERSION_MAJOR", "VERSION_MINOR", "ErrorCode", "Phase",
    "LIMITS", "default_weight_words", "max_sweep_cycles", "RegisterMap", "driver_offsets", "markdown_table",
]

def check_int(name, value, lo, hi):
    """Return ``value`` if it is an int in ``lo..hi``; else raise naming it and the range.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (``bool`` is refused too).
    ValueError
        If ``value`` is outside ``lo..hi``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


# -- stream protocol ------------------------------------------------------------------------

class Opcode(enum.IntEnum):
    """Packet opcodes (header bits 31..24)."""

    TRAIN = 0x01
    INFER = 0x02
    WRITE_H = 0x10
    READ_H = 0x11
    WRITE_P = 0x12
    READ_P = 0x13
    WRITE_T = 0x14
    READ_T = 0x15


OPCODE_SHIFT = 24              # header: opcode in bits 31..24
LAYER_SHIFT = 16               # layer in bits 23..16
LAYER_MASK = 0xFF
COUNT_MASK = 0xFFFF            # count in bits 15..0
MAX_COUNT = COUNT_MASK
STATUS_TAG = 0x80              # bits 31..24 of a status word: 0x80 | opcode
THETA_MIN, THETA_MAX = -(1 << 15), (1 << 15) - 1
H_PER_WORD = 4                 # hidden weights (bytes) per WRITE_H/READ_H word


def header_word(opcode, layer, count):
    """``opcode << 24 | layer << 16 | count``, fields masked to their widths."""
    return ((int(opcode) & 0xFF) << OPCODE_SHIFT) | ((layer & LAYER_MASK) << LAYER_SHIFT) \
        | (count & COUNT_MASK)


def split_header(word):
    """``(opcode, layer, count)`` of a header word (no checks)."""
    return word >> OPCODE_SHIFT & 0xFF, word >> LAYER_SHIFT & LAYER_MASK, word & COUNT_MASK


# -- register map ---------------------------------------------------------------------------

ID_VALUE = 0x584E524C          # "XNRL"
VERSION_MAJOR = 1              # incompatible register or protocol changes
VERSION_MINOR = 0              # compatible additions
LAYER_STRIDE = 0x20            # bytes between the register blocks of two layers


class Access(enum.Enum):
    """How the host and the core reach a register (see the module docstring)."""

    CONST = "const"
    RO = "ro"
    RW = "rw"
    RWL = "rwl"
    W1P = "w1p"

    @property
    def writable(self):
        """The host can write it (SLVERR otherwise)."""
        return self in (Access.RW, Access.RWL, Access.W1P)

    @property
    def stored(self):
        """The register file holds its value."""
        return self in (Access.RW, Access.RWL)


class ErrorCode(enum.IntEnum):
    """Values of ``ERROR_CODE`` (0 while ``STATUS.error`` is clear)."""

    NONE = 0
    OPCODE = 1
    LENGTH = 2
    LABEL = 3
    CONFIG = 4
    LAYER = 5
    BUSY = 6

    @property
    def description(self):
        return _ERROR_TEXT[self]


_ERROR_TEXT = {
    ErrorCode.NONE: "no error",
    ErrorCode.OPCODE: "unknown opcode",
    ErrorCode.LENGTH: "packet shorter or longer than the configuration (and a TRAIN/INFER "
                      "count) say, or a TRAIN/INFER count outside 1..max_batch",
    ErrorCode.LABEL: "label >= classes",
    ErrorCode.CONFIG: "configuration that does not fit the build, or GAMMA_l > WIDTH_l",
    ErrorCode.LAYER: "layer index >= LAYERS",
    ErrorCode.BUSY: "configuration register written while busy (the write was ignored)",
}


class Phase(enum.IntEnum):
    """Values of ``STATUS.phase``: what the core is doing."""

    IDLE = 0
    IO = 1
    FORWARD = 2
    UPDATE = 3
    REINFORCE = 4
    RESPOND = 5
    ERROR = 6

    @property
    def description(self):
        return _PHASE_TEXT[self]


_PHASE_TEXT = {
    Phase.IDLE: "waiting for a packet",
    Phase.IO: "packet I/O: receiving TRAIN/INFER patterns and labels and WRITE_* words, "
                "sending READ_* words",
    Phase.FORWARD: "forward pass",
    Phase.UPDATE: "CP updates",
    Phase.REINFORCE: "reinforcement sweep",
    Phase.RESPOND: "sending the response of a TRAIN or INFER packet (predictions, status word)",
    Phase.ERROR: "error latched: dropping the refused packet up to its tlast, then "
                 "waiting for CONTROL.clear_error",
}


# Architecture limits of the build parameters: name -> (lo, hi).
LIMITS = {
    "lanes": (32, 1024),
    "max_layers": (1, 8),
    "max_width": (1, 4095),
    "max_fan_in": (1, 4095),
    "classes": (2, 16),
    "max_batch": (1, 1024),
    "max_groups": (1, 64),
    "weight_words": (1, (1 << 24) - 1),
    "h_bits": (2, 8),
    "z_bits": (2, 31),
    "draw_lanes": (1, 1024),
    "fwd_patterns": (1, 64),
}


def default_weight_words(*, lanes, max_layers, max_width, max_fan_in):
    """Words of ``lanes`` weights that the largest configuration of a build needs:
    ``max_width * ceil(max_fan_in / lanes)
    + (max_layers - 1) * max_width * ceil(max_width / lanes)``."""
    return (max_width * -(-max_fan_in // lanes)
            + (max_layers - 1) * max_width * -(-max_width // lanes))


def max_sweep_cycles(build):
    """A bound on the cycles of one ``TRAIN``'s background reinforcement sweeps on
    ``build``: every weight word at ``lanes / draw_lanes`` cycles, and 20 cycles per layer
    of start and drain. Register writes, ``READ_H`` and ``WRITE_H`` may wait that long."""
    return build.weight_words * (build.lanes // build.draw_lanes) + 20 * build.max_layers


@dataclasses.dataclass(frozen=True)
class Build:
    """Elaboration parameters of the accelerator (``docs/architecture.md``).

    Parameters
    ----------
    lanes : int
        XNOR lanes ``P``, a multiple of 32 in 32..1024.
    max_layers, max_width, max_fan_in, classes, max_batch, max_groups : int
        Limits of a runtime configuration (ranges in :data:`LIMITS`).
    weight_words : int or None
        Depth of the weight memories; ``None`` sizes them for the largest
        configuration (:func:`default_weight_words`).
    h_bits : int
        Bits of the hidden weights, 2..8 (the stream protocol carries 8-bit ``h``).
    z_bits : int or None
        Saturation of the selection pre-activations, 2..31; ``None``: exact.
    draw_lanes : int
        Reinforcement draws per cycle, a divisor of ``lanes``. Only a speed
        parameter (results do not depend on it), so not reported in ``BUILD*``.
    fwd_patterns : int
        Patterns that the forward pass runs in lockstep, 1..64: the forward pass does
        ``lanes * fwd_patterns`` XNORs per cycle. A speed parameter, like ``draw_lanes``.

    Raises
    ------
    TypeError
        If a parameter is not an integer (or ``None`` where allowed).
    ValueError
        If a parameter is outside its range (:data:`LIMITS`).
    """

    lanes: int = 64
    max_layers: int = 3
    max_width: int = 256
    max_fan_in: int = 1024
    classes: int = 10
    max_batch: int = 128
    max_groups: int = 16
    weight_words: int = None
    h_bits: int = 8
    z_bits: int = None
    draw_lanes: int = 16
    fwd_patterns: int = 1

    def __post_init__(self):
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            if value is None and name in ("weight_words", "z_bits"):
                continue
            check_int(name, value, lo, hi)
        if self.lanes % 32:
            raise ValueError(f"lanes must be a multiple of 32 in 32..1024, got {self.lanes}")
        if self.lanes % self.draw_lanes:
            raise ValueError(f"draw_lanes must divide lanes ({self.lanes}), got {self.draw_lanes}")
        if self.weight_words is None:
            words = default_weight_words(lanes=self.lanes, max_layers=self.max_layers,
                                         max_width=self.max_width, max_fan_in=self.max_fan_in)
            object.__setattr__(self, "weight_words", words)

    def field_value(self, name):
        """The value a ``BUILD*`` field reports for parameter ``name`` (``z_bits`` None: 0)."""
        value = getattr(self, name)
        return 0 if value is None else value


#: The named builds of the boards, as the parameters they set over the :class:`Build`
#: defaults (the others, ``weight_words`` included, follow from those): the simulated
#: board, ``xnorlearn verify --preset``, ``benchmarks/implement.py`` and the board flows
#: start from these, and explicit parameters override them. ``pynq-z2``: the overlay's
#: build, three layers of up to 256 neurons on up to 1,024 inputs, the forward pass on 10
#: patterns at once (640 XNORs per cycle) and 32 draws per cycle. ``ulx3s-85f``: two
#: layers of up to 160 neurons on up to 800 inputs in 160-lane words (784 inputs in 5
#: words, 135 in one), the forward pass on 10 patterns at once (1,600 XNORs per cycle)
#: and 16 draws per cycle: the build that routes on the ECP5-85F at its 45 MHz
#: (``docs/ulx3s.md``).
PRESETS = {
    "pynq-z2": {"draw_lanes": 32, "fwd_patterns": 10},
    "ulx3s-85f": {"lanes": 160, "max_layers": 2, "max_width": 160, "max_fan_in": 800,
                  "draw_lanes": 16, "fwd_patterns": 10},
}


def preset(name, **overrides):
    """The :class:`Build` of preset ``name`` with ``overrides`` (build parameters) applied.

    Raises
    ------
    ValueError
        If ``name`` is not a key of :data:`PRESETS`, or the parameters do not make a build.
    TypeError
        If a parameter is unknown or of the wrong type.
    """
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(sorted(PRESETS))}, got {name!r}")
    return Build(**{**PRESETS[name], **overrides})


PYNQ_Z2 = preset("pynq-z2")
ULX3S_85F = preset("ulx3s-85f")


@dataclasses.dataclass(frozen=True)
class Field:
    """A bit field of a register.

    Parameters
    ----------
    name : str
        Lower-case identifier; also the name of the register file's port for it.
    lsb, width : int
        Bits ``lsb .. lsb + width - 1`` of the 32-bit word.
    description : str
    value : int or None
        Value of a constant field; ``None`` for a ``BUILD*`` field, which reports the
        build parameter of its name.
    reset : int
        Value of a stored field after reset.
    """

    name: str
    lsb: int
    width: int
    description: str
    value: int = None
    reset: int = 0

    @property
    def msb(self):
        return self.lsb + self.width - 1

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb


@dataclasses.dataclass(frozen=True)
class Register:
    """A 32-bit register.

    Parameters
    ----------
    name : str
        Upper-case name; a per-layer register ``X`` is named ``X_<layer>`` in the map.
    offset : int
        Byte offset (of layer 0 for a per-layer register), a multiple of 4.
    access : Access
    fields : tuple of Field
    description : str
    per_layer : bool
        Repeat the register for every layer, ``LAYER_STRIDE`` bytes apart.
    layer : int or None
        Set on the expanded copies of a per-layer register.
    """

    name: str
    offset: int
    access: Access
    fields: tuple
    description: str
    per_layer: bool = False
    layer: int = None

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")


def _f(name, lsb, width, description, **kwargs):
    return Field(name, lsb, width, description, **kwargs)


_CONST, _RO, _RW, _RWL, _W1P = Access.CONST, Access.RO, Access.RW, Access.RWL, Access.W1P

#: The register map. Offsets are bytes; per-layer registers give layer 0's offset.
REGISTERS = (
    Register("ID", 0x000, _CONST, (_f("id", 0, 32, '"XNRL" in ASCII', value=ID_VALUE),),
             "Identifies the accelerator."),
    Register("VERSION", 0x004, _CONST, (
        _f("minor", 0, 16, "compatible additions", value=VERSION_MINOR),
        _f("major", 16, 16, "incompatible register or protocol changes", value=VERSION_MAJOR),
    ), "Version of the register map and stream protocol."),
    Register("BUILD0", 0x008, _CONST, (
        _f("lanes", 0, 16, "XNOR lanes P"),
        _f("max_batch", 16, 16, "patterns per minibatch"),
    ), "Build parameters."),
    Register("BUILD1", 0x00C, _CONST, (
        _f("max_width", 0, 16, "neurons in any layer"),
        _f("max_fan_in", 16, 16, "inputs of layer 0 (K_0)"),
    ), "Build parameters."),
    Register("BUILD2", 0x010, _CONST, (
        _f("weight_words", 0, 24, "depth of the weight memories (words of P weights)"),
        _f("max_groups", 24, 8, "groups per layer (K_l / gamma_l)"),
    ), "Build parameters."),
    Register("BUILD3", 0x014, _CONST, (
        _f("classes", 0, 8, "classes c"),
        _f("max_layers", 8, 8, "hidden layers"),
        _f("h_bits", 16, 8, "bits of the hidden weights"),
        _f("z_bits", 24, 8, "saturation of the selection pre-activations (0: exact)"),
    ), "Build parameters."),
    Register("CONTROL", 0x020, _W1P, (
        _f("soft_reset", 0, 1, "return the core to idle, clear the error and the counters "
                               "(configuration registers and memories are kept)"),
        _f("clear_error", 1, 1, "clear STATUS.error and ERROR_CODE"),
    ), "Commands."),
    Register("STATUS", 0x024, _RO, (
        _f("busy", 0, 1, "a packet is being processed"),
        _f("error", 1, 1, "a packet was refused; waits for CONTROL.clear_error"),
        _f("reinforcing", 2, 1, "the last TRAIN's reinforcement sweeps still run; register "
                                "writes, READ_H and WRITE_H wait for them"),
        _f("phase", 4, 4, "current phase (Phase table)"),
    ), "Core state."),
    Register("ERROR_CODE", 0x028, _RO, (
        _f("error_code", 0, 8, "why the last packet was refused (ErrorCode table)"),
    ), "Latched error cause."),
    Register("LAYERS", 0x030, _RW, (
        _f("layers", 0, 4, "hidden layers L, 1..max_layers"),
    ), "Configuration."),
    Register("INPUTS", 0x034, _RW, (
        _f("inputs", 0, 12, "inputs of layer 0, K_0, 1..max_fan_in"),
    ), "Configuration."),
    Register("STEP", 0x038, _RWL, (
        _f("step", 0, 32, "minibatch counter t of the reinforcement sweep key; "
                          "+1 after each TRAIN"),
    ), "Minibatch counter (written by the host to resume, counted by the core)."),
    Register("PATTERNS", 0x040, _RO, (
        _f("patterns", 0, 32, "patterns trained since soft reset (mod 2**32)"),
    ), "Counter."),
    Register("ERRORS", 0x044, _RO, (
        _f("errors", 0, 32, "last-layer training errors since soft reset (mod 2**32)"),
    ), "Counter."),
    Register("CYCLES", 0x048, _RO, (
        _f("cycles", 0, 32, "clock cycles busy (mod 2**32)"),
    ), "Counter."),
    Register("CYCLES_FORWARD", 0x04C, _RO, (
        _f("cycles_forward", 0, 32, "busy cycles in which the forward pass streams (CP updates and "
                                      "reinforcement of earlier layers may run beside it)"),
    ), "Counter."),
    Register("CYCLES_UPDATE", 0x050, _RO, (
        _f("cycles_update", 0, 32, "busy cycles spent only on CP updates"),
    ), "Counter."),
    Register("CYCLES_REINFORCE", 0x054, _RO, (
        _f("cycles_reinforce", 0, 32, "busy cycles spent only on the reinforcement sweep"),
    ), "Counter."),
    Register("CYCLES_IO", 0x058, _RO, (
        _f("cycles_io", 0, 32, "busy cycles spent only on packet I/O; the four CYCLES_* "
                                  "counters add up to CYCLES"),
    ), "Counter."),
    Register("WIDTH", 0x100, _RW, (
        _f("width", 0, 12, "neurons K_l, 1..max_width"),
    ), "Layer configuration.", per_layer=True),
    Register("GAMMA", 0x104, _RW, (
        _f("gamma", 0, 12, "group size gamma_l, 1..K_l with K_l <= gamma_l * max_groups; "
                       "must divide K_l (the host checks it, the core does not)"),
    ), "Layer configuration.", per_layer=True),
    Register("ROBUST", 0x108, _RW, (
        _f("robust", 0, 16, "robustness threshold R_l = ceil(r * K_l)"),
    ), "Layer configuration.", per_layer=True),
    Register("THRESH", 0x10C, _RW, (
        _f("thresh", 0, 17, "reinforcement threshold, 0..65536 (draw < thresh)"),
    ), "Layer configuration.", per_layer=True),
    Register("KEY", 0x110, _RW, (
        _f("key", 0, 32, "reinforcement stream key stream_key(seed, REINFORCE, l)"),
    ), "Layer configuration.", per_layer=True),
)


def _check_table(registers, build):
    """Overlaps, alignment, field placement and port-name clashes are errors of the table."""
    offsets, names, ports = {}, set(), {}
    for reg in registers:
        if reg.offset % 4:
            raise ValueError(f"register {reg.name}: offset {reg.offset:#x} is not word aligned")
        if reg.offset in offsets:
            raise ValueError(f"registers {offsets[reg.offset]} and {reg.name} share offset "
                             f"{reg.offset:#x}")
        offsets[reg.offset] = reg.name
        if reg.name in names:
            raise ValueError(f"register name {reg.name} appears twice")
        names.add(reg.name)
        used = 0
        for f in reg.fields:
            if f.width < 1 or f.lsb < 0 or f.msb > 31:
                raise ValueError(f"register {reg.name}: field {f.name} bits {f.msb}:{f.lsb} "
                                 f"are outside 31:0")
            if used & f.mask:
                raise ValueError(f"register {reg.name}: field {f.name} overlaps another field")
            used |= f.mask
            if reg.access is Access.CONST:
                value = f.value if f.value is not None else build.field_value(f.name)
                if value >> f.width:
                    raise ValueError(f"register {reg.name}: {f.name} = {value} does not fit "
                                     f"{f.width} bits")
            elif reg.layer is None or reg.layer == 0:
                if f.name in ports:
                    raise ValueError(f"field name {f.name} of {reg.name} is also a field of "
                                     f"{ports[f.name]}; port names must be unique")
                ports[f.name] = reg.name
                if f.reset >> f.width:
                    raise ValueError(f"register {reg.name}: reset of {f.name} does not fit")


class RegisterMap:
    """The register map of one build: :data:`REGISTERS` with the per-layer ones expanded.

    Parameters
    ----------
    build : Build
        Default :data:`PYNQ_Z2`.
    registers : tuple of Register
        The table; default :data:`REGISTERS`.

    Attributes
    ----------
    build : Build
    registers : tuple of Register
        Expanded (``WIDTH_0``, ``WIDTH_1``, ...), in offset order.
    span : int
        Bytes from offset 0 past the last register.

    Raises
    ------
    TypeError
        If ``build`` is not a :class:`Build`.
    ValueError
        If the table has overlapping or misaligned registers or fields, clashing
        field (port) names, or a constant that does not fit its field.
    """

    def __init__(self, build=PYNQ_Z2, *, registers=REGISTERS):
        if not isinstance(build, Build):
            raise TypeError(f"build must be a Build, got {build!r}")
        self._build = build
        expanded = []
        for reg in registers:
            if reg.per_layer:
                for layer in range(build.max_layers):
                    expanded.append(dataclasses.replace(
                        reg, name=f"{reg.name}_{layer}",
                        offset=reg.offset + layer * LAYER_STRIDE, layer=layer))
            else:
                expanded.append(reg)
        expanded.sort(key=lambda r: r.offset)
        _check_table(expanded, build)
        self._registers = tuple(expanded)
        self._by_name = {r.name: r for r in expanded}

    build = property(lambda self: self._build)
    registers = property(lambda self: self._registers)
    span = property(lambda self: self._registers[-1].offset + 4)

    def __getitem__(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no register {name!r}") from None

    def __iter__(self):
        return iter(self._registers)

    def offsets(self):
        """``{name: byte offset}`` of every register."""
        return {r.name: r.offset for r in self._registers}

    def const_value(self, name):
        """The word a constant register reads."""
        reg = self[name]
        if reg.access is not Access.CONST:
            raise ValueError(f"{name} is not a constant register ({reg.access.value})")
        word = 0
        for f in reg.fields:
            word |= (f.value if f.value is not None else self._build.field_value(f.name)) << f.lsb
        return word

    def reset_value(self, name):
        """The word a register reads after reset (constants: their value; ``ro``: None)."""
        reg = self[name]
        if reg.access is Access.CONST:
            return self.const_value(name)
        if reg.access is Access.RO:
            return None
        if reg.access is Access.W1P:
            return 0
        return sum(f.reset << f.lsb for f in reg.fields)

    def decode(self, name, word):
        """``{field: value}`` of ``word`` read from register ``name``."""
        return {f.name: (word >> f.lsb) & ((1 << f.width) - 1) for f in self[name].fields}

    def encode(self, name, **fields):
        """The word that sets ``fields`` of register ``name`` (others 0).

        Raises
        ------
        ValueError
            For an unknown field or a value that does not fit it.
        """
        reg = self[name]
        word = 0
        for fname, value in fields.items():
            try:
                f = reg.field(fname)
            except KeyError as e:
                raise ValueError(f"{e.args[0]}; fields: {[f.name for f in reg.fields]}") from None
            check_int(f"{name}.{fname}", value, 0, (1 << f.width) - 1)
            word |= value << f.lsb
        return word

    def check_build(self, words):
        """Compare the ``BUILD*`` words read from a bitstream with this map's build.

        Parameters
        ----------
        words : dict
            ``{"BUILD0": word, ...}``; ``ID`` and ``VERSION`` are checked too when present.

        Raises
        ------
        ValueError
            Naming every parameter that differs, with both values.
        """
        problems = []
        for name in ("ID", "VERSION", "BUILD0", "BUILD1", "BUILD2", "BUILD3"):
            if name not in words:
                if name.startswith("BUILD"):
                    problems.append(f"{name} missing")
                continue
            got = self.decode(name, words[name])
            want = self.decode(name, self.const_value(name))
            for f in self[name].fields:
                if name == "VERSION" and f.name == "minor":
                    continue    # minor versions are compatible
                if got[f.name] != want[f.name]:
                    problems.append(f"{f.name}: bitstream {got[f.name]:#x}, "
                                    f"expected {want[f.name]:#x}" if name in ("ID", "VERSION")
                                    else f"{f.name}: bitstream {got[f.name]}, "
                                         f"expected {want[f.name]}")
        if problems:
            raise ValueError("bitstream does not match the build: " + "; ".join(problems))

    def markdown(self):
        """The register table of this build as Markdown (``docs/registers.md``)."""
        b = self._build
        lines = [
            "# Registers",
            "",
            "<!-- Generated by benchmarks/gen_regmap_doc.py from xnorlearn/contract.py; do not edit. -->",
            "",
            "AXI4-Lite, 32-bit words, byte offsets from the register file's base address. "
            "Unmapped offsets, and writes to `const`/`ro` registers, answer SLVERR. "
            "Reserved bits read 0 and ignore writes; write strobes are honoured.",
            "",
            "This table is for the build " + ", ".join(
                f"`{k}={getattr(b, k)}`" for k in (f.name for f in dataclasses.fields(b))) + ". "
            f"Per-layer registers `X_l` repeat every {LAYER_STRIDE:#x} bytes for "
            f"`l = 0 .. max_layers-1`.",
            "",
            "Access: `const` build constant; `ro` sampled from the core when read; `rw` "
            "read/write; `rwl` read/write and counted by the core; `w1p` write 1 to "
            "pulse (reads 0). Writes to `rw`/`rwl` registers while the core is busy "
            "are ignored and latch error `BUSY`.",
            "",
            "| offset | register | access | bits | field | reset / value | description |",
            "|---|---|---|---|---|---|---|",
        ]
        for reg in self._registers:
            for i, f in enumerate(reg.fields):
                bits = f"{f.msb}:{f.lsb}" if f.width > 1 else f"{f.lsb}"
                if reg.access is Access.CONST:
                    value = f.value if f.value is not None else b.field_value(f.name)
                    value = f"0x{value:08X}" if f.width == 32 else str(value)
                elif reg.access is Access.RO:
                    value = "core"
                else:
                    value = str(f.reset)
                first = i == 0
                lines.append("| " + " | ".join([
                    f"`{reg.offset:#05x}`" if first else "",
                    f"`{reg.name}`" if first else "",
                    reg.access.value if first else "",
                    bits, f"`{f.name}`", value,
                    (f"**{reg.description}** " if first else "") + f.description,
                ]) + " |")
        lines += ["", "## Error codes (`ERROR_CODE`)", "", "| code | name | meaning |",
                  "|---|---|---|"]
        lines += [f"| {e.value} | `{e.name}` | {e.description} |" for e in ErrorCode]
        lines += ["", "## Phases (`STATUS.phase`)", "", "| value | name | meaning |",
                  "|---|---|---|"]
        lines += [f"| {p.value} | `{p.name}` | {p.description} |" for p in Phase]
        return "\n".join(lines) + "\n"


def driver_offsets(build=PYNQ_Z2):
    """``{register name: byte offset}`` for the host driver (a plain dict)."""
    return RegisterMap(build).offsets()


def markdown_table(build=PYNQ_Z2):
    """The Markdown text of ``docs/registers.md`` for ``build``."""
    return RegisterMap(build).markdown()
