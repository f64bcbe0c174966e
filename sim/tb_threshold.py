# amaranth: UnusedElaboratable=no
"""cocotb bench of :class:`xnorlearn.hw.threshold.ThresholdUnit`.

Parameters (from :func:`xnorlearn.sim.runner.tb_params`): ``max_neurons``,
``z_width``, ``theta_width`` (the HDL parameters, checked against the DUT's port
widths) and ``cases`` (random inputs per test).
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import (Scoreboard, StreamSink, StreamSource, case_rng, record_cases,
                                   unpack, wait_until)
from xnorlearn.sw.golden.literal import threshold_unit

__all__ = ["ThresholdModel", "random_table", "random_inputs", "TB"]


class ThresholdModel:
    """The unit's memory and its golden output, per :func:`threshold_unit`."""

    def __init__(self, max_neurons):
        self.theta = [0] * max_neurons
        self.flip = [0] * max_neurons

    def load(self, index, theta, flip):
        self.theta[index] = theta
        self.flip[index] = flip

    def output(self, index, z):
        """The activation bit (1 for +1) of neuron ``index`` for pre-activation ``z``."""
        return int(threshold_unit(z, self.theta[index], self.flip[index]) > 0)


def random_table(rng, unit):
    """A load for every neuron: thresholds spread over the whole width, with
    its extremes, 0 and ±1 among them, and random flips."""
    lo, hi = unit.theta_min, unit.theta_max
    special = [lo, lo + 1, -1, 0, 1, hi - 1, hi]
    loads = []
    for k in range(unit.max_neurons):
        r = rng.random()
        if r < 0.4:
            theta = int(rng.choice(special))
        elif r < 0.7:
            theta = int(rng.integers(-8, 9))
        else:
            theta = int(rng.integers(lo, hi + 1))
        loads.append({"index": k, "theta": max(lo, min(hi, theta)), "flip": int(rng.integers(2))})
    rng.shuffle(loads)
    return loads


def random_inputs(rng, n, unit, model):
    """``n`` inputs ``{"index", "z"}``: half of them with z at or next to the
    neuron's threshold (as ``model`` holds it now) or at the ends of z's width."""
    z_lo, z_hi = -2 ** (unit.z_width - 1), 2 ** (unit.z_width - 1) - 1
    inputs = []
    for _ in range(n):
        k = int(rng.integers(unit.max_neurons))
        if rng.random() < 0.5:
            theta = model.theta[k]
            z = int(rng.choice([theta - 1, theta, theta + 1, z_lo, z_hi, 0, -1, 1]))
        else:
            z = int(rng.integers(z_lo, z_hi + 1))
        inputs.append({"index": k, "z": max(z_lo, min(z_hi, z))})
    return inputs


class TB:
    """Clock, reset, sources on ``load`` and ``i``, a sink on ``o``, and a watcher
    that replays writes and accepted inputs, in cycle order, through
    :class:`ThresholdModel` into an in-order scoreboard."""

    def __init__(self, dut, *, test_name, idle=0.0, backpressure=0.0):
        from xnorlearn.hw.threshold import ThresholdUnit

        self.dut = dut
        self.params = tb_params()
        self.unit = ThresholdUnit(**{k: self.params[k] for k in ("max_neurons", "z_width",
                                                                 "theta_width", "pipelined")
                                    if k in self.params})
        self.rng = case_rng(test_name)
        load_rng, source_rng, sink_rng = self.rng.spawn(3)
        self.model = ThresholdModel(self.unit.max_neurons)
        self.scoreboard = Scoreboard()
        Clock(dut.clk, 10, unit="ns").start()
        self.load = StreamSource(dut, "load", dut.clk, self.unit.load_layout, rng=load_rng,
                                 idle=idle)
        self.source = StreamSource(dut, "i", dut.clk, self.unit.input_layout, rng=source_rng,
                                   idle=idle)
        self.sink = StreamSink(dut, "o", dut.clk, self.unit.output_layout,
                               lambda out: self.scoreboard.observe(out["a"]),
                               rng=sink_rng, backpressure=backpressure)
        cocotb.start_soon(self._watch_inputs())

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    async def _watch_inputs(self):
        # A write is seen by an input accepted in the same cycle: apply writes first.
        # (``load.ready`` is always 1, so a valid write is a write.)
        while True:
            await RisingEdge(self.dut.clk)
            if self.dut.rst.value == 1:
                continue
            if self.dut.load__valid.value == 1:
                w = unpack(self.unit.load_layout, self.dut.load__payload.value.to_unsigned())
                self.model.load(w["index"], w["theta"], w["flip"])
            if self.dut.i__valid.value == 1 and self.dut.i__ready.value == 1:
                x = unpack(self.unit.input_layout, self.dut.i__payload.value.to_unsigned())
                k = x["index"]
                x.update(theta=self.model.theta[k], flip=self.model.flip[k])
                self.scoreboard.expect(self.model.output(k, x["z"]), note=x)

    def send_loads(self, loads):
        for w in loads:
            self.load.send(w)

    def send_inputs(self, inputs):
        for x in inputs:
            self.source.send(x)

    async def drain(self, max_cycles):
        """Wait until both sources are empty and every output has come (at most
        ``max_cycles``), then a few cycles more to catch unexpected outputs."""
        cycles = await wait_until(self.dut.clk, lambda: (self.load.empty and self.source.empty
                                                         and not self.scoreboard.pending),
                                  max_cycles=max_cycles)
        await ClockCycles(self.dut.clk, 5)
        self.scoreboard.check_done()
        return cycles

    def finish(self, test_name, cases):
        assert self.scoreboard.checked == cases, \
            f"checked {self.scoreboard.checked} outputs, sent {cases} inputs"
        record_cases(self.dut, test_name, self.scoreboard.checked,
                     max_neurons=self.unit.max_neurons, z_width=self.unit.z_width,
                     theta_width=self.unit.theta_width)


def _cases(tb):
    return tb.params.get("cases", 500)


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_sign(dut):
    """theta = 0, flip = 0 everywhere: a = sign(z) with sign(0) = +1."""
    tb = TB(dut, test_name="test_sign")
    await tb.reset()
    # The memory keeps what earlier tests loaded (reset does not clear it).
    tb.send_loads([{"index": k, "theta": 0, "flip": 0} for k in range(tb.unit.max_neurons)])
    await tb.drain(tb.unit.max_neurons + 100)
    inputs = random_inputs(tb.rng, _cases(tb) // 4, tb.unit, tb.model)
    tb.send_inputs(inputs)
    cycles = await tb.drain(10 * len(inputs) + 100)
    tb.finish("test_sign", len(inputs))
    assert cycles <= len(inputs) + tb.unit.latency + 2, f"{len(inputs)} inputs took {cycles} cycles"


async def _loaded(dut, test_name, *, idle, backpressure):
    tb = TB(dut, idle=idle, backpressure=backpressure, test_name=test_name)
    await tb.reset()
    loads = random_table(tb.rng, tb.unit)
    tb.send_loads(loads)
    await tb.drain(10 * len(loads) + 100)
    # The inputs aim at the thresholds now loaded (the monitor has replayed them).
    inputs = random_inputs(tb.rng, _cases(tb), tb.unit, tb.model)
    tb.send_inputs(inputs)
    await tb.drain(int(len(inputs) / (1 - idle) / (1 - backpressure) * 4) + 100)
    tb.finish(test_name, len(inputs))


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_loaded(dut):
    """Random thresholds and flips, inputs back to back, output always ready."""
    await _loaded(dut, "test_loaded", idle=0.0, backpressure=0.0)


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_loaded_idle_and_backpressure(dut):
    """Random thresholds and flips, idle input cycles, output backpressure."""
    await _loaded(dut, "test_loaded_idle_and_backpressure", idle=0.3, backpressure=0.5)


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_writes_between_inputs(dut):
    """Writes and inputs at the same time, on the same few neurons."""
    tb = TB(dut, idle=0.4, backpressure=0.3, test_name="test_writes_between_inputs")
    await tb.reset()
    n = _cases(tb)
    hot = min(4, tb.unit.max_neurons)
    tb.send_loads([{"index": k, "theta": 0, "flip": 0} for k in range(hot)])
    await tb.drain(100)
    loads = [dict(w, index=w["index"] % hot) for w in random_table(tb.rng, tb.unit)]
    while len(loads) < n:
        loads += loads
    z_lo, z_hi = -2 ** (tb.unit.z_width - 1), 2 ** (tb.unit.z_width - 1) - 1
    inputs = []
    for _ in range(n):
        # z next to a threshold that is loaded at some point, so that a write
        # arriving a cycle early or late changes the answer.
        w = loads[int(tb.rng.integers(len(loads)))]
        z = w["theta"] + int(tb.rng.integers(-1, 2))
        inputs.append({"index": w["index"], "z": max(z_lo, min(z_hi, z))})
    tb.send_loads(loads[:n])
    tb.send_inputs(inputs)
    await tb.drain(20 * n + 100)
    tb.finish("test_writes_between_inputs", n)
