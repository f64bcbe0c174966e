"""A minimal hardware handoff (``.hwh``) of the overlay, written without Vivado.

``pynq.Overlay("X.bit")`` reads ``X.hwh`` beside the bitstream to find its IP: the
addresses of the accelerator's registers and of the AXI DMA, the DMA's configuration,
and the PL clocks it sets before loading. A simulated PYNQ board (in CI, with no
bitstream) needs the same file; :func:`hwh_xml` writes it from the build, with the
instances, addresses and parameters the Vivado flow of
:mod:`xnorlearn.boards.pynq_overlay` gives the real one:

* ``SYSTEMINFO`` (the block design's name, the part);
* ``processing_system7`` (``IS_PL="FALSE"``) with its ``M_AXI_GP0`` manager and
  ``S_AXI_HP0`` subordinate bus interfaces, the ``PCW_FPGA_FCLK{i}_ENABLE``,
  ``PCW_FCLK{i}_PERIPHERAL_DIVISOR0/1`` and ``PCW_FCLK{i}_PERIPHERAL_CLKSRC``
  parameters of FCLK0..3 (FCLK0 at the build's clock, the others off), and a
  ``MEMRANGE`` for the accelerator's and the DMA's registers;
* the AXI DMA (``xilinx.com:ip:axi_dma:7.1``) with the lowercase ``c_*`` parameters
  pynq's DMA driver reads (simple mode, both channels, 32-bit streams, the length
  width of the build) and its two DDR windows through ``S_AXI_HP0``;
* the accelerator as the module reference ``xilinx.com:module_ref:<top>:1.0`` with
  the wrapper's ports and interfaces (:func:`~xnorlearn.boards.pynq_overlay.wrapper_ports`);
* the processor reset and the two SmartConnects, and the clock, reset and stream
  connections between the cells.

The parameters Vivado adds beyond these (the PS7's several hundred ``PCW_*``, the
interconnects' internals) are left out; pynq does not read them.
"""

import datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from xnorlearn.boards.pynq_overlay import (DEFAULT_BASE_ADDRESS, DEFAULT_PYNQ, DESIGN_NAME,
                                           TOP_MODULE, accelerator_ports, fclk_setting,
                                           overlay_info, wrapper_ports)
from xnorlearn.contract import Build

__all__ = ["hwh_xml", "write_hwh", "DDR_BASE", "DDR_RANGE", "DMA_PARAMETERS"]

#: The PYNQ boards' 512 MiB of DDR as the HP ports see it.
DDR_BASE, DDR_RANGE = 0x0000_0000, 0x2000_0000

#: The DMA parameters written, beside ``c_sg_length_width`` (from the build).
DMA_PARAMETERS = {
    "c_include_sg": "0",
    "c_include_mm2s": "1",
    "c_include_s2mm": "1",
    "c_m_axi_mm2s_data_width": "32",
    "c_m_axis_mm2s_tdata_width": "32",
    "c_m_axi_s2mm_data_width": "32",
    "c_s_axis_s2mm_tdata_width": "32",
    "c_mm2s_burst_size": "16",
    "c_s2mm_burst_size": "16",
    "c_include_mm2s_dre": "0",
    "c_include_s2mm_dre": "0",
    "c_addr_width": "32",
    "c_micro_dma": "0",
    "c_sg_include_stscntrl_strm": "0",
    "c_enable_multi_channel": "0",
    "c_num_mm2s_channels": "1",
    "c_num_s2mm_channels": "1",
    "c_increase_throughput": "0",
}

_AXIMM = "xilinx.com:interface:aximm:1.0"
_AXIS = "xilinx.com:interface:axis:1.0"
_DMA_STREAMS = {   # DMA interface -> (its port prefix, the accelerator interface it meets)
    "M_AXIS_MM2S": ("m_axis_mm2s", "s_axis"),
    "S_AXIS_S2MM": ("s_axis_s2mm", "m_axis"),
}


def _hex(value):
    return f"0x{value:08X}"


class _Module:
    """A MODULE element under construction: parameters, ports, bus interfaces."""

    def __init__(self, instance, vlnv, **attrs):
        vendor, library, name, version = vlnv.split(":")
        self.instance = instance
        self.attrs = {"FULLNAME": f"/{instance}", "HWVERSION": version, "INSTANCE": instance,
                      "IPTYPE": "PERIPHERAL", "IS_ENABLE": "1", "MODCLASS": "PERIPHERAL",
                      "MODTYPE": name, "VLNV": vlnv, **attrs}
        self.parameters = {"Component_Name": f"{DESIGN_NAME}_{instance}_0"}
        self.ports = {}             # name -> dict(dir, width, sigis, extra attrs)
        self.buses = []             # (name, type, vlnv, parameters, {logical: physical})
        self.memranges = []

    def port(self, name, direction, width=1, sigis=None, **extra):
        self.ports[name] = {"dir": direction, "width": width, "sigis": sigis, **extra}

    def bus(self, name, kind, vlnv, parameters=None, portmap=None):
        self.buses.append((name, kind, vlnv, parameters or {}, portmap or {}))


def _element(module, nets):
    m = ET.Element("MODULE", module.attrs)
    ET.SubElement(m, "DOCUMENTS")
    params = ET.SubElement(m, "PARAMETERS")
    for name, value in module.parameters.items():
        ET.SubElement(params, "PARAMETER", NAME=name, VALUE=str(value))
    if module.memranges:
        memmap = ET.SubElement(m, "MEMORYMAP")
        for attrs in module.memranges:
            ET.SubElement(memmap, "MEMRANGE", attrs)
    ports = ET.SubElement(m, "PORTS")
    for name, info in module.ports.items():
        attrs = {"DIR": "O" if info["dir"] == "output" else "I", "NAME": name}
        if info["width"] > 1:
            attrs.update(LEFT=str(info["width"] - 1), RIGHT="0")
        if info["sigis"]:
            attrs["SIGIS"] = info["sigis"]
        attrs.update({k.upper(): str(v) for k, v in info.items()
                      if k not in ("dir", "width", "sigis")})
        net = nets.get((module.instance, name))
        if net is not None:
            attrs["SIGNAME"] = net[0]
        port = ET.SubElement(ports, "PORT", attrs)
        if net is not None:
            # As Vivado writes them: a driver lists its loads, a load its driver.
            name_, ends, drivers = net
            others = [e for e in ends if e != (module.instance, name)]
            if info["dir"] != "output":
                others = [e for e in others if e in drivers]
            conns = ET.SubElement(port, "CONNECTIONS")
            for instance, other in others:
                ET.SubElement(conns, "CONNECTION", INSTANCE=instance, PORT=other)
    buses = ET.SubElement(m, "BUSINTERFACES")
    for name, kind, vlnv, parameters, portmap in module.buses:
        b = ET.SubElement(buses, "BUSINTERFACE", BUSNAME=f"{module.instance}_{name}",
                          NAME=name, TYPE=kind, VLNV=vlnv)
        if parameters:
            ps = ET.SubElement(b, "PARAMETERS")
            for pname, value in parameters.items():
                ET.SubElement(ps, "PARAMETER", NAME=pname, VALUE=str(value))
        if portmap:
            maps = ET.SubElement(b, "PORTMAPS")
            for logical, physical in portmap.items():
                ET.SubElement(maps, "PORTMAP", LOGICAL=logical, PHYSICAL=physical)
    return m


def hwh_xml(build, *, board="pynq-z2", clock_mhz=100.0, base_address=DEFAULT_BASE_ADDRESS,
            stem="xnorlearn", pynq=DEFAULT_PYNQ):
    """The ``.hwh`` of the overlay of ``build`` as XML text.

    Parameters
    ----------
    build : Build
    board, clock_mhz, base_address, stem, pynq
        As :func:`~xnorlearn.boards.pynq_overlay.write_overlay_project`, whose checks
        they pass.

    Returns
    -------
    str

    Raises
    ------
    TypeError, ValueError
        For a bad argument, naming it and its allowed range.
    """
    if not isinstance(build, Build):
        raise TypeError(f"build must be a xnorlearn.contract.Build, got {build!r}")
    from xnorlearn.boards.pynq_overlay import _check_base_address, _check_board, _check_stem
    from xnorlearn.hw.accelerator import ADDR_WIDTH
    b = _check_board(board)
    _check_stem(stem)
    _check_base_address(base_address, 1 << ADDR_WIDTH)
    fclk = fclk_setting(clock_mhz)
    info = overlay_info(board, build, fclk=fclk, stem=stem, base_address=base_address,
                        pynq=pynq)
    wports = wrapper_ports(accelerator_ports(build))
    platform = b.platform
    accel, dma = info["accel"], info["dma"]
    clock_hz = str(round(fclk.mhz * 1e6))

    ps7 = _Module("ps7", "xilinx.com:ip:processing_system7:5.5", IS_PL="FALSE",
                  MODCLASS="PROCESSOR")
    ps7.parameters.update({
        "PCW_CRYSTAL_PERIPHERAL_FREQMHZ": "50",
        "PCW_IO_IO_PLL_FREQMHZ": f"{fclk.pll_mhz:.3f}",
        "PCW_USE_M_AXI_GP0": "1",
        "PCW_USE_S_AXI_HP0": "1",
        "PCW_S_AXI_HP0_DATA_WIDTH": "64",
        "PCW_EN_CLK0_PORT": "1",
        "PCW_EN_RST0_PORT": "1",
        "PCW_UIPARAM_DDR_BUS_WIDTH": "16 Bit",
        "PCW_DDR_RAM_HIGHADDR": _hex(DDR_BASE + DDR_RANGE - 1),
    })
    for i in range(4):
        on = i == 0
        ps7.parameters.update({
            f"PCW_FPGA_FCLK{i}_ENABLE": "1" if on else "0",
            f"PCW_FCLK{i}_PERIPHERAL_CLKSRC": fclk.source,
            f"PCW_FCLK{i}_PERIPHERAL_DIVISOR0": str(fclk.divisor0 if on else 1),
            f"PCW_FCLK{i}_PERIPHERAL_DIVISOR1": str(fclk.divisor1 if on else 1),
            f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ": f"{fclk.mhz:.6g}" if on else "10",
            f"PCW_ACT_FPGA{i}_PERIPHERAL_FREQMHZ": f"{fclk.mhz:.6f}" if on else "10.000000",
            f"PCW_CLK{i}_FREQ": clock_hz if on else "10000000",
        })
    for name, inst, iface, block, base, span in (
            ("accel", accel, "s_axil", "reg0", info["axil_base"], info["axil_range"]),
            ("dma", dma, "S_AXI_LITE", "Reg", info["dma_base"], info["dma_range"])):
        ps7.memranges.append({
            "ADDRESSBLOCK": block, "BASENAME": "C_BASEADDR", "BASEVALUE": _hex(base),
            "HIGHNAME": "C_HIGHADDR", "HIGHVALUE": _hex(base + span - 1), "INSTANCE": inst,
            "IS_DATA": "TRUE", "IS_INSTRUCTION": "TRUE", "MASTERBUSINTERFACE": "M_AXI_GP0",
            "MEMTYPE": "REGISTER", "SLAVEBUSINTERFACE": iface})
    ps7.port("FCLK_CLK0", "output", sigis="clk", clkfrequency=clock_hz)
    ps7.port("FCLK_RESET0_N", "output", sigis="rst")
    ps7.port("M_AXI_GP0_ACLK", "input", sigis="clk", clkfrequency=clock_hz)
    ps7.port("S_AXI_HP0_ACLK", "input", sigis="clk", clkfrequency=clock_hz)
    ps7.bus("M_AXI_GP0", "MASTER", _AXIMM, {"PROTOCOL": "AXI3", "DATA_WIDTH": "32",
                                            "FREQ_HZ": clock_hz})
    ps7.bus("S_AXI_HP0", "SLAVE", _AXIMM, {"PROTOCOL": "AXI3", "DATA_WIDTH": "64",
                                           "FREQ_HZ": clock_hz})

    d = _Module(dma, "xilinx.com:ip:axi_dma:7.1")
    d.parameters.update(DMA_PARAMETERS)
    d.parameters["c_sg_length_width"] = str(info["dma_length_width"])
    for space, iface in (("Data_MM2S", "M_AXI_MM2S"), ("Data_S2MM", "M_AXI_S2MM")):
        d.memranges.append({
            "ADDRESSBLOCK": "HP0_DDR_LOWOCM", "BASENAME": "C_BASEADDR",
            "BASEVALUE": _hex(DDR_BASE), "HIGHNAME": "C_HIGHADDR",
            "HIGHVALUE": _hex(DDR_BASE + DDR_RANGE - 1), "INSTANCE": "ps7",
            "IS_DATA": "TRUE", "IS_INSTRUCTION": "TRUE", "MASTERBUSINTERFACE": iface,
            "MEMTYPE": "MEMORY", "SLAVEBUSINTERFACE": "S_AXI_HP0"})
    for name in ("s_axi_lite_aclk", "m_axi_mm2s_aclk", "m_axi_s2mm_aclk"):
        d.port(name, "input", sigis="clk", clkfrequency=clock_hz)
    d.port("axi_resetn", "input", sigis="rst")
    d.bus("S_AXI_LITE", "SLAVE", _AXIMM, {"PROTOCOL": "AXI4LITE", "DATA_WIDTH": "32"})
    d.bus("M_AXI_MM2S", "MASTER", _AXIMM, {"PROTOCOL": "AXI4", "DATA_WIDTH": "32"})
    d.bus("M_AXI_S2MM", "MASTER", _AXIMM, {"PROTOCOL": "AXI4", "DATA_WIDTH": "32"})

    a = _Module(accel, f"xilinx.com:module_ref:{TOP_MODULE}:1.0", BDTYPE="MODULE_REF")
    a.parameters.update({"ADDR_WIDTH": str(next(p.width for p in wports
                                                 if p.name == "s_axil_awaddr"))})
    portmaps = {}
    for p in wports:
        sigis = {"aclk": "clk", "aresetn": "rst"}.get(p.interface)
        extra = {"clkfrequency": clock_hz} if sigis == "clk" else {}
        a.port(p.name, p.direction, p.width, sigis, **extra)
        if p.interface in ("s_axil", "s_axis", "m_axis"):
            portmaps.setdefault(p.interface, {})[p.logical] = p.name
    a.bus("s_axil", "SLAVE", _AXIMM, {"PROTOCOL": "AXI4LITE", "DATA_WIDTH": "32"},
          portmaps["s_axil"])
    a.bus("s_axis", "SLAVE", _AXIS, {"TDATA_NUM_BYTES": "4", "HAS_TLAST": "1"},
          portmaps["s_axis"])
    a.bus("m_axis", "MASTER", _AXIS, {"TDATA_NUM_BYTES": "4", "HAS_TLAST": "1"},
          portmaps["m_axis"])

    # The DMA's stream ports mirror the accelerator's, signal for signal.
    nets = {}

    modules = {m.instance: m for m in (ps7, d, a)}

    def net(name, *ends):
        drivers = [e for e in ends if e[0] in modules
                   and modules[e[0]].ports[e[1]]["dir"] == "output"]
        for end in ends:
            nets[end] = (name, ends, drivers)

    for iface, (prefix, peer) in _DMA_STREAMS.items():
        portmap = {}
        for p in wports:
            if p.interface == peer:
                physical = f"{prefix}_{p.logical.lower()}"
                d.port(physical, "output" if p.direction == "input" else "input", p.width)
                portmap[p.logical] = physical
                net(f"{dma}_{iface}_{p.logical}", (dma, physical), (accel, p.name))
        d.bus(iface, "MASTER" if prefix.startswith("m_") else "SLAVE", _AXIS,
              {"TDATA_NUM_BYTES": "4", "HAS_TLAST": "1", "HAS_TKEEP": "1"}, portmap)

    rst = _Module("rst_fclk0", "xilinx.com:ip:proc_sys_reset:5.0")
    rst.port("slowest_sync_clk", "input", sigis="clk", clkfrequency=clock_hz)
    rst.port("ext_reset_in", "input", sigis="rst")
    rst.port("interconnect_aresetn", "output", sigis="rst")
    rst.port("peripheral_aresetn", "output", sigis="rst")
    smartconnects = []
    for name, si, mi in (("axi_periph", 1, 2), ("axi_mem", 2, 1)):
        sc = _Module(name, "xilinx.com:ip:smartconnect:1.0", BDTYPE="SBD")
        sc.parameters.update({"NUM_SI": str(si), "NUM_MI": str(mi)})
        sc.port("aclk", "input", sigis="clk", clkfrequency=clock_hz)
        sc.port("aresetn", "input", sigis="rst")
        smartconnects.append(sc)
    modules.update({m.instance: m for m in (rst, *smartconnects)})

    net("ps7_FCLK_CLK0", ("ps7", "FCLK_CLK0"), ("ps7", "M_AXI_GP0_ACLK"),
        ("ps7", "S_AXI_HP0_ACLK"), ("rst_fclk0", "slowest_sync_clk"), ("axi_periph", "aclk"),
        ("axi_mem", "aclk"), (dma, "s_axi_lite_aclk"), (dma, "m_axi_mm2s_aclk"),
        (dma, "m_axi_s2mm_aclk"), (accel, "aclk"))
    net("ps7_FCLK_RESET0_N", ("ps7", "FCLK_RESET0_N"), ("rst_fclk0", "ext_reset_in"))
    net("rst_fclk0_interconnect_aresetn", ("rst_fclk0", "interconnect_aresetn"),
        ("axi_periph", "aresetn"), ("axi_mem", "aresetn"))
    net("rst_fclk0_peripheral_aresetn", ("rst_fclk0", "peripheral_aresetn"),
        (dma, "axi_resetn"), (accel, "aresetn"))

    root = ET.Element("EDKSYSTEM", EDWVERSION="1.2",
                      TIMESTAMP=datetime.datetime.now(datetime.timezone.utc)
                      .strftime("%a %b %d %H:%M:%S %Y"),
                      VIVADOVERSION=info["vivado"])
    ET.SubElement(root, "SYSTEMINFO", ARCH="zynq", BOARD="", DEVICE=platform.device[2:],
                  NAME=DESIGN_NAME, PACKAGE=platform.package,
                  SPEEDGRADE=f"-{platform.speed}")
    ET.SubElement(root, "EXTERNALPORTS")
    ET.SubElement(root, "EXTERNALINTERFACES")
    listing = ET.SubElement(root, "MODULES")
    for module in (ps7, d, a, rst, *smartconnects):
        listing.append(_element(module, nets))
    ET.indent(root, space="  ")
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'
            + ET.tostring(root, encoding="unicode") + "\n")


def write_hwh(path, build, **kwargs):
    """Write :func:`hwh_xml` of ``build`` to ``path``; returns it as a
    :class:`~pathlib.Path`. Keyword arguments as :func:`hwh_xml`."""
    path = Path(path)
    path.write_text(hwh_xml(build, **kwargs))
    return path
