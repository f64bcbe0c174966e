"""The serial bridge: the accelerator's AXI4-Lite and AXI4-Stream ports behind a UART.

The host talks to the bridge in frames (``docs/ulx3s.md``, "Link protocol")::

    FLAG  type  seq  len  payload (4 * len bytes)  CRC-16 (2 bytes, high byte first)

``FLAG`` (0x7E) starts every frame; in everything after it 0x7E and 0x7D are sent as
0x7D followed by the byte XOR 0x20, so a ``FLAG`` always starts a frame and a receiver
finds the next frame after any damage. The CRC is CRC-16/CCITT-FALSE (polynomial
0x1021, initial value 0xFFFF) over ``type``, ``seq``, ``len`` and the payload, before
escaping; ``len`` counts 32-bit payload words, sent low byte first.

Host to bridge: ``SYNC`` (a new session: an accelerator packet left open by an earlier
host is terminated), ``RESET`` (drop the stream data in flight, both directions),
``REG_READ``/``REG_WRITE`` (one AXI4-Lite access; a repeated ``seq`` gets the answer of
the access already made instead of a second access), ``PING`` (asks for a ``STATUS``)
and ``DATA``/``DATA_LAST`` (up to ``max_chunk`` words of a command packet,
``DATA_LAST`` ending it with ``tlast``).
Bridge to host: ``STATUS`` (acknowledgements, refusals, credit and counters),
``REG_RESP`` and ``OUT``/``OUT_LAST`` (response words of the accelerator).

Data chunks are numbered (``seq`` mod 256) and taken strictly in order: a chunk is
written into the bridge's FIFO as it arrives and kept only once its CRC checks (go-back-N
on the host side; a damaged, out-of-order or duplicated chunk never reaches the FIFO).
The host keeps no more words in flight than the FIFO has room for, from the FIFO's read
and write pointers that every ``STATUS`` frame carries (credit-based flow control), so
no byte is lost when the host writes faster than the accelerator reads.

Words leave the FIFO for the accelerator's ``s_axis`` in order, but a packet's words are
only passed on while at least one more verified word of it waits behind them (or the
word carries ``tlast``). So the accelerator never sees a packet that ends where the host
did not end it, except when the bridge ends it on purpose: when the host falls silent in
the middle of a packet for ``abort_timeout`` cycles, or a new session starts (``SYNC``),
the word held back is passed on with ``tlast``. The packet is then shorter than its
header says and the accelerator refuses it with ``LENGTH``.
"""

import enum

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorlearn.contract import Build, RegisterMap
from xnorlearn.hw._params import check_int
from xnorlearn.hw.accelerator import ADDR_WIDTH, AxiStreamSignature
from xnorlearn.hw.axil import AxiLiteSignature
from xnorlearn.hw.uart import MAX_DIVISOR, MIN_DIVISOR, UART
from xnorlearn.serial_link import (ESC, ESC_XOR, FLAG, LINK_VERSION, STATUS_WORDS, FrameType,
                                   Reason)

__all__ = ["SerialBridge", "SerialAccelerator", "crc16_step"]

#: Which pending reason a new one replaces (higher wins; replies to SYNC/RESET always).
_PRIORITY = {Reason.CREDIT: 0, Reason.ACK: 1, Reason.ABORTED: 2, Reason.NACK_CRC: 3,
             Reason.NACK_FRAMING: 3, Reason.NACK_TIMEOUT: 3, Reason.NACK_OVERFLOW: 3,
             Reason.PONG: 2, Reason.INFO: 4, Reason.RESET: 4}

#: Payload words of each host frame type (DATA: 1..max_chunk).
_HOST_LEN = {FrameType.SYNC: 0, FrameType.RESET: 0, FrameType.REG_READ: 1,
             FrameType.REG_WRITE: 2, FrameType.PING: 0}


def _crc16_matrix():
    """For each bit of CRC-16/CCITT after one byte: the CRC bits and data bits XORed in."""
    state = [frozenset({("c", i)}) for i in range(16)]
    data = [frozenset({("d", i)}) for i in range(8)]
    for i in range(8):                          # data MSB first
        feedback = state[15] ^ data[7 - i]
        shifted = [frozenset()] + state[:15]
        state = [s ^ feedback if (0x1021 >> n) & 1 else s for n, s in enumerate(shifted)]
    return state


_CRC16 = _crc16_matrix()


def crc16_step(crc, byte):
    """The CRC-16/CCITT-FALSE register after ``byte`` (8-bit value) given ``crc`` (16-bit
    value): a network of XORs."""
    bits = []
    for terms in _CRC16:
        value = Const(0, 1)
        for kind, i in sorted(terms):
            value = value ^ (crc[i] if kind == "c" else byte[i])
        bits.append(value)
    return Cat(*bits)


class _Rx(enum.IntEnum):
    HUNT = 0
    TYPE = 1
    SEQ = 2
    LEN = 3
    PAYLOAD = 4
    CRC1 = 5
    CRC2 = 6


class _Fwd(enum.IntEnum):
    NORMAL = 0
    ABORT = 1
    FLUSH = 2


class _Axi(enum.IntEnum):
    IDLE = 0
    WRITE = 1
    B = 2
    READ = 3
    R = 4
    DONE = 5


class _Tx(enum.IntEnum):
    IDLE = 0
    FLAG = 1
    TYPE = 2
    SEQ = 3
    LEN = 4
    PAYLOAD = 5
    CRC_HI = 6
    CRC_LO = 7


def _prio(reason):
    """:data:`_PRIORITY` of a reason (a value), from a few comparisons."""
    value = Const(0, 3)
    for level in sorted(set(_PRIORITY.values())):
        if level == 0:
            continue
        hit = Const(0, 1)
        for r, p in _PRIORITY.items():
            if p == level:
                hit = hit | (reason == r)
        value = Mux(hit, level, value)
    return value


class SerialBridge(wiring.Component):
    """Frames from a UART to an AXI4-Lite manager and an AXI4-Stream pair, and back.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit of the UART (:class:`~xnorlearn.hw.uart.UART`).
    fifo_depth : int
        Words of the command FIFO, a power of two in 64..16384 (default 1024: two block
        RAMs of an ECP5).
    max_chunk : int
        Most words in one ``DATA`` frame, 1..255 and at most ``fifo_depth // 2``
        (default 64).
    max_out : int
        Most words in one ``OUT`` frame, 1..255 (default 64); also the depth of the
        response buffer.
    byte_timeout : int
        Cycles without a byte after which a frame begun is dropped (``NACK_TIMEOUT``),
        16..2**28.
    abort_timeout : int
        Cycles the host may stay silent in the middle of a packet while the bridge has
        passed on every word it can; then the packet is ended so that the accelerator
        refuses it. Greater than ``byte_timeout``, at most 2**32 - 1.
    poll_interval : int
        Cycles between reads of ``STATUS`` for the LEDs, 16..2**28.
    led_stretch : int
        Cycles that a byte or a link fault keeps its LED lit, 1..2**28.

    Members
    -------
    rx : ``In(1)``, tx : ``Out(1)``
        The serial lines (idle high).
    m_axil : ``Out(AxiLiteSignature(addr_width=12))``
        To the accelerator's register file.
    m_axis : ``Out(AxiStreamSignature())``
        Command packets to the accelerator's ``s_axis``.
    s_axis : ``In(AxiStreamSignature())``
        Responses from the accelerator's ``m_axis``.
    idle, busy, error, link_error, rx_activity, tx_activity : ``Out(1)``
        For LEDs: the accelerator idle (neither busy nor in error, from the last read of
        ``STATUS``) and no packet open; busy (``STATUS.busy`` or a packet in progress);
        ``STATUS.error``; a link fault (NACK sent or packet ended by the bridge) in the
        last ``led_stretch`` cycles; a byte received / sent in the last ``led_stretch``
        cycles.

    Raises
    ------
    TypeError, ValueError
        If a parameter is not an integer in its range.
    """

    def __init__(self, *, divisor, fifo_depth=1024, max_chunk=64, max_out=64,
                 byte_timeout=1 << 16, abort_timeout=1 << 26, poll_interval=1 << 20,
                 led_stretch=1 << 22):
        check_int("divisor", divisor, MIN_DIVISOR, MAX_DIVISOR)
        check_int("fifo_depth", fifo_depth, 64, 16384)
        if fifo_depth & (fifo_depth - 1):
            raise ValueError(f"fifo_depth must be a power of two in 64..16384, got {fifo_depth}")
        check_int("max_chunk", max_chunk, 1, min(255, fifo_depth // 2))
        check_int("max_out", max_out, 1, 255)
        check_int("byte_timeout", byte_timeout, 16, 1 << 28)
        check_int("abort_timeout", abort_timeout, byte_timeout + 1, (1 << 32) - 1)
        check_int("poll_interval", poll_interval, 16, 1 << 28)
        check_int("led_stretch", led_stretch, 1, 1 << 28)
        self._p = dict(divisor=divisor, fifo_depth=fifo_depth, max_chunk=max_chunk,
                       max_out=max_out, byte_timeout=byte_timeout, abort_timeout=abort_timeout,
                       poll_interval=poll_interval, led_stretch=led_stretch)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "m_axil": Out(AxiLiteSignature(addr_width=ADDR_WIDTH)),
            "m_axis": Out(AxiStreamSignature(data_width=32)),
            "s_axis": In(AxiStreamSignature(data_width=32)),
            "idle": Out(1),
            "busy": Out(1),
            "error": Out(1),
            "link_error": Out(1),
            "rx_activity": Out(1),
            "tx_activity": Out(1),
        })

    params = property(lambda self: dict(self._p))

    def elaborate(self, platform):
        m = Module()
        p = self._p
        depth = p["fifo_depth"]
        abits = depth.bit_length() - 1
        status_offset = RegisterMap(Build()).offsets()["STATUS"]

        m.submodules.uart = uart = UART(divisor=p["divisor"])
        m.d.comb += [uart.rx_pin.eq(self.rx), self.tx.eq(uart.tx_pin), uart.rx.ready.eq(1)]

        # Command FIFO: 32-bit word and its tlast. Pointers count words mod 2**16.
        m.submodules.fifo = fifo = Memory(shape=33, depth=depth, init=[])
        wr = fifo.write_port()
        rd = fifo.read_port()
        rp = Signal(16)                 # next word to pass on
        wp = Signal(16)                 # end of the verified words
        wp_tent = Signal(16)            # end of the chunk being received
        # The room in the FIFO, a cycle late (it only grows in between: the next chunk's
        # length byte comes many cycles after the last commit).
        free = Signal(range(depth + 1))
        m.d.sync += free.eq(depth - (wp - rp)[:16])

        # Link state reported in STATUS.
        rx_seq = Signal(8)              # next chunk expected
        reg_seq = Signal(8)             # seq of the last register access made
        echo_seq = Signal(8)            # seq of the last host frame received whole
        crc_errors, framing_errors, timeouts, overflows, aborts = (
            Signal(8, name=n) for n in ("crc_errors", "framing_errors", "timeouts",
                                        "overflows", "aborts"))
        acc_busy, acc_error = Signal(), Signal()

        # One STATUS event per cycle (frame ends first, then aborts, then credit).
        ev_valid, ev_reason = Signal(), Signal(8)
        ev_frame, ev_frame_reason = Signal(), Signal(8)
        ev_abort = Signal()
        ev_credit = Signal()
        with m.If(ev_frame):
            m.d.comb += [ev_valid.eq(1), ev_reason.eq(ev_frame_reason)]
        with m.Elif(ev_abort):
            m.d.comb += [ev_valid.eq(1), ev_reason.eq(Reason.ABORTED)]
        with m.Elif(ev_credit):
            m.d.comb += [ev_valid.eq(1), ev_reason.eq(Reason.CREDIT)]
        st_pending, st_reason = Signal(), Signal(8)
        st_taking = Signal()            # the framer takes the pending STATUS this cycle

        # -- receiver: unescape, parse, check ----------------------------------------------
        raw = uart.rx.payload
        raw_valid = uart.rx.valid
        esc = Signal()
        byte = Signal(8)
        byte_valid = Signal()
        is_flag = raw_valid & (raw == FLAG)
        m.d.comb += [byte.eq(Mux(esc, raw ^ ESC_XOR, raw)),
                     byte_valid.eq(raw_valid & (raw != FLAG) & (raw != ESC))]
        with m.If(raw_valid):
            m.d.sync += esc.eq(raw == ESC)

        f_type, f_seq, f_len = Signal(8), Signal(8), Signal(8)
        words_left = Signal(8)
        byte_idx = Signal(2)
        word_idx = Signal(1)
        word = Signal(24)
        crc = Signal(16)
        crc_next = Signal(16)
        m.d.comb += crc_next.eq(crc16_step(crc, byte))
        store = Signal()                # this chunk goes into the FIFO
        overflow = Signal()
        cap_addr, cap_data = Signal(32), Signal(32)
        in_frame = Signal()
        rx_idle = Signal(range(p["byte_timeout"] + 1))
        with m.If(raw_valid):
            m.d.sync += rx_idle.eq(0)
        with m.Elif(in_frame & (rx_idle != p["byte_timeout"])):
            m.d.sync += rx_idle.eq(rx_idle + 1)
        frame_error, frame_error_reason = Signal(), Signal(8)
        frame_done = Signal()           # the cycle after the last CRC byte (crc_ok tells)
        m.d.sync += frame_done.eq(0)

        is_data = (f_type == FrameType.DATA) | (f_type == FrameType.DATA_LAST)
        full_word = Cat(word, byte)

        rx_state = Signal(_Rx)
        m.d.comb += in_frame.eq(rx_state != _Rx.HUNT)
        with m.If(byte_valid):
            with m.Switch(rx_state):
                with m.Case(_Rx.TYPE):
                    m.d.sync += [f_type.eq(byte), crc.eq(crc_next), rx_state.eq(_Rx.SEQ)]
                with m.Case(_Rx.SEQ):
                    m.d.sync += [f_seq.eq(byte), crc.eq(crc_next), rx_state.eq(_Rx.LEN)]
                with m.Case(_Rx.LEN):
                    m.d.sync += [f_len.eq(byte), words_left.eq(byte), byte_idx.eq(0),
                                 word_idx.eq(0), crc.eq(crc_next), store.eq(0), overflow.eq(0),
                                 rx_state.eq(Mux(byte == 0, _Rx.CRC1, _Rx.PAYLOAD))]
                    len_ok = Const(0, 1)
                    for t, n in _HOST_LEN.items():
                        len_ok = len_ok | ((f_type == t) & (byte == n))
                    len_ok = len_ok | (is_data & (byte != 0) & (byte <= p["max_chunk"]))
                    with m.If(~len_ok):
                        m.d.comb += [frame_error.eq(1),
                                     frame_error_reason.eq(Reason.NACK_FRAMING)]
                        m.d.sync += rx_state.eq(_Rx.HUNT)
                    with m.Elif(is_data & (f_seq == rx_seq)):
                        m.d.sync += [store.eq(byte <= free), overflow.eq(byte > free)]
                with m.Case(_Rx.PAYLOAD):
                    m.d.sync += [crc.eq(crc_next), byte_idx.eq(byte_idx + 1),
                                 word.eq(Cat(word[8:], byte))]
                    with m.If(byte_idx == 3):
                        m.d.sync += [words_left.eq(words_left - 1), word_idx.eq(1)]
                        with m.If(is_data & store):
                            last = (f_type == FrameType.DATA_LAST) & (words_left == 1)
                            m.d.comb += [wr.addr.eq(wp_tent[:abits]), wr.en.eq(1),
                                         wr.data.eq(Cat(full_word, last))]
                            m.d.sync += wp_tent.eq(wp_tent + 1)
                        with m.If(~is_data & (word_idx == 0)):
                            m.d.sync += cap_addr.eq(full_word)
                        with m.If(~is_data & (word_idx == 1)):
                            m.d.sync += cap_data.eq(full_word)
                        with m.If(words_left == 1):
                            m.d.sync += rx_state.eq(_Rx.CRC1)
                with m.Case(_Rx.CRC1):
                    m.d.sync += [crc.eq(crc_next), rx_state.eq(_Rx.CRC2)]
                with m.Case(_Rx.CRC2):
                    m.d.sync += [crc.eq(crc_next), frame_done.eq(1), rx_state.eq(_Rx.HUNT)]
        # A FLAG starts a frame from any state; one inside a frame cuts it short.
        with m.If(is_flag):
            with m.If(in_frame):
                m.d.comb += [frame_error.eq(1), frame_error_reason.eq(Reason.NACK_FRAMING)]
            m.d.sync += [crc.eq(0xFFFF), rx_state.eq(_Rx.TYPE)]
        with m.Elif(in_frame & (rx_idle == p["byte_timeout"])):
            m.d.comb += [frame_error.eq(1), frame_error_reason.eq(Reason.NACK_TIMEOUT)]
            m.d.sync += rx_state.eq(_Rx.HUNT)

        crc_ok = crc == 0

        # Register accesses: requests to the AXI4-Lite manager, and its answer.
        reg_req = Signal()              # an access waits to be made
        reg_write = Signal()
        reg_addr, reg_data = Signal(32), Signal(32)
        host_busy = Signal()            # a host access is waiting, under way or unanswered
        resp_pending = Signal()         # a REG_RESP waits to be sent
        resp_valid = Signal()           # reg_seq's answer is known (for a repeated request)
        resp_data, resp_code = Signal(32), Signal(8)
        resp_taking = Signal()

        # Forwarder commands.
        cmd_abort, cmd_flush, cmd_out_flush = Signal(), Signal(), Signal()

        with m.If(frame_error):
            m.d.sync += wp_tent.eq(wp)
            m.d.comb += [ev_frame.eq(1), ev_frame_reason.eq(frame_error_reason)]
            with m.If(frame_error_reason == Reason.NACK_TIMEOUT):
                m.d.sync += timeouts.eq(timeouts + 1)
            with m.Else():
                m.d.sync += framing_errors.eq(framing_errors + 1)
        with m.If(frame_done):
            m.d.sync += echo_seq.eq(f_seq)
            with m.If(~crc_ok):
                m.d.sync += [wp_tent.eq(wp), crc_errors.eq(crc_errors + 1)]
                m.d.comb += [ev_frame.eq(1), ev_frame_reason.eq(Reason.NACK_CRC)]
            with m.Elif(is_data):
                with m.If(store):
                    m.d.sync += [wp.eq(wp_tent), rx_seq.eq(rx_seq + 1)]
                    m.d.comb += [ev_frame.eq(1), ev_frame_reason.eq(Reason.ACK)]
                with m.Elif(overflow):
                    m.d.sync += overflows.eq(overflows + 1)
                    m.d.comb += [ev_frame.eq(1), ev_frame_reason.eq(Reason.NACK_OVERFLOW)]
                with m.Else():          # out of order or a duplicate: dropped, re-acked
                    m.d.comb += [ev_frame.eq(1), ev_frame_reason.eq(Reason.ACK)]
            with m.Elif((f_type == FrameType.REG_READ) | (f_type == FrameType.REG_WRITE)):
                with m.If((f_seq == reg_seq) & resp_valid):
                    m.d.sync += resp_pending.eq(1)          # answer again, access once
                with m.Elif(~host_busy):
                    m.d.sync += [reg_req.eq(1), reg_write.eq(f_type == FrameType.REG_WRITE),
                                 reg_addr.eq(cap_addr), reg_data.eq(cap_data),
                                 reg_seq.eq(f_seq), resp_valid.eq(0)]
                # else: an access is still under way; the host asks again after its timeout
            with m.Elif(f_type == FrameType.SYNC):
                m.d.comb += [cmd_abort.eq(1), cmd_out_flush.eq(1), ev_frame.eq(1),
                             ev_frame_reason.eq(Reason.INFO)]
            with m.Elif(f_type == FrameType.RESET):
                m.d.comb += [cmd_flush.eq(1), cmd_out_flush.eq(1), ev_frame.eq(1),
                             ev_frame_reason.eq(Reason.RESET)]
            with m.Elif(f_type == FrameType.PING):
                m.d.comb += [ev_frame.eq(1), ev_frame_reason.eq(Reason.PONG)]

        # -- forwarder: FIFO to the accelerator's s_axis ------------------------------------
        rd_pending = Signal()
        h_valid, h_data, h_last = Signal(), Signal(32), Signal()    # the word held
        open_ = Signal()                # a packet has begun on s_axis and not ended
        flush_ptr = Signal(16)
        pop_ok = Signal()
        tlast_force = Signal()
        hold_ok = Signal()
        m.d.comb += hold_ok.eq(h_last | (rp != wp))

        pop = ~h_valid & ~rd_pending & pop_ok
        m.d.comb += [rd.addr.eq(rp[:abits]), rd.en.eq(pop)]
        with m.If(pop):
            m.d.sync += [rp.eq(rp + 1), rd_pending.eq(1)]
        with m.If(rd_pending):
            m.d.sync += [h_valid.eq(1), h_data.eq(rd.data[:32]), h_last.eq(rd.data[32]),
                         rd_pending.eq(0)]
        m.d.comb += [self.m_axis.tdata.eq(h_data),
                     self.m_axis.tlast.eq(h_last | tlast_force)]
        handshake = self.m_axis.tvalid & self.m_axis.tready
        with m.If(handshake):
            m.d.sync += [h_valid.eq(0), open_.eq(~self.m_axis.tlast)]

        starved = Signal()
        silent = Signal(range(p["abort_timeout"] + 1))
        fwd = Signal(_Fwd)
        with m.Switch(fwd):
            with m.Case(_Fwd.NORMAL):
                m.d.comb += [pop_ok.eq(rp != wp),
                             self.m_axis.tvalid.eq(h_valid & hold_ok),
                             starved.eq(open_ & (rp == wp) & ~rd_pending & ~(h_valid & h_last))]
                with m.If(silent == p["abort_timeout"]):
                    m.d.sync += [flush_ptr.eq(wp), fwd.eq(_Fwd.ABORT)]
            with m.Case(_Fwd.ABORT):
                # The packet in progress ends with the word held back; the rest is dropped.
                m.d.comb += [pop_ok.eq(open_ & (rp != flush_ptr)),
                             self.m_axis.tvalid.eq(h_valid & open_), tlast_force.eq(1)]
                with m.If(~open_ | handshake):
                    with m.If(open_):
                        m.d.comb += ev_abort.eq(1)
                        m.d.sync += aborts.eq(aborts + 1)
                    m.d.sync += fwd.eq(_Fwd.FLUSH)
                with m.Elif(~h_valid & ~rd_pending & (rp == flush_ptr)):
                    # No word to end the packet with (not reached: an open packet always
                    # leaves one behind); the host's soft reset ends it.
                    m.d.sync += [open_.eq(0), fwd.eq(_Fwd.FLUSH)]
            with m.Case(_Fwd.FLUSH):
                with m.If(~rd_pending):
                    m.d.sync += [rp.eq(flush_ptr), h_valid.eq(0), fwd.eq(_Fwd.NORMAL)]
        sync_open = Signal()            # the last SYNC found a packet open (and ended it)
        with m.If(cmd_flush):
            m.d.sync += [flush_ptr.eq(wp), open_.eq(0), fwd.eq(_Fwd.FLUSH)]
        with m.Elif(cmd_abort):
            m.d.sync += [flush_ptr.eq(wp), fwd.eq(_Fwd.ABORT), sync_open.eq(open_)]
        with m.If(~starved | raw_valid | handshake):
            m.d.sync += silent.eq(0)
        with m.Elif(silent != p["abort_timeout"]):
            m.d.sync += silent.eq(silent + 1)

        # Credit: report the read pointer after a quarter of the FIFO, or when it is empty.
        reported_rp = Signal(16)
        m.d.sync += ev_credit.eq((((rp - reported_rp)[:16] >= depth // 4)
                                  | ((rp != reported_rp) & (rp == wp))) & ~st_taking)

        with m.If(ev_valid & (~st_pending | st_taking | (_prio(ev_reason) > _prio(st_reason)))):
            m.d.sync += st_reason.eq(ev_reason)
        with m.If(st_taking):
            # The frame taken now carries the read pointer of this cycle: a credit event
            # of this cycle needs no frame of its own.
            m.d.sync += [st_pending.eq(ev_frame | ev_abort), reported_rp.eq(rp)]
        with m.Elif(ev_valid):
            m.d.sync += st_pending.eq(1)

        # -- AXI4-Lite manager ---------------------------------------------------------------
        bus = self.m_axil
        poll_count = Signal(range(p["poll_interval"] + 1))
        polling = Signal()
        aw_done, w_done = Signal(), Signal()
        with m.If(poll_count != p["poll_interval"]):
            m.d.sync += poll_count.eq(poll_count + 1)
        m.d.comb += [bus.wstrb.eq(0b1111), bus.awprot.eq(0), bus.arprot.eq(0),
                     bus.wdata.eq(reg_data), bus.awaddr.eq(reg_addr),
                     bus.araddr.eq(Mux(polling, status_offset, reg_addr))]
        axi = Signal(_Axi)
        with m.Switch(axi):
            with m.Case(_Axi.IDLE):
                with m.If(reg_req):
                    m.d.sync += [reg_req.eq(0), polling.eq(0), aw_done.eq(0), w_done.eq(0)]
                    with m.If(reg_addr[ADDR_WIDTH:].any()):
                        m.d.sync += [resp_data.eq(0), resp_code.eq(3),         # DECERR
                                     axi.eq(_Axi.DONE)]
                    with m.Else():
                        m.d.sync += axi.eq(Mux(reg_write, _Axi.WRITE, _Axi.READ))
                with m.Elif((poll_count == p["poll_interval"]) & ~resp_pending):
                    m.d.sync += [polling.eq(1), poll_count.eq(0), axi.eq(_Axi.READ)]
            with m.Case(_Axi.WRITE):
                m.d.comb += [bus.awvalid.eq(~aw_done), bus.wvalid.eq(~w_done)]
                with m.If(bus.awready):
                    m.d.sync += aw_done.eq(1)
                with m.If(bus.wready):
                    m.d.sync += w_done.eq(1)
                with m.If((aw_done | bus.awready) & (w_done | bus.wready)):
                    m.d.sync += axi.eq(_Axi.B)
            with m.Case(_Axi.B):
                m.d.comb += bus.bready.eq(1)
                with m.If(bus.bvalid):
                    m.d.sync += [resp_data.eq(0), resp_code.eq(bus.bresp), axi.eq(_Axi.DONE)]
            with m.Case(_Axi.READ):
                m.d.comb += bus.arvalid.eq(1)
                with m.If(bus.arready):
                    m.d.sync += axi.eq(_Axi.R)
            with m.Case(_Axi.R):
                m.d.comb += bus.rready.eq(1)
                with m.If(bus.rvalid):
                    with m.If(polling):
                        m.d.sync += [acc_busy.eq(bus.rdata[0]), acc_error.eq(bus.rdata[1]),
                                     axi.eq(_Axi.IDLE)]
                    with m.Else():
                        m.d.sync += [resp_data.eq(bus.rdata), resp_code.eq(bus.rresp),
                                     axi.eq(_Axi.DONE)]
            with m.Case(_Axi.DONE):
                m.d.sync += [resp_pending.eq(1), resp_valid.eq(1), axi.eq(_Axi.IDLE)]
        m.d.comb += host_busy.eq(reg_req | ((axi != _Axi.IDLE) & ~polling) | resp_pending)
        with m.If(resp_taking):
            m.d.sync += resp_pending.eq(0)

        # -- response buffer: the accelerator's m_axis -----------------------------------------
        out_flush = Signal()
        m.submodules.out = out = ResetInserter(out_flush)(
            SyncFIFOBuffered(width=33, depth=max(p["max_out"], 2)))
        out_has_last = Signal()         # the buffer's last word ends a packet: take no more
        out_flush_req = Signal()
        with m.If(cmd_out_flush):
            m.d.sync += out_flush_req.eq(1)
        m.d.comb += [out.w_data.eq(Cat(self.s_axis.tdata, self.s_axis.tlast)),
                     out.w_en.eq(self.s_axis.tvalid & ~out_has_last & ~out_flush_req),
                     self.s_axis.tready.eq(out.w_rdy & ~out_has_last & ~out_flush_req)]
        with m.If(out.w_en & out.w_rdy & self.s_axis.tlast):
            m.d.sync += out_has_last.eq(1)

        # -- transmitter: frames to the UART -------------------------------------------------
        t_type, t_seq, t_len = Signal(8), Signal(8), Signal(8)
        out_seq = Signal(8)             # seq of the next OUT frame
        t_out = Signal()                # payload from the response buffer
        t_words = Array(Signal(32, name=f"t_word{i}") for i in range(STATUS_WORDS))
        t_word_idx = Signal(8)
        t_byte_idx = Signal(2)
        t_crc = Signal(16)
        t_esc = Signal()
        t_cur = Signal(32)              # the payload word being sent
        lbyte = Signal(8)
        m.d.comb += lbyte.eq(t_cur.word_select(t_byte_idx, 8))

        def load_word(index):
            # A payload word is taken into t_cur before its first byte, so no block RAM
            # output reaches the escaping and handshake logic.
            m.d.sync += t_cur.eq(Mux(t_out, out.r_data[:32], t_words[index[:3]]))
            m.d.comb += out.r_en.eq(t_out)
            with m.If(t_out & out.r_data[32]):
                m.d.sync += out_has_last.eq(0)
        flags = Cat(open_, fwd != _Fwd.NORMAL, acc_busy, acc_error, sync_open, Const(0, 3))
        status_words = [
            Cat(st_reason, rx_seq, reg_seq, flags),
            Cat(rp, wp),
            Cat(Const(abits, 8), Const(p["max_chunk"], 8), Const(LINK_VERSION, 8), aborts),
            Cat(crc_errors, framing_errors, timeouts, overflows),
            Cat(out_seq, Const(0, 24)),
        ]
        out_len = Mux(out.r_level > p["max_out"], p["max_out"], out.r_level)

        tx_state = Signal(_Tx)
        with m.If(tx_state == _Tx.IDLE):
            m.d.sync += [t_crc.eq(0xFFFF), t_word_idx.eq(0), t_byte_idx.eq(0), t_esc.eq(0)]
            with m.If(out_flush_req):
                m.d.comb += out_flush.eq(1)
                m.d.sync += [out_flush_req.eq(0), out_has_last.eq(0)]
            with m.Elif(resp_pending):
                m.d.comb += resp_taking.eq(1)
                m.d.sync += [t_type.eq(FrameType.REG_RESP), t_seq.eq(reg_seq), t_len.eq(2),
                             t_out.eq(0), t_words[0].eq(resp_data), t_words[1].eq(resp_code),
                             tx_state.eq(_Tx.FLAG)]
            with m.Elif(st_pending):
                m.d.comb += st_taking.eq(1)
                m.d.sync += [t_type.eq(FrameType.STATUS), t_seq.eq(echo_seq),
                             t_len.eq(STATUS_WORDS), t_out.eq(0), tx_state.eq(_Tx.FLAG)]
                m.d.sync += [t_words[i].eq(w) for i, w in enumerate(status_words)]
            with m.Elif(out.r_level != 0):
                m.d.sync += [t_type.eq(Mux(out_has_last & (out.r_level <= p["max_out"]),
                                           FrameType.OUT_LAST, FrameType.OUT)),
                             t_seq.eq(out_seq), out_seq.eq(out_seq + 1), t_len.eq(out_len),
                             t_out.eq(1), tx_state.eq(_Tx.FLAG)]
        with m.Elif(tx_state == _Tx.FLAG):
            m.d.comb += [uart.tx.valid.eq(1), uart.tx.payload.eq(FLAG)]
            with m.If(uart.tx.ready):
                m.d.sync += tx_state.eq(_Tx.TYPE)
        with m.Else():
            value = Signal(8)
            with m.Switch(tx_state):
                for state, v in ((_Tx.TYPE, t_type), (_Tx.SEQ, t_seq), (_Tx.LEN, t_len),
                                 (_Tx.PAYLOAD, lbyte), (_Tx.CRC_HI, t_crc[8:]),
                                 (_Tx.CRC_LO, t_crc[:8])):
                    with m.Case(state):
                        m.d.comb += value.eq(v)
            need_esc = (value == FLAG) | (value == ESC)
            m.d.comb += [uart.tx.valid.eq(1),
                         uart.tx.payload.eq(Mux(t_esc, value ^ ESC_XOR,
                                                Mux(need_esc, ESC, value)))]
            with m.If(uart.tx.ready & need_esc & ~t_esc):
                m.d.sync += t_esc.eq(1)
            with m.Elif(uart.tx.ready):
                m.d.sync += t_esc.eq(0)
                with m.If(tx_state <= _Tx.PAYLOAD):
                    m.d.sync += t_crc.eq(crc16_step(t_crc, value))
                with m.Switch(tx_state):
                    with m.Case(_Tx.TYPE):
                        m.d.sync += tx_state.eq(_Tx.SEQ)
                    with m.Case(_Tx.SEQ):
                        m.d.sync += tx_state.eq(_Tx.LEN)
                    with m.Case(_Tx.LEN):
                        with m.If(t_len == 0):
                            m.d.sync += tx_state.eq(_Tx.CRC_HI)
                        with m.Else():
                            m.d.sync += tx_state.eq(_Tx.PAYLOAD)
                            load_word(t_word_idx)
                    with m.Case(_Tx.PAYLOAD):
                        m.d.sync += t_byte_idx.eq(t_byte_idx + 1)
                        with m.If(t_byte_idx == 3):
                            m.d.sync += t_word_idx.eq(t_word_idx + 1)
                            with m.If(t_word_idx + 1 == t_len):
                                m.d.sync += tx_state.eq(_Tx.CRC_HI)
                            with m.Else():
                                load_word(t_word_idx + 1)
                    with m.Case(_Tx.CRC_HI):
                        m.d.sync += tx_state.eq(_Tx.CRC_LO)
                    with m.Case(_Tx.CRC_LO):
                        m.d.sync += tx_state.eq(_Tx.IDLE)

        # -- LEDs ----------------------------------------------------------------------------
        stretch = p["led_stretch"]
        for output, event in ((self.rx_activity, raw_valid),
                              (self.tx_activity, uart.tx.valid & uart.tx.ready),
                              (self.link_error, (ev_frame & (ev_frame_reason >= 0x10)) | ev_abort)):
            count = Signal(range(stretch + 1), name=f"{output.name}_count")
            with m.If(event):
                m.d.sync += count.eq(stretch)
            with m.Elif(count != 0):
                m.d.sync += count.eq(count - 1)
            m.d.comb += output.eq(count != 0)
        m.d.comb += [self.busy.eq(acc_busy | open_), self.error.eq(acc_error),
                     self.idle.eq(~acc_busy & ~acc_error & ~open_)]
        return m


class SerialAccelerator(wiring.Component):
    """The accelerator behind a serial bridge: a board's design without its clock and pins.

    :class:`~xnorlearn.hw.accelerator.Accelerator` with its AXI4-Lite port and both
    streams connected to a :class:`SerialBridge`; the two serial lines and the LED
    outputs are its only ports.

    Parameters
    ----------
    build : Build
        The accelerator's build (:class:`xnorlearn.contract.Build`).
    divisor : int
        Clock cycles per bit of the UART.
    **bridge
        The other parameters of :class:`SerialBridge`.

    Members
    -------
    rx : ``In(1)``, tx : ``Out(1)``
        The serial lines.
    idle, busy, error, link_error, rx_activity, tx_activity : ``Out(1)``
        The bridge's LED outputs.

    Raises
    ------
    TypeError, ValueError
        As :class:`~xnorlearn.hw.accelerator.Accelerator` and :class:`SerialBridge`.
    """

    LEDS = ("idle", "busy", "error", "link_error", "rx_activity", "tx_activity")

    def __init__(self, *, build, divisor, **bridge):
        from xnorlearn.hw.accelerator import Accelerator
        self._accelerator = Accelerator(build=build)
        self._bridge = SerialBridge(divisor=divisor, **bridge)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          **{name: Out(1) for name in self.LEDS}})

    build = property(lambda self: self._accelerator.build)
    bridge_params = property(lambda self: self._bridge.params)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self._bridge
        m.submodules.accel = accel = self._accelerator
        wiring.connect(m, bridge.m_axil, accel.s_axil)
        wiring.connect(m, bridge.m_axis, accel.s_axis)
        wiring.connect(m, accel.m_axis, bridge.s_axis)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx)]
        m.d.comb += [getattr(self, name).eq(getattr(bridge, name)) for name in self.LEDS]
        return m
