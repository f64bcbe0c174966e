# amaranth: UnusedElaboratable=no
"""TrainerCore against the golden FastBMLP, weight for weight (amaranth.sim, cocotb)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from xnorlearn.hw.core import TrainerCore
from xnorlearn.sim.runner import run_cocotb
from xnorlearn.sim.tb_core import Scenario

SMALL = dict(lanes=32, max_layers=2, max_width=40, max_fan_in=100, classes=10, max_batch=16,
             max_groups=40, weight_words=256)


class Host:
    """amaranth.sim driver of the core's streams and configuration ports."""

    def __init__(self, dut, ctx, rng, *, idle=0.0, stall=0.0):
        self.dut, self.ctx, self.rng, self.idle, self.stall = dut, ctx, rng, idle, stall

    async def configure(self, cfg):
        dut, ctx = self.dut, self.ctx
        ctx.set(dut.layers, cfg["layers"])
        for name in ("width", "gamma", "robust", "thresh", "key"):
            for i, v in enumerate(cfg[name]):
                ctx.set(getattr(dut, name)[i], v)
        ctx.set(dut.step_value, cfg["step"])
        ctx.set(dut.step_load, 1)
        await ctx.tick()
        ctx.set(dut.step_load, 0)
        await ctx.tick().repeat(self.dut.config_latency + 1)  # the derived configuration settles

    async def send(self, words):
        dut, ctx = self.dut, self.ctx
        for n, w in enumerate(words):
            while self.idle and self.rng.random() < self.idle:
                ctx.set(dut.s_axis.valid, 0)
                await ctx.tick()
            ctx.set(dut.s_axis.payload.data, w)
            ctx.set(dut.s_axis.payload.last, n == len(words) - 1)
            ctx.set(dut.s_axis.valid, 1)
            await ctx.tick().until(dut.s_axis.ready)
        ctx.set(dut.s_axis.valid, 0)

    async def receive(self, max_cycles=100_000):
        dut, ctx = self.dut, self.ctx
        words = []
        for _ in range(max_cycles):
            ready = not (self.stall and self.rng.random() < self.stall)
            ctx.set(dut.m_axis.ready, ready)
            _, _, valid, data, last = await ctx.tick().sample(
                dut.m_axis.valid, dut.m_axis.payload.data, dut.m_axis.payload.last)
            if valid and ready:
                words.append(data)
                if last:
                    ctx.set(dut.m_axis.ready, 0)
                    return words
        raise AssertionError(f"no complete response after {max_cycles} cycles ({words})")

    async def request(self, words):
        await self.send(words)
        return await self.receive()

    async def wait_idle(self):
        for _ in range(100_000):
            _, _, busy = await self.ctx.tick().sample(self.dut.busy)
            if not busy:
                return
        raise AssertionError("core stays busy")


def run_core(build, rng, *, networks, batches, idle=0.0, stall=0.0, first_sizes=None):
    dut = TrainerCore(**build)
    report = []

    async def bench(ctx):
        host = Host(dut, ctx, rng, idle=idle, stall=stall)
        for n in range(networks):
            # `first_sizes`: those of the first network; the others are random.
            sc = Scenario(rng, build, batches, sizes=first_sizes if n == 0 else None)
            await host.configure(sc.config)
            for packet in sc.load_packets():
                await host.send(packet)
            await host.wait_idle()
            assert not ctx.get(dut.error), ctx.get(dut.error_code)
            errors0, patterns0 = ctx.get(dut.errors), ctx.get(dut.patterns)
            total_err = total_bs = 0
            for n in range(batches):
                cyc0 = {k: ctx.get(getattr(dut, k)) for k in
                        ("cycles", "cycles_forward", "cycles_update", "cycles_reinforce",
                         "cycles_io")}
                packet, check, errors = sc.train(n)
                check(await host.request(packet))
                total_err += errors
                total_bs += len(sc.batches[n][1])
                cyc = {k: ctx.get(getattr(dut, k)) - v for k, v in cyc0.items()}
                sizes = sc.model.config.sizes
                report.append((sizes, len(sc.batches[n][1]), cyc))
                # Each busy cycle is counted under one phase; the forward pass streams one
                # word per cycle at best.
                assert sum(v for k, v in cyc.items() if k != "cycles") == cyc["cycles"], cyc
                groups = -(-len(sc.batches[n][1]) // build.get("fwd_patterns", 1))
                assert cyc["cycles_forward"] >= groups * sum(
                    k * -(-kin // build["lanes"]) for kin, k in zip(sizes, sizes[1:])), cyc
                # Every other minibatch goes back to back with the next, its sweeps beside
                # the next one's load and forward pass (a READ_H would wait for them).
                if n % 2 == 0 and n < batches - 1:
                    continue
                for rd_packet, rd_check in sc.readback_packets():
                    rd_check(await host.request(rd_packet))
                assert ctx.get(dut.step) == sc.model.step
                assert ctx.get(dut.errors) - errors0 == total_err
                assert ctx.get(dut.patterns) - patterns0 == total_bs
            assert not ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for sizes, bs, cyc in report:
        print(sizes, "bs", bs, cyc)
    return report


@pytest.mark.parametrize("build", [
    SMALL,
    # Three layers (the forward pass of layer 2 waits for the updates of layer 0, which use
    # the same A bank), one draw request per word, 64 lanes.
    dict(SMALL, lanes=64, max_layers=3, max_width=24, classes=3, max_groups=12,
         weight_words=128, draw_lanes=64),
    # The forward pass on three patterns at once (partial last groups).
    dict(SMALL, fwd_patterns=3),
    # Two draws per cycle: each TRAIN's sweeps outlast the next packet's load, and the
    # next forward pass streams beside them.
    dict(SMALL, draw_lanes=2),
    # Lanes not a power of two: a layer's outputs pack into 96-bit A words by division
    # (neurons 96.. go to the second word), and the load splits 3 host words per A word.
    dict(SMALL, lanes=96, max_width=110, max_fan_in=200, max_groups=64, weight_words=512,
         fwd_patterns=2),
], ids=["p32d16", "p64d64l3", "p32g3", "p32d2", "p96g2"])
def test_core_trains_like_golden(rng, build):
    # The first network fills the build: its inputs and its first layer span several words
    # (for 96 lanes, outputs 96.. pack into the second A word of the next layer).
    sizes = (build["max_fan_in"], build["max_width"], 8)[:build["max_layers"] + 1]
    report = run_core(build, rng, networks=2, batches=2, first_sizes=sizes)
    assert len(report) == 4


COCOTB_BUILDS = {
    "p32c10": dict(SMALL),
    "p32c4d2": dict(SMALL, classes=4, max_width=24, max_fan_in=40, max_batch=8, max_groups=24,
                    weight_words=64, draw_lanes=2),
    "p64c3": dict(SMALL, lanes=64, classes=3, max_layers=3, max_width=24, max_groups=12,
                  weight_words=128),
}

# The bench touches only the ports; compiling the model's C++ at -O0 halves the build
# (which dominates: the runs themselves take seconds).
VERILATOR_ARGS = ["--no-public-flat-rw", "--public-depth", "1", "-CFLAGS", "-O0"]


@pytest.mark.parametrize("build_name, simulator", [
    ("p32c10", "verilator"),
    ("p32c4d2", "icarus"),
    pytest.param("p64c3", "verilator", marks=pytest.mark.slow),
    pytest.param("p64c3", "icarus", marks=pytest.mark.slow),
    pytest.param("p32c10", "icarus", marks=pytest.mark.slow),
])
def test_core_cocotb(build_root, build_name, simulator):
    build = COCOTB_BUILDS[build_name]
    params = {"build": build, "networks": 3 if simulator == "verilator" else 2, "batches": 3}
    run_cocotb(TrainerCore(**build), name="trainer_core", test_module="xnorlearn.sim.tb_core",
               simulator=simulator, build_dir=f"{build_root}/core_{build_name}_{simulator}",
               params=params, testcase=["test_train", "test_train_stalls"],
               extra_build_args=VERILATOR_ARGS if simulator == "verilator" else ())


def test_core_protocol_errors_infer_thresholds(rng):
    """Bad packets latch the right error code, are discarded and change nothing; INFER
    predicts as the golden forward pass (with thresholds written by WRITE_T); soft reset."""
    from xnorlearn.hw.core import ErrorCode
    from xnorlearn.sim.tb_core import (INFER, READ_H, READ_T, TRAIN, WRITE_T, header,
                                       train_packet)
    build = dict(SMALL, classes=4)
    dut = TrainerCore(**build)
    checks = []

    async def bench(ctx):
        host = Host(dut, ctx, rng)
        sc = Scenario(rng, build, 3)
        cfg = sc.model.config
        await host.configure(sc.config)
        for packet in sc.load_packets():
            await host.send(packet)
        await host.wait_idle()

        async def expect_error(packet, code, restore=None):
            await host.send(packet)
            await ctx.tick().repeat(5)
            assert ctx.get(dut.error) and ctx.get(dut.error_code) == code, \
                (ctx.get(dut.error), ctx.get(dut.error_code), code)
            assert not ctx.get(dut.s_axis.ready)
            if restore is not None:
                await restore()
            ctx.set(dut.clear_error, 1)
            await ctx.tick()
            ctx.set(dut.clear_error, 0)
            await ctx.tick()
            assert not ctx.get(dut.error) and ctx.get(dut.error_code) == ErrorCode.NONE
            for rd_packet, rd_check in sc.readback_packets():
                rd_check(await host.request(rd_packet))
            assert ctx.get(dut.step) == sc.model.step
            checks.append(code)

        a0, y = sc.batches[0]
        good = train_packet(a0, y)
        await expect_error([0x7F000000, 1, 2], ErrorCode.OPCODE)
        await expect_error([0x7F000000], ErrorCode.OPCODE)
        bad_label = list(good)
        bad_label[1] = build["classes"]
        await expect_error(bad_label, ErrorCode.LABEL)
        await expect_error(good[:-1], ErrorCode.LENGTH)          # tlast one word early
        await expect_error(good + [0, 0], ErrorCode.LENGTH)      # two words too many
        await expect_error([header(TRAIN, 0, 0)] + good[1:], ErrorCode.LENGTH)
        await expect_error([header(TRAIN, 0, build["max_batch"] + 1)] + good[1:],
                           ErrorCode.LENGTH)
        await expect_error([header(READ_H, cfg.layers)], ErrorCode.LAYER)
        await expect_error([header(READ_H, 0), 0], ErrorCode.LENGTH)
        ctx.set(dut.width[1], build["max_width"] + 1)
        await ctx.tick().repeat(build["max_layers"] + 3)

        async def restore():
            ctx.set(dut.width[1], cfg.sizes[1])
            await ctx.tick().repeat(build["max_layers"] + 3)
        await expect_error(good, ErrorCode.CONFIG, restore)

        # Soft reset in the middle of a packet: back to idle, counters and step cleared.
        await host.send(good[:3] if len(good) > 3 else good[:2])
        ctx.set(dut.soft_reset, 1)
        await ctx.tick()
        ctx.set(dut.soft_reset, 0)
        await ctx.tick()
        assert not ctx.get(dut.busy) and ctx.get(dut.step) == 0 and ctx.get(dut.cycles) == 0
        await host.configure(sc.config)

        # Thresholds: random theta / flip, read back, then INFER against the golden forward.
        for l in range(cfg.layers):
            k = cfg.sizes[l + 1]
            theta = rng.integers(-cfg.sizes[l], cfg.sizes[l] + 1, size=k)
            flip = rng.random(k) < 0.3
            words = [(int(t) & 0xFFFF) | (int(f) << 16) for t, f in zip(theta, flip)]
            await host.send([header(WRITE_T, l)] + words)
            assert await host.request([header(READ_T, l)]) == words
            sc.model.theta[l] = theta.astype(sc.model.theta[l].dtype)
            sc.model.flip[l] = flip
        for a0, y in sc.batches:
            yhat = sc.model.forward(a0)[-1][2]
            pred = np.argmax(yhat, axis=1)
            errors = int(np.count_nonzero(pred != y))
            got = await host.request(train_packet(a0, y, op=INFER))
            assert got == [int(p) for p in pred] + [0x82000000 | errors]
            checks.append("infer")
        for rd_packet, rd_check in sc.readback_packets():
            rd_check(await host.request(rd_packet))
        assert ctx.get(dut.step) == sc.model.step
        # A refused TRAIN right after an INFER must not apply the INFER's pick lists.
        await expect_error([header(TRAIN, 0, 1)], ErrorCode.LENGTH)
        await expect_error(good[:-1], ErrorCode.LENGTH)

        # Back to training thresholds (0 / 0) and one TRAIN that must match the golden model.
        for l in range(cfg.layers):
            await host.send([header(WRITE_T, l)] + [0] * cfg.sizes[l + 1])
            sc.model.theta[l][:] = 0
            sc.model.flip[l][:] = False
        packet, check, _ = sc.train(0)
        check(await host.request(packet))
        for rd_packet, rd_check in sc.readback_packets():
            rd_check(await host.request(rd_packet))
        checks.append("train")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(checks) == 10 + 3 + 2 + 1
