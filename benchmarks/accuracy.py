"""Fashion-MNIST accuracy of the golden model on the paper's configurations.

Each run is ``xnorlearn train`` with the given settings; the summary (mean test
accuracy of the final epoch over seeds) is printed as a Markdown table and
written to ``<out>/summary.json``.

    python benchmarks/accuracy.py --suite small     # 784-135-135, 30 epochs, 3 seeds
    python benchmarks/accuracy.py --suite large     # 784-1035-1035, 20 epochs, 2 seeds, 8-bit vs unbounded
"""

import argparse
import json
import statistics
from pathlib import Path

from xnorlearn.sw.cli import main as cli_main

SUITES = {
    "small": [
        {"name": "784-135-135 h8", "hidden": [135, 135], "gamma": [45, 45], "epochs": 30,
         "seeds": [0, 1, 2], "h_bits": "8"},
    ],
    "large": [
        {"name": "784-1035-1035 h8", "hidden": [1035, 1035], "gamma": [115, 115], "epochs": 20,
         "seeds": [0, 1], "h_bits": "8"},
        {"name": "784-1035-1035 unbounded", "hidden": [1035, 1035], "gamma": [115, 115],
         "epochs": 20, "seeds": [0, 1], "h_bits": "none"},
    ],
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=sorted(SUITES), action="append", required=True)
    p.add_argument("--out", default="runs/accuracy")
    p.add_argument("--epochs", type=int, default=None, help="override the suite's epoch count")
    args = p.parse_args()
    out = Path(args.out)
    rows = []
    for suite in args.suite:
        for run in SUITES[suite]:
            finals = []
            epochs = args.epochs or run["epochs"]
            for seed in run["seeds"]:
                d = out / f"{run['name'].replace(' ', '_')}_s{seed}"
                cli_main(["train", "--device", "golden", "--dataset", "fashion-mnist",
                          "--hidden", *map(str, run["hidden"]),
                          "--gamma", *map(str, run["gamma"]), "--epochs", str(epochs),
                          "--batch-size", "100", "--seed", str(seed), "--h-bits", run["h_bits"],
                          "--out", str(d), "--quiet"])
                m = json.loads((d / "metrics.json").read_text())["epochs"]
                finals.append(m[-1]["test_accuracy"])
            rows.append({"run": run["name"], "epochs": epochs, "seeds": run["seeds"],
                         "final_test_accuracy": finals, "mean": statistics.mean(finals)})
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    print("\n| run | epochs | seeds | final test accuracy per seed | mean |\n|---|---|---|---|---|")
    for r in rows:
        per = ", ".join(f"{100 * a:.2f}%" for a in r["final_test_accuracy"])
        print(f"| {r['run']} | {r['epochs']} | {len(r['seeds'])} | {per} | {100 * r['mean']:.2f}% |")


if __name__ == "__main__":
    main()
