"""How long commands take to answer, beside `python -c pass` and `import torch` in the same run.

`cnnlab --help`, `conv`, `models` and a misspelt model name import no torch (it alone costs
seconds on a small CPU): the registry's table and the names come from cnnlab/names.json.
`summary` of a model name needs torch the first time (cold: an empty data folder) and reads
its kept answer after (warm). Goals (issue 29): --help, conv, a miss under 0.5 s; models under
1 s; summary of a brief model under 2 s. `--serve` adds `serve --backend onnx` (the shipped
pneumonia model, no exported file): seconds to /v1/health/ready on a cold data folder
(export + parity check) and a warm one (the kept export: no PyTorch model built), without and
with the decisions store (serve's default); goal warm under 3 s.

    python benchmarks/cli_startup.py [--repeat 5] [--serve]

Prints the median and the best of `--repeat` runs of each command, as subprocesses.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CNNLAB = [sys.executable, "-m", "cnnlab"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch' (the floor)": [sys.executable, "-c", "import torch"],
    "cnnlab --help": [*CNNLAB, "--help"],
    "cnnlab conv --size 32 --kernel 3": [*CNNLAB, "conv", "--size", "32", "--kernel", "3"],
    "cnnlab conv --layers (a stack)": [
        *CNNLAB,
        "conv",
        "--size",
        "32",
        "--layers",
        "c3:32,c3:32,p2,c3:64s2psame",
    ],  # fmt: skip
    "cnnlab models": [*CNNLAB, "models"],
    "cnnlab summary keras_mnist_cnn (cold)": [*CNNLAB, "summary", "keras_mnist_cnn"],
    "cnnlab summary keras_mnist_cnn (warm)": [*CNNLAB, "summary", "keras_mnist_cnn"],
    "cnnlab summary keras_mnst_cnn (a miss)": [*CNNLAB, "summary", "keras_mnst_cnn"],
}
GOAL = {
    "cnnlab --help": 0.5,
    "cnnlab conv --size 32 --kernel 3": 0.5,
    "cnnlab models": 1.0,
    "cnnlab summary keras_mnist_cnn (warm)": 2.0,
    "cnnlab summary keras_mnst_cnn (a miss)": 0.5,
}
MISSES = {"cnnlab summary keras_mnst_cnn (a miss)"}  # exit 2 is the answer


def timed(cmd: list[str], env: dict | None = None, rc: int = 0) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != rc:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr}")
    return time.perf_counter() - start


def data_folder(name: str, cold: bool) -> dict:
    """A data folder of the run's own: emptied before each run of a cold measurement."""
    folder = Path(tempfile.gettempdir()) / f"cnnlab-bench-{os.getpid()}" / name
    if cold:
        shutil.rmtree(folder, ignore_errors=True)
    return {**os.environ, "CNNLAB_DATA": str(folder)}


def serve_ready(env: dict, record: bool = False) -> float:
    """Seconds from `cnnlab serve --backend onnx` to /v1/health/ready answering 200."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [*CNNLAB, "serve", "pneumonia", "--backend", "onnx", "--port", str(port)]
    cmd += [] if record else ["--no-record"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/v1/health/ready"
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"cnnlab serve exited with {proc.returncode}")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--serve", action="store_true", help="also serve --backend onnx, cold and warm")
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    for name, cmd in COMMANDS.items():  # warm the file cache once, untimed
        timed(cmd, data_folder(name, True), 2 if name in MISSES else 0)
    print(f"{'command':<44}{'median':>9}{'best':>9}  goal")
    for name, cmd in COMMANDS.items():
        rc = 2 if name in MISSES else 0
        cold = "(cold)" in name  # every run on an empty data folder
        times = [timed(cmd, data_folder("shared", cold), rc) for _ in range(args.repeat)]
        goal = f"< {GOAL[name]:g} s" if name in GOAL else ""
        ok = (
            ""
            if name not in GOAL
            else (" ok" if statistics.median(times) < GOAL[name] else " MISSED")
        )
        print(f"{name:<44}{statistics.median(times):>8.3f}s{min(times):>8.3f}s  {goal}{ok}")
    if args.serve:
        cold = [serve_ready(data_folder("serve", True))]
        warm = [serve_ready(data_folder("serve", False)) for _ in range(args.repeat)]
        recorded = [serve_ready(data_folder("serve", False), True) for _ in range(args.repeat)]
        for name, times in (("serve --backend onnx --no-record (cold)", cold),
                            ("... (warm)", warm), ("... (warm, decisions on record)", recorded)):  # fmt: skip
            goal = (
                "< 3 s" + (" ok" if statistics.median(times) < 3 else " MISSED")
                if "warm" in name
                else ""
            )
            print(f"{name:<44}{statistics.median(times):>8.3f}s{min(times):>8.3f}s  {goal}")


if __name__ == "__main__":
    main()
