# amaranth: UnusedElaboratable=no
"""LayerConfig against the reference layout of the docs (``sim/protocol_model.py``): the
fit check, the layer bases and every value selected for the forward and update layers,
over random configurations of several builds, checked exactly ``latency`` cycles after
the ports change."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from xnorlearn.contract import Build
from xnorlearn.hw.accelerator import core_parameters
from xnorlearn.hw.core import TrainerCore
from xnorlearn.hw.layer_config import LayerConfig
from xnorlearn.sim.protocol_model import config_of, fit_problem

BUILDS = [
    Build(lanes=32, max_layers=2, max_width=24, max_fan_in=40, classes=3, max_batch=6,
          max_groups=6, weight_words=64),
    Build(lanes=64, max_layers=3, max_width=200, max_fan_in=300, classes=10, max_batch=16,
          max_groups=8, draw_lanes=32),
    Build(lanes=128, max_layers=1, max_width=50, max_fan_in=1000, classes=4, max_batch=8,
          max_groups=4),
    Build(lanes=160, max_layers=2, max_width=400, max_fan_in=900, classes=10, max_batch=8,
          max_groups=16, draw_lanes=32),
]


def core_of(build):
    return TrainerCore(**core_parameters(build))


def make(build):
    """The LayerConfig of the core of ``build``."""
    core = core_of(build)
    dut = LayerConfig(lanes=build.lanes, max_layers=build.max_layers,
                      width_bits=core.width_bits, margin_bits=core.margin_bits,
                      max_width=build.max_width, max_fan_in=build.max_fan_in,
                      max_groups=build.max_groups, weight_words=build.weight_words,
                      draw_lanes=build.draw_lanes)
    return dut


def random_regs(rng, build, dut):
    """Register values: mostly configurations that fit, some that do not."""
    ml = build.max_layers
    wmax = (1 << dut.width_bits) - 1
    regs = {"LAYERS": int(rng.integers(1, ml + 1)) if rng.random() < 0.9
            else int(rng.integers(0, 1 << len(dut.layers))),
            "INPUTS": int(rng.integers(1, build.max_fan_in + 1)) if rng.random() < 0.9
            else int(rng.integers(0, wmax + 1))}
    for l in range(ml):
        k = int(rng.integers(1, build.max_width + 1)) if rng.random() < 0.9 \
            else int(rng.integers(0, wmax + 1))
        divisors = [g for g in range(1, k + 1)
                    if k % g == 0 and k <= g * build.max_groups] or [1]
        g = int(rng.choice(divisors)) if rng.random() < 0.85 else int(rng.integers(0, wmax + 1))
        regs.update({f"WIDTH_{l}": k, f"GAMMA_{l}": g,
                     f"ROBUST_{l}": int(rng.integers(0, 1 << dut.margin_bits)),
                     f"THRESH_{l}": int(rng.integers(0, 1 << 17)),
                     f"KEY_{l}": int(rng.integers(0, 1 << 32))})
    return regs


def expected(build, regs, l):
    """The values of layer ``l`` of a configuration that fits."""
    cfg = config_of(build, regs)
    P, D = build.lanes, build.draw_lanes
    base, n = cfg.layout(P)[l]
    kin, kout = cfg.fan_in(l), cfg.widths[l]
    last = kin - (n - 1) * P
    return {"base": base, "words": n, "words_m1": n - 1, "last": last, "kin": kin,
            "kout_m1": kout - 1, "hw_m1": -(-kin // 4) - 1, "chunks_m1": -(-last // D) - 1,
            "robust": regs[f"ROBUST_{l}"], "gamma": regs[f"GAMMA_{l}"],
            "thresh": regs[f"THRESH_{l}"], "key": regs[f"KEY_{l}"],
            "is_last": int(l == cfg.layers - 1)}


@pytest.mark.parametrize("index", range(len(BUILDS)))
def test_against_reference(index):
    build = BUILDS[index]
    dut = make(build)
    rng = np.random.default_rng([index, 0xC0F])
    cases = [random_regs(rng, build, dut) for _ in range(60)]
    if index == 0:
        # The weight words exactly at weight_words (40 inputs: 2 words x 24 neurons, then
        # 16 x 1 = 64), then one word over.
        base = {**cases[0], "LAYERS": 2, "INPUTS": 40, "WIDTH_0": 24, "GAMMA_0": 4}
        cases += [{**base, "WIDTH_1": 16, "GAMMA_1": 16}, {**base, "WIDTH_1": 17, "GAMMA_1": 17}]
        assert [fit_problem(build, r) is None for r in cases[-2:]] == [True, False]
    checked = {"fits": 0, "refused": 0, "layers": 0}

    async def bench(ctx):
        for regs in cases:
            ctx.set(dut.layers, regs["LAYERS"])
            ctx.set(dut.width[0], regs["INPUTS"])
            for l in range(build.max_layers):
                ctx.set(dut.width[l + 1], regs[f"WIDTH_{l}"])
                for name in ("gamma", "robust", "thresh", "key"):
                    ctx.set(getattr(dut, name)[l], regs[f"{name.upper()}_{l}"])
            await ctx.tick().repeat(dut.latency)
            fits = fit_problem(build, regs) is None
            assert ctx.get(dut.ok) == fits, (regs, fit_problem(build, regs))
            checked["fits" if fits else "refused"] += 1
            if not fits:
                continue
            cfg = config_of(build, regs)
            assert [ctx.get(dut.bases[l]) for l in range(cfg.layers)] == \
                [b for b, _ in cfg.layout(build.lanes)]
            for l in range(cfg.layers):
                ctx.set(dut.fwd_layer, l)
                ctx.set(dut.upd_layer, l)
                await ctx.tick()
                want = expected(build, regs, l)
                fwd = {f: ctx.get(getattr(dut.fwd, f)) for f in (
                    "last", "base", "kin", "robust", "gamma", "words_m1", "kout_m1", "hw_m1",
                    "is_last")}
                upd = {f: ctx.get(getattr(dut.upd, f)) for f in (
                    "words", "last", "base", "kin", "words_m1", "kout_m1", "chunks_m1",
                    "thresh", "key")}
                assert fwd == {f: want[f] for f in fwd}, (regs, l)
                assert upd == {f: want[f] for f in upd}, (regs, l)
                checked["layers"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked["fits"] >= 30 and checked["refused"] >= 3, checked


def test_latency_is_the_cores():
    """The core's settling bound covers the unit's latency and one cycle of its own."""
    build = BUILDS[1]
    dut = make(build)
    assert dut.latency == build.max_layers + 4
    assert core_of(build).config_latency == dut.latency + 1


@pytest.mark.parametrize("kwargs, error, match", [
    ({"lanes": 48}, ValueError, r"lanes must be a multiple of 32 in 32\.\.1024, not 48"),
    ({"max_layers": 9}, ValueError, r"max_layers must be in 1\.\.8, got 9"),
    ({"draw_lanes": 24}, ValueError, r"draw_lanes must be a power of two dividing lanes"),
    ({"width_bits": 2.0}, TypeError, r"width_bits must be an integer"),
])
def test_bad_parameters(kwargs, error, match):
    args = dict(lanes=64, max_layers=2, width_bits=10, margin_bits=9, max_width=256,
                max_fan_in=1000, max_groups=16, weight_words=5120, draw_lanes=16)
    with pytest.raises(error, match=match):
        LayerConfig(**{**args, **kwargs})
