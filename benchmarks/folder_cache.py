"""Loading a folder of 50,000 CIFAR-10 JPEGs: first load (decode + cache) and second load (cache).

Extracts ../shared/data/cifar10-train.tar.gz into a temp folder, points $CNNLAB_DATA at an
empty temp cache, then prints side by side:
  - decode throughput on a sample, worker processes vs threads vs one process (the baseline),
  - the first `load_source` of the whole folder (decoded on every core, written to the cache),
  - the second load, in a fresh process as a user's next `cnnlab train` would see it.

    flock /tmp/cnnlab-cpu.lock python benchmarks/folder_cache.py [--archive PATH] [--sample 6000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECOND_LOAD = """
import sys, time
t0 = time.perf_counter()
from cnnlab.data import load_source
t1 = time.perf_counter()
loaded = load_source(sys.argv[1])
t2 = time.perf_counter()
train = loaded.splits["train"]
assert len(train) == int(sys.argv[2]), len(train)
checksum = int(train.images[::997].long().sum())  # touch the pixels, not just the map
print(f"{t2 - t1:.3f} {t1 - t0:.3f} {checksum}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", default=str(ROOT.parent / "shared/data/cifar10-train.tar.gz"))
    ap.add_argument("--sample", type=int, default=6000, help="files for the backend comparison")
    args = ap.parse_args()
    from cnnlab.runtime.device import machine_line

    print(machine_line(), flush=True)  # what the times below depend on

    work = Path(tempfile.mkdtemp(prefix="cnnlab-folder-bench-"))
    os.environ["CNNLAB_DATA"] = str(work / "cache")
    t = time.perf_counter()
    with tarfile.open(args.archive) as tf:
        tf.extractall(work / "data", filter="data")
    print(f"extracted {args.archive} to {work / 'data'} in {time.perf_counter() - t:.1f} s")

    from cnnlab.data import load_source
    from cnnlab.data.decode import available_cpus, decode_many
    from cnnlab.data.folder import find_folder_root, folder_splits, scan_split

    root = find_folder_root(work / "data")
    lst = scan_split(folder_splits(root)["train"])
    n = len(lst.files)
    cpus = available_cpus()
    print(f"{n:,} files in {lst.root}; {cpus} cores; load average {os.getloadavg()[0]:.2f}")

    sample = [f"{lst.root}/{rel}" for rel, *_ in lst.files[:: max(1, n // args.sample)]]
    print(f"\ndecode throughput on {len(sample):,} files (read + decode + to tensor):")
    rates = {}
    for backend, workers in (("serial", 1), ("thread", cpus), ("process", cpus)):
        t = time.perf_counter()
        for arr, why in decode_many(sample, "auto", None, "stretch", workers, backend):
            assert arr is not None, why
        rates[backend] = len(sample) / (time.perf_counter() - t)
        print(f"  {backend:<8} x{workers}: {rates[backend]:8,.0f} images/s")
    print(f"  processes vs one process: {rates['process'] / rates['serial']:.2f}x; "
          f"vs threads: {rates['process'] / rates['thread']:.2f}x")  # fmt: skip

    t = time.perf_counter()
    loaded = load_source(str(work / "data"))
    first = time.perf_counter() - t
    assert len(loaded.splits["train"]) == n
    del loaded
    out = subprocess.run([sys.executable, "-c", SECOND_LOAD, str(work / "data"), str(n)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    second, imports, _ = out.stdout.split()
    print(f"\n{'load of ' + format(n, ',') + ' JPEGs':<34}{'seconds':>10}")
    print(f"{'first (decode on ' + str(cpus) + ' cores + cache)':<34}{first:>10.2f}")
    print(f"{'second (cache, fresh process)':<34}{float(second):>10.2f}"
          f"   (+ {float(imports):.1f} s importing cnnlab/torch)")  # fmt: skip
    print(f"speed-up of the second load: {first / float(second):.0f}x")


if __name__ == "__main__":
    main()
