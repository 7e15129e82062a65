"""The brief's Keras models trained the brief's way, by Keras and by cnnlab, side by side.

Points 6 and 7 of the brief are Keras code. This runs that code with Keras 3 on TensorFlow-CPU
(`pip install -e .[bench]`, or any Python with TensorFlow: --keras-python) and cnnlab's
`mnist_keras_cnn` / `cifar10_keras_cnn` recipes on the same images, for the same epochs and
batch, and prints training images/s and held-out accuracy of each, with the ratio.

Data (no test splits in ../shared/data): MNIST's 60,000 training digits and the CIFAR-10
training folder (50,000 JPEGs) each give a stratified, seeded test split of 10,000 images
that neither side trains on; the rest go to both, as one .npz under --out. Each side then
holds out 10% of it for validation, as the brief does (Keras: `validation_split=0.1`, the
last 10%; cnnlab: a stratified 10%), so both train on the same number of images per epoch.
Training time is the whole `fit` (per-epoch validation included) on each side.

    flock /tmp/cnnlab-cpu.lock python benchmarks/keras_parity.py [--models mnist cifar10]
        [--epochs N] [--rounds N] [--keras-python PY] [--out runs/keras-parity]

--epochs defaults to the brief's (10 for MNIST, 25 for CIFAR-10). Goal (issue 17): cnnlab at
least 1.5x Keras's images/s at equal or better accuracy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BRIEF = {  # recipe, batch, epochs: as the brief ran them
    "mnist": ("mnist_keras_cnn.yaml", 128, 10),
    "cifar10": ("cifar10_keras_cnn.yaml", 64, 25),
}
TEST_SIZE = 10_000

# The brief's code (keras-io mnist_convnet.py for point 6; the Keras CIFAR-10 CNN for point 7),
# run by a Python that has TensorFlow; prints one JSON line.
KERAS_SCRIPT = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import keras
from keras import layers
import tensorflow as tf

npz, which, epochs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
d = np.load(npz)
x_train, y_train = d["train_images"].astype("float32") / 255, d["train_labels"]
x_test, y_test = d["test_images"].astype("float32") / 255, d["test_labels"]
if x_train.ndim == 3:
    x_train, x_test = x_train[..., None], x_test[..., None]
y_train, y_test = keras.utils.to_categorical(y_train, 10), keras.utils.to_categorical(y_test, 10)
keras.utils.set_random_seed(0)
if which == "mnist":
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
else:
    model = keras.Sequential([
        keras.Input(shape=(32, 32, 3)),
        layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Dropout(0.25),
        layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(512, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
start = time.perf_counter()
model.fit(x_train, y_train, batch_size=batch, epochs=epochs, validation_split=0.1, verbose=2)
seconds = time.perf_counter() - start
_, acc = model.evaluate(x_test, y_test, verbose=0)
print(json.dumps({"seconds": seconds, "test_acc": float(acc), "params": model.count_params(),
                  "n_fit": int(len(x_train) * 0.9), "keras": keras.__version__,
                  "backend": keras.backend.backend(), "tf": tf.__version__,
                  "threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                              tf.config.threading.get_inter_op_parallelism_threads()]}))
"""


def split_test(images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """A stratified test split of TEST_SIZE images; the rest is training data for both sides."""
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(
        np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels, random_state=seed
    )
    return {"train_images": images[tr], "train_labels": labels[tr],
            "test_images": images[te], "test_labels": labels[te]}  # fmt: skip


def mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DATA / "mnist" / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(DATA / "mnist" / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def cifar_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 folder decoded by cnnlab's own reader (cached after the first time)."""
    from cnnlab.data.sources import load_source

    train = load_source(str(DATA / "cifar10-train.tar.gz"), color_mode="rgb").splits["train"]
    return train.images.permute(0, 2, 3, 1).numpy(), train.labels.numpy()


def write_npz(which: str, out: Path) -> Path:
    from cnnlab.fileio import atomic_path

    path = out / f"{which}.npz"
    if not path.is_file():
        images, labels = mnist_arrays() if which == "mnist" else cifar_arrays()
        with atomic_path(path) as tmp, tmp.open("wb") as f:  # a file object: no ".npz" appended
            np.savez(f, **split_test(images, labels))
    return path


def run_keras(python: str, npz: Path, which: str, epochs: int, batch: int) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([python, "-c", KERAS_SCRIPT, str(npz), which, str(epochs), str(batch)],
                          capture_output=True, text=True, env=env)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"Keras run failed ({python}; TensorFlow installed? pip install -e .[bench]):\n"
                 f"{proc.stderr[-3000:]}")  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["log"] = [ln for ln in proc.stdout.splitlines() if "val_accuracy" in ln]
    threads = [n or "default" for n in result["threads"]]
    print(f"  keras {result['keras']} on {result['backend']} {result['tf']} (threads intra/inter "
          f"{threads[0]}/{threads[1]}): {result['seconds']:.1f} s", flush=True)  # fmt: skip
    return result


def run_cnnlab(npz: Path, which: str, epochs: int, out: Path) -> dict:
    from cnnlab.bundle import load_bundle
    from cnnlab.config import load_recipe
    from cnnlab.evaluate.scores import evaluate_bundle
    from cnnlab.models import count_params
    from cnnlab.train.run import train_recipe

    recipe_file, batch, _ = BRIEF[which]
    recipe = load_recipe(ROOT / "recipes" / recipe_file, [f"train.epochs={epochs}"])
    run = out / f"cnnlab-{which}"
    shutil.rmtree(run, ignore_errors=True)
    outcome = train_recipe(recipe, str(npz), run, progress=False)
    bundle = load_bundle(run)
    test = evaluate_bundle(bundle, str(npz), "test")
    seconds, runtime = outcome.result.train_seconds, outcome.result.runtime
    print(f"  cnnlab ({runtime}): {seconds:.1f} s", flush=True)
    return {"seconds": seconds, "test_acc": test["accuracy"], "params": count_params(bundle.model),
            "n_fit": len(outcome.data.train), "runtime": runtime, "batch": recipe.train.batch_size}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(BRIEF), default=list(BRIEF))
    ap.add_argument("--epochs", type=int, help="epochs for every model (default: the brief's)")
    ap.add_argument("--keras-python", default=sys.executable,
                    help="a Python with TensorFlow and Keras 3 (default: this one)")  # fmt: skip
    ap.add_argument("--out", default=str(ROOT / "runs" / "keras-parity"))
    ap.add_argument("--rounds", type=int, default=1,
                    help="run both sides this many times, alternating who goes first, and give "
                         "the median ratio: on shared cores one pair can be off by 30%%")  # fmt: skip
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for which in args.models:
        _, batch, brief_epochs = BRIEF[which]
        epochs = args.epochs or brief_epochs
        t = time.perf_counter()
        npz = write_npz(which, out)
        print(f"{which}: data {npz} ({time.perf_counter() - t:.0f} s); {epochs} epochs, batch "
              f"{batch}", flush=True)  # fmt: skip
        sides = {"keras": partial(run_keras, args.keras_python, npz, which, epochs, batch),
                 "cnnlab": partial(run_cnnlab, npz, which, epochs, out)}  # fmt: skip
        ratios = []
        for r in range(args.rounds):  # alternate who goes first: neighbours share the noise
            order = ("keras", "cnnlab") if r % 2 == 0 else ("cnnlab", "keras")
            done = {side: sides[side]() for side in order}
            k, c = done["keras"], done["cnnlab"]
            tag = f" #{r + 1}" if args.rounds > 1 else ""
            for side, res in (("Keras/TF (the brief's code)", k), ("cnnlab " + BRIEF[which][0], c)):
                res["images_s"] = epochs * res["n_fit"] / res["seconds"]
                rows.append((which, side + tag, res))
            ratios.append(c["images_s"] / k["images_s"])
            rows.append((which, "ratio cnnlab / Keras" + tag, {
                "images_s": ratios[-1], "test_acc": c["test_acc"] - k["test_acc"]}))  # fmt: skip
        if args.rounds > 1:
            rows.append((which, f"ratio, median of {args.rounds} rounds",
                         {"images_s": statistics.median(ratios), "range": [min(ratios), max(ratios)]}))  # fmt: skip
    print(f"\n{'model':<9}{'':<36}{'params':>10}{'train s':>9}{'images/s':>10}{'test acc':>10}")
    for which, side, r in rows:
        if "range" in r:
            lo, hi = r["range"]
            print(
                f"{which:<9}{side:<36}{'':>10}{'':>9}{r['images_s']:>9.2f}x  ({lo:.2f}-{hi:.2f}x)"
            )
        elif side.startswith("ratio"):
            print(f"{which:<9}{side:<36}{'':>10}{'':>9}{r['images_s']:>9.2f}x"
                  f"{r['test_acc'] * 100:>+9.2f}pt")  # fmt: skip
        else:
            print(f"{which:<9}{side:<36}{r['params']:>10,}{r['seconds']:>9.1f}"
                  f"{r['images_s']:>10.0f}{r['test_acc']:>10.2%}")  # fmt: skip
    (out / "keras_parity.json").write_text(json.dumps(
        [{"model": w, "side": s, **{k: v for k, v in r.items() if k != "log"}} for w, s, r in rows],
        indent=1))  # fmt: skip
    print(f"written to {out / 'keras_parity.json'}")


if __name__ == "__main__":
    main()
