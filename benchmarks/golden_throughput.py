"""Training throughput of the golden models (patterns per second), fast vs literal.

Run single-threaded for a figure that compares across machines:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/golden_throughput.py

It trains the fast model for ``--epochs`` full epochs of Fashion-MNIST (or the
generated dataset at 784 features when Fashion-MNIST is absent), then the literal
model on ``--literal-batches`` minibatches taken from the same state, and prints
both rates and their ratio.
"""

import argparse
import os
import time

import numpy as np

from xnorlearn.sw.datasets import MedianBinarizer, find_dataset_dir, load_dataset, synthetic
from xnorlearn.sw.golden import FastBMLP, LiteralBMLP, NetworkConfig
from xnorlearn.sw.train import epoch_order


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[135, 135])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--literal-batches", type=int, default=2)
    args = p.parse_args()
    if find_dataset_dir("fashion-mnist"):
        data = load_dataset("fashion-mnist")
    else:
        print("Fashion-MNIST not found: using the generated dataset (784 features)")
        data = synthetic(n_train=60000, n_test=100, features=784, classes=10)
    a = MedianBinarizer().fit(data.x_train).transform(data.x_train)
    y = data.y_train
    cfg = NetworkConfig(sizes=(a.shape[1], *args.hidden), classes=data.classes)
    bs = args.batch_size
    print(f"network {'-'.join(map(str, cfg.sizes))}, bs {bs}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    fast = FastBMLP(cfg)
    rates = []
    for e in range(args.epochs):
        order = epoch_order(cfg.seed, e, len(y))
        start = time.perf_counter()
        for b in range(0, len(y), bs):
            idx = order[b:b + bs]
            fast.train_batch(a[idx], y[idx], validate=False)
        rates.append(len(y) / (time.perf_counter() - start))
        err = fast.end_epoch()
        print(f"fast    epoch {e + 1}: {rates[-1]:>10,.0f} patterns/s (train error {100 * err:.1f}%)")
    literal = LiteralBMLP(cfg).copy_state_from(fast)
    order = epoch_order(cfg.seed, args.epochs, len(y))
    start = time.perf_counter()
    for b in range(args.literal_batches):
        idx = order[b * bs:(b + 1) * bs]
        literal.train_batch(a[idx], y[idx])
    lit_rate = args.literal_batches * bs / (time.perf_counter() - start)
    print(f"literal           {lit_rate:>10,.1f} patterns/s ({args.literal_batches} minibatches)")
    fast_rate = float(np.mean(rates))
    print(f"fast (mean of {args.epochs} epochs): {fast_rate:,.0f} patterns/s; "
          f"fast / literal = {fast_rate / lit_rate:,.0f}x")


if __name__ == "__main__":
    main()
