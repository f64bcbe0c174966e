"""Write docs/registers.md, the register table of the PYNQ-Z2 build, from xnorlearn/contract.py.

    python benchmarks/gen_regmap_doc.py [--check] [--out docs/registers.md]

``--check`` compares instead of writing and exits 1 if the file is stale.
"""

import argparse
import sys
from pathlib import Path

from xnorlearn.contract import PYNQ_Z2, markdown_table

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "registers.md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the file differs from the generated text")
    args = parser.parse_args(argv)
    text = markdown_table(PYNQ_Z2)
    if args.check:
        current = args.out.read_text() if args.out.exists() else None
        if current != text:
            print(f"{args.out} is stale; run python benchmarks/gen_regmap_doc.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
