"""What carries the host driver's words to an accelerator: the transport interface.

A transport knows nothing of the protocol; it moves 32-bit words. The host driver
(:mod:`xnorlearn.sw.driver`) is written against :class:`Transport` only, so the same
driver code runs on a PYNQ board (MMIO and AXI DMA), on the fast simulated board (the
accelerator's Verilog in Verilator, :mod:`xnorlearn.sim.fastsim`), in a cocotb bench
(:mod:`xnorlearn.sim.cocotb_transport`) and over a serial link.

Every call that waits takes ``timeout``, wall-clock seconds; none waits longer. A wait
that runs out raises :class:`TransportTimeout`; a transport that cannot go on (a
simulator process that died, a DMA error) raises :class:`TransportError`.
"""

import abc

import numpy as np

__all__ = ["Transport", "TransportError", "TransportTimeout", "as_words"]


class TransportError(RuntimeError):
    """The transport failed: the device, link or simulator is gone or reported an error."""


class TransportTimeout(TransportError):
    """A wait on the device ran past its deadline."""


def as_words(words):
    """``words`` as a 1-d ``numpy.uint32`` array, each checked to be a 32-bit value.

    Raises
    ------
    ValueError
        If ``words`` is not 1-d, is empty, or holds a value outside 0..0xFFFFFFFF.
    """
    a = np.asarray(words)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"a packet is a non-empty 1-d sequence of 32-bit words, got shape "
                         f"{a.shape}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"packet words must be integers in 0..0xFFFFFFFF, got dtype {a.dtype}")
    if a.dtype != np.uint32 and (a.min() < 0 or a.max() > 0xFFFFFFFF):
        raise ValueError(f"packet words must be in 0..0xFFFFFFFF, got {a.min()}..{a.max()}")
    return a.astype(np.uint32, copy=False)


class Transport(abc.ABC):
    """AXI4-Lite register access and AXI4-Stream packets to and from one accelerator.

    Members
    -------
    name : str
        What it is, for messages (``"fast simulated board"``, ``"PYNQ-Z2 at 0x43c00000"``).
    queued_sends : bool
        ``send`` returns while the device may still be taking the packet, so the host
        can queue the next packet while one is processed (a DMA engine, a simulator's
        input queue). When False, ``send`` returns only when the device has taken every
        word.
    """

    name = "transport"
    queued_sends = False

    @abc.abstractmethod
    def read32(self, offset, *, timeout):
        """The 32-bit word at byte ``offset`` of the AXI4-Lite register file.

        Raises
        ------
        TransportError
            If the read is answered with an error response (SLVERR, DECERR).
        TransportTimeout
            If no response comes within ``timeout`` seconds.
        """

    @abc.abstractmethod
    def write32(self, offset, value, *, timeout):
        """Write the 32-bit ``value`` at byte ``offset`` (all four byte strobes).

        Raises
        ------
        TransportError, TransportTimeout
            As :meth:`read32`.
        """

    @abc.abstractmethod
    def send(self, words, *, timeout):
        """Send one packet on the command stream: ``words`` (uint32), ``tlast`` on the last.

        Raises
        ------
        TransportTimeout
            If the device does not take the packet (or, with ``queued_sends``, does not
            let it be queued) within ``timeout`` seconds.
        """

    def stage(self, packets):
        """Prepare many packets to be sent one after another (a DMA transport copies them
        into one contiguous buffer once); returns, for each, what :meth:`send` takes in
        its place. By default the packets themselves."""
        return [as_words(p) for p in packets]

    @abc.abstractmethod
    def wait_sent(self, *, timeout):
        """Return when the device has taken every word passed to :meth:`send`.

        Raises
        ------
        TransportTimeout
            If words are still waiting after ``timeout`` seconds.
        """

    @abc.abstractmethod
    def recv(self, max_words, *, timeout):
        """One packet from the response stream, up to and including its ``tlast``.

        Parameters
        ----------
        max_words : int
            The longest packet expected; a longer one is an error (the buffer a DMA
            receive channel is armed with).

        Returns
        -------
        numpy.ndarray of uint32

        Raises
        ------
        TransportTimeout
            If no whole packet arrives within ``timeout`` seconds.
        TransportError
            If more than ``max_words`` words arrive before a ``tlast``.
        """

    @abc.abstractmethod
    def reset(self):
        """Abandon the stream transfers in flight in both directions and drop what was
        received but not read (as a host resets its DMA engine). The accelerator itself is
        untouched: the driver resets it through its register file."""

    def close(self):
        """Release the device; the transport cannot be used afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
