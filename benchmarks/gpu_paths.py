"""The CUDA training paths side by side: fp32, channels_last, bf16/fp16 autocast, torch.compile.

Trains `recipes/mnist_fast.yaml` once per runtime setting (and once on the CPU of the same
machine, the baseline), then checks what a GPU run must keep: the bundle it writes loads on
a CPU and predicts what the GPU model predicted. With `--fashion`, also trains
`recipes/fashion_mnist_fast.yaml` with the automatic settings and evaluates it on t10k.
Needs a CUDA GPU; prints one table and writes the rows as JSON.

    python benchmarks/gpu_paths.py --data ../shared/data/mnist \
        [--fashion /usr/share/datasets/fashion-mnist] [--json gpu_paths.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from cnnlab.bundle import load_bundle
from cnnlab.config import load_recipe
from cnnlab.data import prepare_data
from cnnlab.evaluate.scores import evaluate_bundle
from cnnlab.runtime.inference import predict_logits
from cnnlab.train.run import train_recipe

ROOT = Path(__file__).resolve().parents[1]

# (label, --set overrides)
VARIANTS = [
    ("cpu fp32 (baseline)", ["train.device=cpu", "train.precision=fp32"]),
    ("cuda fp32", ["train.device=cuda", "train.precision=fp32", "train.channels_last=off"]),
    (
        "cuda fp32 channels_last",
        ["train.device=cuda", "train.precision=fp32", "train.channels_last=on"],
    ),
    (
        "cuda bf16 channels_last",
        ["train.device=cuda", "train.precision=bf16", "train.channels_last=on"],
    ),
    (
        "cuda fp16 channels_last",
        ["train.device=cuda", "train.precision=fp16", "train.channels_last=on"],
    ),
    ("cuda auto", ["train.device=cuda"]),
    ("cuda auto + compile", ["train.device=cuda", "train.compile=true"]),
]


def cpu_agreement(run: Path, source: str, n: int = 2000) -> tuple[float, float]:
    """Top-1 agreement and largest logit gap between the bundle on the GPU and on a CPU."""
    gpu, cpu = load_bundle(run, device="cuda"), load_bundle(run, device="cpu")
    data = prepare_data(load_recipe(run / "recipe.yaml", [f"data.source={source}"]).data)
    x = data.val.images[:n]
    a = predict_logits(gpu.model, x, gpu.preprocess, gpu.runtime, 512)
    b = predict_logits(cpu.model, x, cpu.preprocess, cpu.runtime, 512)
    return float((a.argmax(1) == b.argmax(1)).float().mean()), float((a - b).abs().max())


def train_row(label: str, recipe: str, source: str, overrides: list[str], out: Path) -> dict:
    r = load_recipe(ROOT / "recipes" / recipe, overrides)
    start = time.perf_counter()
    outcome = train_recipe(r, source, out_dir=out, progress=False)
    wall = time.perf_counter() - start
    row = {
        "variant": label,
        "recipe": recipe,
        "runtime": outcome.result.runtime,
        "train_s": round(outcome.result.train_seconds, 2),
        "first_epoch_s": outcome.result.history[0]["seconds"],
        "last_epoch_s": outcome.result.history[-1]["seconds"],
        "wall_s": round(wall, 1),
        "val_accuracy": outcome.metrics["accuracy"],
    }
    if "cuda" in label:
        row["cpu_agreement"], row["max_logit_gap"] = cpu_agreement(out, source)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--fashion", help="Fashion-MNIST IDX folder (with t10k files)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    if not torch.cuda.is_available():
        print("gpu_paths: no CUDA GPU here; this benchmark needs one", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, sets) in enumerate(VARIANTS):
            rows.append(train_row(label, "mnist_fast.yaml", args.data, sets, Path(tmp) / str(i)))
            print(json.dumps(rows[-1]), flush=True)
        if args.fashion:
            run = Path(tmp) / "fashion"
            row = train_row(
                "cuda auto", "fashion_mnist_fast.yaml", args.fashion, ["train.device=cuda"], run
            )
            row["test_accuracy"] = evaluate_bundle(
                load_bundle(run, device="cuda"), args.fashion, "test"
            )["accuracy"]
            rows.append(row)
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{'recipe':<24} {'variant':<26} {'train s':>8} {'epoch s':>8} {'val':>7} {'cpu agree':>9}"
    )
    for r in rows:
        agree = f"{r['cpu_agreement']:.2%}" if "cpu_agreement" in r else "-"
        print(f"{r['recipe']:<24} {r['variant']:<26} {r['train_s']:>8.2f} {r['last_epoch_s']:>8.2f} "
              f"{r['val_accuracy']:>7.2%} {agree:>9}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
