"""AXI4-Lite register file generated from the register map (:mod:`xnorlearn.contract`)."""

import enum

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from xnorlearn.contract import PYNQ_Z2, Access, Build, RegisterMap
from xnorlearn.hw._params import check_int

__all__ = ["AxiResp", "AxiLiteSignature", "AxiLiteRegisters"]

BUS_PREFIX = "s_axil"


class AxiResp(enum.IntEnum):
    """``bresp`` / ``rresp`` codes."""

    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


class AxiLiteSignature(wiring.Signature):
    """AXI4-Lite bus with 32-bit data, seen from the manager.

    Five channels, each its own ``valid``/``ready`` group: ``aw`` (``awaddr``,
    ``awprot``), ``w`` (``wdata``, ``wstrb``), ``b`` (``bresp``), ``ar`` (``araddr``,
    ``arprot``), ``r`` (``rdata``, ``rresp``). Member names are the AXI signal names
    without prefix.

    Parameters
    ----------
    addr_width : int
        Width of ``awaddr``/``araddr``, 3..32.

    Raises
    ------
    TypeError, ValueError
        If ``addr_width`` is not an integer in 3..32.
    """

    def __init__(self, *, addr_width):
        check_int("addr_width", addr_width, 3, 32)
        self._addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    addr_width = property(lambda self: self._addr_width)

    def __eq__(self, other):
        return isinstance(other, AxiLiteSignature) and other.addr_width == self.addr_width

    def __repr__(self):
        return f"AxiLiteSignature(addr_width={self._addr_width})"


def _port_shape(reg_map, reg, field):
    """A per-layer field is one array port indexed by layer; any other a plain value."""
    if reg.per_layer:
        return data.ArrayLayout(unsigned(field.width), reg_map.build.max_layers)
    return unsigned(field.width)


def _word(parts):
    """A 32-bit value from ``(lsb, width, value)`` parts; gaps and the top read 0."""
    pieces, pos = [], 0
    for lsb, width, value in sorted(parts, key=lambda p: p[0]):
        if lsb > pos:
            pieces.append(Const(0, lsb - pos))
        pieces.append(Const(value, width) if isinstance(value, int) else value[:width])
        pos = lsb + width
    if pos < 32:
        pieces.append(Const(0, 32 - pos))
    return Cat(*pieces)


class AxiLiteRegisters(wiring.Component):
    """The accelerator's register file on an AXI4-Lite subordinate port.

    Registers, fields, ports and the bus decoder are all generated from a
    :class:`~xnorlearn.contract.RegisterMap`; see that module for the access kinds.

    Bus behaviour: AW and W are accepted independently (each into a one-entry
    holding register, ``awready = ~held``); the write happens once both are held and
    the B channel is free, and ``bvalid`` follows one cycle later. A write takes
    effect (``Out`` ports change, pulses fire) on the same clock edge that raises
    ``bvalid``. Reads take two register stages (the address, then the data, so that
    the decoder and the wide read mux sit in different cycles): ``rvalid`` follows
    the AR handshake by two cycles, and reads stream back to back while ``rready``
    is high; the ``In`` ports of a ``ro`` register are sampled one cycle after the
    AR handshake.
    Both channels hold their outputs while ``bready``/``rready`` are low. The low
    two address bits are ignored (word access); an address of no register answers
    SLVERR, as does a write to a ``const``/``ro`` register. ``wstrb`` selects the
    bytes written; a ``w1p`` bit pulses only if its byte is strobed. ``awprot`` and
    ``arprot`` are ignored.

    Parameters
    ----------
    build : Build, optional
        The build whose :class:`~xnorlearn.contract.RegisterMap` to implement;
        default :data:`~xnorlearn.contract.PYNQ_Z2`.
    regmap : RegisterMap, optional
        The map itself, instead of ``build``.
    addr_width : int
        Width of the bus addresses, large enough for the map, at most 32 (default 12,
        a 4 KiB window).

    Members
    -------
    s_axil_* : AXI4-Lite subordinate port
        The signals of :class:`AxiLiteSignature`, flipped, as top-level members
        named ``s_axil_awaddr`` ... ``s_axil_rready`` (the names Vivado and
        ``cocotbext.axi.AxiLiteBus.from_prefix(dut, "s_axil")`` expect).
    <field> : ``Out``
        For each field of an ``rw``/``rwl`` register: its value; of a ``w1p``
        register: a one-cycle pulse per bit written as 1.
    <field> : ``In``
        For each field of a ``ro`` register: the value it reads.
    <field>_next, <field>_load : ``In``
        For each field of an ``rwl`` register: value and strobe by which the core
        loads it (a host write in the same cycle wins).
    <field>_written : ``Out(1)``
        For each field of an ``rwl`` register: one-cycle pulse after a host write,
        while ``<field>`` already shows the written value. (A core that keeps the
        value itself takes it from here and feeds it back through ``_next`` with
        ``_load`` high whenever ``_written`` is low.)
    lock : ``In(1)``
        While high, host writes to ``rw``/``rwl`` registers are ignored (answered OKAY).
    hold : ``In(1)``
        While high, writes wait: their address and data stay held and ``bvalid`` does not
        rise (reads go on).
    locked_write : ``Out(1)``
        One-cycle pulse for each write ignored because of ``lock``.

    A field of a per-layer register is one port of
    ``data.ArrayLayout(unsigned(width), max_layers)``, element ``l`` being layer ``l``.

    Attributes
    ----------
    regmap : RegisterMap
    addr_width : int

    Raises
    ------
    TypeError
        If ``build`` is not a Build, ``regmap`` not a RegisterMap, or ``addr_width``
        not an integer.
    ValueError
        If both ``build`` and ``regmap`` are given, or ``addr_width`` cannot address
        the map.
    """

    def __init__(self, *, build=None, regmap=None, addr_width=12):
        if regmap is None:
            if build is None:
                build = PYNQ_Z2
            if not isinstance(build, Build):
                raise TypeError(f"build must be a Build, got {build!r}")
            regmap = RegisterMap(build)
        elif build is not None:
            raise ValueError("give either build or regmap, not both")
        elif not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, got {regmap!r}")
        need = max(3, (regmap.span - 1).bit_length())
        check_int("addr_width", addr_width, need, 32)
        self._regmap = regmap
        self._addr_width = addr_width

        members = {f"{BUS_PREFIX}_{name}": member.flip()
                   for name, member in AxiLiteSignature(addr_width=addr_width).members.items()}
        for reg in regmap:
            if reg.access is Access.CONST or (reg.per_layer and reg.layer != 0):
                continue
            for f in reg.fields:
                shape = _port_shape(regmap, reg, f)
                if reg.access is Access.RO:
                    members[f.name] = In(shape)
                else:
                    members[f.name] = Out(shape)
                if reg.access is Access.RWL:
                    members[f"{f.name}_next"] = In(shape)
                    members[f"{f.name}_load"] = In(1)
                    members[f"{f.name}_written"] = Out(1)
        for name in ("lock", "locked_write", "hold"):
            if name in members:
                raise ValueError(f"register field {name!r} clashes with a control port")
        members["lock"] = In(1)
        members["hold"] = In(1)
        members["locked_write"] = Out(1)
        super().__init__(members)

    regmap = property(lambda self: self._regmap)
    addr_width = property(lambda self: self._addr_width)

    def _port(self, reg, name):
        port = getattr(self, name)
        return port[reg.layer] if reg.per_layer else port

    def elaborate(self, platform):
        m = Module()
        bus = {name: getattr(self, f"{BUS_PREFIX}_{name}")
               for name in AxiLiteSignature(addr_width=self._addr_width).members}

        # Stored fields and the word each register reads.
        stored = {}
        read_word = {}
        for reg in self._regmap:
            parts = []
            for f in reg.fields:
                if reg.access is Access.CONST:
                    value = f.value
                    if value is None:
                        value = self._regmap.build.field_value(f.name)
                    parts.append((f.lsb, f.width, value))
                elif reg.access is Access.RO:
                    parts.append((f.lsb, f.width, self._port(reg, f.name)))
                elif reg.access.stored:
                    sig = Signal(f.width, name=f"{reg.name.lower()}__{f.name}", init=f.reset)
                    stored[reg.name, f.name] = sig
                    m.d.comb += self._port(reg, f.name).eq(sig)
                    parts.append((f.lsb, f.width, sig))
            read_word[reg.name] = _word(parts)

        # -- write: AW and W each held until both are there and B is free -----------------
        aw_held = Signal()
        aw_word = Signal(self._addr_width - 2)
        w_held = Signal()
        w_data = Signal(32)
        w_strb = Signal(4)
        m.d.comb += [bus["awready"].eq(~aw_held), bus["wready"].eq(~w_held)]
        with m.If(bus["awvalid"] & ~aw_held):
            m.d.sync += [aw_held.eq(1), aw_word.eq(bus["awaddr"][2:])]
        with m.If(bus["wvalid"] & ~w_held):
            m.d.sync += [w_held.eq(1), w_data.eq(bus["wdata"]), w_strb.eq(bus["wstrb"])]

        do_write = Signal()
        m.d.comb += do_write.eq(aw_held & w_held & (~bus["bvalid"] | bus["bready"]) & ~self.hold)
        byte_mask = Cat(*(w_strb[i].replicate(8) for i in range(4)))
        write_resp = Signal(2)
        pulses = [self._port(reg, f.name) for reg in self._regmap if reg.access is Access.W1P
                  for f in reg.fields]
        pulses += [self._port(reg, f"{f.name}_written") for reg in self._regmap
                   if reg.access is Access.RWL for f in reg.fields]
        # A core load comes before the host write below, so the host wins in the same cycle.
        for reg in self._regmap:
            if reg.access is Access.RWL:
                for f in reg.fields:
                    with m.If(self._port(reg, f"{f.name}_load")):
                        m.d.sync += stored[reg.name, f.name].eq(self._port(reg, f"{f.name}_next"))
        m.d.sync += [p.eq(0) for p in pulses] + [self.locked_write.eq(0)]
        m.d.comb += write_resp.eq(AxiResp.SLVERR)
        with m.If(do_write):
            m.d.sync += [aw_held.eq(0), w_held.eq(0)]
            with m.Switch(aw_word):
                for reg in self._regmap:
                    if not reg.access.writable:
                        continue
                    with m.Case(reg.offset >> 2):
                        m.d.comb += write_resp.eq(AxiResp.OKAY)
                        merged = (read_word[reg.name] & ~byte_mask) | (w_data & byte_mask)
                        if reg.access is Access.W1P:
                            for f in reg.fields:
                                m.d.sync += self._port(reg, f.name).eq(
                                    (w_data & byte_mask)[f.lsb:f.lsb + f.width])
                        else:
                            with m.If(self.lock):
                                m.d.sync += self.locked_write.eq(1)
                            with m.Else():
                                m.d.sync += [stored[reg.name, f.name].eq(
                                    merged[f.lsb:f.lsb + f.width]) for f in reg.fields]
                                if reg.access is Access.RWL:
                                    m.d.sync += [self._port(reg, f"{f.name}_written").eq(1)
                                                 for f in reg.fields]

        with m.If(do_write):
            m.d.sync += [bus["bvalid"].eq(1), bus["bresp"].eq(write_resp)]
        with m.Elif(bus["bready"]):
            m.d.sync += bus["bvalid"].eq(0)

        # -- read: the address is registered before the register mux, which keeps the
        # decoder and the wide mux in separate cycles; back to back while rready is high.
        ar_held = Signal()
        ar_word = Signal(self._addr_width - 2)
        ar_take = Signal()
        r_move = Signal()
        m.d.comb += [r_move.eq(ar_held & (~bus["rvalid"] | bus["rready"])),
                     bus["arready"].eq(~ar_held | r_move),
                     ar_take.eq(bus["arvalid"] & bus["arready"])]
        with m.If(ar_take):
            m.d.sync += [ar_held.eq(1), ar_word.eq(bus["araddr"][2:])]
        with m.Elif(r_move):
            m.d.sync += ar_held.eq(0)
        with m.If(r_move):
            m.d.sync += [bus["rvalid"].eq(1), bus["rresp"].eq(AxiResp.OKAY)]
            with m.Switch(ar_word):
                for reg in self._regmap:
                    with m.Case(reg.offset >> 2):
                        m.d.sync += bus["rdata"].eq(read_word[reg.name])
                with m.Default():
                    m.d.sync += [bus["rdata"].eq(0), bus["rresp"].eq(AxiResp.SLVERR)]
        with m.Elif(bus["rready"]):
            m.d.sync += bus["rvalid"].eq(0)
        return m
