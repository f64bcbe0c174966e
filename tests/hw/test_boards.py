# amaranth: UnusedElaboratable=no
"""Board platforms (xnorlearn.boards): each writes a complete build without running the tools."""

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io

from xnorlearn.boards.pynq_z2 import PYNQ_Z2_Platform
from xnorlearn.boards.ulx3s import ULX3S_45F_Platform, ULX3S_85F_Platform


class Blinky(Elaboratable):
    """A counter on LED 0 and button 0 on LED 1: touches the clock, a button and two LEDs."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.led0 = led0 = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.submodules.led1 = led1 = io.Buffer("o", platform.request("led", 1, dir="-"))
        m.submodules.button = button = io.Buffer("i", platform.request("button", 0, dir="-"))
        counter = Signal(24)
        m.d.sync += counter.eq(counter + 1)
        m.d.comb += [led0.o.eq(counter[-1]), led1.o.eq(button.i)]
        return m


def build_files(platform, **kwargs):
    plan = platform.build(Blinky(), name="top", do_build=False, **kwargs)
    return plan.files


@pytest.mark.parametrize("platform_cls, device", [(ULX3S_85F_Platform, "85k"),
                                                  (ULX3S_45F_Platform, "45k")])
def test_ulx3s(platform_cls, device):
    files = build_files(platform_cls())
    assert {"top.debug.v", "top.lpf", "top.ys", "build_top.sh"} <= set(files)
    lpf = files["top.lpf"]
    # The 25 MHz oscillator, LED 0 and button 0 of the ULX3S (amaranth-boards' pins).
    assert 'LOCATE COMP "clk25_0__io" SITE "G2"' in lpf
    assert 'SITE "B2"' in lpf and 'SITE "R1"' in lpf
    assert 'FREQUENCY PORT "clk25_0__io" 25000000' in lpf
    script = files["top.ys"]
    assert "synth_ecp5 -cmp2softlogic -top top" in script
    assert f"--{device}" in files["build_top.sh"]
    assert "--package CABGA381" in files["build_top.sh"]


def test_ulx3s_synth_opts_override():
    files = build_files(ULX3S_85F_Platform(), synth_opts="-abc9")
    assert "synth_ecp5 -abc9 -top top" in files["top.ys"]


def test_pynq_z2():
    platform = PYNQ_Z2_Platform()
    assert (platform.device, platform.package, platform.speed) == ("xc7z020", "clg400", "1")
    files = build_files(platform)
    assert {"top.v", "top.xdc", "top.tcl", "build_top.sh"} <= set(files)
    xdc = files["top.xdc"]
    for pin, port in (("H16", "clk125_0__io"), ("R14", "led_0__io"), ("P14", "led_1__io"),
                      ("D19", "button_0__io")):
        assert f'set_property LOC {pin} [get_ports "{port}"]' in xdc, pin
        assert f'set_property IOSTANDARD "LVCMOS33" [get_ports "{port}"]' in xdc, port
    assert "create_clock -name clk125_0__io -period 8.0" in xdc
    assert "-part xc7z020clg400-1" in files["top.tcl"]


def test_pynq_z2_resources():
    platform = PYNQ_Z2_Platform()
    names = {(r.name, r.number) for r in platform.resources.values()}
    assert {("clk125", 0), ("led", 3), ("button", 3), ("switch", 1), ("rgb_led", 1),
            ("audio_codec", 0)} <= names
    pins = [pin for r in platform.resources.values() for pin in _pins(r)]
    assert len(pins) == len(set(pins)), "a pin is used twice"


def _pins(resource):
    from amaranth.build.dsl import Pins, Subsignal
    for io in resource.ios:
        if isinstance(io, Pins):
            yield from io.names
        elif isinstance(io, Subsignal):
            yield from _pins(io)
