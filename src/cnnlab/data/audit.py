"""Dataset audit: what is in an image folder, what is wrong with it, and what to do about it.

Counts per split and class, image sizes and modes, unreadable files, exact duplicates (by
content hash) and near duplicates (by a perceptual hash) within and across splits — an
image in both train and test makes the test score a memory test. Ends in a plain verdict.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.archives import extract_archive, is_archive
from cnnlab.data.fingerprints import (
    FINE_BITS,
    NEAR_BITS,
    Fingerprint,
    FingerprintIndex,
    band,
    band_edges,
    fingerprint_paths,
    hamming,
    phash,
)
from cnnlab.data.folder import find_folder_root, scan_split, split_folders
from cnnlab.data.prepare import MIN_GIVEN_VAL
from cnnlab.data.readers import IMAGE_FOLDER, find_reader, readers
from cnnlab.errors import CnnlabError

__all__ = ["audit_folder", "format_report", "hamming", "near_pairs", "phash"]

IMBALANCE_WARN = 1.5  # largest / smallest class above this deserves a word
LIST_LIMIT = 200  # duplicate groups / pairs listed in full (all are counted)


# ----------------------------------------------------------------------------- one file


@dataclass
class FileFacts:
    path: str
    split: str
    cls: str
    sha: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    phash: int | None = None
    fine: bytes | None = None  # the fine hash that confirms pHash candidates
    error: str | None = None


def inspect_files(items: list[tuple[str, str, str]], workers: int | None) -> list[FileFacts]:
    """Hash, size, mode and perceptual hashes of each (path, split, class), cached by content;
    a bad file comes back with `error`. The pixels come through the same reader as training's
    and predict's, so the audit fails on exactly the files they fail on, with the same reason."""
    out = []
    for (path, split, cls), fp in zip(items, fingerprint_paths([i[0] for i in items], workers),
                                      strict=True):  # fmt: skip
        if isinstance(fp, str):
            out.append(FileFacts(path, split, cls, error=fp))
        else:
            out.append(FileFacts(path, split, cls, fp.sha256, fp.width, fp.height, fp.mode,
                                 fp.format, fp.phash, fp.fine))  # fmt: skip
    return out


# ----------------------------------------------------------------------------- duplicates


def exact_groups(facts: list[FileFacts]) -> list[list[FileFacts]]:
    by_sha: dict[str, list[FileFacts]] = defaultdict(list)
    for f in facts:
        if f.error is None:
            by_sha[f.sha].append(f)
    return [g for g in by_sha.values() if len(g) > 1]


def near_pairs(
    facts: list[FileFacts], max_bits: int = NEAR_BITS, max_fine_bits: int | None = FINE_BITS
) -> list[tuple[int, int, int]]:
    """(i, j, pHash distance) for near duplicates: pHashes within max_bits and, when
    max_fine_bits is given, fine hashes within that (look-alike X-rays share pHashes: see
    cnnlab.data.fingerprints). Exact copies are left to `exact_groups`.

    Pigeonhole: split the 64 bits into max_bits + 1 bands; two hashes that close agree
    exactly on at least one band, so only images sharing a band value are compared."""
    idx = [i for i, f in enumerate(facts) if f.phash is not None]
    hashes = np.array([facts[i].phash for i in idx], dtype=np.uint64)
    found: dict[tuple[int, int], int] = {}
    for lo, hi in band_edges(max_bits):
        keys = band(hashes, lo, hi)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts, ends, strict=True):
            if e - s < 2:
                continue
            members = order[s:e]
            h = hashes[members]
            for r0 in range(0, len(h), 2048):  # bounded memory for a crowded band value
                dist = np.bitwise_count(h[r0 : r0 + 2048, None] ^ h[None, :])
                a, b = np.nonzero(dist <= max_bits)
                for x, y in zip(a.tolist(), b.tolist(), strict=True):
                    if r0 + x >= y:
                        continue
                    i, j = sorted((idx[members[r0 + x]], idx[members[y]]))
                    if facts[i].sha != facts[j].sha and (i, j) not in found:
                        found[(i, j)] = int(dist[x, y])
    if max_fine_bits is not None:
        found = {k: d for k, d in found.items()
                 if fine_distance(facts[k[0]].fine, facts[k[1]].fine) <= max_fine_bits}  # fmt: skip
    return sorted((i, j, d) for (i, j), d in found.items())


def fine_distance(a: bytes | None, b: bytes | None) -> int:
    if a is None or b is None:
        return 256
    return int(np.bitwise_count(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


# ----------------------------------------------------------------------------- the audit


def _listing(root: Path) -> tuple[dict[str, Any], list[tuple[str, str, str]], list[dict]]:
    layout, ignored = split_folders(root)
    splits: dict[str, Any] = {}
    items: list[tuple[str, str, str]] = []
    skipped = [{"path": str(d), "reason": "not a split folder; ignored"} for d in ignored]
    for name, folder in layout.items():
        lst = scan_split(folder)
        split = "train" if name == "all" else name
        splits[split] = {"folder": str(folder), "classes": lst.classes, "empty": lst.empty}
        items += [(f"{folder}/{rel}", split, lst.classes[k]) for rel, _, _, k in lst.files]
        skipped += [{"path": str(folder / rel), "reason": why} for rel, why in lst.other]
    return splits, items, skipped


def _folder_root(source: str | Path) -> Path:
    """The image folder at `source` (an archive is unpacked once, safely); anything else is refused."""
    path = Path(source).expanduser()
    if is_archive(path):
        path = extract_archive(path)
    reader = find_reader(path) if path.exists() else None
    if reader is None or reader.name != IMAGE_FOLDER:  # the audit reads image folders only
        folder = next(r for r in readers() if r.name == IMAGE_FOLDER)
        held = f"; it holds {reader.describe}" if reader is not None else ""
        raise CnnlabError(f"{source} is not {folder.describe}{held}")
    return find_folder_root(path)


def training_files(source: str | Path) -> list[str]:
    """Every image file of a training folder (or archive): its splits but test/, which a
    run never trains on."""
    _, items, _ = _listing(_folder_root(source))
    return [path for path, split, _ in items if split != "test"]


def audit_folder(
    source: str | Path, workers: int | None = None, against: str | Path | None = None
) -> dict[str, Any]:
    """Audit an image folder (or an archive of one); returns a JSON-ready report. With
    `against` (a training folder), also every image of `source` found again there."""
    root = _folder_root(source)
    layout, items, not_images = _listing(root)
    facts = inspect_files(items, workers)
    good = [f for f in facts if f.error is None]

    splits: dict[str, Any] = {}
    for name, info in layout.items():
        counts = Counter(f.cls for f in good if f.split == name)
        per_class = {c: counts.get(c, 0) for c in info["classes"]}
        nonzero = [v for v in per_class.values() if v]
        splits[name] = {
            "n": sum(per_class.values()),
            "classes": per_class,
            "imbalance_ratio": round(max(nonzero) / min(nonzero), 2) if nonzero else None,
            "empty_classes": [c for c, v in per_class.items() if not v],
            "folder": info["folder"],
        }
    sizes = Counter(f"{f.width}x{f.height}" for f in good)
    areas = sorted((f.width * f.height, f.width, f.height) for f in good)
    images = {
        "sizes": dict(sizes.most_common(10)),
        "distinct_sizes": len(sizes),
        "smallest": f"{areas[0][1]}x{areas[0][2]}" if areas else None,
        "largest": f"{areas[-1][1]}x{areas[-1][2]}" if areas else None,
        "modes": dict(Counter(f.mode for f in good).most_common()),
        "formats": dict(Counter(f.format for f in good).most_common()),
    }
    exact = [_group_entry(g) for g in exact_groups(facts)]
    near = []
    for i, j, d in near_pairs(facts):
        a, b = facts[i], facts[j]
        near.append({"files": [a.path, b.path], "splits": [a.split, b.split],
                     "classes": [a.cls, b.cls], "distance": d, "fine_bits": fine_distance(a.fine, b.fine),
                     "cross_split": a.split != b.split})  # fmt: skip
    report: dict[str, Any] = {
        "root": str(root),
        "layout": "classes" if Path(next(iter(layout.values()))["folder"]) == root else "splits",
        "n_files": len(facts),
        "n_readable": len(good),
        "splits": splits,
        "images": images,
        "unreadable": [{"path": f.path, "reason": f.error} for f in facts if f.error],
        "not_images": not_images,
        "exact_duplicates": {"groups": len(exact), "cross_split": sum(g["cross_split"] for g in exact),
                             "label_conflicts": sum(g["label_conflict"] for g in exact),
                             "list": exact[:LIST_LIMIT]},
        "near_duplicates": {"pairs": len(near), "cross_split": sum(p["cross_split"] for p in near),
                            "max_bits": NEAR_BITS, "max_fine_bits": FINE_BITS, "list": sorted(near, key=lambda p: not p["cross_split"])[:LIST_LIMIT]},
    }  # fmt: skip
    if against is not None:
        report["against"] = leaks_into(good, against, workers)
    report["findings"] = findings(report)
    report["verdict"] = verdict(report["findings"])
    return report


def leaks_into(facts: list[FileFacts], against: str | Path, workers: int | None) -> dict[str, Any]:
    """Every image of `facts` found again, exactly or nearly, in the folder `against`."""
    root = _folder_root(against)
    _, items, _ = _listing(root)
    ref = [f for f in inspect_files(items, workers) if f.error is None]
    index = FingerprintIndex.of([Fingerprint(f.sha, 0, 0, "", "", f.phash, f.fine) for f in ref])
    return {"folder": str(root), "n_readable": len(ref), **overlap(facts, index, ref)}


def overlap(
    facts: list[FileFacts], index: FingerprintIndex, ref: list[FileFacts] | None = None
) -> dict[str, Any]:
    """Which of `facts` the index holds: counts and a list naming the files (the reference's
    files where known: a bundle keeps hashes, not names) with the Hamming distances."""
    listed, exact, near, conflicts = [], 0, 0, 0
    every = index.matches([Fingerprint(f.sha, 0, 0, "", "", f.phash, f.fine) for f in facts])
    for f, found in zip(facts, every, strict=True):
        if not found:
            continue
        exact += found[0]["kind"] == "exact"
        near += found[0]["kind"] == "near"
        classes = {ref[m["index"]].cls for m in found} if ref is not None else set()
        conflicts += bool(classes - {f.cls})
        for m in found[:5]:
            other = ref[m["index"]] if ref is not None else None
            listed.append({"file": f.path, "class": f.cls, "kind": m["kind"], "bits": m["bits"],
                           "fine_bits": m["fine_bits"],
                           "match": other.path if other else f"training image #{m['index']}",
                           "match_class": other.cls if other else None})  # fmt: skip
    return {"n": len(facts), "leaked": exact + near, "exact": exact, "near": near,
            "label_conflicts": conflicts, "max_bits": NEAR_BITS, "max_fine_bits": FINE_BITS,
            "list": listed[:LIST_LIMIT]}  # fmt: skip


def _group_entry(group: list[FileFacts]) -> dict[str, Any]:
    return {
        "files": [f.path for f in group],
        "splits": sorted({f.split for f in group}),
        "classes": sorted({f.cls for f in group}),
        "cross_split": len({f.split for f in group}) > 1,
        "label_conflict": len({f.cls for f in group}) > 1,
    }


def findings(r: dict[str, Any]) -> list[dict[str, str]]:
    """Problems found, worst first, each with what it means and the suggested fix."""
    out: list[dict[str, str]] = []

    def add(level: str, what: str, fix: str) -> None:
        out.append({"level": level, "what": what, "fix": fix})

    ex, near = r["exact_duplicates"], r["near_duplicates"]
    if ex["cross_split"] or near["cross_split"]:
        add("problem", f"leakage: {ex['cross_split']} exact and {near['cross_split']} near-duplicate "
            "image(s) appear in more than one split, so validation/test scores will be optimistic",
            "remove one copy of each (`cnnlab audit --json` lists them); for several images per "
            "patient, split by patient (data.group_by: patient)")  # fmt: skip
    ag = r.get("against")
    if ag and ag["leaked"]:
        add("problem", f"leakage: {ag['leaked']} of {ag['n']} image(s) are also in {ag['folder']} "
            f"({ag['exact']} exact copies, {ag['near']} near duplicates), so scores on this "
            "folder measure memory, not generalisation",
            "remove them from one of the two folders (`cnnlab audit --json` lists each with its "
            "match); for several images per patient, keep each patient in one folder")  # fmt: skip
    if ex["label_conflicts"]:
        add("problem", f"{ex['label_conflicts']} identical image(s) carry different class labels",
            "check these files and keep each in its one right class")  # fmt: skip
    if r["unreadable"]:
        add("warning", f"{len(r['unreadable'])} file(s) cannot be read; training skips them",
            "re-export or delete them (listed under 'unreadable')")  # fmt: skip
    within = ex["groups"] - ex["cross_split"]
    if within or near["pairs"] - near["cross_split"]:
        add("warning", f"{within} exact duplicate group(s) and {near['pairs'] - near['cross_split']} "
            "near-duplicate pair(s) within a split weigh those images twice",
            "delete the extra copies if they are not intended")  # fmt: skip
    for name, s in r["splits"].items():
        if s["empty_classes"]:
            add("warning", f"{name}: class folder(s) with no readable image: {', '.join(s['empty_classes'])}",
                "add images or remove the folder (an empty class still takes an output)")  # fmt: skip
        if s["imbalance_ratio"] and s["imbalance_ratio"] > IMBALANCE_WARN:
            big = max(s["classes"], key=s["classes"].get)
            small = min((c for c in s["classes"] if s["classes"][c]), key=s["classes"].get)
            add("warning" if s["imbalance_ratio"] > 2 else "note",
                f"{name}: classes imbalanced {s['imbalance_ratio']}:1 ({big} {s['classes'][big]}, "
                f"{small} {s['classes'][small]})",
                "train.class_weight: auto, and judge by per-class recall, balanced accuracy or AUC")  # fmt: skip
    val = r["splits"].get("val")
    if val is not None and val["n"] < MIN_GIVEN_VAL:
        add("warning", f"the given val split has only {val['n']} images: too few to judge a model "
            f"(one image moves accuracy by {100 / max(val['n'], 1):.0f} points)",
            "cnnlab merges it into train and holds out a stratified data.val_fraction instead")  # fmt: skip
    elif val is None and "train" in r["splits"]:
        add("note", "no val split", "cnnlab holds out a stratified data.val_fraction of train")
    if "test" not in r["splits"]:
        add(
            "note", "no test split", "keep some images aside (root/test/<class>/) for a final check"
        )
    img = r["images"]
    if img["distinct_sizes"] > 1:
        add("note", f"{img['distinct_sizes']} image sizes, from {img['smallest']} to {img['largest']}",
            "set data.image_size: [H, W] (and data.resize: stretch, letterbox or center_crop)")  # fmt: skip
    if len(img["modes"]) > 1:
        add("note", f"mixed colour modes ({', '.join(img['modes'])})",
            "data.color_mode: auto loads all as RGB; set grayscale for X-rays and the like")  # fmt: skip
    return out


def verdict(found: list[dict[str, str]]) -> str:
    problems = [f for f in found if f["level"] == "problem"]
    warnings = [f for f in found if f["level"] == "warning"]
    if problems:
        return "Fix before trusting any score: " + "; ".join(f["what"] for f in problems) + "."
    if warnings:
        return "Usable, with care: " + "; ".join(f["what"] for f in warnings) + "."
    return "Looks clean: readable, no duplicates across splits, classes reasonably balanced."


def format_report(r: dict[str, Any]) -> str:
    """The human-readable audit (the CLI prints this; --json prints the dict)."""
    lines = [f"{r['root']}: {r['n_readable']:,} readable of {r['n_files']:,} image files"]
    for name, s in r["splits"].items():
        ratio = f", imbalance {s['imbalance_ratio']}:1" if s["imbalance_ratio"] else ""
        lines.append(f"  {name:<6} {s['n']:>7,} images{ratio}")
        lines += [f"           {c:<24}{v:>7,}" for c, v in s["classes"].items()]
    img = r["images"]
    sizes = ", ".join(f"{k} ({v:,})" for k, v in list(img["sizes"].items())[:4])
    lines.append(f"  sizes: {sizes}{' ...' if img['distinct_sizes'] > 4 else ''}")
    lines.append("  modes: " + ", ".join(f"{k} ({v:,})" for k, v in img["modes"].items()))
    lines.append("  formats: " + ", ".join(f"{k} ({v:,})" for k, v in img["formats"].items()))
    ex, near = r["exact_duplicates"], r["near_duplicates"]
    lines.append(f"  exact duplicates: {ex['groups']} group(s), {ex['cross_split']} across splits")
    lines.append(f"  near duplicates (pHash <= {near['max_bits']} of 64 bits and fine hash <= "
                 f"{near['max_fine_bits']} of 255): {near['pairs']} pair(s), "
                 f"{near['cross_split']} across splits")  # fmt: skip
    for f in r["unreadable"][:20]:
        lines.append(f"  unreadable: {f['path']}: {f['reason']}")
    if len(r["unreadable"]) > 20:
        lines.append(f"  ... and {len(r['unreadable']) - 20} more unreadable (see --json)")
    for g in ex["list"][:10]:
        rel = " = ".join(os.path.relpath(p, r["root"]) for p in g["files"])
        lines.append(f"  {'leak' if g['cross_split'] else 'duplicate'}: {rel}")
    for p in near["list"][:10]:
        a, b = (os.path.relpath(x, r["root"]) for x in p["files"])
        kind = "near leak" if p["cross_split"] else "near duplicate"
        lines.append(f"  {kind} ({p['distance']} bits): {a} ~ {b}")
    ag = r.get("against")
    if ag:
        lines.append(f"  against {ag['folder']} ({ag['n_readable']:,} readable images): "
                     f"{ag['leaked']} of {ag['n']:,} found there, {ag['exact']} exact, "
                     f"{ag['near']} near")  # fmt: skip
        for m in ag["list"][:10]:
            how = "=" if m["kind"] == "exact" else f"~ ({m['bits']} + {m['fine_bits']} bits)"
            lines.append(f"  leak: {os.path.relpath(m['file'], r['root'])} {how} {m['match']}")
    for f in r["findings"]:
        lines.append(f"{f['level']}: {f['what']}\n    fix: {f['fix']}")
    lines.append(f"verdict: {r['verdict']}")
    return "\n".join(lines)
