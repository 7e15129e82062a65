"""Every `cnnlab` command in the README runs as written, in order, in a folder laid out like a
fresh clone (src/ and recipes/ linked in). The MNIST training lines run shortened (SHORTENED:
../shared/data/mnist becomes its first 1,200 images in the same IDX files, and each `train`
line gets `--set train.epochs=1`), so runs/mnist is a trained bundle the later lines use and
the `--resume` line meets a finished run. Commands that start a server, need a PACS or a
chest X-ray training (17 minutes) are left out by the rules below, and listed. The Python
example's imports must exist."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess

import pytest

from cnnlab.bundle import save_bundle
from cnnlab.cli import main
from cnnlab.data.preprocess import Preprocess
from cnnlab.models import create_model
from tests.conftest import ROOT, shared_path

README = (ROOT / "README.md").read_text()
# Run despite the data rule: external validation of the shipped model is the README's headline
# figure, and ../shared/data/chest_xray/external is beside every checkout CI runs.
WITH_SHARED_DATA = ("cnnlab evaluate pneumonia --data ../shared/data/chest_xray/external",)
NEEDS_MORE = {  # why a README command is not run here
    "trains on the chest X-rays (17 min; tests/train cover it)": re.compile(
        r"^cnnlab (train|recalibrate)\b.*(chest_xray|pneumonia-trained)"
    ),
    "exports the 4.7 M-parameter model (tests/serve/test_onnx cover export and --onnx)": re.compile(
        r"pneumonia\.onnx"
    ),
    "starts a server (tests/app, tests/serve run them)": re.compile(r"^cnnlab (app|serve)\b"),
    "needs a trained chest X-ray bundle in runs/": re.compile(r"runs/(xray|pneumonia)\b"),
    "needs a PACS (tests/pacs run them against a real Orthanc)": re.compile(
        r"^cnnlab (screen|receive)\b"
    ),
}


MNIST = "../shared/data/mnist"


def shortened(line: str, tiny_mnist: str) -> str:
    """A README line as the test runs it: the MNIST lines on 1,200 images for one epoch."""
    if MNIST not in line and not line.startswith("cnnlab train recipes/mnist"):
        return line
    line = line.replace(MNIST, tiny_mnist).replace("--set train.epochs=3", "")
    return line + " --set train.epochs=1" if line.startswith("cnnlab train") else line


def tiny_idx(out) -> str:
    """The first 1,200 images of ../shared/data/mnist in the same IDX files."""
    import gzip

    import numpy as np

    from tests.conftest import write_idx

    out.mkdir()
    for kind, header in (("images", 16), ("labels", 8)):
        name = f"train-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
        with gzip.open(shared_path("mnist", name)) as f:
            raw = f.read()
        array = np.frombuffer(raw, np.uint8, offset=header)
        array = array.reshape(-1, 28, 28)[:1200] if kind == "images" else array[:1200]
        write_idx(out / name, array)
    return str(out)


def readme_commands() -> list[str]:
    """The README's `cnnlab` commands in order, and the `openssl` ones that make their keys."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(("cnnlab ", "openssl "))]


def test_every_readme_command_runs_as_written(tmp_path, monkeypatch, capsys):
    shared_path("chest_xray", "external")
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "src").symlink_to(ROOT / "src")
    (clone / "recipes").symlink_to(ROOT / "recipes")
    args = {"in_channels": 1, "num_classes": 10, "input_size": [28, 28], "widths": [16, 32],
            "kernel_size": 5, "padding": "valid"}  # mnist_fast's model  # fmt: skip
    save_bundle(clone / "runs" / "mnist", create_model("fastnet", **args), "fastnet", args,
                Preprocess(1, [28, 28], [0.1307], [0.3081]), [str(i) for i in range(10)])  # fmt: skip
    tiny_mnist = tiny_idx(tmp_path / "mnist")
    monkeypatch.chdir(clone)
    ran, skipped = [], []
    for line in readme_commands():
        rules = NEEDS_MORE.items() if line not in WITH_SHARED_DATA else ()
        why = next((w for w, rule in rules if rule.search(line)), None)
        if why:
            skipped.append((line, why))
            continue
        if line.startswith("openssl "):  # a signing key for `cnnlab sign`, made as the README says
            subprocess.run(shlex.split(line), check=True, capture_output=True, timeout=60)
            continue
        code = main(shlex.split(shortened(line, tiny_mnist))[1:])
        out = capsys.readouterr()
        assert code == 0, f"{line}\n{out.err[-2000:]}"
        if "--resume" in line:
            assert "is a finished run" in out.err  # said so, and nothing changed
        ran.append(line)
    print("\n".join(f"skipped ({why}): {line}" for line, why in skipped))
    assert len(ran) >= 14, ran
    assert any("--receptive-field" in r for r in ran) and any("--draw" in r for r in ran)
    assert any(r.startswith("cnnlab code") for r in ran)
    assert any("--require-signed" in r for r in ran) and (clone / "runs/mnist/bundle.sig").is_file()
    assert set(WITH_SHARED_DATA) <= set(ran)
    assert (clone / "conv.gif").stat().st_size > 0 and (clone / "train_mnist_keras.py").is_file()
    assert any(r.startswith("cnnlab train") for r in ran) and any("--resume" in r for r in ran)
    assert len(skipped) <= 12  # 3 of them PACS commands, run for real in tests/pacs


def test_the_python_example_imports_what_exists():
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "train_recipe" in b]
    for node in ast.parse(block).body:
        if isinstance(node, ast.ImportFrom):
            module = __import__(node.module, fromlist=[a.name for a in node.names])
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


@pytest.mark.parametrize("old", ["digit.png", "xray.jpeg", "--filters conv1 "])
def test_no_example_names_a_file_or_layer_that_is_not_there(old):
    assert old not in README


def test_the_limits_the_readme_states_are_the_ones_the_code_holds():
    """Each figure is formatted from the constant that holds the limit, so changing one
    without the README (or the other way round) fails here."""
    from cnnlab.bundle.check import META_MAX_BYTES
    from cnnlab.bundle.seal import CARD_MAX_BYTES, WEIGHTS_MAX_BYTES
    from cnnlab.data.archives import MAX_HEADER_BYTES, MAX_MEMBERS
    from cnnlab.data.intake import MAX_ASPECT, MIN_AREA_SHARE_INV
    from cnnlab.fileio import DEFAULT_MAX_FILE_MB, GIB, MAX_FILE_ENV, MIB
    from cnnlab.models.registry import MAX_PARAMS
    from cnnlab.runtime.ood import OOD_MAX_BYTES

    text = " ".join(README.split())
    stated = [
        f"card {CARD_MAX_BYTES // MIB} MB, `bundle.json` {META_MAX_BYTES // MIB} MB, OOD check "
        f"{OOD_MAX_BYTES // MIB} MB, weights {WEIGHTS_MAX_BYTES // GIB} GB",
        f"capped at {DEFAULT_MAX_FILE_MB:g} MB (`cnnlab --max-file-mb N ...` or `{MAX_FILE_ENV}`)",
        f"under 1/{MIN_AREA_SHARE_INV} of its pixels), a strip longer than {MAX_ASPECT:g}:1",
        f"over {MAX_MEMBERS:,} members or a tar header announcing over {MAX_HEADER_BYTES // 1024} KB",
        f"A model over {MAX_PARAMS / 1e6:,.0f} M parameters is refused",
    ]
    assert [s for s in stated if s not in text] == []


def test_the_add_a_model_example_registers_a_model_with_the_uniform_interface(monkeypatch):
    import torch

    from cnnlab.models import create_model, list_models, registry

    (block,) = [
        b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "register_model" in b
    ]
    where = block.splitlines()[0].removeprefix("# ")
    assert where.startswith("src/cnnlab/models/") and (ROOT / where).parent.is_dir()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # dropped after
    exec(compile(block, where, "exec"), {"__name__": "cnnlab.models.tinynet"})
    assert "tinynet" in [e.name for e in list_models()]
    model = create_model("tinynet", num_classes=3, width=4).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.forward_head(model.forward_features(x)), model(x))
    assert model.get_classifier().out_features == 3


def test_the_recipe_reference_is_made_from_the_models():
    from cnnlab.config.reference import BEGIN, END, reference

    block = README.partition(BEGIN)[2].partition(END)[0]
    assert block.strip() == reference().strip(), (
        "the README's recipe keys differ from src/cnnlab/config/sections.py: run "
        "`python -m cnnlab.config.reference README.md`"
    )


def test_add_a_recipe_key_names_files_and_tests_that_exist():
    steps = README.partition("### Add a recipe key")[2].partition("\n## ")[0]
    paths = re.findall(r"`((?:src|tests)/[\w/.]+\.py)(?:::(\w+))?`", steps)
    assert len(paths) >= 3, steps
    for path, test in paths:
        assert (ROOT / path).is_file(), path
        assert not test or f"def {test}(" in (ROOT / path).read_text(), test
