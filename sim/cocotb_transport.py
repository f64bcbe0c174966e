"""A transport of the host driver into a cocotb simulation of the accelerator.

:class:`CocotbTransport` owns the cocotbext-axi bus models on the accelerator's ports (an
``AxiLiteMaster`` on ``s_axil``, an ``AxiStreamSource`` on ``s_axis``, an
``AxiStreamSink`` on ``m_axis``, with optional pause generators for idle cycles and
backpressure). Its blocking methods are those of :class:`~xnorlearn.sw.transport.Transport`,
so the very driver code that runs on a board (:class:`xnorlearn.sw.driver.Device`) drives
the simulation: run the driver in a thread made by :func:`cocotb.task.bridge` (for
example ``await run_host(lambda: Device(transport).load(model))``) and each transport call
blocks that thread while the simulator runs.

The async methods (``aread32``, ``awrite32``, ``asend``, ``arecv``) serve benches that
need to act at a given cycle, beside the driver.

Deadlines are wall-clock seconds, as on hardware: a wait advances the simulation in
chunks of cycles and gives up when its deadline has passed.
"""

import logging
import time

import cocotb
import numpy as np
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, First
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from xnorlearn.sw.transport import Transport, TransportError, TransportTimeout, as_words

__all__ = ["CocotbTransport", "run_host"]


def _pauses(rng, p):
    while True:
        yield bool(rng.random() < p)


async def run_host(func, *args, **kwargs):
    """Run the blocking host code ``func(*args, **kwargs)`` (driver calls) in a bridge
    thread while the simulation runs; returns its result."""
    return await bridge(func)(*args, **kwargs)


class CocotbTransport(Transport):
    """AXI4-Lite and AXI4-Stream bus models on an accelerator's top-level ports.

    Parameters
    ----------
    dut : cocotb handle
        The accelerator's top level (ports ``clk``, ``rst``, ``s_axil__*``, ``s_axis__*``,
        ``m_axis__*``); the clock must be started by the caller.
    rng : numpy.random.Generator, optional
        Draws the stalls; needed when ``idle`` or ``backpressure`` is not 0.
    idle : float
        Probability of an idle cycle on ``s_axis`` and the AW/W/AR channels.
    backpressure : float
        Probability of ``tready`` low on ``m_axis`` and of B/R not ready.
    chunk : int
        Cycles simulated between two looks at the wall clock.
    clock_ns : float
        Period of the clock the caller started on ``dut.clk``.

    Raises
    ------
    ValueError
        For stall probabilities outside 0..1, or stalls without an ``rng``.
    """

    name = "cocotb simulation"
    queued_sends = True
    cycles_per_second = 2e4

    def __init__(self, dut, rng=None, *, idle=0.0, backpressure=0.0, chunk=1000, clock_ns=10):
        for what, p in (("idle", idle), ("backpressure", backpressure)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{what} must be a probability in 0..1, got {p}")
        self.dut = dut
        self.clk = dut.clk
        self._chunk = chunk
        self._clock_ns = clock_ns
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_"), dut.clk,
                                      dut.rst, byte_lanes=1)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_"), dut.clk, dut.rst,
                                  byte_lanes=1)
        for bus in (self.axil.write_if, self.axil.read_if, self.source, self.sink):
            bus.log.setLevel(logging.WARNING)     # no line per frame
        if idle or backpressure:
            if rng is None:
                raise ValueError("stalls need an rng")
            self.source.set_pause_generator(_pauses(rng, idle))
            self.sink.set_pause_generator(_pauses(rng, backpressure))
            for ch in (self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                       self.axil.read_if.ar_channel):
                ch.set_pause_generator(_pauses(rng, idle))
            for ch in (self.axil.write_if.b_channel, self.axil.read_if.r_channel):
                ch.set_pause_generator(_pauses(rng, backpressure))
        self.register_reads = 0

    # -- async side ------------------------------------------------------------------------

    async def _within(self, coro, timeout, what):
        task = cocotb.start_soon(coro)
        deadline = time.monotonic() + timeout
        while not task.done():
            if time.monotonic() > deadline:
                task.cancel()
                raise TransportTimeout(f"{self.name}: no {what} within {timeout:.2f} s")
            await First(task.complete, ClockCycles(self.clk, self._chunk))
        return task.result()

    async def aread32(self, offset, *, timeout=10.0):
        resp = await self._within(self.axil.read(offset, 4), timeout,
                                  f"response to the read of {offset:#x}")
        if resp.resp != 0:
            raise TransportError(f"{self.name}: read of {offset:#x} answered "
                                 f"{'SLVERR' if resp.resp == 2 else 'DECERR'}")
        self.register_reads += 1
        return int.from_bytes(resp.data, "little")

    async def awrite32(self, offset, value, *, timeout=10.0):
        resp = await self._within(self.axil.write(offset, int(value).to_bytes(4, "little")),
                                  timeout, f"response to the write of {offset:#x}")
        if resp.resp != 0:
            raise TransportError(f"{self.name}: write of {offset:#x} answered "
                                 f"{'SLVERR' if resp.resp == 2 else 'DECERR'}")

    async def asend(self, words, *, timeout=10.0):
        words = as_words(words)
        await self.source.send(AxiStreamFrame([int(w) for w in words]))

    async def await_sent(self, *, timeout=10.0):
        await self._within(self.source.wait(), timeout, "end of the packets on s_axis")

    async def arecv(self, max_words, *, timeout=10.0):
        deadline = time.monotonic() + timeout
        while self.sink.empty():
            if time.monotonic() > deadline:
                raise TransportTimeout(f"{self.name}: no response packet within "
                                       f"{timeout:.2f} s")
            await self.sink.wait(self._chunk * self._clock_ns, "ns")
        words = np.array(self.sink.recv_nowait().tdata, dtype=np.uint32)
        if len(words) > max_words:
            raise TransportError(f"{self.name}: a response of {len(words)} words, at most "
                                 f"{max_words} expected")
        return words

    async def areset(self):
        self.source.assert_reset(True)
        self.sink.assert_reset(True)
        await ClockCycles(self.clk, 2)
        self.source.clear()
        while not self.sink.empty():
            self.sink.recv_nowait()
        self.source.assert_reset(False)
        self.sink.assert_reset(False)

    # -- blocking side (Transport), for host code in a bridge thread ----------------------

    def read32(self, offset, *, timeout):
        return resume(self.aread32)(offset, timeout=timeout)

    def write32(self, offset, value, *, timeout):
        return resume(self.awrite32)(offset, value, timeout=timeout)

    def send(self, words, *, timeout):
        return resume(self.asend)(words, timeout=timeout)

    def wait_sent(self, *, timeout):
        return resume(self.await_sent)(timeout=timeout)

    def recv(self, max_words, *, timeout):
        return resume(self.arecv)(max_words, timeout=timeout)

    def reset(self):
        return resume(self.areset)()
