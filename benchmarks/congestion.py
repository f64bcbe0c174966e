"""Sum nextpnr router2's congestion by component of the design.

Usage::

    xnorlearn build ... --router router2 --heatmap --out DIR
    python benchmarks/congestion.py DIR [--depth 4] [--top 20]

``--heatmap`` makes router2 write, after each iteration ``N``, how many overused wires
each net passes through (``DIR/heatmap_congestion_by_net_N.csv``). Net names carry the
hierarchy of the Amaranth design (``design.accel.core.a_mem0...``) followed by what
synthesis appended (``_TRELLIS_FF_Q_3_DI_LUT4_Z``, ``[7]``); this script keeps the first
``--depth`` parts of each name as its component, and prints every component's share of
the congestion at the first iteration and at the last one written, largest last-share
first. Nets without a design name (Yosys' ``$abc$...``, nextpnr's constants) count
under their own first part.

What a share means: the wires a component's nets use where routing is short of wires, in
the iteration named. It points at the buses that crowd the device; the first iteration
shows the demand, the last what the router could not yet resolve.
"""

import argparse
import collections
import re
import sys
from pathlib import Path

_SUFFIX = re.compile(r"(_(TRELLIS|LUT|CCU2C|PFUMX|DP16KD|MULT18X18D|DPR|L6MUX)\w*|\[\d+\])+$")


def component(net, depth):
    """The component of ``net``: its first ``depth`` dotted parts, without what synthesis
    appended to a name and without Amaranth's ``$N`` suffixes."""
    name = net.replace("\\", "")
    parts = name.split(".")[:depth]
    parts = [re.sub(r"\$\d+$", "", _SUFFIX.sub("", p)) or p for p in parts]
    return ".".join(parts)


def read_heatmap(path):
    """``{net: overused wires}`` from one ``*_congestion_by_net_N.csv``."""
    nets = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            net, sep, value = line.rpartition(",")
            if not sep or not value.strip().isdigit():
                raise ValueError(f"{path}:{number}: expected 'net,count', got {line!r}")
            nets[net] = nets.get(net, 0) + int(value)
    return nets


def by_component(nets, depth):
    """``Counter`` of congestion per component."""
    total = collections.Counter()
    for net, value in nets.items():
        total[component(net, depth)] += value
    return total


def heatmaps(directory, prefix="heatmap"):
    """The ``(iteration, path)`` pairs of the per-net heatmaps in ``directory``, in order."""
    found = []
    for path in Path(directory).glob(f"{prefix}_congestion_by_net_*.csv"):
        m = re.fullmatch(rf"{re.escape(prefix)}_congestion_by_net_(\d+)\.csv", path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def table(first, last, top):
    """Rows ``(component, first share, last share)``, largest last share first."""
    t_first, t_last = sum(first.values()) or 1, sum(last.values()) or 1
    rows = [(name, first[name] / t_first, last[name] / t_last)
            for name in set(first) | set(last)]
    rows.sort(key=lambda r: (-r[2], -r[1], r[0]))
    return rows[:top]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", help="a build directory with router2 heatmaps "
                                    "(xnorlearn build --router router2 --heatmap --out DIR)")
    parser.add_argument("--prefix", default="heatmap",
                        help="the heatmaps' prefix (nextpnr --router2-heatmap PREFIX)")
    parser.add_argument("--depth", type=int, default=4,
                        help="dotted parts of a net name that make its component (1..16)")
    parser.add_argument("--top", type=int, default=20, help="components to print (1..1000)")
    args = parser.parse_args(argv)
    if not 1 <= args.depth <= 16:
        parser.error(f"--depth must be in 1..16, got {args.depth}")
    if not 1 <= args.top <= 1000:
        parser.error(f"--top must be in 1..1000, got {args.top}")
    found = heatmaps(args.dir, args.prefix)
    if not found:
        parser.error(f"no {args.prefix}_congestion_by_net_N.csv in {args.dir} (build with "
                     f"--router router2 --heatmap)")
    (i_first, p_first), (i_last, p_last) = found[0], found[-1]
    try:
        first = by_component(read_heatmap(p_first), args.depth)
        last = by_component(read_heatmap(p_last), args.depth)
    except ValueError as e:
        parser.error(str(e))
    print(f"router2 congestion by component: iteration {i_first} "
          f"({sum(first.values()):,} net-wires overused), iteration {i_last} "
          f"({sum(last.values()):,})")
    print(f"{'component':<50} {'iter ' + str(i_first):>9} {'iter ' + str(i_last):>9}")
    for name, s_first, s_last in table(first, last, args.top):
        print(f"{name:<50} {100 * s_first:8.1f}% {100 * s_last:8.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
