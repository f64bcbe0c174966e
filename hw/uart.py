"""An 8N1 UART: receiver and transmitter with a fixed bit period in clock cycles."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from xnorlearn.hw._params import check_int

__all__ = ["UART", "MIN_DIVISOR", "MAX_DIVISOR", "divisor_for"]

#: Fewest clock cycles per bit: the receiver samples each bit in its middle, and its
#: synchroniser and start-bit detection take up to three cycles of a bit.
MIN_DIVISOR = 4
MAX_DIVISOR = 1 << 20


def divisor_for(clock_hz, baud, *, tolerance=0.02):
    """Clock cycles per bit for ``baud`` at ``clock_hz``, rounded to the nearest integer.

    Raises
    ------
    ValueError
        If the divisor is below :data:`MIN_DIVISOR` or above :data:`MAX_DIVISOR`, or the
        rounded divisor makes a bit rate more than ``tolerance`` (relative) off ``baud``.
    """
    if not clock_hz > 0 or not baud > 0:
        raise ValueError(f"clock and baud rate must be positive, got {clock_hz!r} Hz and "
                         f"{baud!r} baud")
    divisor = round(clock_hz / baud)
    if not MIN_DIVISOR <= divisor <= MAX_DIVISOR:
        raise ValueError(f"{baud} baud at {clock_hz / 1e6:g} MHz needs {clock_hz / baud:.2f} "
                         f"clocks per bit; the UART takes {MIN_DIVISOR}..{MAX_DIVISOR}")
    error = abs(clock_hz / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"{baud} baud at {clock_hz / 1e6:g} MHz: {divisor} clocks per bit give "
                         f"{clock_hz / divisor:.0f} baud, {100 * error:.2f} % off (at most "
                         f"{100 * tolerance:g} % allowed); choose a clock that is closer to a "
                         f"multiple of the baud rate")
    return divisor


class UART(wiring.Component):
    """8N1 serial receiver and transmitter (LSB first, one stop bit, no parity).

    The receiver passes ``rx_pin`` through a two-flip-flop synchroniser, takes a low
    level after an idle line as a start bit, checks it again half a bit later (a shorter
    pulse is a glitch and ignored) and samples the eight data bits and the stop bit one
    bit period apart from there, in the middle of each bit. After the stop bit's sample
    it waits for the next falling edge, so a transmitter that runs a few percent fast or
    slow, and bytes sent back to back, are received. A stop bit read low is a framing
    error: the byte is dropped, ``rx_framing`` pulses, and the receiver waits for the
    line to go high (a break is not taken for a run of bytes).

    The transmitter sends a byte from ``tx`` whenever it is idle: a start bit, eight data
    bits and a stop bit, each ``divisor`` cycles long; a byte waiting is taken in the stop
    bit's last cycle, so bytes sent back to back take exactly ``10 * divisor`` cycles each.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, :data:`MIN_DIVISOR` .. :data:`MAX_DIVISOR` (see
        :func:`divisor_for`).

    Members
    -------
    rx_pin : ``In(1)``
        The serial input (idle high); asynchronous to the clock.
    tx_pin : ``Out(1)``
        The serial output, from a flip-flop (idle high).
    rx : ``Out(stream.Signature(8))``
        Received bytes. A byte is held until taken; one that completes while the previous
        one is still held is dropped and ``rx_overrun`` pulses.
    tx : ``In(stream.Signature(8))``
        Bytes to send.
    rx_framing, rx_overrun : ``Out(1)``
        One-cycle pulses: a stop bit read low, a byte dropped because ``rx`` was not taken.
    rx_active : ``Out(1)``
        The receiver is inside a byte (from its start bit to its stop bit's sample).

    Raises
    ------
    TypeError, ValueError
        If ``divisor`` is not an integer in :data:`MIN_DIVISOR` .. :data:`MAX_DIVISOR`.
    """

    def __init__(self, *, divisor):
        check_int("divisor", divisor, MIN_DIVISOR, MAX_DIVISOR)
        self._divisor = divisor
        super().__init__({
            "rx_pin": In(1, init=1),
            "tx_pin": Out(1, init=1),
            "rx": Out(stream.Signature(8)),
            "tx": In(stream.Signature(8)),
            "rx_framing": Out(1),
            "rx_overrun": Out(1),
            "rx_active": Out(1),
        })

    divisor = property(lambda self: self._divisor)

    def elaborate(self, platform):
        m = Module()
        d = self._divisor

        # -- receiver ------------------------------------------------------------------------
        sync = Signal(2, init=0b11)
        m.d.sync += sync.eq(Cat(self.rx_pin, sync[0]))
        line = sync[1]
        rx_count = Signal(range(d))
        rx_bits = Signal(range(8))
        rx_shift = Signal(8)

        with m.If(self.rx.ready):
            m.d.sync += self.rx.valid.eq(0)

        with m.FSM(name="rx_fsm"):
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += rx_count.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.rx_active.eq(1)
                with m.If(rx_count != 0):
                    m.d.sync += rx_count.eq(rx_count - 1)
                with m.Elif(line):
                    m.next = "IDLE"                     # shorter than half a bit: a glitch
                with m.Else():
                    m.d.sync += [rx_count.eq(d - 1), rx_bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.rx_active.eq(1)
                with m.If(rx_count != 0):
                    m.d.sync += rx_count.eq(rx_count - 1)
                with m.Else():
                    m.d.sync += [rx_shift.eq(Cat(rx_shift[1:], line)), rx_count.eq(d - 1),
                                 rx_bits.eq(rx_bits + 1)]
                    with m.If(rx_bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.rx_active.eq(1)
                with m.If(rx_count != 0):
                    m.d.sync += rx_count.eq(rx_count - 1)
                with m.Elif(line):
                    with m.If(self.rx.valid & ~self.rx.ready):
                        m.d.comb += self.rx_overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.rx.valid.eq(1), self.rx.payload.eq(rx_shift)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.rx_framing.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"

        # -- transmitter ---------------------------------------------------------------------
        tx_busy = Signal()
        tx_count = Signal(range(d))
        tx_bits = Signal(range(11))
        tx_shift = Signal(10)
        # A waiting byte is taken in the stop bit's last cycle: bytes follow back to back.
        m.d.comb += self.tx.ready.eq(~tx_busy | ((tx_bits == 1) & (tx_count == 0)))
        with m.If(tx_busy):
            with m.If(tx_count != 0):
                m.d.sync += tx_count.eq(tx_count - 1)
            with m.Else():
                m.d.sync += tx_count.eq(d - 1)
                with m.If(tx_bits == 1):
                    m.d.sync += [tx_busy.eq(0), self.tx_pin.eq(1)]
                with m.Else():
                    m.d.sync += [tx_shift.eq(tx_shift[1:]), self.tx_pin.eq(tx_shift[1]),
                                 tx_bits.eq(tx_bits - 1)]
        with m.If(self.tx.valid & self.tx.ready):
            m.d.sync += [tx_shift.eq(Cat(Const(0, 1), self.tx.payload, Const(1, 1))),
                         self.tx_pin.eq(0), tx_busy.eq(1), tx_bits.eq(10), tx_count.eq(d - 1)]
        return m
