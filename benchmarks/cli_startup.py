"""How long light commands take to start, beside `python -c pass` in the same run.

`cnnlab --help` and `cnnlab conv` import no torch (it alone costs seconds on a small CPU);
`models` and `summary` build models, so they need it. Goal: `--help` and `conv` under 0.5 s.

    python benchmarks/cli_startup.py [--repeat 5]

Prints the median and the best of `--repeat` runs of each command, as subprocesses.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CNNLAB = [sys.executable, "-m", "cnnlab"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
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
    "cnnlab summary lenet5 (needs torch)": [*CNNLAB, "summary", "lenet5"],
}
GOAL = {"cnnlab --help": 0.5, "cnnlab conv --size 32 --kernel 3": 0.5}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on
    for cmd in COMMANDS.values():  # warm the file cache once, untimed
        timed(cmd)
    print(f"{'command':<40}{'median':>9}{'best':>9}  goal")
    for name, cmd in COMMANDS.items():
        times = [timed(cmd) for _ in range(args.repeat)]
        goal = f"< {GOAL[name]:g} s" if name in GOAL else ""
        ok = (
            ""
            if name not in GOAL
            else (" ok" if statistics.median(times) < GOAL[name] else " MISSED")
        )
        print(f"{name:<40}{statistics.median(times):>8.3f}s{min(times):>8.3f}s  {goal}{ok}")


if __name__ == "__main__":
    main()
