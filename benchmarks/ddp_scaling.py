"""Data-parallel training throughput: training samples/s with 1 and 2 processes (torchrun, gloo).

Same recipe, same global batch; each process gets cores // processes threads. On a 2-core
machine two processes share the cores one process already uses, so this shows the path
and its overhead (gradient all-reduce, global-batch BatchNorm), not a speed-up; on more
cores, or one GPU per process, the same command scales out.

    python benchmarks/ddp_scaling.py [--recipe recipes/mnist_fast.yaml] [--data ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cnnlab.net import free_port

ROOT = Path(__file__).resolve().parents[1]


def run(procs: int, recipe: str, data: str, sets: list[str], out: Path) -> dict:
    train = ["-m", "cnnlab", "-q", "train", recipe, "--data", data, "--out", str(out),
             "--no-progress", *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    if procs == 1:
        cmd = [sys.executable, *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", *train]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // procs))}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{procs} process(es) failed:\n{done.stderr[-3000:]}")
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    meta = json.loads((out / "bundle.json").read_text())
    n = sum(meta["data"]["counts"]["train"].values())
    seconds = sum(r["seconds"] for r in history)  # training + per-epoch validation
    return {"procs": procs, "epochs": len(history), "seconds": seconds,
            "samples_per_s": n * len(history) / seconds,
            "val_accuracy": history[-1].get("val_accuracy", float("nan"))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "mnist_fast.yaml"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--set", action="append", default=["train.epochs=1"], metavar="KEY=VALUE")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-ddp-"))
    rows = [run(p, args.recipe, args.data, args.set, tmp / f"p{p}") for p in args.procs]
    print(f"recipe {Path(args.recipe).name} on {args.data} ({', '.join(args.set)}); "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(
        f"{'processes':>10}{'epochs':>8}{'seconds':>10}{'samples/s':>12}{'val acc':>10}{'vs 1':>7}"
    )
    for r in rows:
        print(f"{r['procs']:>10}{r['epochs']:>8}{r['seconds']:>10.1f}{r['samples_per_s']:>12.0f}"
              f"{r['val_accuracy']:>10.2%}{r['samples_per_s'] / rows[0]['samples_per_s']:>7.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
