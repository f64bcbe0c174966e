"""Write notebooks/train_on_fpga.ipynb from its script, notebooks/train_on_fpga.py.

The script (cells marked ``# %%``, Markdown cells ``# %% [markdown]``) is the source; the
notebook is generated from it, without outputs, so the two never drift apart::

    python benchmarks/gen_notebook.py [--check]

``--check`` exits 1 if the committed notebook is stale (a test runs it).
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "notebooks" / "train_on_fpga.py"
NOTEBOOK = SCRIPT.with_suffix(".ipynb")


def cells(text):
    """``[(kind, source lines)]`` of a percent-format script."""
    found = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            found.append(("markdown" if "[markdown]" in line else "code", []))
        elif found:
            found[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"{SCRIPT}: text before the first '# %%' cell marker: {line!r}")
    out = []
    for kind, lines in found:
        while lines and not lines[-1].strip():
            lines.pop()
        if kind == "markdown":
            lines = [l[2:] if l.startswith("# ") else l.lstrip("#") for l in lines]
        out.append((kind, lines))
    return out


def notebook(text):
    nb_cells = []
    for i, (kind, lines) in enumerate(cells(text)):
        source = [l + "\n" for l in lines[:-1]] + lines[-1:]
        cell = {"cell_type": kind, "id": f"cell-{i:02d}", "metadata": {}, "source": source}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        nb_cells.append(cell)
    return {"cells": nb_cells,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                        "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def render(text):
    return json.dumps(notebook(text), indent=1, ensure_ascii=False) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if the notebook is stale")
    args = p.parse_args(argv)
    text = render(SCRIPT.read_text())
    if args.check:
        if not NOTEBOOK.exists() or NOTEBOOK.read_text() != text:
            print(f"{NOTEBOOK} is stale; run python benchmarks/gen_notebook.py", file=sys.stderr)
            return 1
        return 0
    NOTEBOOK.write_text(text)
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
