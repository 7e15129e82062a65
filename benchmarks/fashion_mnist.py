"""Fashion-MNIST: time to test accuracy for cnnlab's recipes, side by side in one run.

Each recipe is trained with `train_recipe` (its own 10% validation split held out), then its
bundle is evaluated on the t10k test set, which no recipe sees: training seconds (steps only,
as the bundle records them), wall seconds (data, the bundle's validation figures, the
out-of-distribution fit) and test accuracy. The default pair is the 94% recipe beside
`fashion_mnist_fast`, the 93% one it is measured against. The published marks for small CNNs
(Fashion-MNIST benchmark table: VGG-16 93.5%, a capsule net 93.6%) are printed beside them,
not re-run.

    flock /tmp/cnnlab-cpu.lock python benchmarks/fashion_mnist.py
        [--data /usr/share/datasets/fashion-mnist] [--recipes fashion_mnist_94 fashion_mnist_fast]
        [--out runs/bench-fashion] [--set train.epochs=8 ...]

On an AVX2-only CPU the recipes train in fp32 (`precision: auto`); to see those times on a CPU
with AVX-512, run with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = {"VGG-16 (benchmark table)": 0.935, "capsule net (benchmark table)": 0.936}


def run(name: str, data: str, out: Path, overrides: list[str]) -> dict:
    from cnnlab.bundle import load_bundle
    from cnnlab.config import load_recipe
    from cnnlab.evaluate.scores import evaluate_bundle
    from cnnlab.train.run import train_recipe

    recipe = load_recipe(ROOT / "recipes" / f"{name}.yaml", overrides)
    started = time.perf_counter()
    outcome = train_recipe(recipe, data, out / name, progress=False)
    wall = time.perf_counter() - started
    report = evaluate_bundle(load_bundle(out / name), data, "test")
    result = outcome.result
    return {"epochs": len(result.history), "train_s": result.train_seconds, "wall_s": wall,
            "test_acc": report["accuracy"], "n_test": report["n"], "runtime": result.runtime}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--recipes", nargs="+", default=["fashion_mnist_94", "fashion_mnist_fast"])
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-fashion"))
    ap.add_argument("--set", action="append", default=[], help="override for every recipe")
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    rows = {name: run(name, args.data, Path(args.out), args.set) for name in args.recipes}
    print(f"\nFashion-MNIST, test accuracy on t10k; load average {os.getloadavg()[0]:.2f}")
    print(f"{'':<30}{'epochs':>7}{'train s':>9}{'wall s':>8}{'test acc':>10}  runtime")
    for name, r in rows.items():
        print(f"{name:<30}{r['epochs']:>7}{r['train_s']:>9.1f}{r['wall_s']:>8.1f}"
              f"{r['test_acc']:>10.2%}  {r['runtime']}")  # fmt: skip
    for name, acc in PUBLISHED.items():
        print(f"{name:<30}{'':>7}{'':>9}{'':>8}{acc:>10.2%}  published, not re-run")


if __name__ == "__main__":
    main()
