# amaranth: UnusedElaboratable=no
"""The PYNQ overlay project (xnorlearn.boards.pynq_overlay, pynq_hwh), checked without Vivado.

The generated Tcl is linted (tclint) and run by a real Tcl interpreter (Debian's
tclsh) against stand-ins of the Vivado commands (tests/vivado_standins/) that record
cells, properties, connections and address assignments; :func:`check_design` compares
that record with the accelerator's ports (from its Amaranth signature), the register
map's size and the DMA's needs, so a renamed port or a missing connection fails here.
"""

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from xnorlearn.boards import pynq_overlay as ov
from xnorlearn.boards.pynq_hwh import DMA_PARAMETERS, hwh_xml, write_hwh
from xnorlearn.contract import PYNQ_Z2, Build, RegisterMap

ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT / "tests" / "vivado_standins"
TCLSH = shutil.which("tclsh")
needs_tclsh = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed (Debian package "
                                                       "tcl); the Tcl flow cannot be run")

#: A small build: its Verilog converts in seconds.
SMALL = Build(lanes=32, max_layers=2, max_width=16, max_fan_in=64, classes=4, max_batch=8,
              max_groups=4, draw_lanes=2)


def signature_ports(build):
    """``{name: (direction, width)}`` of the accelerator's ports, from its signature."""
    from amaranth.hdl import Shape

    from xnorlearn.hw.accelerator import Accelerator
    ports = {"clk": ("input", 1), "rst": ("input", 1)}
    for path, member in Accelerator(build=build).signature.members.flatten():
        if member.is_port:
            ports["__".join(path)] = ("input" if member.flow.name == "In" else "output",
                                      Shape.cast(member.shape).width)
    return ports


def needed_length_bits(build):
    """Bits of the largest packet's byte count: TRAIN of max_batch patterns, or
    WRITE_H/READ_H of max_width neurons of the widest fan-in."""
    train = 1 + build.max_batch * (1 + math.ceil(build.max_fan_in / 32))
    fan_in = max(build.max_fan_in, build.max_width if build.max_layers > 1 else 0)
    hidden = 1 + build.max_width * math.ceil(fan_in / 4)
    return (4 * max(train, hidden)).bit_length()


# -- clock, packets, ports --------------------------------------------------------------------

def test_fclk_setting():
    assert ov.fclk_setting(100) == ov.Fclk(100.0, 10, 1)
    f = ov.fclk_setting(142.857)
    assert f.divisor0 * f.divisor1 == 7 and math.isclose(f.mhz, 1000 / 7)
    assert ov.fclk_setting(250).mhz == 250.0
    assert ov.fclk_setting(10).mhz == 10.0


@pytest.mark.parametrize("clock, message", [
    (300, "10..250 MHz"), (9.9, "10..250 MHz"), (float("nan"), "10..250"),
    (1000 / 67, "nearest frequencies are 14.7059 and 15.1515 MHz"),
    (97.0, "nearest frequencies are 90.9091 and 100 MHz"),
])
def test_fclk_setting_refuses(clock, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ov.fclk_setting(clock)
    with pytest.raises(TypeError):
        ov.fclk_setting("100")


def test_dma_length_width():
    # The PYNQ-Z2 build: WRITE_H of 256 neurons of fan-in 1024 is the longest packet.
    assert ov.largest_packet_words(PYNQ_Z2) == 1 + 256 * 256
    assert ov.dma_length_width(PYNQ_Z2) == 19 == needed_length_bits(PYNQ_Z2)
    # TRAIN is the longest when batches are large.
    b = Build(lanes=32, max_layers=1, max_width=16, max_fan_in=1024, max_batch=1024,
              weight_words=None, draw_lanes=2)
    assert ov.largest_packet_words(b) == 1 + 1024 * 33
    assert ov.dma_length_width(b) == needed_length_bits(b) == 18
    # Never below the IP's default of 14 bits.
    assert ov.dma_length_width(SMALL) == 14 > needed_length_bits(SMALL)
    # The largest builds the contract allows still fit the DMA's 26 bits.
    big = Build(lanes=1024, max_layers=8, max_width=4095, max_fan_in=4095, max_batch=1024,
                max_groups=64, draw_lanes=16)
    assert ov.dma_length_width(big) == needed_length_bits(big) <= 26


def test_accelerator_ports_match_verilog():
    from amaranth.back import verilog

    from xnorlearn.hw.accelerator import Accelerator
    text = verilog.convert(Accelerator(build=SMALL), name=ov.ACCEL_MODULE, emit_src=False)
    from_verilog = {p.name: (p.direction, p.width)
                    for p in ov.verilog_ports(text, ov.ACCEL_MODULE)}
    assert from_verilog == signature_ports(SMALL)
    assert {p.name: (p.direction, p.width) for p in ov.accelerator_ports(SMALL)} \
        == from_verilog
    with pytest.raises(ValueError, match="no module nope"):
        ov.verilog_ports(text, "nope")


def _renamed(ports, old, new):
    return [dataclasses.replace(p, name=new) if p.name == old else p for p in ports]


@pytest.mark.parametrize("change, message", [
    (lambda ps: _renamed(ps, "s_axis__tlast", "s_axis__last"),
     "port s_axis__last is not clk, rst or a signal of"),
    (lambda ps: _renamed(ps, "s_axis__tlast", "s_axis__last"), "no port s_axis__tlast"),
    (lambda ps: _renamed(ps, "m_axis__tready", "m_axis__ready"), "no port m_axis__tready"),
    (lambda ps: _renamed(ps, "clk", "clock"), "no port clk"),
    (lambda ps: [p for p in ps if p.name != "s_axil__rready"], "no port s_axil__rready"),
    (lambda ps: [dataclasses.replace(p, direction="output") if p.name == "s_axil__wvalid"
                 else p for p in ps], "s_axil__wvalid must be an input"),
    (lambda ps: [*ps, ov.Port("irq", "output", 1)], "port irq is not clk, rst"),
])
def test_wrapper_refuses_ports_it_does_not_know(change, message):
    ports = ov.accelerator_ports(SMALL)
    ov.wrapper_verilog(ports)
    with pytest.raises(ValueError, match=re.escape(message)):
        ov.wrapper_verilog(change(list(ports)))


def test_wrapper_ports():
    wports = {p.name: p for p in ov.wrapper_ports(ov.accelerator_ports(SMALL))}
    assert wports["aclk"].accel_port == "clk" and wports["aresetn"].accel_port is None
    assert wports["s_axil_awaddr"] == ov.WrapperPort(
        "s_axil_awaddr", "input", 12, "s_axil", "xilinx.com:interface:aximm:1.0", "AWADDR",
        "s_axil__awaddr")
    assert wports["m_axis_tkeep"].direction == "output" and wports["m_axis_tkeep"].width == 4
    assert wports["s_axis_tready"].direction == "output"
    connected = {p.accel_port for p in wports.values() if p.accel_port}
    assert connected == set(signature_ports(SMALL)) - {"rst"}


# -- the project ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """``{board: OverlayProject}`` of SMALL at 125 MHz, written once for the module."""
    out = {}
    for board in ("pynq-z1", "pynq-z2"):
        folder = tmp_path_factory.mktemp(f"overlay_{board}")
        out[board] = ov.write_overlay_project(board, SMALL, folder, clock_mhz=125,
                                              stem="xnl_small")
    return out


def test_project_files(projects):
    project = projects["pynq-z2"]
    out = project.out_dir
    names = {p.relative_to(out).as_posix() for p in project.files}
    assert names == {"hdl/xnorlearn_accel.v", "hdl/xnorlearn_overlay_top.v",
                     "tcl/xnorlearn_ps7.tcl", "tcl/xnorlearn_overlay.tcl", "overlay.tcl",
                     "build.sh", "xnl_small.json"}
    assert os.access(out / "build.sh", os.X_OK)
    assert "vivado -mode batch" in (out / "build.sh").read_text().replace('"${VIVADO:-vivado}"',
                                                                           "vivado")
    script = (out / "overlay.tcl").read_text()
    assert str(out) not in script, "the build script must not hold absolute paths"
    info = json.loads((out / "xnl_small.json").read_text())
    assert info == project.info
    assert Build(**info["build"]) == SMALL
    assert info["clock_mhz"] == 125.0 and info["fclk0"]["divisor0"] * info["fclk0"]["divisor1"] == 8
    assert info["register_map"] == {"version_major": 1, "version_minor": 0,
                                    "id": 0x584E524C, "span": RegisterMap(SMALL).span}
    assert (info["axil_base"], info["axil_range"]) == (0x43C0_0000, 0x1000)
    assert (info["dma"], info["dma_base"], info["accel"]) == ("axi_dma", 0x4040_0000, "accel")
    assert info["dma_length_width"] >= needed_length_bits(SMALL)
    assert (info["pynq"], info["vivado"], info["stem"]) == ("3.0.1", "2022.1", "xnl_small")
    assert info["files"] == {"bit": "xnl_small.bit", "hwh": "xnl_small.hwh"}
    assert project.bitstream == out / "xnl_small.bit" and project.hwh == out / "xnl_small.hwh"
    # What the host driver reads (xnorlearn.sw.pynq_transport.read_overlay_json).
    for key in ("build", "clock_mhz", "axil_base", "axil_range", "dma"):
        assert key in info


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
def test_wrapper_elaborates_with_the_accelerator(projects, tmp_path):
    """Icarus elaborates the wrapper with the accelerator's Verilog, and refuses a wrapper
    that names a port the accelerator does not have."""
    hdl = projects["pynq-z2"].out_dir / "hdl"
    files = [str(hdl / "xnorlearn_overlay_top.v"), str(hdl / "xnorlearn_accel.v")]

    def elaborate(paths):
        return subprocess.run(["iverilog", "-o", str(tmp_path / "a.vvp"), "-s", ov.TOP_MODULE,
                               *paths], capture_output=True, text=True, timeout=300)

    run = elaborate(files)
    assert run.returncode == 0, run.stderr
    stale = tmp_path / "stale_top.v"
    stale.write_text((hdl / "xnorlearn_overlay_top.v").read_text()
                     .replace(".s_axis__tlast(", ".s_axis__last("))
    run = elaborate([str(stale), files[1]])
    assert run.returncode != 0 and "s_axis__last" in run.stderr


# -- lint -------------------------------------------------------------------------------------

def _tclint():
    return shutil.which("tclint") or shutil.which("tclint", path=str(Path(sys.executable).parent))


def test_tcl_lint(projects):
    tclint = _tclint()
    if tclint is None:
        pytest.skip("tclint not installed (pip install tclint; it is in the dev extra)")
    out = projects["pynq-z2"].out_dir
    files = [*sorted(ov.TCL_DIR.glob("*.tcl")), out / "overlay.tcl",
             *sorted(STANDINS.glob("*.tcl"))]
    run = subprocess.run([tclint, *map(str, files)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


# -- the block design, run against the stand-ins --------------------------------------------

@dataclasses.dataclass
class Design:
    """A record of the stand-ins, replayed."""

    ops: list
    project: dict
    cells: dict             # name -> {"vlnv" | "reference", "props", "interfaces", "file"}
    intf_nets: list         # [(a, b)]
    nets: list              # [[pin, ...]]
    addresses: list         # [{"space", "seg", "offset", "range"}]
    props: dict             # object -> {name: value} for non-cells

    @classmethod
    def load(cls, path):
        ops = [json.loads(line) for line in Path(path).read_text().splitlines()]
        d = cls(ops, {}, {}, [], [], [], {})
        for op in ops:
            kind = op["op"]
            if kind == "create_project":
                d.project = op
            elif kind == "create_bd_cell":
                cell = {"props": dict(op.get("defaults", {}))}
                if op["type"] == "ip":
                    cell["vlnv"] = op["vlnv"]
                else:
                    cell.update(reference=op["reference"], interfaces=op["interfaces"],
                                file=op["file"], plain_ports=op["plain_ports"])
                d.cells[op["name"]] = cell
            elif kind == "set_property":
                name = op["object"].lstrip("/")
                if name in d.cells:
                    d.cells[name]["props"][op["name"]] = op["value"]
                else:
                    d.props.setdefault(op["object"], {})[op["name"]] = op["value"]
            elif kind == "connect_bd_intf_net":
                d.intf_nets.append(tuple(op["objects"]))
            elif kind == "connect_bd_net":
                d.nets.append(list(op["objects"]))
            elif kind == "assign_bd_address":
                d.addresses.append(op)
        return d

    def peer(self, pin):
        for a, b in self.intf_nets:
            if pin == a:
                return b
            if pin == b:
                return a
        return None

    def net(self, pin):
        for net in self.nets:
            if pin in net:
                return set(net)
        return set()

    def cells_of(self, vlnv_prefix):
        return [n for n, c in self.cells.items() if c.get("vlnv", "").startswith(vlnv_prefix)]

    def index(self, op):
        return next((i for i, o in enumerate(self.ops) if o["op"] == op), None)


_INTERCONNECTS = ("xilinx.com:ip:smartconnect:", "xilinx.com:ip:axi_interconnect:")


def _through_interconnect(d, pin, want):
    """Whether interface pin ``pin`` reaches interface pin ``want`` through one
    interconnect (SmartConnect or AXI Interconnect)."""
    peer = d.peer(pin)
    if peer is None:
        return False
    cell = peer.split("/")[1]
    if not d.cells.get(cell, {}).get("vlnv", "").startswith(_INTERCONNECTS):
        return False
    return any(d.peer(f"/{cell}/{side}{i:02d}_AXI") == want
               for side in "SM" for i in range(16))


def _instance_connections(wrapper_text, accel_module):
    m = re.search(re.escape(accel_module) + r"\s+\w+\s*\((.*?)\);", wrapper_text, re.S)
    assert m, f"the wrapper has no instance of {accel_module}"
    return dict(re.findall(r"\.(\w+)\s*\(\s*([^)]*?)\s*\)", m.group(1)))


def check_design(d, *, build, info, accel_ports, preset):
    """Every way the recorded block design differs from what the overlay needs."""
    problems = []
    p = problems.append
    for op in d.ops:
        if op["op"] == "error":
            p(f"the script failed: {op['message']}")
    if not d.ops or d.ops[-1]["op"] != "done":
        p("the script did not run to its end")
        return problems
    if d.project.get("part") != info["part"]:
        p(f"project part {d.project.get('part')}, board part {info['part']}")

    # The processing system: preset, FCLK0, GP0 and HP0.
    ps = d.cells_of("xilinx.com:ip:processing_system7:")
    if len(ps) != 1:
        p(f"expected one processing_system7, found {ps}")
        return problems
    ps = ps[0]
    props = d.cells[ps]["props"]
    for key, value in preset.items():
        if props.get(key) != value:
            p(f"preset {key} = {value!r} not applied ({props.get(key)!r})")
    if not math.isclose(float(props["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"]), info["clock_mhz"],
                        rel_tol=1e-6):
        p(f"FCLK0 {props['CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ']} MHz, build clock "
          f"{info['clock_mhz']} MHz")
    for key in ("PCW_USE_M_AXI_GP0", "PCW_USE_S_AXI_HP0", "PCW_EN_CLK0_PORT", "PCW_EN_RST0_PORT"):
        if props.get("CONFIG." + key) != "1":
            p(f"{ps}: CONFIG.{key} is not 1")
    for port in ("DDR", "FIXED_IO"):
        if d.peer(f"/{ps}/{port}") != f"/{port}":
            p(f"{ps}/{port} is not made external")

    # The DMA: simple mode, both channels, 32-bit streams, lengths wide enough.
    dma = info["dma"]
    if not d.cells.get(dma, {}).get("vlnv", "").startswith("xilinx.com:ip:axi_dma:"):
        p(f"no AXI DMA cell {dma}")
        return problems
    dprops = d.cells[dma]["props"]
    for key, want in (("c_include_sg", "0"), ("c_include_mm2s", "1"), ("c_include_s2mm", "1"),
                      ("c_m_axis_mm2s_tdata_width", "32"), ("c_s_axis_s2mm_tdata_width", "32")):
        if dprops.get("CONFIG." + key) != want:
            p(f"DMA {key} = {dprops.get('CONFIG.' + key)}, needs {want}")
    width = int(dprops["CONFIG.c_sg_length_width"])
    if not needed_length_bits(build) <= width <= 26:
        p(f"DMA length width {width}, the largest packet needs {needed_length_bits(build)} "
          f"(at most 26)")

    # The accelerator: a module reference whose wrapper connects every port.
    accel = info["accel"]
    cell = d.cells.get(accel)
    if cell is None or cell.get("reference") != ov.TOP_MODULE:
        p(f"no module reference {ov.TOP_MODULE} named {accel}")
        return problems
    interfaces = cell["interfaces"]
    kinds = {"s_axil": ("xilinx.com:interface:aximm:1.0", "slave"),
             "s_axis": ("xilinx.com:interface:axis:1.0", "slave"),
             "m_axis": ("xilinx.com:interface:axis:1.0", "master"),
             "aclk": ("xilinx.com:signal:clock:1.0", "slave"),
             "aresetn": ("xilinx.com:signal:reset:1.0", "slave")}
    for name, (vlnv, mode) in kinds.items():
        got = interfaces.get(name)
        if got is None or (got["vlnv"], got["mode"]) != (vlnv, mode):
            p(f"{accel} interface {name}: {got and (got['vlnv'], got['mode'])}, needs "
              f"{(vlnv, mode)}")
    wrapper = Path(cell["file"]).read_text()
    conns = _instance_connections(wrapper, ov.ACCEL_MODULE)
    for port in sorted(set(accel_ports) - set(conns)):
        p(f"accelerator port {port} is not connected by the wrapper")
    for port in sorted(set(conns) - set(accel_ports)):
        p(f"the wrapper connects {port}, which the accelerator does not have")
    by_port = {}
    for iname, iface in interfaces.items():
        for logical, wport in iface["signals"].items():
            by_port[wport] = (iname, logical)
    for port, expr in conns.items():
        if port not in accel_ports:
            continue
        if port == "rst":
            rst_ok = expr == "~aresetn" or re.search(
                rf"wire\s+{re.escape(expr)}\s*=\s*~\s*aresetn\s*;", wrapper)
            if not rst_ok or "POLARITY ACTIVE_LOW" not in wrapper:
                p("rst is not the inverted active-low aresetn")
            continue
        want = ("aclk", "CLK") if port == "clk" else (port.split("__")[0],
                                                     port.split("__")[1].upper())
        if by_port.get(expr) != want:
            p(f"accelerator port {port} is driven by {expr}, which is {by_port.get(expr)}, "
              f"not {want}")
    for name in ("s_axil", "s_axis", "m_axis"):
        if d.peer(f"/{accel}/{name}") is None:
            p(f"{accel}/{name} is not connected")

    # Data paths.
    gp0, hp = f"/{ps}/M_AXI_GP0", f"/{ps}/S_AXI_HP0"
    if not _through_interconnect(d, f"/{accel}/s_axil", gp0):
        p(f"{accel}/s_axil does not reach {gp0} through an interconnect")
    if not _through_interconnect(d, f"/{dma}/S_AXI_LITE", gp0):
        p(f"{dma}/S_AXI_LITE does not reach {gp0} through an interconnect")
    if d.peer(f"/{accel}/s_axis") != f"/{dma}/M_AXIS_MM2S":
        p(f"{accel}/s_axis is fed by {d.peer(f'/{accel}/s_axis')}, not {dma}/M_AXIS_MM2S")
    if d.peer(f"/{accel}/m_axis") != f"/{dma}/S_AXIS_S2MM":
        p(f"{accel}/m_axis feeds {d.peer(f'/{accel}/m_axis')}, not {dma}/S_AXIS_S2MM")
    for master in ("M_AXI_MM2S", "M_AXI_S2MM"):
        if not _through_interconnect(d, f"/{dma}/{master}", hp):
            p(f"{dma}/{master} does not reach {hp} through an interconnect")

    # One clock, FCLK0, for everything; resets from a processor reset on FCLK_RESET0_N.
    clock = d.net(f"/{ps}/FCLK_CLK0")
    clocked = [f"/{accel}/aclk", f"/{ps}/M_AXI_GP0_ACLK", f"/{ps}/S_AXI_HP0_ACLK",
               f"/{dma}/s_axi_lite_aclk", f"/{dma}/m_axi_mm2s_aclk", f"/{dma}/m_axi_s2mm_aclk"]
    clocked += [f"/{c}/aclk" for c in d.cells_of(_INTERCONNECTS[0])]
    clocked += [f"/{c}/slowest_sync_clk" for c in d.cells_of("xilinx.com:ip:proc_sys_reset:")]
    for pin in clocked:
        if pin not in clock:
            p(f"{pin} is not on FCLK0")
    resets = d.cells_of("xilinx.com:ip:proc_sys_reset:")
    if len(resets) != 1 or f"/{resets[0]}/ext_reset_in" not in d.net(f"/{ps}/FCLK_RESET0_N"):
        p("no processor reset driven by FCLK_RESET0_N")
    else:
        sources = {f"/{resets[0]}/peripheral_aresetn", f"/{resets[0]}/interconnect_aresetn"}
        resetted = [f"/{accel}/aresetn", f"/{dma}/axi_resetn"]
        resetted += [f"/{c}/aresetn" for c in d.cells_of(_INTERCONNECTS[0])]
        for pin in resetted:
            if not d.net(pin) & sources:
                p(f"{pin} is not driven by the processor reset")

    # Addresses.
    assigned = {(a["space"], a["seg"]): a for a in d.addresses}
    windows = []
    for seg, base, size, minimum in (
            (f"/{accel}/s_axil/reg0", info["axil_base"], info["axil_range"],
             RegisterMap(build).span),
            (f"/{dma}/S_AXI_LITE/Reg", info["dma_base"], info["dma_range"], 0x1000)):
        a = assigned.get((f"/{ps}/Data", seg))
        if a is None:
            p(f"{seg} has no address in {ps}/Data")
            continue
        offset, rng = int(a["offset"], 0), int(a["range"], 0)
        if (offset, rng) != (base, size) or rng < minimum or offset % rng:
            p(f"{seg} at {a['offset']} + {a['range']}, needs {base:#x} + {size:#x} "
              f"(at least {minimum:#x}, aligned)")
        windows.append((offset, offset + rng))
    if len(windows) == 2 and windows[0][0] < windows[1][1] and windows[1][0] < windows[0][1]:
        p(f"the accelerator's and the DMA's windows overlap: {windows}")
    for space in ("Data_MM2S", "Data_S2MM"):
        if not any(s == f"/{dma}/{space}" and re.fullmatch(rf"/{ps}/S_AXI_HP\d/HP\d_DDR_LOWOCM",
                                                           seg) for s, seg in assigned):
            p(f"{dma}/{space} has no DDR address through an HP port")

    # Validation, wrapper, bitstream, and the copies with one stem.
    order = [d.index(op) for op in ("validate_bd_design", "make_wrapper", "launch_runs",
                                    "wait_on_run")]
    if None in order or order != sorted(order):
        p(f"validate, wrapper, runs not all there in order: {order}")
    design = next(o["name"] for o in d.ops if o["op"] == "create_bd_design")
    if d.props.get("sources_1", {}).get("top") != f"{design}_wrapper":
        p(f"synthesis top is {d.props.get('sources_1', {}).get('top')}, not {design}_wrapper")
    launch = next((o for o in d.ops if o["op"] == "launch_runs"), {})
    if launch.get("runs") != ["impl_1"] or launch.get("options", {}).get("-to_step") \
            != "write_bitstream":
        p(f"no bitstream run: {launch}")
    out = Path(d.project["dir"]).parent
    for suffix, text in ((".bit", f"stand-in bitstream of {design}_wrapper"),
                         (".hwh", f"stand-in hardware handoff of {design}")):
        path = out / (info["stem"] + suffix)
        if not path.exists() or text not in path.read_text():
            p(f"{path.name} was not copied into {out}")
    return problems


def _preset(board):
    """The PS7 preset of ``board`` as the Tcl procedure returns it."""
    script = (f"source {{{STANDINS / 'vivado_standins.tcl'}}}\n"
              f"source {{{ov.TCL_DIR / 'xnorlearn_ps7.tcl'}}}\n"
              f"puts [standin::jd [xnorlearn::ps7_preset {board}]]\n")
    run = subprocess.run([TCLSH], input=script, capture_output=True, text=True, timeout=60,
                         check=True)
    return json.loads(run.stdout)


def run_standins(out_dir):
    """Run ``out_dir/overlay.tcl`` against the stand-ins; the recorded Design."""
    record = Path(out_dir) / "record.jsonl"
    subprocess.run([TCLSH, str(STANDINS / "run.tcl"), str(record),
                    str(Path(out_dir) / "overlay.tcl")], capture_output=True, text=True,
                   timeout=120)
    return Design.load(record)


def _check(project, design):
    return check_design(design, build=SMALL, info=project.info,
                        accel_ports=signature_ports(SMALL), preset=_preset(project.info["board"]))


@pytest.fixture
def copy_project(projects, tmp_path):
    """A copy of the PYNQ-Z2 project to change."""
    def copy():
        out = tmp_path / "project"
        shutil.copytree(projects["pynq-z2"].out_dir, out,
                        ignore=shutil.ignore_patterns("vivado", "*.bit", "*.hwh", "*.jsonl"))
        return dataclasses.replace(projects["pynq-z2"], out_dir=out)
    return copy


@needs_tclsh
@pytest.mark.parametrize("board", ["pynq-z1", "pynq-z2"])
def test_block_design(projects, board):
    project = projects[board]
    design = run_standins(project.out_dir)
    assert _check(project, design) == []


@needs_tclsh
def test_block_design_summary(projects):
    """The PYNQ-Z2 design: its cells, interface connections and address map."""
    d = run_standins(projects["pynq-z2"].out_dir)
    assert {n: c.get("vlnv", c.get("reference")) for n, c in d.cells.items()} == {
        "ps7": "xilinx.com:ip:processing_system7:5.5", "axi_dma": "xilinx.com:ip:axi_dma:7.1",
        "axi_periph": "xilinx.com:ip:smartconnect:1.0",
        "axi_mem": "xilinx.com:ip:smartconnect:1.0",
        "rst_fclk0": "xilinx.com:ip:proc_sys_reset:5.0", "accel": ov.TOP_MODULE}
    assert set(d.intf_nets) == {
        ("/DDR", "/ps7/DDR"), ("/FIXED_IO", "/ps7/FIXED_IO"),
        ("/ps7/M_AXI_GP0", "/axi_periph/S00_AXI"), ("/axi_periph/M00_AXI", "/accel/s_axil"),
        ("/axi_periph/M01_AXI", "/axi_dma/S_AXI_LITE"),
        ("/axi_dma/M_AXIS_MM2S", "/accel/s_axis"), ("/accel/m_axis", "/axi_dma/S_AXIS_S2MM"),
        ("/axi_dma/M_AXI_MM2S", "/axi_mem/S00_AXI"), ("/axi_dma/M_AXI_S2MM", "/axi_mem/S01_AXI"),
        ("/axi_mem/M00_AXI", "/ps7/S_AXI_HP0")}
    assert [(a["space"], a["seg"], a["offset"], a["range"]) for a in d.addresses] == [
        ("/ps7/Data", "/accel/s_axil/reg0", "0x43c00000", "0x1000"),
        ("/ps7/Data", "/axi_dma/S_AXI_LITE/Reg", "0x40400000", "0x10000"),
        ("/axi_dma/Data_MM2S", "/ps7/S_AXI_HP0/HP0_DDR_LOWOCM", "auto", "auto"),
        ("/axi_dma/Data_S2MM", "/ps7/S_AXI_HP0/HP0_DDR_LOWOCM", "auto", "auto")]


def test_ps7_preset_facts():
    """The preset holds the boards' PS facts, so no installed board files are needed."""
    if TCLSH is None:
        pytest.skip("tclsh not installed (Debian package tcl)")
    for board in ("pynq-z1", "pynq-z2"):
        preset = _preset(board)
        for key, value in {"PCW_CRYSTAL_PERIPHERAL_FREQMHZ": "50",
                           "PCW_UIPARAM_DDR_PARTNO": "MT41J256M16 RE-125",
                           "PCW_UIPARAM_DDR_BUS_WIDTH": "16 Bit",
                           "PCW_PRESET_BANK1_VOLTAGE": "LVCMOS 1.8V",
                           "PCW_UART0_UART0_IO": "MIO 14 .. 15",
                           "PCW_SD0_SD0_IO": "MIO 40 .. 45",
                           "PCW_ENET0_ENET0_IO": "MIO 16 .. 27",
                           "PCW_USB0_USB0_IO": "MIO 28 .. 39"}.items():
            assert preset["CONFIG." + key] == value, (board, key)
    run = subprocess.run([TCLSH], input=f"source {{{ov.TCL_DIR / 'xnorlearn_ps7.tcl'}}}\n"
                                        "xnorlearn::ps7_preset zedboard\n",
                         capture_output=True, text=True, timeout=60)
    assert "no processing-system preset for board 'zedboard'; known: pynq-z1 pynq-z2" \
        in run.stderr


# A change to the generated project that the check must catch: (file, old, new, problem).
BREAKAGES = [
    pytest.param("tcl/xnorlearn_overlay.tcl", "        $accel_cell/m_axis $dma_cell/S_AXIS_S2MM \\\n",
                 "", "accel/m_axis is not connected", id="missing-connection"),
    pytest.param("tcl/xnorlearn_overlay.tcl", "$dma_cell/M_AXIS_MM2S $accel_cell/s_axis",
                 "$dma_cell/M_AXIS_MM2S axi_mem/S01_AXI", "the script failed",
                 id="stream-to-wrong-pin"),
    pytest.param("hdl/xnorlearn_overlay_top.v", ".s_axis__tlast(", ".s_axis__last(",
                 "accelerator port s_axis__tlast is not connected by the wrapper",
                 id="renamed-accelerator-port"),
    pytest.param("hdl/xnorlearn_overlay_top.v", ".m_axis__tready(m_axis_tready)",
                 ".m_axis__tready(m_axis_tvalid)", "accelerator port m_axis__tready is driven by",
                 id="crossed-signal"),
    pytest.param("hdl/xnorlearn_overlay_top.v", "axis:1.0 m_axis ", "axis:1.0 m_axi ",
                 "no interface pin accel/m_axis", id="renamed-interface"),
    pytest.param("hdl/xnorlearn_overlay_top.v", "wire rst = ~aresetn;", "wire rst = aresetn;",
                 "rst is not the inverted active-low aresetn", id="reset-polarity"),
    pytest.param("overlay.tcl", "dict set cfg dma_length_width 14",
                 "dict set cfg dma_length_width 8", "DMA length width 8", id="dma-too-short"),
    pytest.param("tcl/xnorlearn_overlay.tcl", "        CONFIG.c_include_sg 0 \\\n", "",
                 "DMA c_include_sg = 1", id="dma-scatter-gather"),
    pytest.param("tcl/xnorlearn_overlay.tcl", "        CONFIG.PCW_USE_S_AXI_HP0 1 \\\n", "",
                 "no interface pin ps7/S_AXI_HP0", id="hp0-off"),
    pytest.param("overlay.tcl", "dict set cfg accel_range 0x1000",
                 "dict set cfg accel_range 0x100", "/accel/s_axil/reg0 at", id="window-too-small"),
    pytest.param("overlay.tcl", "dict set cfg fclk0_mhz 125", "dict set cfg fclk0_mhz 100",
                 "FCLK0 100 MHz, build clock 125.0 MHz", id="clock"),
    pytest.param("tcl/xnorlearn_overlay.tcl", "[pin $accel_cell/aresetn]", "",
                 "/accel/aresetn is not driven by the processor reset", id="reset-unconnected"),
    pytest.param("tcl/xnorlearn_overlay.tcl",
                 "    set_property -dict [ps7_preset [dict get $cfg board]] $ps7\n", "",
                 "preset CONFIG.PCW_UIPARAM_DDR_PARTNO", id="no-preset"),
    pytest.param("tcl/xnorlearn_overlay.tcl", "CONFIG.c_sg_length_width",
                 "CONFIG.c_sg_lenght_width", "has no parameter CONFIG.c_sg_lenght_width",
                 id="misspelt-parameter"),
    pytest.param("tcl/xnorlearn_overlay.tcl", "    file copy -force $hwh", "    #",
                 "xnl_small.hwh was not copied", id="no-hwh-copy"),
]


@needs_tclsh
@pytest.mark.parametrize("path, old, new, problem", BREAKAGES)
def test_block_design_check_catches(copy_project, path, old, new, problem):
    project = copy_project()
    target = project.out_dir / path
    text = target.read_text()
    assert old in text, f"{old!r} not in {path}"
    target.write_text(text.replace(old, new))
    problems = _check(project, run_standins(project.out_dir))
    assert any(problem in p for p in problems), problems


# -- the command ------------------------------------------------------------------------------

SMALL_ARGS = ["--lanes", "32", "--max-layers", "2", "--max-width", "16", "--max-fan-in", "64",
              "--classes", "4", "--max-batch", "8", "--max-groups", "4", "--draw-lanes", "2"]


def test_cli_without_vivado(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    out = tmp_path / "z1"
    assert ov.main(["--board", "pynq-z1", "--out", str(out), "--clock-mhz", "50",
                    "--pynq", "3.1", *SMALL_ARGS]) == 0
    said = capsys.readouterr().out
    assert "vivado is not on PATH" in said and "Vivado 2024.1" in said and "PYNQ 3.1" in said
    assert f"run in {out}: vivado -mode batch" in said
    info = json.loads((out / "xnorlearn.json").read_text())
    assert (info["board"], info["clock_mhz"], info["vivado"]) == ("pynq-z1", 50.0, "2024.1")


def test_cli_build_json(tmp_path, capsys):
    source = tmp_path / "verify.json"
    source.write_text(json.dumps({"build": dataclasses.asdict(SMALL)}))
    out = tmp_path / "p"
    assert ov.main(["--out", str(out), "--build-json", str(source), "--max-batch", "16",
                    "--no-build"]) == 0
    assert "build it with Vivado 2022.1" in capsys.readouterr().out
    info = json.loads((out / "xnorlearn.json").read_text())
    assert Build(**info["build"]) == dataclasses.replace(SMALL, max_batch=16)


@pytest.mark.parametrize("args, message", [
    (["--clock-mhz", "97"], "FCLK0 cannot run at 97.0 MHz"),
    (["--clock-mhz", "400"], "clock_mhz must be in 10..250 MHz"),
    (["--base-address", "0x40400000"], "overlaps the DMA's registers"),
    (["--base-address", "0x43C00800"], "must be a multiple of its window 0x1000"),
    (["--base-address", "0x80000000"], "base_address must be in"),
    (["--stem", "my overlay"], "stem must be a letter"),
    (["--lanes", "48"], "lanes must be a multiple of 32"),
    (["--lanes", "96", "--draw-lanes", "12"],
     "the training core cannot implement this build: draw_lanes"),
    (["--jobs", "0"], "jobs must be in 1..64"),
    (["--build-json", "/nonexistent.json"], "--build-json: cannot read"),
])
def test_cli_refuses(tmp_path, capsys, args, message):
    out = tmp_path / "p"
    assert ov.main(["--out", str(out), "--no-build", *SMALL_ARGS, *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists(), "nothing is written for bad arguments"


def test_cli_unknown_board():
    with pytest.raises(SystemExit) as e:
        ov.main(["--board", "zedboard"])
    assert e.value.code == 2
    with pytest.raises(ValueError, match="unknown board 'zedboard'; known: pynq-z1, pynq-z2"):
        ov.write_overlay_project("zedboard", SMALL, "/nonexistent", clock_mhz=100)


@needs_tclsh
def test_cli_runs_vivado_when_on_path(tmp_path, monkeypatch, capsys):
    """With a ``vivado`` on PATH (here one that runs the stand-ins), the command builds
    and finds the .bit and .hwh."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vivado"
    fake.write_text("#!/bin/sh\n"
                    'while [ $# -gt 0 ]; do [ "$1" = -source ] && script="$2"; shift; done\n'
                    f'exec "{TCLSH}" "{STANDINS / "run.tcl"}" record.jsonl "$script"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "p"
    assert ov.main(["--out", str(out), "--stem", "net1", *SMALL_ARGS]) == 0
    assert f"wrote {out / 'net1.bit'} and {out / 'net1.hwh'}" in capsys.readouterr().out
    (out / "net1.hwh").unlink()
    fake.write_text("#!/bin/sh\nexit 3\n")
    assert ov.main(["--out", str(out), "--stem", "net1", *SMALL_ARGS]) == 1
    assert "Vivado failed (exit status 3)" in capsys.readouterr().out


# -- the real build ---------------------------------------------------------------------------

@pytest.mark.vivado
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("vivado") is None, reason="vivado not on PATH")
def test_vivado_build(tmp_path):
    project = ov.write_overlay_project("pynq-z2", SMALL, tmp_path / "p", clock_mhz=100)
    assert ov.run_vivado(project) == 0
    assert project.bitstream.stat().st_size > 1_000_000
    root = ET.parse(project.hwh).getroot()
    modules = {m.get("INSTANCE"): m for m in root.iter("MODULE")}
    assert modules["ps7"].get("MODTYPE") == "processing_system7"
    assert modules["accel"].get("VLNV") == f"xilinx.com:module_ref:{ov.TOP_MODULE}:1.0"
    params = {p.get("NAME"): p.get("VALUE") for p in modules["axi_dma"].iter("PARAMETER")}
    assert params["c_include_sg"] == "0"
    assert int(params["c_sg_length_width"]) == project.info["dma_length_width"]
    ranges = {r.get("INSTANCE"): r for r in modules["ps7"].iter("MEMRANGE")}
    assert int(ranges["accel"].get("BASEVALUE"), 16) == project.info["axil_base"]


# -- the hand-written .hwh --------------------------------------------------------------------

def test_hwh(tmp_path):
    path = write_hwh(tmp_path / "x.hwh", SMALL, board="pynq-z2", clock_mhz=125,
                     base_address=0x43C1_0000)
    root = ET.parse(path).getroot()
    assert root.tag == "EDKSYSTEM" and root.find("SYSTEMINFO").get("NAME") == ov.DESIGN_NAME
    modules = {m.get("INSTANCE"): m for m in root.iter("MODULE")}

    ps = modules["ps7"]
    assert (ps.get("MODTYPE"), ps.get("IS_PL")) == ("processing_system7", "FALSE")
    params = {p.get("NAME"): p.get("VALUE") for p in ps.find("PARAMETERS")}
    for i in range(4):
        for key in (f"PCW_FPGA_FCLK{i}_ENABLE", f"PCW_FCLK{i}_PERIPHERAL_DIVISOR0",
                    f"PCW_FCLK{i}_PERIPHERAL_DIVISOR1", f"PCW_FCLK{i}_PERIPHERAL_CLKSRC"):
            assert key in params
    assert params["PCW_FPGA_FCLK0_ENABLE"] == "1"
    assert 1000 / (int(params["PCW_FCLK0_PERIPHERAL_DIVISOR0"])
                   * int(params["PCW_FCLK0_PERIPHERAL_DIVISOR1"])) == 125
    buses = {b.get("NAME"): b for b in ps.iter("BUSINTERFACE")}
    assert (buses["M_AXI_GP0"].get("TYPE"), buses["M_AXI_GP0"].get("VLNV")) \
        == ("MASTER", "xilinx.com:interface:aximm:1.0")

    ranges = {r.get("INSTANCE"): r for r in ps.iter("MEMRANGE")}
    base = int(ranges["accel"].get("BASEVALUE"), 16)
    high = int(ranges["accel"].get("HIGHVALUE"), 16)
    assert base == 0x43C1_0000 and high - base + 1 >= RegisterMap(SMALL).span
    assert ranges["accel"].get("SLAVEBUSINTERFACE") == "s_axil"
    assert int(ranges["axi_dma"].get("BASEVALUE"), 16) == ov.DMA_BASE_ADDRESS

    dma = {p.get("NAME"): p.get("VALUE") for p in modules["axi_dma"].find("PARAMETERS")}
    assert {k: dma[k] for k in DMA_PARAMETERS} == DMA_PARAMETERS
    assert int(dma["c_sg_length_width"]) == ov.dma_length_width(SMALL)
    assert modules["accel"].get("VLNV") == f"xilinx.com:module_ref:{ov.TOP_MODULE}:1.0"

    # Every connection and port map names a port that exists.
    ports = {(m.get("INSTANCE"), p.get("NAME")) for m in root.iter("MODULE")
             for p in m.iter("PORT")}
    for m in root.iter("MODULE"):
        for c in m.iter("CONNECTION"):
            assert (c.get("INSTANCE"), c.get("PORT")) in ports
        for pm in m.iter("PORTMAP"):
            assert (m.get("INSTANCE"), pm.get("PHYSICAL")) in ports
    accel_ports = {p.get("NAME") for p in modules["accel"].iter("PORT")}
    assert accel_ports == {p.name for p in ov.wrapper_ports(ov.accelerator_ports(SMALL))}


def test_hwh_refuses():
    with pytest.raises(ValueError, match="unknown board"):
        hwh_xml(SMALL, board="zcu104")
    with pytest.raises(ValueError, match="FCLK0 cannot run"):
        hwh_xml(SMALL, clock_mhz=97)
    with pytest.raises(TypeError, match="build must be"):
        hwh_xml({"lanes": 32})


def test_hwh_parses_with_pynqmetadata(tmp_path):
    """pynq 3's metadata parser (pynqmetadata 0.1.x, in a pynq 3 environment only) finds
    the accelerator, the DMA with its parameters, and FCLK0."""
    pytest.importorskip("pynqmetadata", reason="pynqmetadata (pynq 3.x) not installed")
    from pynqmetadata.frontends import Metadata
    from pynqmetadata.views.runtime import RuntimeMetadataParser
    path = write_hwh(tmp_path / "x.hwh", SMALL, clock_mhz=125)
    rt = RuntimeMetadataParser(Metadata(str(path)))
    assert rt.ip_dict["accel"]["phys_addr"] == ov.DEFAULT_BASE_ADDRESS
    assert rt.ip_dict["axi_dma"]["parameters"]["c_include_sg"] == "0"
    assert rt.clock_dict[0]["enable"] == 1


# -- the boards -------------------------------------------------------------------------------

def test_pynq_z1_platform():
    from xnorlearn.boards.pynq_z2 import PYNQ_Z1_Platform, PYNQ_Z2_Platform
    z1, z2 = PYNQ_Z1_Platform(), PYNQ_Z2_Platform()
    assert ov.BOARDS["pynq-z1"].part == ov.BOARDS["pynq-z2"].part == "xc7z020clg400-1"
    names1 = {(r.name, r.number) for r in z1.resources.values()}
    names2 = {(r.name, r.number) for r in z2.resources.values()}
    assert ("audio", 0) in names1 and ("audio_codec", 0) not in names1
    assert ("audio_codec", 0) in names2 and ("audio", 0) not in names2
    assert names1 - {("audio", 0)} == names2 - {("audio_codec", 0)}
