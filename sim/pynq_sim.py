"""A simulated PYNQ board: stand-ins for the parts of the ``pynq`` API the board transport
uses, backed by the simulated accelerator.

:class:`SimulatedPynq` looks like the ``pynq`` module to
:class:`xnorlearn.sw.pynq_transport.PynqTransport` (pass it as ``pynq=``, or put it in
``sys.modules["pynq"]``), so the transport's own code, the code that runs on a board,
trains here against the accelerator's Verilog:

``Overlay(bitfile, download=True)``
    Needs the ``.bit`` and the ``.hwh`` of the same stem (as pynq does), reads the
    ``.hwh`` for the AXI DMA's instance, parameters and register window and for the
    accelerator's register window, and, on download, sets ``Clocks.fclk0_mhz`` from the
    ``.hwh`` as pynq programs the PS clocks. The DMA is an attribute named after its
    instance.
``MMIO(base, length)``
    Reads and writes of the accelerator's window go to its AXI4-Lite port.
``allocate(shape, dtype)``
    Arrays with a ``physical_address`` in a simulated DDR, ``flush``, ``invalidate``,
    ``freebuffer``.
DMA
    The AXI DMA's simple-mode registers (PG021): ``MM2S_DMACR/DMASR/SA/LENGTH`` and their
    ``S2MM`` twins. Writing a LENGTH starts a transfer: MM2S sends the bytes at ``SA`` as
    one packet (``tlast`` on the last word), S2MM takes the next packet into ``DA`` and
    reports its length. The simulation advances while the host polls ``DMASR``, as the
    fabric runs beside the CPU. ``sendchannel``/``recvchannel`` have pynq's ``transfer``,
    ``idle``, ``running``, ``error``, ``start``, ``stop`` and ``wait`` (which, like pynq's,
    spins with no deadline).

Faults for the tests, by name in ``faults``: ``"mm2s_stuck"`` (a send that never
completes), ``"s2mm_slverr"`` (the receive channel reports a slave error),
``"fclk0=<MHz>"`` (the PS clock does not take the ``.hwh``'s setting).

The stand-ins are written from pynq's documented API and the AXI DMA's register map;
they are the project's own.
"""

import numpy as np
from xml.etree import ElementTree as ET
from pathlib import Path

from xnorlearn.sw.transport import TransportError, TransportTimeout

__all__ = ["SimulatedPynq", "SimBuffer"]

_DMACR_RS, _DMACR_RESET = 0x1, 0x4
_DMASR_HALTED, _DMASR_IDLE = 0x1, 0x2
_DMASR_INTERR, _DMASR_SLVERR, _DMASR_DECERR = 0x10, 0x20, 0x40
_DMASR_IOC = 0x1000
_CHANNEL = {"mm2s": 0x00, "s2mm": 0x30}
_POLL_SECONDS = 0.002           # simulated time given to the fabric per status read


class SimBuffer(np.ndarray):
    """An array in the simulated DDR (what ``pynq.allocate`` returns)."""

    def __new__(cls, shape, dtype, board, address):
        obj = np.zeros(shape, dtype).view(cls)
        obj.physical_address = address
        obj.device_address = address
        obj._board = board
        return obj

    def __array_finalize__(self, obj):
        if obj is not None:
            self.physical_address = getattr(obj, "physical_address", None)
            self.device_address = self.physical_address
            self._board = getattr(obj, "_board", None)

    def flush(self):
        pass

    def invalidate(self):
        pass

    def freebuffer(self):
        if self._board is not None:
            self._board._free(self.physical_address)

    close = freebuffer


class _Clocks:
    fclk0_mhz = 100.0
    fclk1_mhz = fclk2_mhz = fclk3_mhz = 10.0


class _Channel:
    """pynq's ``_SDMAChannel`` API on the register model of one channel."""

    def __init__(self, dma, name):
        self._dma = dma
        self._offset = _CHANNEL[name]
        self._name = name
        self.transferred = 0

    @property
    def running(self):
        return not self._dma.read(self._offset + 4) & _DMASR_HALTED

    @property
    def idle(self):
        return bool(self._dma.read(self._offset + 4) & _DMASR_IDLE)

    @property
    def error(self):
        return bool(self._dma.read(self._offset + 4) & 0x70)

    def start(self):
        self._dma.write(self._offset, _DMACR_RS)

    def stop(self):
        self._dma.write(self._offset, 0)

    def transfer(self, array, start=0, nbytes=0):
        if not self.running:
            raise RuntimeError("DMA channel not started")
        if nbytes == 0:
            nbytes = array.nbytes - start
        address = array.physical_address + start
        self._dma.write(self._offset + 0x18, address & 0xFFFFFFFF)
        self._dma.write(self._offset + 0x28, nbytes)

    def wait(self):
        while not self.idle:        # as pynq's: no deadline
            pass
        self.transferred = self._dma.read(self._offset + 0x28)


class _Dma:
    """The AXI DMA in simple mode, its registers and its two channels."""

    def __init__(self, board, name, parameters):
        self._board = board
        self.name = name
        self.description = {"parameters": parameters}
        self.length_limit = (1 << int(parameters.get("c_sg_length_width", "14"))) - 1
        self._regs = {}
        for ch in _CHANNEL.values():
            self._regs[ch] = 0
            self._regs[ch + 4] = _DMASR_HALTED
            self._regs[ch + 0x18] = 0
            self._regs[ch + 0x28] = 0
        self._busy = {"mm2s": False, "s2mm": 0}
        self.sendchannel = _Channel(self, "mm2s")
        self.recvchannel = _Channel(self, "s2mm")
        self.sendchannel.start()
        self.recvchannel.start()

    # register interface (DefaultIP.read/write)

    def read(self, offset):
        if offset in (0x04, 0x34):
            self._advance("mm2s" if offset == 0x04 else "s2mm")
        return self._regs.get(offset, 0)

    def write(self, offset, value):
        value &= 0xFFFFFFFF
        if offset in (0x00, 0x30):
            if value & _DMACR_RESET:
                self._reset()
                return
            self._regs[offset] = value
            status = offset + 4
            if value & _DMACR_RS:
                self._regs[status] &= ~_DMASR_HALTED
                if not self._busy["mm2s" if offset == 0 else "s2mm"]:
                    self._regs[status] |= _DMASR_IDLE
            else:
                self._regs[status] |= _DMASR_HALTED
            return
        if offset in (0x04, 0x34):          # write 1 to clear the interrupt bits
            self._regs[offset] &= ~(value & 0x7000)
            return
        self._regs[offset] = value
        if offset == 0x28:
            self._start_mm2s(value)
        elif offset == 0x58:
            self._start_s2mm(value)

    def _reset(self):
        self._board._transport.reset()
        for ch in _CHANNEL.values():
            self._regs[ch] = 0
            self._regs[ch + 4] = _DMASR_HALTED
        self._busy = {"mm2s": False, "s2mm": 0}

    def _fail(self, channel, bit):
        status = _CHANNEL[channel] + 4
        self._regs[status] = (self._regs[status] | bit | _DMASR_HALTED) & ~_DMASR_IDLE

    def _start_mm2s(self, nbytes):
        if self._regs[4] & _DMASR_HALTED:
            return
        if nbytes == 0 or nbytes > self.length_limit or nbytes % 4:
            self._fail("mm2s", _DMASR_INTERR)
            return
        data = self._board._read_memory(self._regs[0x18], nbytes)
        if data is None:
            self._fail("mm2s", _DMASR_DECERR)
            return
        self._regs[4] &= ~_DMASR_IDLE
        self._busy["mm2s"] = True
        self._board._transport.send(data.view(np.uint32), timeout=10.0)

    def _start_s2mm(self, nbytes):
        if self._regs[0x34] & _DMASR_HALTED:
            return
        if nbytes == 0 or nbytes > self.length_limit or nbytes % 4:
            self._fail("s2mm", _DMASR_INTERR)
            return
        if "s2mm_slverr" in self._board.faults:
            self._fail("s2mm", _DMASR_SLVERR)
            return
        self._regs[0x34] &= ~_DMASR_IDLE
        self._busy["s2mm"] = nbytes // 4

    def _advance(self, channel):
        """Let the fabric run a little and complete what it can."""
        t = self._board._transport
        if channel == "mm2s" and self._busy["mm2s"]:
            if "mm2s_stuck" in self._board.faults:
                return
            try:
                t.wait_sent(timeout=_POLL_SECONDS)
            except TransportTimeout:
                return
            self._busy["mm2s"] = False
            self._regs[4] |= _DMASR_IDLE | _DMASR_IOC
        elif channel == "s2mm" and self._busy["s2mm"]:
            try:
                words = t.recv(self._busy["s2mm"], timeout=_POLL_SECONDS)
            except TransportTimeout:
                return
            except TransportError:         # a packet longer than the buffer
                self._busy["s2mm"] = 0
                self._fail("s2mm", _DMASR_INTERR)
                return
            if not self._board._write_memory(self._regs[0x48], words.astype(np.uint32)):
                self._busy["s2mm"] = 0
                self._fail("s2mm", _DMASR_DECERR)
                return
            self._busy["s2mm"] = 0
            self._regs[0x58] = 4 * len(words)
            self._regs[0x34] |= _DMASR_IDLE | _DMASR_IOC


class _Mmio:
    def __init__(self, board, base, length):
        self._board = board
        self.base_addr = base
        self.length = length

    def read(self, offset=0, length=4):
        return self._board._transport.read32(offset, timeout=10.0)

    def write(self, offset, value):
        self._board._transport.write32(offset, int(value), timeout=10.0)


class _Overlay:
    def __init__(self, board, bitfile, download=True):
        bit = Path(bitfile)
        if not bit.is_file():
            raise IOError(f"Bitstream file {bitfile} does not exist.")
        hwh = bit.with_suffix(".hwh")
        if not hwh.is_file():
            raise RuntimeError(f"Unable to find metadata for bitstream {bit.name} "
                               f"(no {hwh.name} beside it)")
        root = ET.parse(hwh).getroot()
        self.ip_dict = {}
        for module in root.iter("MODULE"):
            params = {p.get("NAME"): p.get("VALUE")
                      for p in module.iter("PARAMETER")}
            self.ip_dict[module.get("INSTANCE")] = {"type": module.get("VLNV"),
                                                    "parameters": params}
            if module.get("MODTYPE") == "axi_dma":
                setattr(self, module.get("INSTANCE"),
                        _Dma(board, module.get("INSTANCE"),
                             {k.lower(): v for k, v in params.items()}))
            if module.get("MODTYPE") == "processing_system7" and download:
                mhz = params.get("PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ")
                if mhz is not None:
                    board.Clocks.fclk0_mhz = float(mhz)
        for fault in board.faults:
            if fault.startswith("fclk0="):
                board.Clocks.fclk0_mhz = float(fault.split("=", 1)[1])
        board.overlays.append(self)


class SimulatedPynq:
    """The ``pynq`` module's stand-ins on a simulated board.

    Parameters
    ----------
    transport : xnorlearn.sim.fastsim.FastSimTransport
        The simulated accelerator behind the overlay.
    faults : iterable of str
        Faults to inject (see the module docstring).
    """

    _DDR_BASE = 0x1000_0000

    def __init__(self, transport, *, faults=()):
        self._transport = transport
        self.faults = set(faults)
        self.Clocks = _Clocks()
        self.Device = type("Device", (), {"devices": ["simulated PYNQ board"]})
        self.overlays = []
        self._memory = {}
        self._next = self._DDR_BASE

    def Overlay(self, bitfile, download=True):
        return _Overlay(self, bitfile, download)

    def MMIO(self, base, length):
        return _Mmio(self, base, length)

    def allocate(self, shape, dtype=np.uint32, **kwargs):
        buf = SimBuffer(shape, dtype, self, self._next)
        self._memory[self._next] = buf
        self._next += (buf.nbytes + 63) // 64 * 64 + 64
        return buf

    def _free(self, address):
        self._memory.pop(address, None)

    def _find(self, address, nbytes):
        for base, buf in self._memory.items():
            if base <= address and address + nbytes <= base + buf.nbytes:
                return buf.view(np.uint8).reshape(-1), address - base
        return None, None

    def _read_memory(self, address, nbytes):
        mem, at = self._find(address, nbytes)
        return None if mem is None else np.array(mem[at:at + nbytes])

    def _write_memory(self, address, words):
        data = words.view(np.uint8)
        mem, at = self._find(address, len(data))
        if mem is None:
            return False
        mem[at:at + len(data)] = data
        return True
