"""Dataset audit: counts, sizes and modes, unreadable files, exact and near duplicates within and
across splits, the tiny-val warning and the verdict; the perceptual hash on its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.audit import audit_folder, hamming, near_pairs, phash
from tests.conftest import shared_path, write_image_folder


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))


def structured(seed: int, size: int = 48) -> np.ndarray:
    """A picture with large shapes (what perceptual hashes are made for), not noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size, 3))
    for _ in range(4):
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 8, size / 3)]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    return img.astype(np.uint8)


def test_phash_survives_recompression_and_resizing_but_tells_pictures_apart():
    def h(arr):
        gray = Image.fromarray(arr).convert("L").resize((32, 32), Image.Resampling.BILINEAR)
        return phash(np.asarray(gray))

    a = structured(0)
    b = np.clip(np.asarray(Image.fromarray(a).resize((60, 60))).astype(int) + 10, 0, 255)
    assert hamming(h(a), h(b.astype(np.uint8))) <= 4
    distances = [hamming(h(structured(i)), h(structured(j))) for i in range(8) for j in range(i)]
    assert min(distances) > 8 and 20 < np.mean(distances) < 44


def test_near_pairs_finds_every_close_pair_like_brute_force():
    from cnnlab.data.audit import FileFacts

    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 300, dtype=np.int64).tolist()
    hashes = base + [b ^ (1 << int(rng.integers(0, 64))) ^ (1 << 5) for b in base[:40]]
    facts = [FileFacts(str(i), "train", "a", sha=str(i), phash=h) for i, h in enumerate(hashes)]
    found = {(i, j) for i, j, _ in near_pairs(facts, 6, max_fine_bits=None)}
    brute = {(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
             if hamming(hashes[i], hashes[j]) <= 6}  # fmt: skip
    assert found == brute and len(found) >= 40


def test_audit_reports_counts_leakage_bad_files_and_a_verdict(tmp_path):
    root = tmp_path / "d"
    write_image_folder(root, ["cat", "dog"], 12, splits=["train"], size=48)
    write_image_folder(root, ["cat", "dog"], 3, splits=["val"], size=48, seed=1)
    write_image_folder(root, ["cat", "dog"], 4, splits=["test"], size=48, seed=2)
    shutil.copy(root / "train" / "cat" / "img_3.png", root / "test" / "cat" / "copy.png")
    shutil.copy(root / "train" / "dog" / "img_1.png", root / "train" / "dog" / "again.png")
    pic = structured(7)
    Image.fromarray(pic).save(root / "train" / "dog" / "pic.png")
    near = Image.fromarray(np.clip(pic.astype(int) + 8, 0, 255).astype(np.uint8)).resize((56, 56))
    near.save(root / "val" / "dog" / "pic_again.jpg", quality=70)
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (root / "train" / "cat" / "readme.txt").write_text("hello")
    (root / "test" / "bird").mkdir()

    r = audit_folder(root, workers=1)
    assert r["layout"] == "splits" and list(r["splits"]) == ["train", "val", "test"]
    assert r["splits"]["train"]["classes"] == {"cat": 12, "dog": 14}
    assert r["splits"]["train"]["imbalance_ratio"] == pytest.approx(14 / 12, abs=0.01)
    assert r["splits"]["test"]["empty_classes"] == ["bird"]
    assert r["images"]["sizes"] == {"48x48": 41, "56x56": 1}
    assert r["images"]["formats"] == {"PNG": 41, "JPEG": 1}
    assert [u["path"].endswith("broken.jpg") for u in r["unreadable"]] == [True]
    assert any(n["path"].endswith("readme.txt") for n in r["not_images"])

    ex = r["exact_duplicates"]
    assert ex["groups"] == 2 and ex["cross_split"] == 1 and ex["label_conflicts"] == 0
    leak = next(g for g in ex["list"] if g["cross_split"])
    assert sorted(leak["splits"]) == ["test", "train"]
    nd = r["near_duplicates"]
    assert nd["cross_split"] == 1
    pair = next(p for p in nd["list"] if p["cross_split"])
    assert {f.rsplit("/", 1)[1] for f in pair["files"]} == {"pic.png", "pic_again.jpg"}

    levels = {f["level"] for f in r["findings"]}
    assert "problem" in levels
    text = " ".join(f["what"] + " " + f["fix"] for f in r["findings"])
    assert "leakage" in text and "only 7 images" in text and "cannot be read" in text
    assert r["verdict"].startswith("Fix before trusting any score")


def test_clean_class_folder_gets_a_clean_verdict(tmp_path):
    root = tmp_path / "d"
    for k, cls in enumerate(["a", "b"]):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(structured(100 * k + i)).save(root / cls / f"{i}.png")
    r = audit_folder(root, workers=1)
    assert r["layout"] == "classes" and r["exact_duplicates"]["groups"] == 0
    assert r["near_duplicates"]["pairs"] == 0 and not r["unreadable"]
    assert {f["level"] for f in r["findings"]} == {"note"}  # no val / no test split: notes only
    assert r["verdict"].startswith("Looks clean")


def test_chest_xray_audit_flags_imbalance(tmp_path):
    """The real Kermany training split: 1,341 normal vs 3,875 pneumonia (about 1:3)."""
    root = shared_path("chest_xray")
    r = audit_folder(root)
    train = r["splits"]["train"]
    assert train["classes"] == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert train["imbalance_ratio"] == pytest.approx(2.89, abs=0.01)
    assert any("imbalanced" in f["what"] and f["level"] == "warning" for f in r["findings"])
    assert r["images"]["sizes"] == {"224x224": 5216}


SAMPLES = Path(__file__).resolve().parents[2] / "src" / "cnnlab" / "samples"


def leak_folders(tmp_path: Path) -> tuple[Path, Path]:
    """A training folder of two real X-rays and shapes, and a test folder holding an exact
    copy, a half-size copy and a JPEG quality-70 copy of training images, beside distinct ones
    (the other X-ray is a look-alike: same anatomy, same exposure, a different patient)."""
    train, test = tmp_path / "train", tmp_path / "test"
    for d in (train, test):
        for c in ("NORMAL", "PNEUMONIA"):
            (d / c).mkdir(parents=True)
    normal = Image.open(SAMPLES / "xray_normal.jpeg").convert("L")
    shutil.copy(SAMPLES / "xray_normal.jpeg", train / "NORMAL" / "n0.jpeg")
    for i in range(3):
        Image.fromarray(structured(20 + i)).save(train / "PNEUMONIA" / f"p{i}.png")
    shutil.copy(train / "PNEUMONIA" / "p0.png", test / "PNEUMONIA" / "copy.png")
    normal.resize((normal.width // 2, normal.height // 2)).save(test / "NORMAL" / "half.png")
    Image.open(train / "PNEUMONIA" / "p1.png").save(test / "PNEUMONIA" / "q70.jpg", quality=70)
    shutil.copy(SAMPLES / "xray_pneumonia.jpeg", test / "PNEUMONIA" / "other_patient.jpeg")
    Image.fromarray(structured(99)).save(test / "NORMAL" / "distinct.png")
    return train, test


def test_near_duplicates_found_inside_a_folder_resized_and_reencoded(tmp_path):
    root = tmp_path / "d"
    (root / "NORMAL").mkdir(parents=True)
    (root / "PNEUMONIA").mkdir()
    normal = Image.open(SAMPLES / "xray_normal.jpeg").convert("L")
    shutil.copy(SAMPLES / "xray_normal.jpeg", root / "NORMAL" / "a.jpeg")
    shutil.copy(SAMPLES / "xray_normal.jpeg", root / "NORMAL" / "a_copy.jpeg")
    normal.resize((normal.width // 2, normal.height // 2)).save(root / "NORMAL" / "a_half.png")
    normal.save(root / "NORMAL" / "a_q70.jpg", quality=70)
    shutil.copy(SAMPLES / "xray_pneumonia.jpeg", root / "PNEUMONIA" / "b.jpeg")
    r = audit_folder(root, workers=1)
    assert [sorted(Path(f).name for f in g["files"]) for g in r["exact_duplicates"]["list"]] == [
        ["a.jpeg", "a_copy.jpeg"]
    ]
    pairs = {frozenset(Path(f).name for f in p["files"]) for p in r["near_duplicates"]["list"]}
    names = {"a.jpeg", "a_copy.jpeg", "a_half.png", "a_q70.jpg"}
    assert pairs == {frozenset((x, y)) for x in names for y in names if x < y} - {
        frozenset(("a.jpeg", "a_copy.jpeg"))
    }  # every version with every other, and never the other patient's X-ray
    assert all(p["distance"] <= 8 and p["fine_bits"] <= 24 for p in r["near_duplicates"]["list"])


def test_audit_against_a_training_folder_names_each_leaked_image(tmp_path, capsys):
    from cnnlab.cli import main

    train, test = leak_folders(tmp_path)
    r = audit_folder(test, workers=1, against=train)
    ag = r["against"]
    found = {Path(m["file"]).name: (m["kind"], Path(m["match"]).name) for m in ag["list"]}
    assert found == {"copy.png": ("exact", "p0.png"), "half.png": ("near", "n0.jpeg"),
                     "q70.jpg": ("near", "p1.png")}  # fmt: skip
    assert (ag["n"], ag["leaked"], ag["exact"], ag["near"]) == (5, 3, 1, 2)
    assert ag["label_conflicts"] == 0
    assert r["verdict"].startswith("Fix before trusting") and "3 of 5" in r["verdict"]

    assert main(["audit", str(test), "--against", str(train)]) == 0
    out = capsys.readouterr().out
    assert f"against {train}" in out and "3 of 5 found there, 1 exact, 2 near" in out
    assert "NORMAL/half.png ~ (" in out and "other_patient" not in out


def test_fingerprints_are_cached_by_content(tmp_path, monkeypatch):
    import cnnlab.data.fingerprints as fingerprints

    train, test = leak_folders(tmp_path)
    first = audit_folder(test, workers=1, against=train)

    def no_decode(*a, **k):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(fingerprints, "fingerprint_bytes", no_decode)
    again = audit_folder(test, workers=1, against=train)
    assert again["against"] == first["against"]
    assert again["near_duplicates"] == first["near_duplicates"]


def test_index_matches_find_what_brute_force_finds():
    from cnnlab.data.fingerprints import FINE_BITS, Fingerprint, FingerprintIndex

    rng = np.random.default_rng(1)

    def fp(h, fine, sha):
        return Fingerprint(f"{sha:064x}", 1, 1, "L", "PNG", int(h), fine.tobytes())

    ref = [fp(h, rng.integers(0, 256, 32, dtype=np.uint8), i)
           for i, h in enumerate(rng.integers(0, 2**63, 400))]  # fmt: skip
    queries = []
    for k in range(60):  # near ones (pHash and fine hash a few bits off), exact ones, strangers
        base = ref[k]
        fine = np.frombuffer(base.fine, np.uint8).copy()
        fine[k % 32] ^= np.uint8(1 << (k % 8)) if k % 3 else np.uint8(0xFF)  # 1 or 8 bits
        h = (
            base.phash
            ^ (1 << (k % 64))
            ^ (1 << ((7 * k) % 64))
            ^ (1 << ((k * k) % 64) if k % 5 else 0)
        )
        queries.append(fp(h, fine, 10_000 + k))
    queries += [ref[100], fp(2**62, rng.integers(0, 256, 32, dtype=np.uint8), 20_000)]
    index = FingerprintIndex.of(ref)
    found = {(q, m["index"], m["kind"]) for q, ms in enumerate(index.matches(queries)) for m in ms}
    brute = set()
    for q, a in enumerate(queries):
        for r, b in enumerate(ref):
            fine_bits = int(
                np.bitwise_count(
                    np.frombuffer(a.fine, np.uint8) ^ np.frombuffer(b.fine, np.uint8)
                ).sum()
            )
            if a.sha256 == b.sha256:
                brute.add((q, r, "exact"))
            elif hamming(a.phash, b.phash) <= 8 and fine_bits <= FINE_BITS:
                brute.add((q, r, "near"))
    assert found == brute and len(brute) >= 61


def test_the_fingerprint_cache_is_listed_and_cleared(tmp_path, capsys):
    import json

    from cnnlab.cli import main

    root = tmp_path / "d"
    write_image_folder(root, ["a", "b"], 3, size=32)
    audit_folder(root, workers=1)
    assert main(["cache", "--json", "--kind", "fingerprints"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["entries"]
    assert entry["kind"] == "fingerprints" and entry["bytes"] > 0
    assert main(["cache", "clear", "--kind", "fingerprints"]) == 0
    assert not (tmp_path / "cache" / "fingerprints.sqlite").exists()
