"""What trusting a bundle costs at load: the shipped pneumonia bundle (15 MB in 4 files)
loaded as it is sealed, beside the same load with its signature verified (model-signing,
a key made here), and beside the seal's own work alone (reading and hashing the files).

    python benchmarks/bundle_trust.py [--repeats 5]

Prints the median of each and the machine line (CPU, capability, threads, precision).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each, run in turn (interleaved: a busy machine slows all alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from cnnlab.bundle import load_bundle
    from cnnlab.bundle.catalog import shipped_bundles
    from cnnlab.bundle.seal import bundle_files, read_manifest, read_sealed
    from cnnlab.bundle.sign import sign_bundle, verify_signature
    from cnnlab.runtime.device import machine_line

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pneumonia"
        shutil.copytree(shipped_bundles()["pneumonia"], folder)
        key = ec.generate_private_key(ec.SECP256R1())
        (Path(tmp) / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))  # fmt: skip
        public = Path(tmp) / "key.pub.pem"
        public.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
        bundle = load_bundle(folder)  # warm: imports, page cache
        sign_bundle(folder, bundle.sealed, Path(tmp) / "key.pem")
        load_bundle(folder, require_signed=public)

        def seal_only() -> None:
            sealed = read_manifest(folder)[0]
            meta = bundle.meta
            for name, limit in bundle_files(meta).items():
                read_sealed(folder, name, limit, sealed)

        size = sum(e["bytes"] for e in bundle.sealed.values())
        t = medians({"seal": seal_only, "signature": lambda: verify_signature(folder, public),
                     "plain": lambda: load_bundle(folder),
                     "signed": lambda: load_bundle(folder, require_signed=public)},
                    args.repeats)  # fmt: skip
    print(machine_line("fp32"))
    print(f"pneumonia bundle, {len(bundle.sealed)} files, {size / 2**20:.1f} MB; median of "
          f"{args.repeats}, interleaved")  # fmt: skip
    print(f"  the seal alone (read + sha256 of every file)     {t['seal'] * 1e3:8.1f} ms")
    print(f"  the signature alone (model-signing verify)       {t['signature'] * 1e3:8.1f} ms")
    print(f"  load_bundle (sealed: every load)                 {t['plain'] * 1e3:8.1f} ms")
    print(f"  load_bundle --require-signed                     {t['signed'] * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
