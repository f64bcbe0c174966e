# amaranth: UnusedElaboratable=no
"""BankedMemory: every read equals a Python model of the memory, two or three cycles late."""

import pytest
from amaranth.sim import Simulator

from xnorlearn.hw.bank import BankedMemory


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("width, depth, row_depth", [
    (8, 1, 4), (16, 5, 8), (24, 40, 16), (37, 100, 32), (64, 130, 64), (512, 70, 16),
])
@pytest.mark.parametrize("read_latency", [2, 3])
def test_reads_match_model(rng, width, depth, row_depth, read_latency):
    dut = BankedMemory(width=width, depth=depth, row_depth=row_depth, read_latency=read_latency)
    assert dut.read_latency == read_latency
    assert dut.rows == -(-depth // row_depth)
    model = [0] * depth
    cycles = 600
    ops = [(bool(rng.random() < 0.5), int(rng.integers(depth)),
            int(rng.integers(1 << min(width, 62))) << max(width - 62, 0),
            int(rng.integers(depth))) for _ in range(cycles)]
    checked = []

    async def bench(ctx):
        expected = []               # model words read, in order; compared read_latency later
        for we, wa, wd, ra in ops:
            ctx.set(dut.wr_en, we)
            ctx.set(dut.wr_addr, wa)
            ctx.set(dut.wr_data, wd)
            ctx.set(dut.rd_addr, ra)
            expected.append(model[ra])         # not transparent: the old word
            if len(expected) > dut.read_latency:
                want = expected[-1 - dut.read_latency]
                got = ctx.get(dut.rd_data)
                assert got == want, (len(expected), got, want)
                checked.append(got)
            await ctx.tick()
            if we:
                model[wa] = wd

    _simulate(dut, bench)
    assert len(checked) == cycles - dut.read_latency
    assert any(checked), "the reads saw written data"


@pytest.mark.parametrize("kwargs, error", [
    ({"width": 0, "depth": 4}, ValueError),
    ({"width": 8, "depth": 0}, ValueError),
    ({"width": 8, "depth": 4, "row_depth": 3}, ValueError),
    ({"width": 8.0, "depth": 4}, TypeError),
    ({"width": 8, "depth": 4, "row_depth": None}, TypeError),
    ({"width": 8, "depth": 4, "read_latency": 1}, ValueError),
    ({"width": 8, "depth": 4, "read_latency": 4}, ValueError),
])
def test_bad_parameters(kwargs, error):
    with pytest.raises(error):
        BankedMemory(**kwargs)


@pytest.mark.parametrize("read_latency", [2, 3])
@pytest.mark.parametrize("width, depth, row_depth", [(16, 5, 8), (37, 100, 32), (64, 130, 64)])
def test_read_enable_holds_the_pipeline(rng, width, depth, row_depth, read_latency):
    """With ``rd_en`` low the read pipeline holds: the word out is that of the read
    ``read_latency`` enabled edges earlier, whatever was written since."""
    dut = BankedMemory(width=width, depth=depth, row_depth=row_depth,
                       read_latency=read_latency, read_enable=True)
    assert dut.read_enable
    model = [0] * depth
    cycles = 800
    ops = [(bool(rng.random() < 0.5), int(rng.integers(depth)),
            int(rng.integers(1 << min(width, 62))), int(rng.integers(depth)),
            bool(rng.random() < 0.6)) for _ in range(cycles)]
    checked = []

    async def bench(ctx):
        reads = []                  # model words at each enabled edge (not transparent)
        for we, wa, wd, ra, en in ops:
            if len(reads) >= read_latency:
                got = ctx.get(dut.rd_data)
                assert got == reads[-read_latency], (len(reads), got, reads[-read_latency])
                checked.append(got)
            ctx.set(dut.wr_en, we)
            ctx.set(dut.wr_addr, wa)
            ctx.set(dut.wr_data, wd)
            ctx.set(dut.rd_addr, ra)
            ctx.set(dut.rd_en, en)
            await ctx.tick()
            if en:
                reads.append(model[ra])
            if we:
                model[wa] = wd

    _simulate(dut, bench)
    assert len(checked) > cycles // 2 and any(checked)


def test_no_read_enable_by_default():
    dut = BankedMemory(width=8, depth=4)
    assert not dut.read_enable and "rd_en" not in dut.signature.members
    with pytest.raises(TypeError, match="read_enable must be a bool, not 1"):
        BankedMemory(width=8, depth=4, read_enable=1)
