"""The PYNQ board transport: MMIO on the accelerator's AXI4-Lite, an AXI DMA for packets.

:class:`PynqTransport` opens an overlay written by ``xnorlearn overlay`` (the ``.bit``,
the ``.hwh`` of the same stem and the build's JSON side by side), checks it before use,
and moves the host driver's words:

* registers through ``pynq.MMIO`` at the accelerator's base address;
* packets through the AXI DMA in simple mode, from and into ``pynq.allocate`` buffers.

PYNQ's own ``DMA`` channel ``wait()`` spins with no timeout (a transfer that never ends
hangs the notebook); every wait here polls the channel's status register against a
monotonic deadline instead, and a timeout or a DMA error resets the DMA, so the next
transfer starts clean (the driver then soft-resets the accelerator).

Only ``numpy`` and ``pynq`` (3.x) are needed on the board; nothing of the gateware or the
simulators is imported. The ``pynq`` module can be passed in (``pynq=``), which is how the
same code runs in CI against the project's stand-ins of the pynq API.
"""

import importlib
import json
import time
from pathlib import Path

import numpy as np

from xnorlearn.contract import Build
from xnorlearn.sw.transport import Transport, TransportError, TransportTimeout, as_words

__all__ = ["PynqTransport", "OverlayError", "read_overlay_json", "DMA_REGS"]

#: AXI DMA (PG021) register offsets used here, simple mode.
DMA_REGS = {"MM2S_DMACR": 0x00, "MM2S_DMASR": 0x04, "S2MM_DMACR": 0x30, "S2MM_DMASR": 0x34,
            "S2MM_LENGTH": 0x58}
_DMACR_RESET = 0x4
_DMASR_IDLE = 0x2
_DMASR_HALTED = 0x1
_DMASR_ERRORS = {0x10: "DMA internal error", 0x20: "DMA slave error (memory not reachable)",
                 0x40: "DMA decode error (invalid address)"}


class OverlayError(TransportError):
    """The overlay files are missing, mismatched, or do not match the board's state."""


def read_overlay_json(bit_path):
    """The build description written beside ``bit_path`` (``<stem>.json``).

    Returns
    -------
    dict
        With ``build`` (a :class:`~xnorlearn.contract.Build`), ``clock_mhz``,
        ``axil_base``, ``axil_range``, ``dma`` (the DMA's instance name) and the rest
        of the file.

    Raises
    ------
    OverlayError
        If the ``.bit``, the ``.hwh`` of the same stem or the JSON is missing, or the
        JSON does not describe a build.
    """
    bit = Path(bit_path)
    if bit.suffix != ".bit":
        raise OverlayError(f"{bit}: an overlay is a .bit file (with its .hwh and .json)")
    missing = [p.name for p in (bit, bit.with_suffix(".hwh"), bit.with_suffix(".json"))
               if not p.is_file()]
    if missing:
        raise OverlayError(f"{bit.parent}: missing {', '.join(missing)}; an overlay needs "
                           f"{bit.stem}.bit, {bit.stem}.hwh and {bit.stem}.json side by side "
                           f"(as 'xnorlearn overlay' writes them)")
    try:
        meta = json.loads(bit.with_suffix(".json").read_text())
        meta["build"] = Build(**meta["build"])
        for key in ("clock_mhz", "axil_base", "axil_range", "dma"):
            meta[key]
    except (ValueError, KeyError, TypeError) as e:
        raise OverlayError(f"{bit.with_suffix('.json')}: not a build description ({e})") \
            from None
    return meta


class PynqTransport(Transport):
    """An accelerator on a PYNQ board.

    Parameters
    ----------
    bit_path : path
        The overlay's ``.bit``; its ``.hwh`` and ``.json`` lie beside it.
    download : bool
        Load the bitstream (``pynq.Overlay(..., download=True)``); False attaches to a
        bitstream already loaded.
    clock_tolerance : float
        Allowed relative difference between FCLK0 and the build's clock.
    pynq : module, optional
        The ``pynq`` module (default: ``import pynq``).

    Members
    -------
    build : Build
        The build the JSON describes; pass it to :class:`~xnorlearn.sw.driver.Device` so
        that the ``BUILD*`` registers are checked against it.
    clock_mhz : float

    Raises
    ------
    OverlayError
        For missing or mismatched files, or an FCLK0 that differs from the build's clock.
    """

    queued_sends = True
    cycles_per_second = 1e7

    def __init__(self, bit_path, *, download=True, clock_tolerance=0.01, pynq=None):
        meta = read_overlay_json(bit_path)
        self._pynq = pynq if pynq is not None else importlib.import_module("pynq")
        self.build = meta["build"]
        self.clock_mhz = float(meta["clock_mhz"])
        self.name = f"PYNQ overlay {Path(bit_path).name}"
        self._overlay = self._pynq.Overlay(str(bit_path), download=download)
        fclk = float(self._pynq.Clocks.fclk0_mhz)
        if abs(fclk - self.clock_mhz) > clock_tolerance * self.clock_mhz:
            raise OverlayError(f"{self.name}: FCLK0 runs at {fclk:.3f} MHz, the build was made "
                               f"for {self.clock_mhz:.3f} MHz; reload the overlay (download="
                               f"True) or set pynq.Clocks.fclk0_mhz")
        self._mmio = self._pynq.MMIO(int(meta["axil_base"]), int(meta["axil_range"]))
        try:
            self._dma = getattr(self._overlay, meta["dma"])
        except AttributeError:
            raise OverlayError(f"{self.name}: no DMA named {meta['dma']!r} in the .hwh") from None
        self._tx = None                 # the buffer of single packets, and the staged epoch
        self._staged = None
        self._rx = None
        self._rx_armed = 0
        self._tx_busy = False
        self._closed = False

    # -- registers -----------------------------------------------------------------------

    def read32(self, offset, *, timeout):
        return int(self._mmio.read(offset)) & 0xFFFFFFFF

    def write32(self, offset, value, *, timeout):
        self._mmio.write(offset, int(value) & 0xFFFFFFFF)

    # -- DMA -----------------------------------------------------------------------------

    def _status(self, reg):
        return int(self._dma.read(DMA_REGS[reg]))

    def _check_error(self, reg, what):
        st = self._status(reg)
        for bit, text in _DMASR_ERRORS.items():
            if st & bit:
                self.reset()
                raise TransportError(f"{self.name}: {what}: {text} (DMASR {st:#x}); the DMA "
                                     f"was reset")
        return st

    def _wait_idle(self, reg, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            st = self._check_error(reg, what)
            if st & (_DMASR_IDLE | _DMASR_HALTED):
                return
            if time.monotonic() > deadline:
                raise TransportTimeout(f"{self.name}: {what} not done within {timeout:.2f} s "
                                       f"(DMASR {st:#x})")
            time.sleep(0)

    def stage(self, packets):
        """Copy many packets into one contiguous buffer once; returns the handles
        :meth:`send` takes (slices of that buffer)."""
        packets = [as_words(p) for p in packets]
        total = sum(len(p) for p in packets)
        if self._staged is not None and hasattr(self._staged, "freebuffer"):
            self.wait_sent(timeout=10.0)
            self._staged.freebuffer()
        buf = self._pynq.allocate(shape=(total,), dtype=np.uint32)
        handles, start = [], 0
        for p in packets:
            buf[start:start + len(p)] = p
            handles.append((buf, start, len(p)))
            start += len(p)
        buf.flush()
        self._staged = buf
        return handles

    def send(self, words, *, timeout):
        if isinstance(words, tuple):
            buf, start, n = words
            self.wait_sent(timeout=timeout)
        else:
            words = as_words(words)
            self.wait_sent(timeout=timeout)     # the buffer is reused
            if self._tx is None or len(self._tx) < len(words):
                if self._tx is not None and hasattr(self._tx, "freebuffer"):
                    self._tx.freebuffer()
                self._tx = self._pynq.allocate(shape=(max(len(words), 4096),), dtype=np.uint32)
            buf, start, n = self._tx, 0, len(words)
            buf[:n] = words
            buf.flush()
        self._dma.sendchannel.transfer(buf, start=4 * start, nbytes=4 * n)
        self._tx_busy = True

    def wait_sent(self, *, timeout):
        if self._tx_busy:
            self._wait_idle("MM2S_DMASR", timeout, "the send DMA transfer")
            self._tx_busy = False

    def recv(self, max_words, *, timeout):
        if self._rx_armed != max_words:
            if self._rx_armed:
                # A receive armed for another length: only a reset can take it back.
                self._reset_rx()
            if self._rx is None or len(self._rx) < max_words:
                self._rx = self._pynq.allocate(shape=(max_words,), dtype=np.uint32)
            self._dma.recvchannel.transfer(self._rx, nbytes=4 * max_words)
            self._rx_armed = max_words
        self._wait_idle("S2MM_DMASR", timeout, "the receive DMA transfer")
        self._rx_armed = 0
        nbytes = self._status("S2MM_LENGTH")
        self._rx.invalidate()
        if nbytes % 4 or not 0 < nbytes <= 4 * max_words:
            raise TransportError(f"{self.name}: the receive DMA reports {nbytes} bytes for a "
                                 f"response of at most {max_words} words")
        return np.array(self._rx[:nbytes // 4], dtype=np.uint32)

    def _reset_rx(self):
        self.reset()

    def reset(self):
        self._dma.write(DMA_REGS["MM2S_DMACR"], _DMACR_RESET)
        deadline = time.monotonic() + 1.0
        while self._dma.read(DMA_REGS["MM2S_DMACR"]) & _DMACR_RESET:
            if time.monotonic() > deadline:
                raise TransportError(f"{self.name}: the DMA did not come out of reset")
        self._dma.sendchannel.start()
        self._dma.recvchannel.start()
        self._tx_busy = False
        self._rx_armed = 0

    def close(self):
        if not self._closed:
            self._closed = True
            for buf in (self._tx, self._rx, self._staged):
                if buf is not None and hasattr(buf, "freebuffer"):
                    buf.freebuffer()
