"""The documentation's table of the core's components matches the code."""

import importlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def component_rows():
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## The core's components", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_component_table_matches_the_code():
    for names, path, lines, _, bench in component_rows():
        path = path.strip("`")
        source = ROOT / path
        assert source.is_file(), path
        assert int(lines) == len(source.read_text().splitlines()), \
            f"{path} has {len(source.read_text().splitlines())} lines, the table says {lines}"
        module = importlib.import_module("xnorlearn." + path[:-3].replace("/", "."))
        for name in re.findall(r"`(\w+)`", names):
            assert hasattr(module, name), f"{name} is not in {path}"
        assert (ROOT / bench.strip("`")).is_file(), bench
