"""GroupSelector against the golden ``select_easiest`` (with ``saturate``)."""

import gc

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from xnorlearn.hw.selector import GroupSelector
from xnorlearn.sim.runner import SIMULATORS, run_cocotb
from xnorlearn.sim.tb_selector import selector_cases, selector_expected, selector_items


@pytest.mark.parametrize("kwargs, error, match", [
    ({"z_bits": 1, "max_width": 8}, ValueError, r"z_bits must be in 2\.\.31, got 1"),
    ({"z_bits": 32, "max_width": 8}, ValueError, r"z_bits must be in 2\.\.31, got 32"),
    ({"z_bits": 8.0, "max_width": 8}, TypeError, r"z_bits must be an integer, got 8\.0"),
    ({"z_bits": 8, "max_width": 0}, ValueError, r"max_width must be in 1\.\.1048576, got 0"),
    ({"z_bits": 8, "max_width": None}, TypeError, r"max_width must be an integer, got None"),
    ({"z_bits": 8, "max_width": False}, TypeError, r"max_width must be an integer"),
])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        GroupSelector(**kwargs)
    # The half-built component would warn "created but never used" in a later test.
    del info
    gc.collect()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_parameters_keyword_only():
    with pytest.raises(TypeError) as info:
        GroupSelector(8, 64)
    del info
    gc.collect()


@pytest.mark.parametrize("z_bits, max_width, index_bits, gamma_bits", [
    (8, 1, 1, 1), (8, 2, 1, 2), (4, 64, 6, 7), (12, 1000, 10, 10),
])
def test_widths(z_bits, max_width, index_bits, gamma_bits):
    dut = GroupSelector(z_bits=z_bits, max_width=max_width)
    Fragment.get(dut, None)  # elaborates
    assert (dut.z_bits, dut.max_width, dut.index_bits) == (z_bits, max_width, index_bits)
    assert len(dut.gamma) == gamma_bits and max_width >> gamma_bits == 0
    assert (max_width - 1) >> index_bits == 0
    assert dut.input_layout.size == z_bits + 2
    assert dut.output_layout.size == index_bits + 2
    assert set(dut.signature.members) == {"i", "o", "gamma"}


def simulate(dut, cases, rng, *, idle=0.0, backpressure=0.0, gamma=None):
    """Stream ``cases`` through ``dut`` in amaranth.sim; returns the output items.

    ``gamma`` (if given) replaces each case's group size on the port. The sink
    checks that a stalled output item holds still.
    """
    outputs = []
    total = sum(len(case["z"]) // case["gamma"] for case in cases) if gamma is None else len(cases)
    items = sum(len(case["z"]) for case in cases)

    async def source(ctx):
        for case in cases:
            ctx.set(dut.gamma, case["gamma"] if gamma is None else gamma)
            for item in selector_items(case):
                while rng.random() < idle:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, item)
                ctx.set(dut.i.valid, 1)
                # (not ``.until()``: a failing sink would then leave an unraisable error)
                while not (await ctx.tick().sample(dut.i.ready))[-1]:
                    pass
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        held = None
        cycles = 0
        while len(outputs) < total:
            ready = rng.random() >= backpressure
            ctx.set(dut.o.ready, ready)
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if held is not None:
                assert valid and payload.as_value().value == held, "stalled output changed"
            held = None
            if valid and ready:
                outputs.append((payload.index, payload.valid, payload.last))
            elif valid:
                held = payload.as_value().value
            cycles += 1
            assert cycles < 100 + 20 * items, "no output (hang)"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return outputs


def expected(cases):
    return [item for case in cases for item in selector_expected(case)]


@pytest.mark.parametrize("z_bits, max_width, count", [(8, 300, 25), (4, 48, 150), (3, 12, 150),
                                                      (8, 1, 30)])
@pytest.mark.parametrize("idle, backpressure", [(0.0, 0.0), (0.3, 0.5)], ids=["nostall", "stall"])
def test_random_cases(rng, z_bits, max_width, count, idle, backpressure):
    dut = GroupSelector(z_bits=z_bits, max_width=max_width)
    cases = selector_cases(rng, z_bits, max_width, count)
    assert simulate(dut, cases, rng, idle=idle, backpressure=backpressure) == expected(cases)


def test_corner_cases():
    """Hand-picked patterns checked against literal values (not only the golden model)."""
    dut = GroupSelector(z_bits=4, max_width=8)
    P, M = 1, -1
    cases = [
        # No negative delta in either group (zeros are not negative).
        {"gamma": 4, "z": [0, 3, -3, 0, 7, -7, 1, 0], "rho": [P, P, M, M, P, M, P, P]},
        # Ties everywhere -> lowest index of each group.
        {"gamma": 2, "z": [-5, -5, 5, 5, -5, 5, 5, -5], "rho": [P, P, M, M, P, M, P, P]},
        # delta = -1 beats -2 and -7; z = -8 (beyond z_max) ranks below -7.
        {"gamma": 8, "z": [-7, -2, 1, -1, 3, 0, -8, 2], "rho": [P, P, M, P, M, P, P, M]},
        {"gamma": 4, "z": [-8, -7, 7, 7], "rho": [P, P, P, P]},
        # gamma = 1: one item per neuron.
        {"gamma": 1, "z": [-1, 1, 0], "rho": [P, P, M]},
    ]
    want = [(0, 0, 0), (0, 0, 1),
            (0, 1, 0), (2, 1, 0), (4, 1, 0), (7, 1, 1),
            (2, 1, 1),
            (1, 1, 1),
            (0, 1, 0), (0, 0, 0), (0, 0, 1)]
    assert expected(cases) == want
    assert simulate(dut, cases, np.random.default_rng(0), backpressure=0.5) == want


def test_gamma_zero_is_one_group(rng):
    """``gamma = 0`` on the port makes each pattern a single group (as documented)."""
    dut = GroupSelector(z_bits=5, max_width=20)
    cases = selector_cases(rng, 5, 20, 30)
    want = [item for case in cases for item in selector_expected(case, len(case["z"]))]
    assert simulate(dut, cases, rng, backpressure=0.3, gamma=0) == want


# Verilator builds take 10-30 s here: its second parameter set runs with the slow ones.
@pytest.mark.parametrize("simulator, z_bits, max_width", [
    ("verilator", 8, 120), ("icarus", 8, 120), ("icarus", 4, 12),
    pytest.param("verilator", 4, 12, marks=pytest.mark.slow),
])
def test_cocotb(build_root, simulator, z_bits, max_width):
    dut = GroupSelector(z_bits=z_bits, max_width=max_width)
    run_cocotb(dut, name="group_selector", test_module="xnorlearn.sim.tb_selector",
               simulator=simulator,
               build_dir=f"{build_root}/selector_{simulator}_z{z_bits}_w{max_width}",
               params={"z_bits": z_bits, "max_width": max_width,
                       "cases": 100 if max_width > 50 else 150})


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("z_bits, max_width, cases", [(8, 1, 300), (2, 16, 300), (10, 1024, 20),
                                                     (8, 300, 60)])
def test_cocotb_more(build_root, simulator, z_bits, max_width, cases):
    dut = GroupSelector(z_bits=z_bits, max_width=max_width)
    run_cocotb(dut, name="group_selector", test_module="xnorlearn.sim.tb_selector",
               simulator=simulator,
               build_dir=f"{build_root}/selector_{simulator}_z{z_bits}_w{max_width}",
               params={"z_bits": z_bits, "max_width": max_width, "cases": cases})
