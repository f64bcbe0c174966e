# amaranth: UnusedElaboratable=no
"""ThresholdUnit: Amaranth simulation against the golden model, cocotb benches, Verilog export."""

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from xnorlearn.hw.popcount import XnorPopcount
from xnorlearn.hw.threshold import ThresholdUnit
from xnorlearn.sim.runner import run_cocotb
from xnorlearn.sim.tb_threshold import ThresholdModel, random_inputs, random_table
from xnorlearn.sw.golden.literal import threshold_unit


def simulate(dut, schedule, *, rng, idle=0.0, stall=0.0, loads_first=False):
    """Run ``schedule``, a list of ``("load", fields)`` and ``("input", fields)`` items,
    through ``dut``: loads and inputs each keep their own order, but a load and an
    input may share a cycle (with ``idle``, each stream idles independently), unless
    ``loads_first`` holds the inputs back until every load is done.

    Returns ``(outputs, expected, cycles)``: the ``a`` bits the unit produced, those
    :class:`ThresholdModel` predicts for the same cycle-by-cycle order of writes and
    accepted inputs, and the cycles taken. Also checks that a valid output holds
    until accepted.
    """
    loads = [f for kind, f in schedule if kind == "load"]
    inputs = [f for kind, f in schedule if kind == "input"]
    model = ThresholdModel(dut.max_neurons)
    outputs, expected = [], []
    cycles = 0
    max_cycles = 10 * len(schedule) + 1000   # a wedged unit fails fast

    async def bench(ctx):
        nonlocal cycles
        load_q, input_q = list(reversed(loads)), list(reversed(inputs))
        beat = None
        held = None
        while len(outputs) < len(inputs) or load_q:
            assert cycles < max_cycles, f"only {len(outputs)} of {len(inputs)} outputs"
            write = load_q.pop() if load_q and rng.random() >= idle else None
            ctx.set(dut.load.valid, write is not None)
            if write is not None:
                ctx.set(dut.load.payload, write)
            if beat is None and input_q and not (loads_first and (load_q or write is not None)) \
                    and rng.random() >= idle:
                beat = input_q.pop()
            ctx.set(dut.i.valid, beat is not None)
            if beat is not None:
                ctx.set(dut.i.payload, beat)
            ready = bool(rng.random() >= stall)
            ctx.set(dut.o.ready, ready)
            _, _, load_ready, i_ready, o_valid, o_payload = await ctx.tick().sample(
                dut.load.ready, dut.i.ready, dut.o.valid, dut.o.payload)
            assert load_ready
            if held is not None:
                assert o_valid and o_payload.a == held, "output withdrawn or changed"
            held = o_payload.a if o_valid and not ready else None
            if write is not None:
                model.load(write["index"], write["theta"], write["flip"])
            if beat is not None and i_ready:
                zs = beat["z"] if isinstance(beat["z"], list) else [beat["z"]]
                expected.append(sum(model.output(beat["index"], z) << j
                                    for j, z in enumerate(zs)))
                beat = None
            if o_valid and ready:
                outputs.append(o_payload.a)
            cycles += 1
        ctx.set(dut.i.valid, 0)
        for _ in range(3):
            _, _, o_valid = await ctx.tick().sample(dut.o.valid)
            assert not o_valid, "output nobody asked for"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outputs, expected, cycles


# -- parameters --------------------------------------------------------------------------------

def test_parameters():
    dut = ThresholdUnit(max_neurons=100, z_width=11)
    assert (dut.max_neurons, dut.z_width, dut.theta_width) == (100, 11, 11)
    assert (dut.theta_min, dut.theta_max) == (-1024, 1023)
    assert dut.input_layout.size == 7 + 11
    assert dut.load_layout.size == 7 + 11 + 1
    assert dut.output_layout.size == 1
    dut = ThresholdUnit(max_neurons=1, z_width=8, theta_width=4)
    assert (dut.theta_min, dut.theta_max) == (-8, 7)
    assert dut.input_layout.size == 8
    assert (dut.pipelined, dut.latency) == (False, 1)
    dut = ThresholdUnit(max_neurons=4, z_width=8, pipelined=True)
    assert (dut.pipelined, dut.latency) == (True, 3)


@pytest.mark.parametrize("kwargs, error, text", [
    ({"max_neurons": 0, "z_width": 8}, ValueError, "max_neurons must be in 1..65536, got 0"),
    ({"max_neurons": 65537, "z_width": 8}, ValueError, "max_neurons must be in 1..65536, got 65537"),
    ({"max_neurons": "8", "z_width": 8}, TypeError, "max_neurons must be an integer, got '8'"),
    ({"max_neurons": 8, "z_width": 1}, ValueError, "z_width must be in 2..32, got 1"),
    ({"max_neurons": 8, "z_width": 8, "theta_width": 33}, ValueError,
     "theta_width must be in 2..32, got 33"),
    ({"max_neurons": 8, "z_width": 8, "theta_width": 8.5}, TypeError,
     "theta_width must be an integer"),
    ({"max_neurons": 8, "z_width": 8, "pipelined": 1}, TypeError,
     "pipelined must be a bool, not 1"),
])
def test_bad_parameters(kwargs, error, text):
    with pytest.raises(error, match=text):
        ThresholdUnit(**kwargs)


# -- Amaranth simulation -----------------------------------------------------------------------

@pytest.mark.parametrize("max_neurons, z_width, theta_width", [
    (1, 4, None),       # single entry, no index bits
    (16, 8, None),
    (100, 12, 8),       # 8-bit folded batch-norm thresholds, wider z
    (64, 6, 10),        # thresholds beyond z's range: always or never
])
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.5)])
@pytest.mark.parametrize("pipelined", [False, True])
def test_random(rng, max_neurons, z_width, theta_width, idle, stall, pipelined):
    dut = ThresholdUnit(max_neurons=max_neurons, z_width=z_width, theta_width=theta_width,
                        pipelined=pipelined)
    loads = random_table(rng, dut)
    model = ThresholdModel(max_neurons)
    for w in loads:
        model.load(w["index"], w["theta"], w["flip"])
    inputs = random_inputs(rng, 800, dut, model)
    schedule = [("load", w) for w in loads] + [("input", x) for x in inputs]
    outputs, expected, cycles = simulate(dut, schedule, rng=rng, idle=idle, stall=stall,
                                         loads_first=True)
    assert outputs == expected
    # Cross-check the model against the golden function directly.
    assert expected == [int(threshold_unit(x["z"], model.theta[x["index"]],
                                           model.flip[x["index"]]) > 0) for x in inputs]
    if idle == stall == 0:
        assert cycles <= len(loads) + len(inputs) + dut.latency


@pytest.mark.parametrize("patterns", [2, 5])
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.5)])
@pytest.mark.parametrize("pipelined", [False, True])
def test_random_patterns(rng, patterns, idle, stall, pipelined):
    """``patterns`` pre-activations per input share the neuron's entry: bit ``j`` of ``a``
    is the golden threshold unit on ``z[j]``, under writes between the inputs."""
    dut = ThresholdUnit(max_neurons=24, z_width=9, theta_width=7, pipelined=pipelined,
                        patterns=patterns)
    assert dut.output_layout.size == patterns
    assert dut.input_layout.size == 5 + 9 * patterns
    loads = random_table(rng, dut)
    model = ThresholdModel(dut.max_neurons)
    for w in loads:
        model.load(w["index"], w["theta"], w["flip"])
    singles = random_inputs(rng, 400 * patterns, dut, model)
    inputs = [{"index": singles[n]["index"],
               "z": [x["z"] for x in singles[n:n + patterns]]}
              for n in range(0, len(singles), patterns)]
    more = [{"index": int(rng.integers(24)), "theta": int(rng.integers(-64, 64)),
             "flip": int(rng.integers(2))} for _ in range(300)]
    schedule = ([("load", w) for w in loads] + [("input", x) for x in inputs]
                + [("load", w) for w in more])
    outputs, expected, _ = simulate(dut, schedule, rng=rng, idle=idle, stall=stall)
    assert outputs == expected
    assert len(set(outputs)) > patterns        # lanes decided apart, not all alike


def test_patterns_parameter():
    with pytest.raises(ValueError, match="patterns must be in 1..64, got 0"):
        ThresholdUnit(max_neurons=4, z_width=8, patterns=0)
    assert ThresholdUnit(max_neurons=4, z_width=8, patterns=64).patterns == 64


@pytest.mark.parametrize("pipelined", [False, True])
def test_sign_after_reset(rng, pipelined):
    """Reset contents theta = 0, flip = 0: a = sign(z), sign(0) = +1."""
    dut = ThresholdUnit(max_neurons=8, z_width=6, pipelined=pipelined)
    zs = list(range(-32, 32))
    outputs, expected, _ = simulate(dut, [("input", {"index": k % 8, "z": z})
                                          for k, z in enumerate(zs)], rng=rng, stall=0.3)
    assert outputs == expected == [int(z >= 0) for z in zs]


def test_corners(rng):
    """z == theta, theta at both ends of its width, flip set and clear."""
    dut = ThresholdUnit(max_neurons=4, z_width=5, theta_width=5)
    schedule = []
    for k, (theta, flip) in enumerate([(-16, 0), (15, 0), (-16, 1), (15, 1)]):
        schedule.append(("load", {"index": k, "theta": theta, "flip": flip}))
    for z in range(-16, 16):
        for k in range(4):
            schedule.append(("input", {"index": k, "z": z}))
    outputs, expected, _ = simulate(dut, schedule, rng=rng)
    assert outputs == expected
    assert outputs[0::4] == [1] * 32                    # z >= -16 always
    assert outputs[1::4] == [0] * 31 + [1]              # only z == 15
    assert outputs[2::4] == [0] * 32
    assert outputs[3::4] == [1] * 31 + [0]


@pytest.mark.parametrize("pipelined", [False, True])
def test_write_and_read_same_cycle(rng, pipelined):
    """An input accepted in the cycle of a write to its neuron sees the new entry;
    one accepted the cycle before sees the old one."""
    dut = ThresholdUnit(max_neurons=4, z_width=8, pipelined=pipelined)
    schedule = [("load", {"index": 2, "theta": 10, "flip": 0}),
                ("load", {"index": 2, "theta": -10, "flip": 1}),
                ("load", {"index": 2, "theta": 0, "flip": 0}),
                ("input", {"index": 2, "z": 5}),   # cycle 0 with theta 10: 0
                ("input", {"index": 2, "z": 5}),   # cycle 1 with theta -10, flip: 0
                ("input", {"index": 2, "z": 5})]   # cycle 2 with theta 0: 1
    outputs, expected, _ = simulate(dut, schedule, rng=rng)
    assert outputs == expected == [0, 0, 1]


@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.4, 0.3)])
@pytest.mark.parametrize("pipelined", [False, True])
def test_writes_between_inputs(rng, idle, stall, pipelined):
    dut = ThresholdUnit(max_neurons=4, z_width=6, pipelined=pipelined)
    loads = [{"index": int(rng.integers(4)), "theta": int(rng.integers(-4, 5)),
              "flip": int(rng.integers(2))} for _ in range(600)]
    inputs = [{"index": int(rng.integers(4)), "z": int(rng.integers(-5, 6))} for _ in range(600)]
    schedule = [("load", w) for w in loads] + [("input", x) for x in inputs]
    outputs, expected, _ = simulate(dut, schedule, rng=rng, idle=idle, stall=stall)
    assert outputs == expected


# -- cocotb ------------------------------------------------------------------------------------

# A Verilator build takes 20-40 s here, so the default run builds one design on it.
COCOTB_RUNS = [
    pytest.param("verilator", {"max_neurons": 100, "z_width": 12, "theta_width": 8,
                               "cases": 4000}, id="verilator-n100"),
    pytest.param("icarus", {"max_neurons": 100, "z_width": 12, "theta_width": 8,
                            "cases": 2000}, id="icarus-n100"),
    pytest.param("icarus", {"max_neurons": 1, "z_width": 4, "cases": 1000}, id="icarus-n1"),
    pytest.param("icarus", {"max_neurons": 100, "z_width": 12, "theta_width": 8,
                            "pipelined": True, "cases": 2000}, id="icarus-n100-pipelined"),
    pytest.param("verilator", {"max_neurons": 100, "z_width": 12, "theta_width": 8,
                               "pipelined": True, "cases": 4000}, id="verilator-n100-pipelined",
                 marks=pytest.mark.slow),
    pytest.param("verilator", {"max_neurons": 1, "z_width": 4, "cases": 1000},
                 id="verilator-n1", marks=pytest.mark.slow),
    pytest.param("verilator", {"max_neurons": 1024, "z_width": 11, "theta_width": 14,
                               "cases": 20000}, id="verilator-n1024", marks=pytest.mark.slow),
    pytest.param("icarus", {"max_neurons": 1024, "z_width": 11, "theta_width": 14,
                            "cases": 10000}, id="icarus-n1024", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("simulator, params", COCOTB_RUNS)
def test_cocotb(simulator, params, build_root):
    hdl = {k: v for k, v in params.items() if k != "cases"}
    name = "_".join(f"{k}{v}" for k, v in hdl.items())
    run_cocotb(ThresholdUnit(**hdl), name="threshold_unit",
               test_module="xnorlearn.sim.tb_threshold", simulator=simulator,
               build_dir=f"{build_root}/threshold_{simulator}_{name}", params=params)


# -- Verilog export ----------------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [8, 64, 256, 1024])
def test_verilog_export(lanes):
    """A unit sized for an array of ``lanes`` lanes: as many neurons, z as wide as the
    array's for a fan-in of four words."""
    z_width = XnorPopcount(lanes=lanes, max_fan_in=4 * lanes).z_width
    dut = ThresholdUnit(max_neurons=lanes, z_width=z_width)
    text = verilog.convert(dut, name="threshold_unit", emit_src=False)
    assert "module threshold_unit(" in text
    assert f"input [{dut.input_layout.size - 1}:0] i__payload;" in text
    assert f"input [{dut.load_layout.size - 1}:0] load__payload;" in text
