"""The serial transport: an accelerator behind the serial bridge of an open-toolchain board.

A board such as the ULX3S-85F carries the accelerator's register accesses and stream
packets over its USB-UART in frames (``docs/ulx3s.md``, "Link protocol"; the gateware
side is :class:`xnorlearn.hw.serial_bridge.SerialBridge`)::

    FLAG  type  seq  len  payload (4 * len bytes, words low byte first)  CRC-16 (high first)

``FLAG`` is 0x7E; after it 0x7E and 0x7D are sent as 0x7D followed by the byte XOR 0x20.
The CRC is CRC-16/CCITT-FALSE over ``type``, ``seq``, ``len`` and the payload.

:class:`SerialTransport` speaks it over any pyserial-like port (an object with
``read(n)``, ``write(data)`` and a settable ``timeout``; ``in_waiting`` and
``reset_input_buffer()`` are used when present), so tests can give it a
pseudo-terminal, a socket or a port that damages bytes. What it does:

* **Session.** Opening sends ``SYNC`` and takes the bridge's sequence numbers, FIFO
  size and chunk size from the answer. A packet that an earlier host left unfinished is
  ended by the bridge then (the accelerator refuses it, ``ERROR_CODE`` ``LENGTH``), and
  :attr:`SerialTransport.abandoned_packet` says so.
* **Registers.** ``REG_READ``/``REG_WRITE`` frames, each with its own sequence number; a
  request without an answer is sent again (the bridge answers a repeat from its copy of
  the answer, so a write is made once).
* **Command packets.** Cut into chunks of at most ``max_chunk`` words, numbered mod 256,
  sent go-back-N: the bridge keeps a chunk only when it is whole, its CRC checks and it
  is the next one; it answers every chunk with a ``STATUS`` that tells the next chunk it
  expects and its FIFO's read and write pointers. The transport keeps no more words in
  flight than the FIFO has room for (credit), sends again from the first chunk not
  acknowledged after a refusal (``NACK``) or when no acknowledgement comes for
  ``retry_interval`` seconds, and gives up with :class:`TransportError` after
  ``max_retries`` rounds without progress.
* **Responses.** ``OUT`` frames, numbered mod 256, assembled into packets up to the one
  that ends with ``tlast`` (``OUT_LAST``). Responses are not sent again: a damaged or
  missing ``OUT`` frame makes :meth:`recv` raise :class:`TransportError`.

Link faults that the transport recovers from (a damaged or lost frame in either
direction, a lost acknowledgement) are counted in :attr:`SerialTransport.stats`, listed in
:attr:`SerialTransport.events` and logged as warnings on the logger
``xnorlearn.serial``.
"""

import binascii
import collections
import logging
import os
import re
import time

import numpy as np

from xnorlearn.serial_link import FLAG, LINK_VERSION, STATUS_WORDS, FrameType, Reason
from xnorlearn.sw.transport import Transport, TransportError, TransportTimeout, as_words

__all__ = ["SerialTransport", "open_ulx3s_transport", "encode_frame", "decode_frames",
           "DEFAULT_BAUD"]

#: Version of the link protocol this transport speaks (``STATUS`` reports the bridge's).
DEFAULT_BAUD = 3_000_000
_log = logging.getLogger("xnorlearn.serial")


_AXI_RESP = {0: "OKAY", 1: "EXOKAY", 2: "SLVERR", 3: "DECERR"}
_ESCAPED = re.compile(rb"\x7d(.)", re.S)


def _crc(data):
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def encode_frame(ftype, seq, payload=b""):
    """The bytes of one frame on the line: ``FLAG``, then ``type``, ``seq``, ``len`` and
    the payload (a multiple of 4 bytes) with their CRC, escaped."""
    if len(payload) % 4 or len(payload) > 4 * 255:
        raise ValueError(f"a frame's payload is 0..255 words, got {len(payload)} bytes")
    body = bytes([ftype, seq & 0xFF, len(payload) // 4]) + bytes(payload)
    body += _crc(body).to_bytes(2, "big")
    return b"\x7e" + body.replace(b"\x7d", b"\x7d\x5d").replace(b"\x7e", b"\x7d\x5e")


def decode_frames(buffer):
    """Frames at the start of ``buffer`` (a bytearray of bytes from the line), consumed
    from it as they are decoded.

    Returns
    -------
    list of (type, seq, payload bytes) or (None, description, None)
        A frame whose CRC, length or escaping is wrong, or bytes outside any frame, give
        ``(None, what was wrong, None)``. An unfinished frame stays in ``buffer``.
    """
    frames = []
    while buffer:
        if buffer[0] != FLAG:
            start = buffer.find(FLAG)
            junk = len(buffer) if start < 0 else start
            del buffer[:junk]
            frames.append((None, f"{junk} bytes outside any frame", None))
            continue
        end = buffer.find(FLAG, 1)
        raw = bytes(buffer[1:] if end < 0 else buffer[1:end])
        if end < 0 and raw.endswith(b"\x7d") and not raw.endswith(b"\x7d\x7d"):
            raw = raw[:-1]              # an escape whose byte is still on its way
        body = _ESCAPED.sub(lambda m: bytes([m.group(1)[0] ^ 0x20]), raw)
        need = 3 + 4 * body[2] + 2 if len(body) >= 3 else None
        if need is None or len(body) < need:
            if end < 0:
                break                   # wait for more bytes
            del buffer[:end]
            frames.append((None, "a frame cut short", None))
            continue
        del buffer[:len(buffer) if end < 0 else end]
        frame = body[:need]
        if _crc(frame[:-2]) != int.from_bytes(frame[-2:], "big"):
            frames.append((None, f"a frame (type {frame[0]:#04x}) failed its CRC check", None))
        elif len(body) > need:
            frames.append((None, "bytes after a frame's CRC", None))
        else:
            frames.append((frame[0], frame[1], frame[3:-2]))
    return frames


class _Status:
    """A ``STATUS`` frame's payload."""

    def __init__(self, seq, payload):
        w = np.frombuffer(payload, dtype="<u4")
        self.seq = seq
        self.reason = int(w[0] & 0xFF)
        self.rx_seq = int(w[0] >> 8 & 0xFF)
        self.reg_seq = int(w[0] >> 16 & 0xFF)
        self.flags = int(w[0] >> 24)
        self.rp = int(w[1] & 0xFFFF)
        self.wp = int(w[1] >> 16)
        self.depth = 1 << int(w[2] & 0xFF)
        self.max_chunk = int(w[2] >> 8 & 0xFF)
        self.version = int(w[2] >> 16 & 0xFF)
        self.aborts = int(w[2] >> 24)
        self.counters = {"crc_errors": int(w[3] & 0xFF), "framing_errors": int(w[3] >> 8 & 0xFF),
                         "timeouts": int(w[3] >> 16 & 0xFF), "overflows": int(w[3] >> 24)}
        self.out_seq = int(w[4] & 0xFF)

    packet_open = property(lambda self: bool(self.flags & 1))
    aborting = property(lambda self: bool(self.flags & 2))
    sync_found_open = property(lambda self: bool(self.flags & 16))


class _Chunk:
    __slots__ = ("seq", "frame", "words", "end", "packet")

    def __init__(self, seq, frame, words, end, packet):
        self.seq, self.frame, self.words, self.end, self.packet = seq, frame, words, end, packet


class SerialTransport(Transport):
    """The serial bridge's frames over a pyserial-like port (see the module docstring).

    Parameters
    ----------
    port : object
        Anything with ``read(n)``, ``write(data)`` and a settable ``timeout`` (seconds);
        the transport owns it and closes it on :meth:`close`.
    name : str, optional
        For messages (default: the port's ``name``/``port`` attribute).
    timeout : float
        Seconds allowed for opening the session and for :meth:`reset`.
    retry_interval : float
        Seconds without an answer after which a register request, or the chunks not yet
        acknowledged, are sent again (default 0.25; a simulated board needs more).
    max_retries : int
        Rounds of sending again without progress before the link counts as down.
    cycles_per_second : float, optional
        What the driver (:class:`~xnorlearn.sw.driver.Device`) sizes packet deadlines
        with; default one cycle per byte time of a 3 Mbaud line, about twice the time
        the link takes for a packet's words.

    Members
    -------
    stats : dict
        Bytes and frames written and read, chunks sent again, faults seen.
    events : list of str
        The link faults recovered from, in order.
    abandoned_packet : bool
        The bridge held a packet left unfinished by an earlier session when this one
        opened (it ends it: the accelerator refuses it with ``LENGTH``).

    Raises
    ------
    TransportTimeout
        If the board does not answer ``SYNC`` within ``timeout``.
    TransportError
        If it answers with another link protocol version.
    """

    queued_sends = True

    def __init__(self, port, *, name=None, timeout=5.0, retry_interval=0.25, max_retries=8,
                 cycles_per_second=None):
        for what, value in (("timeout", timeout), ("retry_interval", retry_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 1:
            raise ValueError(f"max_retries must be an integer >= 1, got {max_retries!r}")
        self._port = port
        self.name = name or ("serial board on "
                             + str(getattr(port, "name", None) or getattr(port, "port", "?")))
        self._timeout = float(timeout)
        self._retry = float(retry_interval)
        self._max_retries = max_retries
        self.cycles_per_second = float(cycles_per_second or DEFAULT_BAUD / 10)
        self.stats = collections.Counter()
        self.events = []
        self._rx = bytearray()
        self._closed = False
        self._broken = None             # why the stream cannot go on until reset()
        self._reset_state()
        self.abandoned_packet = False
        try:
            info = self._session(FrameType.SYNC, Reason.INFO, self._timeout)
        except BaseException:
            self._close_port()
            raise
        if info.version != LINK_VERSION:
            self._close_port()
            raise TransportError(f"{self.name}: the board's serial bridge speaks link protocol "
                                 f"version {info.version}, this host version {LINK_VERSION}")
        self.abandoned_packet = info.sync_found_open
        self.depth, self.max_chunk = info.depth, info.max_chunk

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, port="/dev/ttyUSB0", baud=DEFAULT_BAUD, **kwargs):
        """Open a serial port with pyserial (8N1, no flow control) and start a session.

        Raises
        ------
        TransportError
            If pyserial is not installed or the port cannot be opened.
        """
        try:
            import serial
        except ImportError:
            raise TransportError("the serial transport needs pyserial: pip install "
                                 "'xnorlearn[serial]' (or pip install pyserial)") from None
        try:
            handle = serial.Serial(port, baudrate=baud, timeout=0.05, write_timeout=None,
                                   rtscts=False, dsrdtr=False, xonxoff=False)
        except (serial.SerialException, OSError, ValueError) as e:
            raise TransportError(f"cannot open serial port {port} at {baud} baud: {e}") from None
        kwargs.setdefault("name", f"serial board on {port}")
        return cls(handle, **kwargs)

    # -- state --------------------------------------------------------------------------------

    def _reset_state(self):
        self._chunks = collections.deque()  # sent or to be sent, oldest first (not acked)
        self._next_send = 0                 # index in _chunks of the next to (re)send
        self._seq = 0                       # seq of the next new chunk
        self._end = 0                       # FIFO write pointer after the last chunk queued
        self._rp = 0
        self._packets = collections.deque()  # responses received whole
        self._partial = []
        self._out_seq = None
        self._out_lost = None
        self._packet_no = 0
        self._last_ack = self._last_heard = time.monotonic()
        self._rounds = self._pings = 0
        self._reg_resend_now = False
        self._last_damage = None
        self._reg_seq = 0
        self._reg_answers = {}
        self._aborts = None
        self._counters = None
        self._awaiting = None               # (reason, seq) of a SYNC/RESET/PING answer
        self._answer = None

    def _adopt(self, st):
        """Take the bridge's view after SYNC or RESET."""
        self._chunks.clear()
        self._next_send = 0
        self._seq = st.rx_seq
        self._end = st.wp
        self._rp = st.rp
        self._reg_seq = st.reg_seq
        self._aborts = st.aborts
        self._counters = dict(st.counters)
        self._packets.clear()
        self._partial = []
        self._out_seq = st.out_seq
        self._out_lost = None
        self._last_ack = self._last_heard = time.monotonic()
        self._rounds = self._pings = 0

    # -- the line -----------------------------------------------------------------------------

    def _write(self, data):
        try:
            n = self._port.write(data)
        except Exception as e:          # pyserial raises SerialException, sockets OSError
            raise TransportError(f"{self.name}: writing to the serial port failed: {e}") from None
        if n is not None and n != len(data):
            raise TransportError(f"{self.name}: the serial port took {n} of {len(data)} bytes")
        self.stats["bytes_written"] += len(data)
        self.stats["frames_written"] += 1

    def _read(self, wait):
        """Bytes from the port, waiting up to ``wait`` seconds for the first."""
        if self._closed:
            raise TransportError(f"{self.name}: the transport is closed")
        try:
            if not hasattr(self._port, "in_waiting"):
                # A port that cannot tell what is waiting: one byte within the wait, then
                # what is there (a timeout of 0 does not block).
                self._port.timeout = max(wait, 0.0)
                data = self._port.read(1)
                if data:
                    self._port.timeout = 0
                    data += self._port.read(1 << 12)
            else:
                waiting = self._port.in_waiting
                self._port.timeout = max(wait, 0.0) if not waiting else 0
                data = self._port.read(max(1, min(int(waiting), 1 << 16)))
                more = self._port.in_waiting
                if data and more:
                    self._port.timeout = 0
                    data += self._port.read(int(more))
        except Exception as e:
            raise TransportError(f"{self.name}: reading from the serial port failed: {e}") from None
        self.stats["bytes_read"] += len(data)
        return data

    def _fault(self, text):
        text = text.removeprefix(f"{self.name}: ")
        self.events.append(text)
        _log.warning("%s: %s", self.name, text)

    def _pump(self, wait):
        """Read and handle what the board sent (waiting up to ``wait`` seconds for it),
        send what the credit allows, and send again what was refused or not answered."""
        data = self._read(wait)
        if data:
            self._rx += data
            for ftype, seq, payload in decode_frames(self._rx):
                self._handle(ftype, seq, payload)
        self._transmit()

    def _handle(self, ftype, seq, payload):
        if ftype is None:
            self.stats["damaged_frames_read"] += 1
            self._last_damage = seq
            self._fault(f"damaged frame from the board: {seq}")
            return
        self.stats["frames_read"] += 1
        if ftype == FrameType.STATUS and len(payload) == 4 * STATUS_WORDS:
            self._status(_Status(seq, payload))
        elif ftype == FrameType.REG_RESP and len(payload) == 8:
            data, code = np.frombuffer(payload, dtype="<u4")
            self._reg_answers[seq] = (int(data), int(code) & 0xFF)
        elif ftype in (FrameType.OUT, FrameType.OUT_LAST) and payload:
            self._check_out_seq(seq)
            self._out_seq = (seq + 1) % 256
            self._partial.append(np.frombuffer(payload, dtype="<u4").copy())
            if ftype == FrameType.OUT_LAST:
                self._packets.append((np.concatenate(self._partial), self._out_lost))
                self._partial = []
                self._out_lost = None
        else:
            self.stats["damaged_frames_read"] += 1
            self._fault(f"unexpected frame from the board (type {ftype:#04x}, "
                        f"{len(payload)} bytes)")

    def _check_out_seq(self, seq):
        """Response frames are numbered: a gap means frames were lost or damaged."""
        if self._out_seq is not None and seq != self._out_seq:
            lost = (seq - self._out_seq) % 256
            self._out_lost = (f"{lost} response frame(s) from the board were lost"
                              + (f" (the last damaged frame: {self._last_damage})"
                                 if self._last_damage else ""))
            self._fault(self._out_lost)
            self._out_seq = seq

    def _status(self, st):
        self.stats["status_frames"] += 1
        if self._awaiting is not None:
            reason, nonce = self._awaiting
            if st.reason == reason and st.seq == nonce:
                self._answer = st
            return                      # a session (re)starts from its answer alone
        self._rp = st.rp
        self._last_heard = time.monotonic()
        self._pings = 0
        # A STATUS follows every OUT frame sent before it on the line.
        self._check_out_seq(st.out_seq)
        # Acknowledged chunks leave the window.
        if self._chunks:
            done = (st.rx_seq - self._chunks[0].seq) % 256
            if 0 < done <= self._next_send:
                for _ in range(done):
                    self._chunks.popleft()
                self._next_send -= done
                self._last_ack = time.monotonic()
                self._rounds = 0
        if self._counters is not None:
            for name, value in st.counters.items():
                delta = (value - self._counters[name]) % 256
                if delta:
                    self.stats["board_" + name] += delta
            self._counters = dict(st.counters)
        if st.reason >= 0x10:
            self.stats["nacks"] += 1
            reason = Reason(st.reason) if st.reason in Reason._value2member_map_ else None
            text = (f"the board refused a frame ({reason.name if reason else st.reason}: "
                    f"{reason.description if reason else '?'})")
            if self._chunks:
                text += f"; sending again from chunk {self._chunks[0].seq}"
            self._fault(text)
            self._go_back()
            self._resend_register()
        if self._aborts is not None and st.aborts != self._aborts:
            self._aborts = st.aborts
            self._broken = (f"{self.name}: the board ended the command packet in progress "
                            f"because the host was silent in the middle of it; the "
                            f"accelerator refuses that packet (ERROR_CODE LENGTH); reset the "
                            f"transport and the accelerator (Device.soft_reset)")
            self._fault(self._broken)
            self._chunks.clear()
            self._next_send = 0

    def _go_back(self):
        if self._chunks and self._next_send:
            self.stats["chunks_resent"] += self._next_send
            self._next_send = 0
        self._last_ack = time.monotonic()

    def _resend_register(self):
        self._reg_resend_now = True

    def _transmit(self):
        """Send chunks the credit allows; send the window again when it is overdue."""
        if self._broken:
            return
        now = time.monotonic()
        if self._next_send and now - self._last_ack > self._retry:
            self._rounds += 1
            if self._rounds > self._max_retries:
                self._broken = (f"{self.name}: the link to the board is down: chunk "
                                f"{self._chunks[0].seq} not acknowledged after "
                                f"{self._max_retries} rounds of sending again")
                return
            self._fault(f"no acknowledgement for {self._retry:g} s; sending again from chunk "
                        f"{self._chunks[0].seq}")
            self._go_back()
        while self._next_send < len(self._chunks):
            chunk = self._chunks[self._next_send]
            if (chunk.end - self._rp) % 65536 > self.depth:
                self.stats["credit_waits"] += 1
                break
            self._write(chunk.frame)
            self.stats["chunks_written"] += 1
            if self._next_send == 0:
                self._last_ack = time.monotonic()
            self._next_send += 1
        if self._chunks or (self._end - self._rp) % 65536:
            self._ping_if_quiet()

    def _ping_if_quiet(self):
        """While chunks or credit are awaited: ask for a STATUS when none came for a while
        (one may have been damaged)."""
        if time.monotonic() - self._last_heard > self._retry:
            self._pings += 1
            if self._pings > self._max_retries:
                self._broken = (f"{self.name}: the board does not answer (no STATUS for "
                                f"{self._pings * self._retry:g} s)")
                return
            self._write(encode_frame(FrameType.PING, 0))
            self._last_heard = time.monotonic()

    def _check(self):
        if self._closed:
            raise TransportError(f"{self.name}: the transport is closed")
        if self._broken:
            raise TransportError(self._broken)

    # -- sessions -----------------------------------------------------------------------------

    def _session(self, ftype, reason, timeout):
        """Send SYNC/RESET with a fresh nonce until the board answers it; adopt the answer."""
        deadline = time.monotonic() + timeout
        try:
            flush = getattr(self._port, "reset_input_buffer", None)
            if flush is not None:
                flush()
        except Exception as e:
            raise TransportError(f"{self.name}: the serial port failed: {e}") from None
        self._rx.clear()
        while True:
            nonce = int.from_bytes(os.urandom(1), "little")
            self._awaiting, self._answer = (reason, nonce), None
            self._write(encode_frame(ftype, nonce))
            resend = time.monotonic() + self._retry * 2
            while self._answer is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._awaiting = None
                    what = "SYNC" if ftype == FrameType.SYNC else "RESET"
                    raise TransportTimeout(
                        f"{self.name}: no answer to {what} within {timeout:g} s: is the board "
                        f"programmed with the xnorlearn bitstream, and the baud rate right?")
                if time.monotonic() > resend:
                    break
                data = self._read(min(left, 0.02))
                if data:
                    self._rx += data
                    for f, s, p in decode_frames(self._rx):
                        if f == FrameType.STATUS and p is not None and len(p) == 4 * STATUS_WORDS:
                            self._status(_Status(s, p))
            if self._answer is not None:
                break
        st, self._awaiting = self._answer, None
        self._adopt(st)
        return st

    # -- Transport ------------------------------------------------------------------------------

    def _register(self, ftype, offset, value, timeout, what):
        if self._closed:
            raise TransportError(f"{self.name}: the transport is closed")
        if not isinstance(offset, (int, np.integer)) or not 0 <= offset < 1 << 32:
            raise ValueError(f"offset must be a 32-bit byte address, got {offset!r}")
        self._reg_seq = (self._reg_seq + 1) % 256
        seq = self._reg_seq
        self._reg_answers.pop(seq, None)
        payload = int(offset).to_bytes(4, "little")
        if ftype == FrameType.REG_WRITE:
            payload += (int(value) & 0xFFFFFFFF).to_bytes(4, "little")
        frame = encode_frame(ftype, seq, payload)
        deadline = time.monotonic() + timeout
        self._write(frame)
        sent = time.monotonic()
        self._reg_resend_now = False
        while seq not in self._reg_answers:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"{self.name}: no answer to the {what} of offset "
                                       f"{offset:#x} within {timeout:g} s")
            if self._reg_resend_now or time.monotonic() - sent > self._retry:
                if self._broken:
                    # Registers still work when only the stream is stopped; a request
                    # not answered while it is stopped reports why.
                    raise TransportError(self._broken)
                if not self._reg_resend_now:
                    self._fault(f"no answer to the {what} of offset {offset:#x} within "
                                f"{self._retry:g} s; asking again")
                self.stats["register_retries"] += 1
                self._write(frame)
                sent = time.monotonic()
                self._reg_resend_now = False
            self._pump(min(left, 0.02))
        data, code = self._reg_answers.pop(seq)
        if code:
            raise TransportError(f"{self.name}: the {what} of offset {offset:#x} was answered "
                                 f"{_AXI_RESP.get(code, code)}")
        return data

    def read32(self, offset, *, timeout):
        return self._register(FrameType.REG_READ, offset, None, timeout, "register read")

    def write32(self, offset, value, *, timeout):
        if not 0 <= int(value) <= 0xFFFFFFFF:
            raise ValueError(f"value must be a 32-bit word, got {value!r}")
        self._register(FrameType.REG_WRITE, offset, value, timeout, "register write")

    def send(self, words, *, timeout):
        """Queue one packet and send it as the board's credit allows; returns when every
        chunk has been written to the line (not necessarily acknowledged)."""
        self._check()
        words = as_words(words)
        data = words.astype("<u4").tobytes()
        self._packet_no += 1
        n = self.max_chunk
        for i in range(0, len(words), n):
            part = data[4 * i:4 * (i + n)]
            last = i + n >= len(words)
            self._end = (self._end + len(part) // 4) % 65536
            frame = encode_frame(FrameType.DATA_LAST if last else FrameType.DATA, self._seq, part)
            self._chunks.append(_Chunk(self._seq, frame, len(part) // 4, self._end,
                                       self._packet_no))
            self._seq = (self._seq + 1) % 256
        deadline = time.monotonic() + timeout
        self._transmit()
        while self._next_send < len(self._chunks):
            self._check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"{self.name}: the board took only part of the packet "
                                       f"within {timeout:g} s (its FIFO stays full)")
            self._pump(min(left, 0.02))
        self._check()

    def wait_sent(self, *, timeout):
        """Return when every chunk is acknowledged and the accelerator has taken every word."""
        deadline = time.monotonic() + timeout
        while self._chunks or (self._end - self._rp) % 65536:
            self._check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"{self.name}: {(self._end - self._rp) % 65536} words "
                                       f"not yet taken by the accelerator after {timeout:g} s")
            self._pump(min(left, 0.02))
        self._check()

    def recv(self, max_words, *, timeout):
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            if self._packets:
                words, lost = self._packets.popleft()
                if lost:
                    raise TransportError(f"{self.name}: a response came incomplete: {lost}")
                if len(words) > max_words:
                    raise TransportError(f"{self.name}: a response of {len(words)} words, at "
                                         f"most {max_words} expected")
                return words
            if self._out_lost:
                lost, self._out_lost, self._partial = self._out_lost, None, []
                raise TransportError(f"{self.name}: a response was lost: {lost}")
            n = sum(len(p) for p in self._partial)
            if n > max_words:
                self._partial = []
                raise TransportError(f"{self.name}: a response of more than {max_words} words "
                                     f"({n} so far without tlast)")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportTimeout(f"{self.name}: no whole response within {timeout:g} s")
            self._pump(min(left, 0.02))

    def reset(self):
        """Drop the chunks not yet sent or acknowledged and the responses not read; the
        board's bridge empties its FIFO and response buffer (``RESET``)."""
        if self._closed:
            raise TransportError(f"{self.name}: the transport is closed")
        self._broken = None
        self._session(FrameType.RESET, Reason.RESET, self._timeout)

    def _close_port(self):
        self._closed = True
        try:
            self._port.close()
        except Exception:
            pass

    def close(self):
        if not self._closed:
            self._close_port()


def open_ulx3s_transport(port, baud=DEFAULT_BAUD, timeout=60.0):
    """The transport of ``xnorlearn train --device ulx3s --port PORT``: a
    :class:`SerialTransport` on ``port`` at ``baud`` (the board's bridge runs at
    3,000,000 baud unless built otherwise)."""
    return SerialTransport.open(port, baud=baud, timeout=min(float(timeout), 10.0))
