"""The serial link's contract, shared by the bridge's gateware and the host's transport.

Frames on the line (``docs/ulx3s.md``)::

    FLAG  type  seq  len  payload (4 * len bytes, words low byte first)  CRC-16 (high first)

``FLAG`` (0x7E) starts every frame; after it 0x7E and 0x7D are sent as ``ESC`` (0x7D)
followed by the byte XOR ``ESC_XOR`` (0x20). The CRC is CRC-16/CCITT-FALSE over ``type``
to the end of the payload. Plain Python, no dependencies, like :mod:`xnorlearn.contract`.
"""

import enum

__all__ = ["FLAG", "ESC", "ESC_XOR", "LINK_VERSION", "STATUS_WORDS", "FrameType", "Reason"]

FLAG, ESC, ESC_XOR = 0x7E, 0x7D, 0x20
#: Version of the link protocol, reported by the bridge in its reply to ``SYNC``.
LINK_VERSION = 1
#: Payload words of a ``STATUS`` frame.
STATUS_WORDS = 5


class FrameType(enum.IntEnum):
    """The ``type`` byte of a frame (0x01..0x7F host to board, 0x80.. board to host)."""

    SYNC = 0x01
    RESET = 0x02
    REG_READ = 0x03
    REG_WRITE = 0x04
    PING = 0x05
    DATA = 0x10
    DATA_LAST = 0x11
    STATUS = 0x81
    REG_RESP = 0x83
    OUT = 0x90
    OUT_LAST = 0x91


class Reason(enum.IntEnum):
    """Why a ``STATUS`` frame was sent (its first payload byte)."""

    CREDIT = 0x00           # words left the FIFO
    ACK = 0x01              # a chunk (or duplicate) arrived intact
    INFO = 0x02             # reply to SYNC
    RESET = 0x03            # reply to RESET
    ABORTED = 0x04          # the bridge ended an open packet (silent host, or SYNC)
    PONG = 0x05             # reply to PING
    NACK_CRC = 0x10         # a frame failed its CRC
    NACK_FRAMING = 0x11     # a frame was cut short by a FLAG, or its type or length is wrong
    NACK_TIMEOUT = 0x12     # a frame stopped in the middle for byte_timeout cycles
    NACK_OVERFLOW = 0x13    # a chunk larger than the room in the FIFO

    @property
    def description(self):
        return _REASON_TEXT.get(self, self.name)


_REASON_TEXT = {
    Reason.NACK_CRC: "a frame to the board failed its CRC check",
    Reason.NACK_FRAMING: "a frame to the board was cut short or had a wrong type or length",
    Reason.NACK_TIMEOUT: "a frame to the board stopped in the middle (inter-byte timeout)",
    Reason.NACK_OVERFLOW: "a chunk did not fit the board's FIFO",
}
