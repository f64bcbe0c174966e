"""The top level of the accelerator: the register file and the training core behind
an AXI4-Lite port and two AXI4-Stream ports.

See ``docs/architecture.md`` for the host protocol and ``docs/registers.md`` for the
register map (both declared once, in :mod:`xnorlearn.contract`).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from xnorlearn.contract import Build, ErrorCode, Phase
from xnorlearn.hw._params import check_int
from xnorlearn.hw.axil import BUS_PREFIX, AxiLiteRegisters, AxiLiteSignature
from xnorlearn.hw.core import TrainerCore
from xnorlearn.hw.slice import RegisterSlice

__all__ = ["AxiStreamSignature", "Accelerator", "core_parameters", "CORE_LIMITS", "ADDR_WIDTH"]

#: Width of the AXI4-Lite addresses: a 4 KiB window.
ADDR_WIDTH = 12

#: Limits of the TrainerCore narrower than those of :data:`xnorlearn.contract.LIMITS`.
CORE_LIMITS = {
    "max_width": "2..4095",
    "weight_words": f"1..{1 << 20}",
    "draw_lanes": "a power of two dividing lanes, at least 2",
    "z_bits": "None (the core selects on exact pre-activations)",
}


def core_parameters(build):
    """The keyword arguments of :class:`~xnorlearn.hw.core.TrainerCore` for ``build``.

    Raises
    ------
    TypeError
        If ``build`` is not a :class:`~xnorlearn.contract.Build`.
    ValueError
        If the build is one the core cannot implement (:data:`CORE_LIMITS`), naming the
        parameter, its value and what the core allows.
    """
    if not isinstance(build, Build):
        raise TypeError(f"build must be a xnorlearn.contract.Build, got {build!r}")
    problems = []
    if build.max_width < 2:
        problems.append(("max_width", build.max_width))
    if build.weight_words > 1 << 20:
        problems.append(("weight_words", build.weight_words))
    if (build.draw_lanes < 2 or build.draw_lanes & (build.draw_lanes - 1)
            or build.lanes % build.draw_lanes):
        problems.append(("draw_lanes", build.draw_lanes))
    if build.z_bits is not None:
        problems.append(("z_bits", build.z_bits))
    if problems:
        raise ValueError("the training core cannot implement this build: " + "; ".join(
            f"{name} must be {CORE_LIMITS[name]}, got {value}" for name, value in problems))
    return dict(lanes=build.lanes, max_layers=build.max_layers, max_width=build.max_width,
                max_fan_in=build.max_fan_in, classes=build.classes, max_batch=build.max_batch,
                max_groups=build.max_groups, weight_words=build.weight_words,
                h_bits=build.h_bits, draw_lanes=build.draw_lanes,
                fwd_patterns=build.fwd_patterns)


class AxiStreamSignature(wiring.Signature):
    """AXI4-Stream with ``tdata``, ``tvalid``, ``tready`` and ``tlast``, seen from the
    transmitter (the manager).

    Parameters
    ----------
    data_width : int
        Width of ``tdata``, a multiple of 8 in 8..1024 (default 32).

    Raises
    ------
    TypeError, ValueError
        If ``data_width`` is not an integer multiple of 8 in 8..1024.
    """

    def __init__(self, *, data_width=32):
        check_int("data_width", data_width, 8, 1024)
        if data_width % 8:
            raise ValueError(f"data_width must be a multiple of 8, got {data_width}")
        self._data_width = data_width
        super().__init__({
            "tdata": Out(data_width), "tvalid": Out(1), "tready": In(1), "tlast": Out(1),
        })

    data_width = property(lambda self: self._data_width)

    def __eq__(self, other):
        return isinstance(other, AxiStreamSignature) and other.data_width == self.data_width

    def __repr__(self):
        return f"AxiStreamSignature(data_width={self._data_width})"


def _fit_or_zero(value, width):
    """``value`` if it fits ``width`` bits, else 0 (a value the core refuses as ``CONFIG``)."""
    if len(value) <= width:
        return value
    return Mux(value[width:].any(), 0, value[:width])


def _saturate(value, width):
    if len(value) <= width:
        return value
    return Mux(value[width:].any(), (1 << width) - 1, value[:width])


class Accelerator(wiring.Component):
    """The CP+R training accelerator: :class:`~xnorlearn.hw.axil.AxiLiteRegisters` and
    :class:`~xnorlearn.hw.core.TrainerCore` wired together behind standard AXI ports.

    Every configuration register drives the core, the status, counter and error
    registers read the core, ``CONTROL.soft_reset`` and ``CONTROL.clear_error`` reach it,
    and ``ID``/``VERSION``/``BUILD0..3`` identify the build. Commands arrive as packets
    on ``s_axis`` and responses leave on ``m_axis`` (``docs/architecture.md``).

    What the wrapper adds to the core:

    * ``STEP``: a host write loads the core's minibatch counter, which the register
      mirrors back.
    * Background sweeps: while the core's ``reinforcing`` is high (the last ``TRAIN``'s
      reinforcement sweeps, which use the thresholds, keys, sizes and ``STEP``), every
      register write waits, ``CONTROL`` included, so that none changes what they use or
      cuts them short; ``STATUS.reinforcing`` shows it. The wait ends on its own, within
      the sweeps' cycles.
    * Error ``BUSY``: a configuration write while the core is busy is ignored and
      latched here; ``STATUS.error`` is the core's error or this one, ``ERROR_CODE``
      the core's code if it has one (a refused packet), else ``BUSY``, and
      ``STATUS.phase`` reads ``ERROR`` while the core is idle. Like a refused packet,
      it holds new packets back until ``CONTROL.clear_error`` (or ``soft_reset``).
    * Settling: the core derives its memory layout from the configuration over a few
      cycles, so a new packet is held back for ``max_layers + 5`` cycles
      (``TrainerCore.config_latency``) after any register write, and while a write has
      its address and data in (it may take effect in that cycle). A write thus takes
      effect either before a header is taken, which is then checked against it, or
      while the core is busy with the packet, and is refused with ``BUSY``: a header
      waiting on ``s_axis`` is taken ``max_layers + 6`` cycles after the B handshake of
      the last write at the latest (the core idle, no error latched).
    * Range: a ``LAYERS``, ``INPUTS``, ``WIDTH_l`` or ``GAMMA_l`` value wider than the
      core's port reaches the core as 0, so the core refuses the configuration with
      ``CONFIG`` instead of seeing it truncated; ``ROBUST_l`` saturates (any value
      above the largest margin ``2 * max_width`` means "always update").

    Holding a packet back happens only between packets (``s_axis`` is tracked up to
    each ``tlast``); ``soft_reset`` forgets a packet in progress, so a host that
    resets the accelerator in the middle of a packet also stops its sender (the rest
    of the packet would otherwise be read as new packets, and refused).

    Parameters
    ----------
    build : Build
        Elaboration parameters (:class:`xnorlearn.contract.Build`); the core needs
        ``max_width >= 2``, ``weight_words <= 2**20``, ``draw_lanes`` a power of two
        dividing ``lanes`` and ``z_bits`` None.

    Members
    -------
    s_axil : ``In(AxiLiteSignature(addr_width=12))``
        AXI4-Lite subordinate port of the register file (Verilog ports
        ``s_axil__awaddr`` ... ``s_axil__rready``; cocotbext-axi:
        ``AxiLiteBus.from_prefix(dut, "s_axil_")``).
    s_axis : ``In(AxiStreamSignature())``
        Command packets (``s_axis__tdata``, ``s_axis__tvalid``, ``s_axis__tready``,
        ``s_axis__tlast``).
    m_axis : ``Out(AxiStreamSignature())``
        Response packets (``m_axis__tdata`` ...).

    Attributes
    ----------
    build : Build
    addr_width : int

    Raises
    ------
    TypeError
        If ``build`` is not a :class:`~xnorlearn.contract.Build`.
    ValueError
        If the core cannot implement the build (:func:`core_parameters`).
    """

    def __init__(self, *, build):
        self._core_params = core_parameters(build)
        self._build = build
        super().__init__({
            "s_axil": In(AxiLiteSignature(addr_width=ADDR_WIDTH)),
            "s_axis": In(AxiStreamSignature(data_width=32)),
            "m_axis": Out(AxiStreamSignature(data_width=32)),
        })

    build = property(lambda self: self._build)
    addr_width = property(lambda self: ADDR_WIDTH)

    def elaborate(self, platform):
        m = Module()
        b = self._build
        m.submodules.regs = regs = AxiLiteRegisters(build=b, addr_width=ADDR_WIDTH)
        m.submodules.core = core = TrainerCore(**self._core_params)

        # -- AXI4-Lite: the register file's flat port ------------------------------------------
        for name, member in AxiLiteSignature(addr_width=ADDR_WIDTH).members.items():
            outer, inner = getattr(self.s_axil, name), getattr(regs, f"{BUS_PREFIX}_{name}")
            if member.flow == Out:      # manager to subordinate
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)

        # -- configuration -----------------------------------------------------------------------
        m.d.comb += [
            core.layers.eq(_fit_or_zero(regs.layers, len(core.layers))),
            core.width[0].eq(_fit_or_zero(regs.inputs, core.width_bits)),
        ]
        for l in range(b.max_layers):
            m.d.comb += [
                core.width[l + 1].eq(_fit_or_zero(regs.width[l], core.width_bits)),
                core.gamma[l].eq(_fit_or_zero(regs.gamma[l], core.width_bits)),
                core.robust[l].eq(_saturate(regs.robust[l], core.margin_bits)),
                core.thresh[l].eq(regs.thresh[l]),
                core.key[l].eq(regs.key[l]),
            ]
        # The core keeps STEP: it takes a host write, the register mirrors it otherwise.
        m.d.comb += [
            core.step_value.eq(regs.step),
            core.step_load.eq(regs.step_written),
            regs.step_next.eq(core.step),
            regs.step_load.eq(~regs.step_written),
        ]

        # -- commands, status and errors ---------------------------------------------------------
        busy_error = Signal()
        with m.If(regs.locked_write):
            m.d.sync += busy_error.eq(1)
        with m.If(regs.clear_error | regs.soft_reset):
            m.d.sync += busy_error.eq(0)
        core_idle = core.phase == Phase.IDLE
        m.d.comb += [
            core.soft_reset.eq(regs.soft_reset),
            core.clear_error.eq(regs.clear_error),
            regs.lock.eq(core.busy),
            regs.hold.eq(core.reinforcing),
        ]
        # The status fields are registered once: `phase` comes from the core's
        # multiplexers, and reading it a cycle late costs nothing.
        m.d.sync += [
            regs.busy.eq(core.busy),
            regs.reinforcing.eq(core.reinforcing),
            regs.error.eq(core.error | busy_error),
            regs.error_code.eq(Mux(core.error, core.error_code,
                                   Mux(busy_error, ErrorCode.BUSY, ErrorCode.NONE))),
            regs.phase.eq(Mux(busy_error & core_idle, Phase.ERROR, core.phase)),
        ]
        for name in ("patterns", "errors", "cycles", "cycles_forward", "cycles_update",
                     "cycles_reinforce", "cycles_io"):
            m.d.comb += getattr(regs, name).eq(getattr(core, name))

        # -- streams -----------------------------------------------------------------------------
        # A new packet waits while the configuration settles after a register write (the
        # write takes effect on the edge that raises bvalid) and while BUSY is latched. It
        # also waits while a write has its address and data in (`awready` and `wready`
        # low: it may take effect in this very cycle), so that no header is taken in the
        # cycle a write lands: a header taken before finds the core busy (the write is
        # refused with BUSY), one taken after sees the settled new configuration.
        settle = Signal(range(core.config_latency + 1))
        bvalid = regs.s_axil_bvalid
        with m.If(bvalid):
            m.d.sync += settle.eq(core.config_latency)
        with m.Elif(settle != 0):
            m.d.sync += settle.eq(settle - 1)
        write_in = ~regs.s_axil_awready & ~regs.s_axil_wready
        in_packet = Signal()
        hold = ~in_packet & (write_in | bvalid | (settle != 0) | busy_error)
        m.d.comb += [
            core.s_axis.payload.data.eq(self.s_axis.tdata),
            core.s_axis.payload.last.eq(self.s_axis.tlast),
            core.s_axis.valid.eq(self.s_axis.tvalid & ~hold),
            self.s_axis.tready.eq(core.s_axis.ready & ~hold),
        ]
        # Responses leave through a register slice: some words come straight from block
        # RAM outputs, and the bus beyond deserves a clean register boundary.
        m.submodules.m_slice = m_slice = RegisterSlice(shape=core.m_axis.payload.shape())
        wiring.connect(m, core.m_axis, m_slice.i)
        m.d.comb += [
            m_slice.flush.eq(regs.soft_reset),
            self.m_axis.tdata.eq(m_slice.o.payload.data),
            self.m_axis.tlast.eq(m_slice.o.payload.last),
            self.m_axis.tvalid.eq(m_slice.o.valid),
            m_slice.o.ready.eq(self.m_axis.tready),
        ]
        with m.If(self.s_axis.tvalid & self.s_axis.tready):
            m.d.sync += in_packet.eq(~self.s_axis.tlast)
        with m.If(regs.soft_reset):
            m.d.sync += in_packet.eq(0)
        return m

