# amaranth: UnusedElaboratable=no
"""UART: bytes in and out at the bit rate, back to back, off-rate senders, glitches, errors."""

import pytest
from amaranth.sim import Simulator

from xnorlearn.hw.uart import UART, divisor_for


def line_levels(data, period, *, gap=0.0, stop_level=1):
    """Levels of a serial line, one per clock, sending ``data`` 8N1 at ``period`` (float)
    clocks per bit with ``gap`` idle bits between bytes; starts and ends idle."""
    bits = [1] * 5
    for byte in data:
        frame = [0] + [(byte >> i) & 1 for i in range(8)] + [stop_level]
        bits += frame + [1] * int(gap)
    bits += [1] * 3
    levels, t = [], 0.0
    for b in bits:
        t_next = t + period
        levels += [b] * (round(t_next) - round(t))
        t = t_next
    return levels


def receive(dut, levels, *, ready=lambda cycle: True):
    """Drive ``rx_pin`` with ``levels``; return (bytes received, framing pulses, overruns)."""
    got, framing, overrun = [], [0], [0]

    async def bench(ctx):
        for cycle, level in enumerate(levels + [1] * (4 * dut.divisor)):
            ctx.set(dut.rx_pin, level)
            r = ready(cycle)
            ctx.set(dut.rx.ready, r)
            await ctx.delay(1e-9)
            if ctx.get(dut.rx.valid) and r:
                got.append(ctx.get(dut.rx.payload))
            framing[0] += ctx.get(dut.rx_framing)
            overrun[0] += ctx.get(dut.rx_overrun)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, framing[0], overrun[0]


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_receive_back_to_back(rng, divisor):
    data = [int(x) for x in rng.integers(0, 256, size=24)] + [0x00, 0xFF, 0x55, 0xAA]
    got, framing, overrun = receive(UART(divisor=divisor), line_levels(data, divisor))
    assert got == data
    assert framing == overrun == 0


@pytest.mark.parametrize("ratio", [0.965, 0.98, 1.02, 1.035])
def test_receive_off_rate_sender(rng, ratio):
    """A sender 2-3.5 % fast or slow, back to back: every stop bit is still sampled inside
    its bit period."""
    divisor = 32
    data = [int(x) for x in rng.integers(0, 256, size=16)]
    got, framing, _ = receive(UART(divisor=divisor), line_levels(data, divisor * ratio))
    assert got == data
    assert framing == 0


def test_glitch_ignored_and_framing_error():
    divisor = 16
    levels = [1] * 20 + [0] * 3 + [1] * 40          # a 3-cycle pulse is no start bit
    levels += line_levels([0x3C], divisor, stop_level=0)[:-3 * divisor] + [0] * 80  # a break
    levels += line_levels([0xA5, 0x5A], divisor)
    got, framing, _ = receive(UART(divisor=divisor), levels)
    assert got == [0xA5, 0x5A]
    assert framing == 1


def test_overrun_when_not_taken():
    divisor = 8
    data = [1, 2, 3]
    got, _, overrun = receive(UART(divisor=divisor), line_levels(data, divisor),
                              ready=lambda cycle: cycle > 5 * divisor + 30 * divisor + 40)
    assert got == [1]                   # held until taken; the two after it were dropped
    assert overrun == 2


@pytest.mark.parametrize("divisor", [4, 10])
def test_transmit_back_to_back(rng, divisor):
    """Each bit lasts ``divisor`` cycles; a waiting byte follows the stop bit at once."""
    dut = UART(divisor=divisor)
    data = [int(x) for x in rng.integers(0, 256, size=12)]
    trace = []

    async def bench(ctx):
        pending = list(data)
        for _ in range(len(data) * 10 * (divisor + 1) + 50):
            ctx.set(dut.tx.valid, bool(pending))
            if pending:
                ctx.set(dut.tx.payload, pending[0])
            await ctx.delay(1e-9)
            if pending and ctx.get(dut.tx.ready):
                pending.pop(0)
            trace.append(ctx.get(dut.tx_pin))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    got, i, starts = [], 0, []
    while i < len(trace):
        if trace[i] == 0:
            starts.append(i)
            bits = [trace[i + divisor * k + divisor // 2] for k in range(10)]
            assert bits[0] == 0 and bits[9] == 1, bits
            got.append(sum(b << k for k, b in enumerate(bits[1:9])))
            i += divisor * 10 - divisor // 2
        else:
            i += 1
    assert got == data
    gaps = {b - a for a, b in zip(starts, starts[1:])}
    assert gaps == {10 * divisor}


def test_loopback_through_a_wire(rng):
    """The transmitter's output read by a receiver of the same divisor."""
    from amaranth.hdl import Module

    divisor = 5
    tx, rx = UART(divisor=divisor), UART(divisor=divisor)
    m = Module()
    m.submodules.tx, m.submodules.rx = tx, rx
    m.d.comb += rx.rx_pin.eq(tx.tx_pin)
    data = [int(x) for x in rng.integers(0, 256, size=10)]
    got = []

    async def bench(ctx):
        pending = list(data)
        ctx.set(rx.rx.ready, 1)
        for _ in range(len(data) * 10 * (divisor + 1) + 100):
            ctx.set(tx.tx.valid, bool(pending))
            if pending:
                ctx.set(tx.tx.payload, pending[0])
            await ctx.delay(1e-9)
            if pending and ctx.get(tx.tx.ready):
                pending.pop(0)
            if ctx.get(rx.rx.valid):
                got.append(ctx.get(rx.rx.payload))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == data


def test_parameters():
    with pytest.raises(TypeError, match="divisor must be an integer"):
        UART(divisor=8.0)
    with pytest.raises(ValueError, match=r"divisor must be in 4\.\."):
        UART(divisor=3)
    assert divisor_for(75e6, 3_000_000) == 25
    assert divisor_for(72e6, 12_000_000) == 6
    assert divisor_for(80e6, 3_000_000) == 27            # 1.2 % off: within 2 %
    with pytest.raises(ValueError, match="clocks per bit give"):
        divisor_for(80e6, 12_000_000)                     # 6.67 -> 7: 4.8 % off
    with pytest.raises(ValueError, match="needs 2.00 clocks per bit"):
        divisor_for(24e6, 12_000_000)
