"""Does the data a bundle is judged or recalibrated on hold images it was trained on, or the
same image twice? A test image also in training makes the score a memory test; one counted
twice weighs double. `evaluate` warns; `recalibrate` refuses a site sample that overlaps the
training data (its rule would be fitted on images the model has memorised).

The bundle's training fingerprints come from `training_hashes.safetensors`
(cnnlab.data.fingerprints); a bundle made before cnnlab kept them cannot be checked, and says so.
"""

from __future__ import annotations

import os
from typing import Any

from cnnlab.data.audit import exact_groups, inspect_files, near_pairs, overlap
from cnnlab.errors import CnnlabError

SHOWN = 3  # files named in a one-line warning (all are in the JSON)


def data_leakage(
    bundle, paths: list[str] | None, classes: list[str] | None = None
) -> dict[str, Any]:
    """{checked, n, duplicates: {exact_groups, near_pairs, list}, training_overlap (None when
    the bundle keeps no fingerprints), warnings: [one line each]} for the image files `paths`."""
    if not paths:
        return {"checked": False, "warnings": [],
                "why": "the data has no image files to fingerprint (IDX, npz or a download)"}  # fmt: skip
    items = [(path, "data", classes[i] if classes else "") for i, path in enumerate(paths)]
    facts = [f for f in inspect_files(items, None) if f.error is None]
    groups = exact_groups(facts)
    pairs = near_pairs(facts)
    dup_list = [[f.path for f in g] for g in groups] + [[facts[i].path, facts[j].path]
                                                      for i, j, _ in pairs]  # fmt: skip
    out: dict[str, Any] = {
        "checked": True,
        "n": len(facts),
        "duplicates": {
            "exact_groups": len(groups),
            "near_pairs": len(pairs),
            "list": dup_list[:200],
        },
        "training_overlap": None,
        "warnings": [],
    }
    if dup_list:
        out["warnings"].append(
            f"{len(groups)} group(s) of identical images and {len(pairs)} near-duplicate pair(s) "
            f"in this data count those images more than once, e.g. {_names(dup_list[0])}"
        )
    index = getattr(bundle, "training_hashes", None)
    if index is None:
        out["warnings"].append(f"{bundle.name} keeps no fingerprints of its training images (made "
                               "before cnnlab kept them): overlap with its training data not "
                               "checked")  # fmt: skip
        return out
    seen = overlap(facts, index)
    out["training_overlap"] = seen
    if seen["leaked"]:
        out["warnings"].append(leak_sentence(seen, bundle.name))
    return out


def leak_sentence(seen: dict[str, Any], name: str) -> str:
    files = sorted({m["file"] for m in seen["list"]})
    shown = ", ".join(os.path.basename(f) for f in files[:SHOWN])
    more = f" and {len(files) - SHOWN} more" if len(files) > SHOWN else ""
    return (f"{seen['leaked']} of {seen['n']} image(s) are in {name}'s training data "
            f"({seen['exact']} exact copies, {seen['near']} near duplicates: {shown}{more}); "
            "figures on them are optimistic")  # fmt: skip


def _names(paths: list[str]) -> str:
    return " = ".join(os.path.basename(p) for p in paths)


def refuse_training_overlap(bundle, paths: list[str] | None, data_path: str) -> dict[str, Any]:
    """recalibrate's gate: a site sample holding any training image is refused, naming them."""
    found = data_leakage(bundle, paths)
    seen = found.get("training_overlap")
    if seen and seen["leaked"]:
        raise CnnlabError(
            f"{data_path} is not a fair site sample: {leak_sentence(seen, bundle.name)}. A rule "
            "fitted on images the model was trained on promises more than it keeps; remove them "
            f"(`cnnlab audit {data_path} --json --against TRAINING_FOLDER` lists each) and run "
            "again"
        )
    return found
