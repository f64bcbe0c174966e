"""PYNQ-Z2 (TUL) and PYNQ-Z1 (Digilent) boards: Zynq-7020 (xc7z020clg400-1), fabric pins only.

Pin names and locations follow TUL's PYNQ-Z2 master XDC (v1.0) and Digilent's PYNQ-Z1
master XDC; the two boards share their clock, LED, button, switch, Pmod and
Arduino-header pins with each other and with the Arty Z7-20 (amaranth-boards'
``arty_z7.py``), so both are built on one private base, as amaranth-boards does for
board families. They differ in audio: the PYNQ-Z2 has an
ADAU1761 codec, the PYNQ-Z1 a PWM output with a shutdown pin.

As with every Zynq board in amaranth-boards, the processing system (PS7, its DDR and
MIO pins) is not described here: a design that talks to the ARM cores over AXI
instantiates the ``PS7`` primitive or sits in a Vivado block design
(:mod:`xnorlearn.boards.pynq_overlay` writes one). Only Vivado can build a bitstream
for this part; ``build(..., do_build=False)`` writes the complete Vivado project script
(Tcl, XDC, Verilog) without it. There is no ``toolchain_program``: on the board, PYNQ
loads a bitstream with ``pynq.Bitstream(path).download()``.
"""

from amaranth.build import Attrs, Clock, Connector, Pins, PinsN, Resource, Subsignal
from amaranth.vendor import XilinxPlatform
from amaranth_boards.resources import (ButtonResources, LEDResources, RGBLEDResource,
                                       SwitchResources)

__all__ = ["PYNQ_Z1_Platform", "PYNQ_Z2_Platform"]


class _PYNQPlatform(XilinxPlatform):
    """Fabric resources of the PYNQ boards' clg400 Zynq-7000 layout."""

    package     = "clg400"
    speed       = "1"
    default_clk = "clk125"
    resources   = [
        # 125 MHz from the Ethernet PHY's reference oscillator.
        Resource("clk125", 0,
            Pins("H16", dir="i"), Clock(125e6), Attrs(IOSTANDARD="LVCMOS33")),

        *SwitchResources(
            pins="M20 M19",
            attrs=Attrs(IOSTANDARD="LVCMOS33")),

        RGBLEDResource(0,                                       # LD4
            r="N15", g="G17", b="L15",
            attrs=Attrs(IOSTANDARD="LVCMOS33")),
        RGBLEDResource(1,                                       # LD5
            r="M15", g="L14", b="G14",
            attrs=Attrs(IOSTANDARD="LVCMOS33")),

        *LEDResources(                                          # LD0..LD3
            pins="R14 P14 N16 M14",
            attrs=Attrs(IOSTANDARD="LVCMOS33")),

        *ButtonResources(                                       # BTN0..BTN3
            pins="D19 D20 L20 L19",
            attrs=Attrs(IOSTANDARD="LVCMOS33")),
    ]
    connectors  = [
        Connector("pmod", 0, "Y18 Y19 Y16 Y17 - - U18 U19 W18 W19 - -"),  # JA
        Connector("pmod", 1, "W14 Y14 T11 T10 - - V16 W16 V12 W13 - -"),  # JB

        Connector("arduino", 0, {
            "io0": "T14", "io1": "U12", "io2": "U13", "io3": "V13", "io4": "V15",
            "io5": "T15", "io6": "R16", "io7": "U17", "io8": "V17", "io9": "V18",
            "io10": "T16", "io11": "R17", "io12": "P18", "io13": "N17",
            # Analog header pins used as digital I/O.
            "a0": "Y11", "a1": "Y12", "a2": "W11", "a3": "V11", "a4": "T5", "a5": "U10",
        }),
    ]


class PYNQ_Z2_Platform(_PYNQPlatform):
    """PYNQ-Z2: xc7z020clg400-1 with 53,200 LUT6, 106,400 FF, 140 RAMB36, 220 DSP48E1."""

    device      = "xc7z020"
    resources   = _PYNQPlatform.resources + [
        Resource("audio_codec", 0,                              # ADAU1761
            Subsignal("mclk", Pins("U5", dir="o")),
            Subsignal("bclk", Pins("R18", dir="o")),
            Subsignal("lrclk", Pins("T17", dir="o")),
            Subsignal("sdata_o", Pins("G18", dir="o")),         # to the codec's DAC
            Subsignal("sdata_i", Pins("F17", dir="i")),         # from the codec's ADC
            Subsignal("scl", Pins("U9", dir="io")),
            Subsignal("sda", Pins("T9", dir="io")),
            Subsignal("addr", Pins("M17 M18", dir="o")),
            Attrs(IOSTANDARD="LVCMOS33")),
    ]


class PYNQ_Z1_Platform(_PYNQPlatform):
    """PYNQ-Z1: the same xc7z020clg400-1 as the PYNQ-Z2, with a PWM audio output."""

    device      = "xc7z020"
    resources   = _PYNQPlatform.resources + [
        Resource("audio", 0,
            Subsignal("pwm", Pins("R18", dir="o")),
            Subsignal("sd", PinsN("T17", dir="o")),             # low: amplifier shut down
            Attrs(IOSTANDARD="LVCMOS33")),
    ]
