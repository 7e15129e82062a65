"""Time to 99.0% MNIST validation accuracy: the brief's way vs `cnnlab train recipes/mnist_fast.yaml`.

Baseline (brief point 8): torch_mnist_net, per-sample torchvision transforms (ToTensor,
Normalize to [-1, 1]) in a DataLoader over PIL images, batch 64, Adam 1e-3. Its clock
runs only while it trains (validation pauses it), and it stops at the first check that
reaches the target. cnnlab: the real CLI in a subprocess; its training seconds come from
the bundle, its wall time includes start-up and data loading.

    python benchmarks/mnist_time_to_accuracy.py [--data ../shared/data/mnist] [--budget 300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cnnlab.config import DataConfig
from cnnlab.data import prepare_data
from cnnlab.models import create_model

ROOT = Path(__file__).resolve().parents[1]


class PilMnist(Dataset):
    """What torchvision.datasets.MNIST does per item: uint8 array -> PIL image -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images[:, 0].numpy(), labels
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def baseline(data_path: str, target: float, budget: float, check_every: int) -> dict:
    torch.manual_seed(0)
    data = prepare_data(DataConfig(source=data_path, val_fraction=0.1, normalize="symmetric"))
    loader = DataLoader(PilMnist(data.train.images, data.train.labels), batch_size=64, shuffle=True)
    val_x = (data.val.images.float() / 255 - 0.5) / 0.5
    model = create_model("torch_mnist_net")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    trained, step, acc, epoch = 0.0, 0, 0.0, 0
    while trained < budget:
        epoch += 1
        start = time.perf_counter()
        for x, y in loader:
            model.train()
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            step += 1
            if step % check_every == 0:
                trained += time.perf_counter() - start
                acc = accuracy(model, val_x, data.val.labels)
                print(
                    f"  baseline: epoch {epoch} step {step}: val {acc:.2%} after {trained:.1f} s",
                    flush=True,
                )
                if acc >= target or trained >= budget:
                    return {
                        "seconds": trained,
                        "val_accuracy": acc,
                        "reached": acc >= target,
                        "steps": step,
                    }
                start = time.perf_counter()
        trained += time.perf_counter() - start
    return {"seconds": trained, "val_accuracy": acc, "reached": False, "steps": step}


@torch.inference_mode()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def cnnlab_run(data_path: str, recipe: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "cnnlab", "train", recipe, "--data", data_path, "--out", tmp, "--no-progress"],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"cnnlab train failed:\n{proc.stderr}")
        meta = json.loads((Path(tmp) / "bundle.json").read_text())
    history = meta["metrics"]
    return {"seconds": meta["training"]["seconds"], "wall": wall, "val_accuracy": history["accuracy"],
            "runtime": meta["training"]["runtime"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "mnist_fast.yaml"))
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--budget", type=float, default=300.0, help="baseline training seconds at most")
    ap.add_argument(
        "--check-every", type=int, default=200, help="baseline validation every N steps"
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    torch.set_num_threads(args.threads)

    print(f"cnnlab: {Path(args.recipe).name} ...", flush=True)
    fast = cnnlab_run(args.data, args.recipe)
    print(f"baseline: the brief's way (torch_mnist_net, DataLoader, batch 64, Adam 1e-3), target {args.target:.1%}",
          flush=True)  # fmt: skip
    base = baseline(args.data, args.target, args.budget, args.check_every)

    print()
    print(f"{'run':<44}{'train s':>9}{'val acc':>9}  reached")
    reached = "yes" if base["reached"] else f"no (budget {args.budget:.0f} s)"
    print(
        f"{'baseline: brief way (per-sample DataLoader)':<44}{base['seconds']:>9.1f}{base['val_accuracy']:>9.2%}  {reached}"
    )
    ok = "yes" if fast["val_accuracy"] >= args.target else "no"
    print(
        f"{'cnnlab train ' + Path(args.recipe).name:<44}{fast['seconds']:>9.1f}{fast['val_accuracy']:>9.2%}  {ok}"
    )
    print(
        f"cnnlab wall time incl. start-up and data loading: {fast['wall']:.1f} s; runtime {fast['runtime']}"
    )
    print(f"speed-up (training time to target): {base['seconds'] / fast['seconds']:.1f}x"
          + ("" if base["reached"] else " (at least: the baseline never reached the target)"))  # fmt: skip


if __name__ == "__main__":
    main()
