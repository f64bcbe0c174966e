"""Rank the register-to-register paths of a placed (not routed) nextpnr-ecp5 netlist.

Usage::

    python benchmarks/implement.py ecp5 --nextpnr-args=--no-route --tag _placed
    python benchmarks/placed_paths.py build/impl/<name>/routed.json [--top 20] [--no-lsr]

    python benchmarks/implement.py ecp5 --nextpnr-args=--detailed-timing-report --tag _r
    python benchmarks/placed_paths.py build/impl/<name>/routed.json \
        --report build/impl/<name>/report.json

With ``--report`` (a routed run's report written with ``--detailed-timing-report``)
the endpoint times are nextpnr's own: the report holds the latest arrival at every
register and block RAM input after routing, so every endpoint that misses the clock is
listed, not only the one critical path nextpnr prints. The path under each endpoint is
still the model's (the report has no times inside a path).

nextpnr-ecp5 gives Fmax after placement but no path report; the netlist it writes
(``--write``) carries every cell's position (``NEXTPNR_BEL``). This script walks the
cells with a rough delay model and prints the worst endpoints, one per source line of
the design, each with its path: arrival time, cell type, position, fan-out of the net
the cell drives, and the cell's source location. The model is only a ranking tool:
every net costs ``--net-ps * (3 + Manhattan distance in tiles)``, a LUT 0.25 ns, a carry
step 0.03 ns, a MULT18X18D 4.5 ns, a DP16KD clock-to-output 3.8 ns, a flip-flop 0.45
ns. Its worst path came within 5-25 % of nextpnr's placement estimate on the 64-lane
core; what it shows well is which nets are long and how many loads they have.
"""

import argparse
import collections
import json
import re
import sys

COMB = {"F": [(p, 0.25) for p in "ABCD"],
        "OFX": [("M", 0.2), ("FXA", 0.15), ("FXB", 0.15)] + [(p, 0.35) for p in "ABCD"]}
CARRY = {"F": [(p, 0.35) for p in "ABCD"] + [("FCI", 0.1)],
         "FCO": [(p, 0.3) for p in "ABCD"] + [("FCI", 0.03)],
         "OFX": COMB["OFX"]}
START = {"TRELLIS_FF": 0.45, "DP16KD": 3.8, "TRELLIS_IO": 0.5, "DCCA": 0.5,
         "TRELLIS_RAMW": 0.5}
ENDPOINTS = ("TRELLIS_FF", "DP16KD")


class Netlist:
    def __init__(self, path, net_ns):
        with open(path) as f:
            module = next(iter(json.load(f)["modules"].values()))
        self.cells = module["cells"]
        self.net_ns = net_ns
        self.driver, self.sinks = {}, collections.defaultdict(list)
        for name, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                for i, bit in enumerate(bits):
                    if isinstance(bit, str):
                        continue
                    pin = port if len(bits) == 1 else f"{port}[{i}]"
                    if cell["port_directions"][port] == "output":
                        self.driver[bit] = (name, pin)
                    else:
                        self.sinks[bit].append((name, pin))
        self.arrival = {}

    def loc(self, name):
        m = re.match(r"X(\d+)/Y(\d+)", self.cells[name]["attributes"].get("NEXTPNR_BEL", ""))
        return (int(m[1]), int(m[2])) if m else (0, 0)

    def source(self, name):
        src = self.cells[name]["attributes"].get("src", "")
        return ",".join(s for s in src.split("|") if "/share/" not in s)

    def arcs(self, name, port):
        cell = self.cells[name]
        if cell["type"] == "TRELLIS_COMB":
            table = CARRY if cell["parameters"].get("MODE") == "CCU2" else COMB
            return table.get(port, [])
        if cell["type"] == "MULT18X18D" and port.startswith("P"):
            return [(p, 4.5) for p in cell["connections"] if re.fullmatch(r"[AB]\d+", p)]
        return []

    def out_time(self, name, pin):
        """Arrival at output ``pin`` of cell ``name`` (iterative depth-first search)."""
        stack = [(name, pin)]
        while stack:
            key = stack[-1]
            if key in self.arrival:
                stack.pop()
                continue
            cell = self.cells[key[0]]
            if cell["type"] in START or cell["parameters"].get("MODE") == "RAMW":
                self.arrival[key] = (START.get(cell["type"], 0.5), None)
                stack.pop()
                continue
            inputs, missing = [], False
            for port, delay in self.arcs(key[0], key[1].split("[")[0]):
                bits = cell["connections"].get(port, [])
                for i, bit in enumerate(bits):
                    if isinstance(bit, str) or bit not in self.driver:
                        continue
                    d = self.driver[bit]
                    if d not in self.arrival:
                        stack.append(d)
                        missing = True
                    inputs.append((bit, port if len(bits) == 1 else f"{port}[{i}]", delay))
            if missing:
                continue
            best = (0.0, None)
            for bit, in_pin, delay in inputs:
                t = self.in_time(key[0], in_pin, bit) + delay
                if t > best[0]:
                    best = (t, bit)
            self.arrival[key] = best
            stack.pop()
        return self.arrival[(name, pin)][0]

    def in_time(self, name, pin, bit):
        d_name, d_pin = self.driver[bit]
        t = self.out_time(d_name, d_pin)
        if d_name.startswith("$PACKER_"):
            return 0.0
        if d_pin == "FCO" and pin == "FCI":
            return t + 0.02
        (x0, y0), (x1, y1) = self.loc(d_name), self.loc(name)
        return t + self.net_ns * (3 + abs(x0 - x1) + abs(y0 - y1))

    def endpoints(self, no_lsr):
        for name, cell in self.cells.items():
            if cell["type"] not in ENDPOINTS:
                continue
            for port, bits in cell["connections"].items():
                if (cell["port_directions"][port] != "input" or port.startswith("CLK")
                        or (no_lsr and port == "LSR")):
                    continue
                for i, bit in enumerate(bits):
                    if not isinstance(bit, str) and bit in self.driver:
                        pin = port if len(bits) == 1 else f"{port}[{i}]"
                        yield self.in_time(name, pin, bit), name, pin, bit

    def routed(self, report):
        """Use nextpnr's routed arrival times (``report``, a ``--report`` JSON written
        with ``--detailed-timing-report``) instead of the delay model."""
        self.late = {}
        for net in report["detailed_net_timings"]:
            for end in net["endpoints"]:
                key = (end["cell"], end["port"])
                self.late[key] = max(self.late.get(key, 0.0), float(end["delay"][-1]))
        if not self.late:
            raise ValueError("the report has no detailed net timings "
                             "(run nextpnr with --detailed-timing-report)")

    def routed_endpoints(self, no_lsr):
        for (name, pin), t in self.late.items():
            cell = self.cells.get(name)
            if (cell is None or cell["type"] not in ENDPOINTS or pin.startswith("CLK")
                    or (no_lsr and pin == "LSR")):
                continue
            bit = cell["connections"].get(pin, [None])[0]
            if bit in self.driver:
                yield t, name, pin, bit

    def path(self, bit):
        steps = []
        while bit is not None:
            name, pin = self.driver[bit]
            steps.append((name, pin, bit))
            bit = self.arrival[(name, pin)][1]
        return steps[::-1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("netlist", help="JSON written by nextpnr-ecp5 --write after placement")
    p.add_argument("--top", type=int, default=15, help="endpoints to print (default 15)")
    p.add_argument("--net-ps", type=float, default=120.0,
                   help="picoseconds per tile of net (default 120)")
    p.add_argument("--no-lsr", action="store_true",
                   help="leave out set/reset (LSR) endpoints")
    p.add_argument("--report", help="nextpnr --report JSON of a routed run made with "
                                    "--detailed-timing-report: use its arrival times")
    p.add_argument("--freq", type=float, default=80.0,
                   help="with --report: count the endpoints later than this clock (MHz)")
    args = p.parse_args(argv)
    if args.top < 1:
        p.error(f"--top must be at least 1, got {args.top}")
    if not args.freq > 0:
        p.error(f"--freq must be a positive MHz figure, got {args.freq}")
    try:
        nl = Netlist(args.netlist, args.net_ps / 1000)
    except (OSError, ValueError, KeyError, StopIteration) as e:
        p.error(f"cannot read a nextpnr netlist from {args.netlist}: {e}")
    if args.report:
        try:
            with open(args.report) as f:
                nl.routed(json.load(f))
        except (OSError, ValueError, KeyError) as e:
            p.error(f"cannot read routed arrival times from {args.report}: {e}")
        return print_routed(nl, args)
    return print_endpoints(nl, sorted(nl.endpoints(args.no_lsr), reverse=True), args.top)


def print_routed(nl, args):
    ends = sorted(nl.routed_endpoints(args.no_lsr), reverse=True)
    period = 1000.0 / args.freq
    late = [e for e in ends if e[0] > period]
    print(f"{len(late)} of {len(ends)} endpoints arrive later than {period:.2f} ns "
          f"({args.freq:g} MHz, before setup), from "
          f"{len({nl.source(e[1]) for e in late})} source lines")
    return print_endpoints(nl, ends, args.top)


def print_endpoints(nl, ends, top):
    """The worst endpoint of each source line (at most ``top``), each with its path."""
    shown, seen = 0, set()
    for t, name, pin, bit in ends:
        key = nl.source(name)
        if key in seen:
            continue
        seen.add(key)
        print(f"{t:6.2f} ns -> {name}.{pin}  [{key}] {nl.loc(name)}")
        nl.in_time(name, pin, bit)
        for d_name, d_pin, d_bit in nl.path(bit):
            print(f"   {nl.arrival[(d_name, d_pin)][0]:6.2f} {nl.cells[d_name]['type']:<12}"
                  f" {str(nl.loc(d_name)):<10} fan-out {len(nl.sinks[d_bit]):5d}"
                  f"  {nl.source(d_name)[:70]}  {d_name[:60]}")
        shown += 1
        if shown >= top:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
