"""`cnnlab code` with hostile values in every string a recipe, a bundle or a file name can put
into a generated script: each script still parses, holds the values exactly, and running it
(`--help`) runs none of them. A payload that ran would leave a marker file behind."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab.bundle import save_bundle
from cnnlab.data import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.learn.codegen import generate_code
from cnnlab.models import create_model
from tests.conftest import ROOT


def payloads(markers: Path, tag: str) -> list[str]:
    """Strings that break out of a docstring, a comment, a quoted literal or a line, each
    touching its own marker file if it ever runs."""
    touch = f"__import__('pathlib').Path({str(markers / tag)!r} + '{{}}').touch()"
    return [
        'x"""; ' + touch.format(1) + " #",
        "x'''; " + touch.format(2) + " #",
        'x"""\n' + touch.format(3) + '\n"""',
        "x\n" + touch.format(4) + "\n#",
        "x\r" + touch.format(5) + "\r#",
        "x\\",  # a trailing backslash escapes whatever quote follows it
        "x'); " + touch.format(6) + " #",
        'x"); ' + touch.format(7) + " #",
        "x\\'; " + touch.format(8) + " #",
        "}{} {{}} %s {0} \x00\x1b[2J\u2028" + touch.format(9),
    ]


def hostile_recipe(markers: Path, tag: str, i: int) -> dict:
    p = payloads(markers, tag)
    pick = p[i % len(p)]
    return {
        "name": pick,
        "description": pick,
        "data": {"source": p[(i + 1) % len(p)], "class_names": [pick, "b"], "external": pick},
        "model": {"name": "keras_mnist_cnn"},
        "train": {"device": pick, "freeze_after": {pick: 3}, "lookahead": True},
        "finetune": {"epochs": 1, "unfreeze": p[(i + 2) % len(p)]},
        "extra": {pick: pick},
    }


DRIVER = """
import runpy, sys
for script in sys.argv[1:]:
    print("== " + script, flush=True)
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        assert e.code in (0, None), (script, e.code)
"""


def _settings(text: str) -> dict:
    """The script's module-level NAME = literal assignments, read without running it."""
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def _bundle(where: Path, recipe: dict) -> Path:
    torch.manual_seed(0)
    model = create_model("fastnet", widths=[4, 8])
    pre = Preprocess(channels=1, size=[28, 28], mean=[0.13], std=[0.3])
    return save_bundle(where, model, "fastnet", {"widths": [4, 8]}, pre,
                       [str(i) for i in range(10)], recipe=recipe)  # fmt: skip


def test_hostile_values_are_literals_and_never_run(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    scripts, expected = [], {}
    n = len(payloads(markers, ""))
    for i in range(n):  # every payload in every field, over the n recipes
        raw = hostile_recipe(markers, f"r{i}-", i)
        name = ['evil"""', "evil'''", "evil\n", "evil\\", "evil'", 'evil"'][i % 6]
        recipe = tmp_path / f"{name}{i}.yaml"  # the file name reaches the script too
        recipe.write_text(yaml.safe_dump(raw))
        in_bundle = hostile_recipe(markers, f"b{i}-", i)  # a bundle's saved recipe
        bundle = _bundle(tmp_path / f"bundle {name}{i}", in_bundle)
        for ref, source in ((str(recipe), raw["data"]["source"]),
                            (str(bundle), in_bundle["data"]["source"])):  # fmt: skip
            for framework in ("pytorch", "keras"):
                text = generate_code(ref, framework)
                script = work / f"s{len(scripts)}.py"
                script.write_text(text)
                scripts.append(str(script))
                expected[str(script)] = source
    for model in ("lenet5", "keras_mnist_cnn"):
        for framework in ("pytorch", "keras"):
            script = work / f"s{len(scripts)}.py"
            script.write_text(generate_code(model, framework))
            scripts.append(str(script))
    for script in scripts:
        text = Path(script).read_text()
        ast.parse(text)
        if script in expected:  # the value itself is kept, as a literal
            assert _settings(text)["DATA"] == expected[script], script
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", DRIVER, *scripts], capture_output=True,
                          text=True, cwd=work, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("usage:") == len(scripts)
    assert sorted(p.name for p in markers.iterdir()) == []


def test_a_hostile_model_name_is_refused_or_written_as_a_literal(tmp_path):
    markers = tmp_path / "m"
    for payload in payloads(markers, "n"):
        for name in (payload, f"torchvision/{payload}", f"timm/{payload}"):
            try:
                text = generate_code(name)
            except CnnlabError:
                continue
            ast.parse(text)
    assert not markers.exists()


@pytest.mark.parametrize("framework", ["pytorch", "keras"])
def test_the_first_docstring_line_still_describes_the_script(framework):
    text = generate_code(str(ROOT / "recipes" / "mnist_keras_cnn.yaml"), framework)
    first = ast.get_docstring(ast.parse(text)).splitlines()[0]
    assert "keras_mnist_cnn" in first and "cnnlab code" in first
    settings = _settings(text)
    assert settings["DATA"] == "mnist"
    assert settings["DESCRIPTION"] == "The brief's Keras MNIST CNN, trained the brief's way."
