# amaranth: UnusedElaboratable=no
"""``xnorlearn overlay``: the Vivado project of a PYNQ overlay around the accelerator.

:func:`write_overlay_project` writes, into one folder that can be copied to any machine
with Vivado:

``hdl/xnorlearn_accel.v``
    The accelerator (:class:`~xnorlearn.hw.accelerator.Accelerator`) as Verilog.
``hdl/xnorlearn_overlay_top.v``
    A wrapper whose ports carry Xilinx interface attributes (``X_INTERFACE_INFO``,
    ``X_INTERFACE_PARAMETER``, UG994), so that IP integrator sees ``s_axil``
    (AXI4-Lite), ``s_axis`` and ``m_axis`` (AXI4-Stream), the clock ``aclk`` and the
    active-low reset ``aresetn`` as interfaces; it inverts the reset for the
    accelerator, whose ``rst`` is active high.
``tcl/xnorlearn_ps7.tcl``, ``tcl/xnorlearn_overlay.tcl``
    The processing system's board preset (no installed board files needed) and the
    block design: processing_system7 with FCLK0 at the build's clock, an AXI DMA in
    simple mode on the HP0 port, the accelerator's registers on GP0 at a fixed address,
    validation, HDL wrapper, bitstream, and the copy of the ``.bit`` and ``.hwh``.
``overlay.tcl``, ``build.sh``
    The build script (the parameters of this build, then the flow) and the one command
    that runs it: ``vivado -mode batch -source overlay.tcl``.
``<stem>.json``
    The build (:func:`overlay_info`): parameters, clock, register-map version and ID,
    the accelerator's base address, the DMA's instance name and the stem. The host driver
    reads it to check the bitstream's ``ID``/``VERSION``/``BUILD*`` registers and FCLK0.

Vivado, run there, leaves ``<stem>.bit`` and ``<stem>.hwh`` beside the JSON, which is
what ``pynq.Overlay("<stem>.bit")`` loads. The Vivado release is the one the targeted
PYNQ image was built with (:data:`PYNQ_RELEASES`; pynq 4 dropped the Zynq-7000 boards).

The command (:func:`add_arguments`, :func:`run`) runs Vivado itself when ``vivado`` is on
``PATH``; otherwise it says which release to use and the command to run. Exit status:
0 written (and built), 1 Vivado failed, 2 bad arguments (nothing written).
"""

import argparse
import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

from xnorlearn.contract import (ID_VALUE, PYNQ_Z2, VERSION_MAJOR, VERSION_MINOR, Build,
                                RegisterMap, check_int)

__all__ = [
    "Board", "BOARDS", "PYNQ_RELEASES", "DEFAULT_PYNQ", "Fclk", "fclk_setting",
    "FCLK_MIN_MHZ", "FCLK_MAX_MHZ", "IO_PLL_MHZ", "Port", "verilog_ports",
    "accelerator_ports", "WrapperPort", "wrapper_ports", "wrapper_verilog", "largest_packet_words", "dma_length_width", "overlay_info",
    "OverlayProject", "write_overlay_project", "vivado_command", "run_vivado",
    "ACCEL_MODULE", "TOP_MODULE", "ACCEL_INSTANCE", "DMA_INSTANCE", "DESIGN_NAME",
    "DEFAULT_BASE_ADDRESS", "DMA_BASE_ADDRESS", "DMA_RANGE", "TCL_DIR", "TCL_FILES",
    "add_arguments", "run", "main",
]

#: The Vivado sources of the flow, copied into every project (package data).
TCL_DIR = Path(__file__).resolve().parent / "vivado"
TCL_FILES = ("xnorlearn_ps7.tcl", "xnorlearn_overlay.tcl")

ACCEL_MODULE = "xnorlearn_accel"            # the accelerator's Verilog module
TOP_MODULE = "xnorlearn_overlay_top"        # the wrapper, a module reference in the design
ACCEL_INSTANCE = "accel"                    # block-design cells (also the .hwh's instances)
DMA_INSTANCE = "axi_dma"
DESIGN_NAME = "xnorlearn_bd"

#: GP0's window for programmable logic is 0x4000_0000..0x7FFF_FFFF; 0x43C0_0000 is where
#: Vivado puts the first custom peripheral, 0x4040_0000 the first AXI DMA.
DEFAULT_BASE_ADDRESS = 0x43C0_0000
DMA_BASE_ADDRESS = 0x4040_0000
DMA_RANGE = 0x1_0000
_GP0_WINDOW = (0x4000_0000, 0x8000_0000)

#: PS7 FCLK: the 1000 MHz IO PLL (50 MHz crystal x 20) divided by two integers 1..63.
IO_PLL_MHZ = 1000.0
_FCLK_DIVISOR_MAX = 63
#: FCLK0 range accepted here: the PS7's FCLK outputs are specified up to 250 MHz.
FCLK_MIN_MHZ, FCLK_MAX_MHZ = 10.0, 250.0

#: PYNQ image release -> the Vivado release its overlays were built with. pynq 4
#: dropped the Zynq-7000 boards, so the PYNQ-Z1/Z2 stay on 3.x images.
PYNQ_RELEASES = {"3.0.1": "2022.1", "3.1": "2024.1"}
DEFAULT_PYNQ = "3.0.1"

# The DMA's length registers: the IP's default is 14 bits, its maximum 26.
_DMA_LENGTH_DEFAULT, _DMA_LENGTH_MAX = 14, 26


@dataclasses.dataclass(frozen=True)
class Board:
    """A PYNQ board the overlay targets.

    Attributes
    ----------
    name : str
        Command-line name (``pynq-z2``).
    title : str
    platform_name : str
        Its fabric platform's class in :mod:`xnorlearn.boards.pynq_z2`, imported only
        when used (a host that only drives boards has no Amaranth).
    """

    name: str
    title: str
    platform_name: str

    @property
    def platform(self):
        """The fabric platform class."""
        from xnorlearn.boards import pynq_z2
        return getattr(pynq_z2, self.platform_name)

    @property
    def part(self):
        """The FPGA part, ``xc7z020clg400-1``."""
        p = self.platform
        return f"{p.device}{p.package}-{p.speed}"


BOARDS = {
    "pynq-z1": Board("pynq-z1", "PYNQ-Z1", "PYNQ_Z1_Platform"),
    "pynq-z2": Board("pynq-z2", "PYNQ-Z2", "PYNQ_Z2_Platform"),
}


# -- clock ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Fclk:
    """An FCLK setting of the PS7: ``pll_mhz / (divisor0 * divisor1)``.

    Attributes
    ----------
    mhz : float
        The frequency the dividers give.
    divisor0, divisor1 : int
        1..63 each.
    source : str
        ``"IO PLL"``.
    pll_mhz : float
    """

    mhz: float
    divisor0: int
    divisor1: int
    source: str = "IO PLL"
    pll_mhz: float = IO_PLL_MHZ


def _reachable():
    """``{divisor product: (divisor0, divisor1)}`` for every product the dividers make."""
    out = {}
    for d0 in range(1, _FCLK_DIVISOR_MAX + 1):
        for d1 in range(1, _FCLK_DIVISOR_MAX + 1):
            out.setdefault(d0 * d1, (max(d0, d1), min(d0, d1)))
    return out


_REACHABLE = _reachable()


def fclk_setting(clock_mhz):
    """The FCLK dividers that give ``clock_mhz``.

    Parameters
    ----------
    clock_mhz : float
        FCLK0 in MHz, in ``FCLK_MIN_MHZ..FCLK_MAX_MHZ`` (10..250) and within 0.1 % of
        ``1000 / n`` for an ``n`` that two dividers 1..63 make.

    Returns
    -------
    Fclk

    Raises
    ------
    TypeError
        If ``clock_mhz`` is not a number.
    ValueError
        If it is out of range, or the dividers cannot make it (naming the nearest
        frequencies they make).
    """
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)):
        raise TypeError(f"clock_mhz must be a number, got {clock_mhz!r}")
    if not (math.isfinite(clock_mhz) and FCLK_MIN_MHZ <= clock_mhz <= FCLK_MAX_MHZ):
        raise ValueError(f"clock_mhz must be in {FCLK_MIN_MHZ:g}..{FCLK_MAX_MHZ:g} MHz "
                         f"(FCLK0 of the Zynq PS7), got {clock_mhz}")
    n = round(IO_PLL_MHZ / clock_mhz)
    if n in _REACHABLE and abs(IO_PLL_MHZ / n - clock_mhz) <= 1e-3 * clock_mhz:
        d0, d1 = _REACHABLE[n]
        return Fclk(mhz=IO_PLL_MHZ / n, divisor0=d0, divisor1=d1)
    freqs = [IO_PLL_MHZ / k for k in _REACHABLE]
    above = min(f for f in freqs if f > clock_mhz)
    below = max(f for f in freqs if f < clock_mhz)
    raise ValueError(
        f"FCLK0 cannot run at {clock_mhz} MHz: the PS7 divides its {IO_PLL_MHZ:g} MHz IO PLL "
        f"by two integers 1..{_FCLK_DIVISOR_MAX}; the nearest frequencies are "
        f"{below:.6g} and {above:.6g} MHz")


# -- packets and the DMA --------------------------------------------------------------------

def largest_packet_words(build):
    """Words of the longest packet, in either direction, that a build exchanges.

    ``TRAIN`` of ``max_batch`` patterns is ``1 + max_batch * (1 + ceil(max_fan_in / 32))``
    words; ``WRITE_H`` (and the response of ``READ_H``) of ``max_width`` neurons is
    ``1 + max_width * ceil(F / 4)`` with ``F`` the largest fan-in of any layer
    (``max_fan_in``, or ``max_width`` from the second layer on). The other packets and
    responses are shorter.
    """
    if not isinstance(build, Build):
        raise TypeError(f"build must be a xnorlearn.contract.Build, got {build!r}")
    train = 1 + build.max_batch * (1 + -(-build.max_fan_in // 32))
    fan_in = build.max_fan_in if build.max_layers == 1 else max(build.max_fan_in,
                                                                 build.max_width)
    hidden = 1 + build.max_width * -(-fan_in // 4)
    return max(train, hidden)


def dma_length_width(build):
    """Bits of the DMA's length registers (``c_sg_length_width``): enough for the largest
    packet's bytes, and at least the IP's default of 14.

    Raises
    ------
    ValueError
        If the largest packet needs more than the DMA's 26 bits (64 MiB).
    """
    nbytes = 4 * largest_packet_words(build)
    bits = max(_DMA_LENGTH_DEFAULT, nbytes.bit_length())
    if bits > _DMA_LENGTH_MAX:
        raise ValueError(f"the largest packet of this build is {nbytes} bytes; the AXI DMA "
                         f"moves at most {(1 << _DMA_LENGTH_MAX) - 1} bytes per transfer")
    return bits


# -- Verilog --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Port:
    """A port of a Verilog module: ``direction`` ``"input"``/``"output"``, ``width`` bits."""

    name: str
    direction: str
    width: int


_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?(\\\S+|[A-Za-z_][\w$]*)\s*;", re.M)


def verilog_ports(text, module):
    """The ports of ``module`` in Verilog ``text`` (non-ANSI declarations, as Amaranth
    writes them), in the order of its header.

    Raises
    ------
    ValueError
        If the module is missing, or a port of its header has no declaration.
    """
    head = re.search(r"^\s*module\s+" + re.escape(module) + r"\s*\(([^;]*)\)\s*;", text, re.M)
    if head is None:
        raise ValueError(f"no module {module} in the Verilog")
    end = text.find("endmodule", head.end())
    body = text[head.end():end if end >= 0 else len(text)]
    decls = {}
    for m in _DECL.finditer(body):
        width = 1 if m.group(2) is None else abs(int(m.group(2)) - int(m.group(3))) + 1
        decls[m.group(4)] = Port(m.group(4), m.group(1), width)
    ports = []
    for name in (n.strip() for n in head.group(1).split(",")):
        if name not in decls:
            raise ValueError(f"port {name} of module {module} has no input/output declaration")
        ports.append(decls[name])
    return tuple(ports)


# Interface signals the wrapper knows: logical name -> driven by the bus manager.
_AXIMM_LITE = {
    "awaddr": True, "awprot": True, "awvalid": True, "awready": False,
    "wdata": True, "wstrb": True, "wvalid": True, "wready": False,
    "bresp": False, "bvalid": False, "bready": True,
    "araddr": True, "arprot": True, "arvalid": True, "arready": False,
    "rdata": False, "rresp": False, "rvalid": False, "rready": True,
}
_AXIS = {"tdata": True, "tvalid": True, "tready": False, "tlast": True, "tkeep": True}
_AXIS_REQUIRED = ("tdata", "tvalid", "tready", "tlast")

# Accelerator bus prefix -> (interface VLNV, signal table, the accelerator is the manager,
# required signals).
_BUSES = {
    "s_axil": ("xilinx.com:interface:aximm:1.0", _AXIMM_LITE, False,
               tuple(s for s in _AXIMM_LITE if s not in ("awprot", "arprot"))),
    "s_axis": ("xilinx.com:interface:axis:1.0", _AXIS, False, _AXIS_REQUIRED),
    "m_axis": ("xilinx.com:interface:axis:1.0", _AXIS, True, _AXIS_REQUIRED),
}


def _classify(ports):
    """``{bus: {signal: Port}}`` of the accelerator's bus ports; checks every other port."""
    buses = {bus: {} for bus in _BUSES}
    problems = []
    names = {p.name for p in ports}
    for required in ("clk", "rst"):
        if required not in names:
            problems.append(f"no port {required}")
    for p in ports:
        if p.name in ("clk", "rst"):
            if p.direction != "input" or p.width != 1:
                problems.append(f"{p.name} must be a 1-bit input, is a {p.width}-bit "
                                f"{p.direction}")
            continue
        bus, sep, signal = p.name.partition("__")
        if not sep or bus not in _BUSES or signal not in _BUSES[bus][1]:
            problems.append(f"port {p.name} is not clk, rst or a signal of "
                            f"{', '.join(b + '__*' for b in _BUSES)}")
            continue
        _, table, is_manager, _ = _BUSES[bus]
        want = "output" if table[signal] == is_manager else "input"
        if p.direction != want:
            problems.append(f"{p.name} must be an {want}, is an {p.direction}")
        buses[bus][signal] = p
    for bus, (_, _, _, required) in _BUSES.items():
        for signal in required:
            if signal not in buses[bus]:
                problems.append(f"no port {bus}__{signal}")
    if problems:
        raise ValueError("the accelerator's ports do not match the overlay wrapper: "
                         + "; ".join(problems))
    return buses


def accelerator_ports(build):
    """The Verilog ports of ``Accelerator(build=build)``, from its signature (without
    elaborating it): ``clk``, ``rst`` and one port per bus signal, ``<bus>__<signal>``.

    :func:`write_overlay_project` reads the ports from the generated Verilog instead
    (:func:`verilog_ports`); the two agree.
    """
    from amaranth.hdl import Shape

    from xnorlearn.hw.accelerator import Accelerator

    ports = []
    for path, member in Accelerator(build=build).signature.members.flatten():
        if member.is_port:
            direction = "input" if member.flow.name == "In" else "output"
            ports.append(Port("__".join(path), direction, Shape.cast(member.shape).width))
    return (Port("clk", "input", 1), Port("rst", "input", 1), *ports)


@dataclasses.dataclass(frozen=True)
class WrapperPort:
    """A port of the overlay wrapper.

    Attributes
    ----------
    name, direction, width
        As :class:`Port`.
    interface : str
        ``aclk``, ``aresetn``, ``s_axil``, ``s_axis`` or ``m_axis``.
    vlnv : str
        The interface's bus definition (``xilinx.com:interface:axis:1.0``).
    logical : str
        The signal's name in the interface (``TDATA``, ``CLK``).
    accel_port : str or None
        The accelerator port it connects to; None for ``aresetn`` (inverted into
        ``rst``) and for the ``TKEEP`` signals the accelerator has no port for.
    """

    name: str
    direction: str
    width: int
    interface: str
    vlnv: str
    logical: str
    accel_port: object = None


def wrapper_ports(ports):
    """The ports of the overlay wrapper around an accelerator with ``ports``.

    Raises
    ------
    ValueError
        If a port of the accelerator is not one the wrapper knows, has the wrong
        direction, or a required signal is missing (naming each).
    """
    buses = _classify(ports)
    out = [WrapperPort("aclk", "input", 1, "aclk", "xilinx.com:signal:clock:1.0", "CLK",
                       "clk"),
           WrapperPort("aresetn", "input", 1, "aresetn", "xilinx.com:signal:reset:1.0",
                       "RST")]
    for bus, (vlnv, table, is_manager, _) in _BUSES.items():
        signals = [s for s in table if s in buses[bus]]
        # The DMA's streams carry TKEEP; giving the accelerator's streams one too keeps
        # the two sides' interface parameters equal (packets are whole words).
        if "tkeep" in table and "tkeep" not in buses[bus]:
            signals.append("tkeep")
        for signal in signals:
            port = buses[bus].get(signal)
            width = port.width if port else buses[bus]["tdata"].width // 8
            direction = "output" if table[signal] == is_manager else "input"
            out.append(WrapperPort(f"{bus}_{signal}", direction, width, bus, vlnv,
                                   signal.upper(), port.name if port else None))
    return tuple(out)


def wrapper_verilog(ports, *, module=TOP_MODULE, accel_module=ACCEL_MODULE):
    """The top wrapper of the accelerator for an IP integrator module reference.

    Parameters
    ----------
    ports : sequence of Port
        The accelerator's ports (:func:`verilog_ports`): ``clk``, ``rst`` and the signals
        of ``s_axil__*`` (AXI4-Lite), ``s_axis__*`` and ``m_axis__*`` (AXI4-Stream).
    module, accel_module : str
        Names of the wrapper and of the accelerator's module.

    Returns
    -------
    str
        Verilog: the ports of :func:`wrapper_ports` (``aclk``, ``aresetn`` active low,
        ``s_axil_*``, ``s_axis_*``, ``m_axis_*``) with ``X_INTERFACE_INFO`` and, on the
        first port of each interface, ``X_INTERFACE_PARAMETER`` attributes, and one
        instance ``accel`` of ``accel_module`` with every port connected.

    Raises
    ------
    ValueError
        As :func:`wrapper_ports`.
    """
    wports = wrapper_ports(ports)
    by_name = {p.name: p for p in wports}
    params = {
        "aclk": f"ASSOCIATED_BUSIF {':'.join(_BUSES)}, ASSOCIATED_RESET aresetn",
        "aresetn": "POLARITY ACTIVE_LOW",
        "s_axil": f"PROTOCOL AXI4LITE, DATA_WIDTH {by_name['s_axil_wdata'].width}, "
                  f"ADDR_WIDTH {by_name['s_axil_awaddr'].width}",
        **{bus: f"TDATA_NUM_BYTES {by_name[bus + '_tdata'].width // 8}, HAS_TLAST 1, "
                f"HAS_TKEEP 1" for bus in ("s_axis", "m_axis")},
    }
    decls, seen, extra = [], set(), []
    for p in wports:
        text = f'    (* X_INTERFACE_INFO = "{p.vlnv} {p.interface} {p.logical}" *)\n'
        if p.interface not in seen:
            seen.add(p.interface)
            text += (f'    (* X_INTERFACE_PARAMETER = "XIL_INTERFACENAME {p.interface}, '
                     f'{params[p.interface]}" *)\n')
        vector = f"[{p.width - 1}:0] " if p.width > 1 else ""
        decls.append(f"{text}    {p.direction:<6} wire {vector}{p.name}")
        if p.accel_port is None and p.direction == "output":
            extra.append(f"    assign {p.name} = {p.width}'h{(1 << p.width) - 1:x};")
    conns = [".rst(rst)"] + [f".{p.accel_port}({p.name})" for p in wports if p.accel_port]
    conns.sort(key=lambda c: c != ".clk(aclk)")
    lines = [
        "// Generated by `xnorlearn overlay` (xnorlearn.boards.pynq_overlay); do not edit.",
        f"// {accel_module} with its ports as IP integrator interfaces (Xilinx UG994):",
        "// s_axil (AXI4-Lite registers), s_axis (commands), m_axis (responses), aclk and",
        "// aresetn (active low; the accelerator's rst is active high).",
        f"module {module} (",
        ",\n".join(decls),
        ");",
        "    wire rst = ~aresetn;",
        *extra,
        f"    {accel_module} {ACCEL_INSTANCE} (",
        ",\n".join(f"        {c}" for c in conns),
        "    );",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


# -- the project ----------------------------------------------------------------------------

def _check_board(board):
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; known: {', '.join(sorted(BOARDS))}")
    return BOARDS[board]


def _check_base_address(base_address, window):
    check_int("base_address", base_address, _GP0_WINDOW[0], _GP0_WINDOW[1] - window)
    if base_address % window:
        raise ValueError(f"base_address must be a multiple of its window {window:#x}, got "
                         f"{base_address:#010x}")
    if base_address < DMA_BASE_ADDRESS + DMA_RANGE and DMA_BASE_ADDRESS < base_address + window:
        raise ValueError(f"base_address {base_address:#010x} overlaps the DMA's registers at "
                         f"{DMA_BASE_ADDRESS:#010x}..{DMA_BASE_ADDRESS + DMA_RANGE - 1:#010x}")
    return base_address


def _check_stem(stem):
    if not isinstance(stem, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", stem):
        raise ValueError(f"stem must be a letter then up to 63 letters, digits or '_', "
                         f"got {stem!r}")
    return stem


def overlay_info(board, build, *, fclk, stem, base_address, pynq):
    """The build's JSON (``<stem>.json``) as a dict.

    Keys: ``format``, ``format_version``, ``stem``, ``board``, ``part``, ``pynq`` and
    ``vivado`` (releases), ``build`` (the :class:`~xnorlearn.contract.Build` fields),
    ``clock_mhz`` (FCLK0 as its dividers make it) with ``fclk0`` (source, PLL, dividers),
    ``register_map`` (``version_major``, ``version_minor``, ``id``, ``span``),
    ``accel``, ``axil_base``, ``axil_range`` (the accelerator's instance and register
    window), ``dma``, ``dma_base``, ``dma_range`` (the DMA's instance and register
    window), ``dma_length_width`` and ``largest_packet_bytes``, and ``files`` (the
    ``.bit`` and ``.hwh`` names).
    """
    from xnorlearn.hw.accelerator import ADDR_WIDTH
    return {
        "format": "xnorlearn-overlay",
        "format_version": 1,
        "stem": stem,
        "board": board,
        "part": BOARDS[board].part,
        "pynq": pynq,
        "vivado": PYNQ_RELEASES[pynq],
        "build": dataclasses.asdict(build),
        "clock_mhz": fclk.mhz,
        "fclk0": dataclasses.asdict(fclk),
        "register_map": {"version_major": VERSION_MAJOR, "version_minor": VERSION_MINOR,
                         "id": ID_VALUE, "span": RegisterMap(build).span},
        "accel": ACCEL_INSTANCE,
        "axil_base": base_address,
        "axil_range": 1 << ADDR_WIDTH,
        "dma": DMA_INSTANCE,
        "dma_base": DMA_BASE_ADDRESS,
        "dma_range": DMA_RANGE,
        "dma_length_width": dma_length_width(build),
        "largest_packet_bytes": 4 * largest_packet_words(build),
        "files": {"bit": f"{stem}.bit", "hwh": f"{stem}.hwh"},
    }


@dataclasses.dataclass(frozen=True)
class OverlayProject:
    """What :func:`write_overlay_project` wrote.

    Attributes
    ----------
    out_dir : pathlib.Path
    script : pathlib.Path
        ``overlay.tcl``, the Vivado build script.
    info : dict
        The build's JSON (:func:`overlay_info`), also in ``<stem>.json``.
    files : tuple of pathlib.Path
        Every file written.
    """

    out_dir: Path
    script: Path
    info: dict
    files: tuple

    @property
    def stem(self):
        return self.info["stem"]

    @property
    def vivado_version(self):
        return self.info["vivado"]

    @property
    def bitstream(self):
        """Where Vivado leaves the bitstream (``<stem>.bit``)."""
        return self.out_dir / self.info["files"]["bit"]

    @property
    def hwh(self):
        """Where Vivado leaves the hardware handoff (``<stem>.hwh``)."""
        return self.out_dir / self.info["files"]["hwh"]


def _tcl_word(value):
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9_.:+-]+", text):
        raise ValueError(f"{text!r} cannot be written as a plain Tcl word")
    return text


def _build_script(cfg, hdl_files):
    lines = [
        "# Generated by `xnorlearn overlay`; run here with Vivado in batch mode:",
        "#     vivado -mode batch -source overlay.tcl",
        "# Every path is relative to this script's folder, so the folder can be moved.",
        "set here [file dirname [file normalize [info script]]]",
        *(f"source [file join $here tcl {name}]" for name in TCL_FILES),
        "",
        "set cfg [dict create]",
    ]
    for key, value in cfg.items():
        lines.append(f"dict set cfg {key} {_tcl_word(value)}")
    lines += [
        "dict set cfg project_dir [file join $here vivado]",
        "dict set cfg out_dir $here",
        "dict set cfg hdl_files [list \\",
        *(f"    [file join $here hdl {name}] \\" for name in hdl_files),
        "]",
        "",
        "xnorlearn::build_overlay $cfg",
        "",
    ]
    return "\n".join(lines)


def _shell_script(info):
    return "\n".join([
        "#!/bin/sh",
        f"# Builds {info['files']['bit']} and {info['files']['hwh']} in this folder with "
        f"Vivado {info['vivado']}",
        f"# (the release of PYNQ {info['pynq']} images); VIVADO overrides the command.",
        'cd "$(dirname "$0")" || exit 1',
        'exec "${VIVADO:-vivado}" -mode batch -nojournal -log vivado.log -source overlay.tcl',
        "",
    ])


def vivado_command(vivado="vivado"):
    """The command that builds a project, run in its folder."""
    return [vivado, "-mode", "batch", "-nojournal", "-log", "vivado.log",
            "-source", "overlay.tcl"]


def write_overlay_project(board, build, out_dir, *, clock_mhz, stem="xnorlearn",
                          base_address=DEFAULT_BASE_ADDRESS, pynq=DEFAULT_PYNQ, jobs=4):
    """Write the Vivado project of a PYNQ overlay around ``Accelerator(build=build)``.

    Parameters
    ----------
    board : str
        ``"pynq-z1"`` or ``"pynq-z2"`` (:data:`BOARDS`).
    build : Build
        The accelerator's parameters; the core must implement them
        (:func:`xnorlearn.hw.accelerator.core_parameters`).
    out_dir : str or pathlib.Path
        Created if missing; files of an earlier project there are replaced.
    clock_mhz : float
        FCLK0, the clock of the accelerator (:func:`fclk_setting`).
    stem : str
        Name of the ``.bit``, ``.hwh`` and ``.json`` files.
    base_address : int
        Address of the accelerator's registers on GP0: 4 KiB aligned in
        ``0x4000_0000..0x7FFF_F000``, clear of the DMA's ``0x4040_0000..0x4040_FFFF``.
    pynq : str
        Release of the PYNQ image that will load the overlay (:data:`PYNQ_RELEASES`); it
        decides the Vivado release.
    jobs : int
        Parallel jobs of Vivado's runs, 1..64.

    Returns
    -------
    OverlayProject

    Raises
    ------
    TypeError, ValueError
        For a bad argument, naming it and its allowed range, before anything is written.
    """
    from amaranth.back import verilog

    from xnorlearn.hw.accelerator import ADDR_WIDTH, Accelerator, core_parameters

    _check_board(board)
    if not isinstance(build, Build):
        raise TypeError(f"build must be a xnorlearn.contract.Build, got {build!r}")
    core_parameters(build)
    fclk = fclk_setting(clock_mhz)
    _check_stem(stem)
    window = 1 << ADDR_WIDTH
    _check_base_address(base_address, window)
    if pynq not in PYNQ_RELEASES:
        raise ValueError(f"pynq must be one of {', '.join(PYNQ_RELEASES)} (the PYNQ image "
                         f"releases for the Zynq-7000 boards), got {pynq!r}")
    check_int("jobs", jobs, 1, 64)
    span = RegisterMap(build).span
    if span > window:
        raise ValueError(f"the register map spans {span} bytes, more than the accelerator's "
                         f"{window}-byte AXI4-Lite window")
    info = overlay_info(board, build, fclk=fclk, stem=stem, base_address=base_address,
                        pynq=pynq)

    accel_text = verilog.convert(Accelerator(build=build), name=ACCEL_MODULE,
                                 emit_src=False)
    top_text = wrapper_verilog(verilog_ports(accel_text, ACCEL_MODULE))

    out = Path(out_dir)
    (out / "hdl").mkdir(parents=True, exist_ok=True)
    (out / "tcl").mkdir(exist_ok=True)
    written = []

    def write(relative, text):
        path = out / relative
        path.write_text(text)
        written.append(path)
        return path

    hdl_files = (f"{ACCEL_MODULE}.v", f"{TOP_MODULE}.v")
    write(f"hdl/{hdl_files[0]}", accel_text)
    write(f"hdl/{hdl_files[1]}", top_text)
    for name in TCL_FILES:
        write(f"tcl/{name}", (TCL_DIR / name).read_text())
    cfg = {
        "board": board,
        "part": info["part"],
        "vivado_version": info["vivado"],
        "project_name": stem,
        "design_name": DESIGN_NAME,
        "jobs": jobs,
        "top_module": TOP_MODULE,
        "fclk0_mhz": f"{fclk.mhz:.6f}".rstrip("0").rstrip("."),
        "dma_length_width": info["dma_length_width"],
        "accel_base": f"{base_address:#010x}",
        "accel_range": f"{window:#x}",
        "dma_base": f"{DMA_BASE_ADDRESS:#010x}",
        "dma_range": f"{DMA_RANGE:#x}",
        "stem": stem,
    }
    script = write("overlay.tcl", _build_script(cfg, hdl_files))
    shell = write("build.sh", _shell_script(info))
    shell.chmod(0o755)
    write(f"{stem}.json", json.dumps(info, indent=2) + "\n")
    return OverlayProject(out_dir=out, script=script, info=info, files=tuple(written))


def run_vivado(project, *, vivado="vivado", timeout=None):
    """Run Vivado on a written project; returns its exit status.

    Raises
    ------
    FileNotFoundError
        If ``vivado`` is not an executable (or on ``PATH``).
    subprocess.TimeoutExpired
        If ``timeout`` seconds pass first.
    """
    exe = shutil.which(vivado)
    if exe is None:
        raise FileNotFoundError(f"{vivado} is not an executable on PATH")
    return subprocess.run(vivado_command(exe), cwd=project.out_dir, timeout=timeout).returncode


# -- command line ---------------------------------------------------------------------------

# Build fields offered as options; z_bits is absent because the core selects on exact
# pre-activations (None only).
_BUILD_OPTIONS = ("lanes", "max_layers", "max_width", "max_fan_in", "classes", "max_batch",
                  "max_groups", "weight_words", "h_bits", "draw_lanes", "fwd_patterns")


def _address(text):
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an address such as 0x43C00000, got "
                                         f"{text!r}") from None


def add_arguments(p):
    """The options of ``xnorlearn overlay`` on the (sub)parser ``p``."""
    p.add_argument("--board", default="pynq-z2", choices=sorted(BOARDS),
                   help="target board (default pynq-z2)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="project folder (default build/overlay_<board>)")
    p.add_argument("--clock-mhz", type=float, default=100.0,
                   help=f"FCLK0, the accelerator's clock: {FCLK_MIN_MHZ:g}..{FCLK_MAX_MHZ:g} "
                        f"MHz, 1000/n for dividers the PS7 has (default 100)")
    p.add_argument("--pynq", default=DEFAULT_PYNQ, choices=tuple(PYNQ_RELEASES),
                   help="release of the board's PYNQ image; decides the Vivado release ("
                        + ", ".join(f"{k}: {v}" for k, v in PYNQ_RELEASES.items())
                        + f"; default {DEFAULT_PYNQ})")
    p.add_argument("--stem", default="xnorlearn",
                   help="name of the .bit, .hwh and .json files (default xnorlearn)")
    p.add_argument("--base-address", type=_address, default=DEFAULT_BASE_ADDRESS,
                   help="address of the accelerator's registers on GP0 (default "
                        f"{DEFAULT_BASE_ADDRESS:#010x})")
    p.add_argument("--jobs", type=int, default=4,
                   help="parallel jobs of Vivado's runs, 1..64 (default 4)")
    p.add_argument("--build-json", default=None, metavar="FILE",
                   help="take the build parameters from a JSON file (a 'build' object, as "
                        "in an overlay's <stem>.json or verify.json, or the fields alone); "
                        "the options below override it")
    defaults = dataclasses.asdict(PYNQ_Z2)
    group = p.add_argument_group("build parameters (default: the PYNQ-Z2 build of "
                                 "xnorlearn.contract)")
    for name in _BUILD_OPTIONS:
        group.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                           help="default: sized for the largest configuration"
                           if name == "weight_words" else f"default {defaults[name]}")
    p.add_argument("--no-build", action="store_true",
                   help="only write the project, even when vivado is on PATH")
    p.add_argument("--vivado", default="vivado", help="the Vivado command (default vivado)")
    return p


class _Usage(Exception):
    """A bad argument: exit status 2."""


def _build_from_args(args):
    fields = dataclasses.asdict(PYNQ_Z2)
    fields["weight_words"] = None
    if args.build_json:
        try:
            data = json.loads(Path(args.build_json).read_text())
        except (OSError, ValueError) as e:
            raise _Usage(f"--build-json: cannot read {args.build_json}: {e}") from None
        data = data.get("build", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise _Usage(f"--build-json: {args.build_json} holds no build object")
        unknown = set(data) - set(fields)
        if unknown:
            raise _Usage(f"--build-json: unknown build parameters {sorted(unknown)}; known: "
                         f"{sorted(fields)}")
        fields.update(data)
    for name in _BUILD_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    try:
        return Build(**fields)
    except (TypeError, ValueError) as e:
        raise _Usage(f"bad build: {e}") from None


def run(args, *, log=print):
    """Run ``xnorlearn overlay`` with parsed ``args``; returns the exit status."""
    try:
        build = _build_from_args(args)
        out = Path(args.out) if args.out else Path("build") / f"overlay_{args.board}"
        project = write_overlay_project(args.board, build, out, clock_mhz=args.clock_mhz,
                                        stem=args.stem, base_address=args.base_address,
                                        pynq=args.pynq, jobs=args.jobs)
    except _Usage as e:
        print(f"xnorlearn overlay: error: {e}", file=sys.stderr)
        return 2
    except (TypeError, ValueError) as e:
        print(f"xnorlearn overlay: error: {e}", file=sys.stderr)
        return 2
    info = project.info
    log(f"xnorlearn overlay: {BOARDS[args.board].title} ({info['part']}), FCLK0 "
        f"{info['clock_mhz']:.6g} MHz, accelerator at {info['axil_base']:#010x}, "
        f"DMA {info['dma']} at {info['dma_base']:#010x} "
        f"({info['dma_length_width']}-bit lengths); wrote {project.out_dir}")
    command = " ".join(vivado_command())
    if args.no_build:
        log(f"build it with Vivado {project.vivado_version} (the release of PYNQ "
            f"{info['pynq']} images): cd {project.out_dir} && {command}")
        return 0
    if shutil.which(args.vivado) is None:
        log(f"{args.vivado} is not on PATH: on a machine with Vivado {project.vivado_version} "
            f"(the release of PYNQ {info['pynq']} images), run in {project.out_dir}: "
            f"{command}")
        return 0
    log(f"running Vivado in {project.out_dir} (log: vivado.log); this takes a while")
    status = run_vivado(project, vivado=args.vivado)
    if status != 0 or not (project.bitstream.exists() and project.hwh.exists()):
        log(f"xnorlearn overlay: Vivado failed (exit status {status}); see "
            f"{project.out_dir / 'vivado.log'}")
        return 1
    log(f"wrote {project.bitstream} and {project.hwh}")
    return 0


def main(argv=None):
    """Entry point of ``python -m xnorlearn.boards.pynq_overlay``."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="xnorlearn overlay", description="Write (and build) the Vivado project of a "
                                              "PYNQ overlay around the accelerator."))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
