"""Near-duplicate search on the real chest X-rays: fingerprinting cold (decoding every file) and
warm (the sha256-keyed cache), and the pHash band index beside brute force, in one run.

- fingerprint: chest_xray/train (5,216 files) and external (312), cold in a fresh cache folder,
  then warm (read + sha256 + cache look-up only).
- within train: `near_pairs` (pHash bands, pigeonhole) beside all n(n-1)/2 Hamming distances
  in numpy, the same pairs found by both.
- external against train: `FingerprintIndex.matches` (all images at once) beside a brute-force 312 x
  5,216 distance matrix, the same matches found by both.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/audit_leakage.py [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "chest_xray"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("CNNLAB_DATA", tempfile.mkdtemp(prefix="cnnlab-bench-"))  # cold
    from cnnlab.data.audit import FileFacts, near_pairs, training_files
    from cnnlab.data.fingerprints import (
        FINE_BITS,
        NEAR_BITS,
        Fingerprint,
        FingerprintIndex,
        as_arrays,
        fingerprint_paths,
    )

    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores, "
          f"workers {args.workers or 'all'}; hashes on uint64 (numpy {np.__version__})")  # fmt: skip
    train, external = training_files(DATA / "train"), training_files(DATA / "external")
    for label in ("first (cold unless $CNNLAB_DATA holds them)", "again (cached)"):
        t = time.perf_counter()
        tr = fingerprint_paths(train, args.workers or None)
        ex = fingerprint_paths(external, args.workers or None)
        dt = time.perf_counter() - t
        print(f"fingerprint {len(tr) + len(ex):,} files {label}: {dt:.2f} s "
              f"({(len(tr) + len(ex)) / dt:,.0f} files/s)")  # fmt: skip
    tr = [fp for fp in tr if isinstance(fp, Fingerprint)]
    ex = [fp for fp in ex if isinstance(fp, Fingerprint)]

    facts = [FileFacts(p, "train", "", f.sha256, phash=f.phash, fine=f.fine)
             for p, f in zip(train, tr, strict=True)]  # fmt: skip
    t = time.perf_counter()
    pairs = near_pairs(facts)
    fast = time.perf_counter() - t
    sha, ph, fine = as_arrays(tr)
    t = time.perf_counter()
    brute = set()
    for i in range(len(ph)):
        d = np.bitwise_count(ph[i + 1 :] ^ ph[i])
        f = np.bitwise_count(fine[i + 1 :] ^ fine[i]).sum(1)
        for j in np.flatnonzero((d <= NEAR_BITS) & (f <= FINE_BITS) & fine.any(1)[i + 1 :]):
            if sha[i].tobytes() != sha[i + 1 + j].tobytes():
                brute.add((i, i + 1 + j))
    slow = time.perf_counter() - t
    same = {(i, j) for i, j, _ in pairs} == brute
    print(f"near pairs within train ({len(tr):,} images): band index {fast * 1e3:.0f} ms, brute "
          f"force {slow * 1e3:.0f} ms ({slow / fast:.1f}x); {len(pairs)} pairs, same: {same}")  # fmt: skip

    index = FingerprintIndex.of(tr, train)
    t = time.perf_counter()
    found = {(i, m["index"]) for i, ms in enumerate(index.matches(ex)) for m in ms}
    fast = time.perf_counter() - t
    esha, eph, efine = as_arrays(ex)
    t = time.perf_counter()
    d = np.bitwise_count(eph[:, None] ^ ph[None, :])
    f = np.bitwise_count(efine[:, None, :] ^ fine[None, :, :]).sum(2)
    near = (d <= NEAR_BITS) & (f <= FINE_BITS) & efine.any(1)[:, None] & fine.any(1)[None, :]
    exact = (esha[:, None, :] == sha[None, :, :]).all(2)
    brute = set(zip(*np.nonzero(near | exact), strict=True))
    slow = time.perf_counter() - t
    same = found == {(int(a), int(b)) for a, b in brute}
    print(f"external ({len(ex)}) against train: index {fast * 1e3:.0f} ms, brute force "
          f"{slow * 1e3:.0f} ms ({slow / fast:.1f}x); {len(found)} matches, same: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
