"""Names forgiven: a recipe's name means its model, a miss names the closest names before torch
is imported, and the index those answers come from is the registry's own (issue 29, point 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cnnlab import names
from cnnlab.cli import main
from tests.conftest import ROOT


def _fresh(code: str, tmp_path) -> subprocess.CompletedProcess:
    """`code` in a new interpreter (no torch imported yet), from the repository root."""
    env = {"CNNLAB_DATA": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)  # fmt: skip


def test_the_shipped_index_is_the_registry_and_timm():
    """names.json must say what the registry and timm say (else: python -m cnnlab.names)."""
    shipped = json.loads(names.INDEX.read_text())
    assert shipped["fingerprint"] == names.models_fingerprint(), "run: python -m cnnlab.names"
    built = names.build_index()
    assert shipped["models"] == built["models"]
    assert shipped["timm"] == built["timm"]
    by_name = {row["name"]: row for row in shipped["models"]}
    assert by_name["keras_mnist_cnn"]["params"] == 225_034  # the brief's count (classic.py)


def test_a_stale_index_is_rebuilt_not_trusted(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    monkeypatch.setattr(names, "models_fingerprint", lambda: "edited-model-sources")
    names.index.cache_clear()
    try:
        assert "keras_mnist_cnn" in names.model_names()  # rebuilt from the registry
        kept = list((tmp_path / "index").glob("names-*edited-model-sources.json"))
        assert len(kept) == 1  # and kept for the next command
    finally:
        names.index.cache_clear()


def test_a_recipe_name_means_its_model():
    named = names.resolve_model("mnist_keras_cnn")
    assert named.model == "keras_mnist_cnn" and named.recipe.name == "mnist_keras_cnn.yaml"
    assert names.resolve_model("keras_mnist_cnn").model == "keras_mnist_cnn"
    assert names.resolve_model("resnet18").model == "resnet18"  # a timm architecture
    assert names.resolve_model("timm/resnet18").model == "timm/resnet18"


@pytest.mark.parametrize(
    "argv",
    [
        ["summary", "keras_mnst_cnn"],
        ["code", "keras_mnst_cnn"],
        ["zoo", "--compare", "lenet5,keras_mnst_cnn"],
        ["explain", "keras_mnst_cnn", "--filters", "conv1", "--out", "unused"],
    ],
)
def test_a_miss_names_the_closest_before_torch_is_imported(argv, tmp_path):
    done = _fresh(
        f"""
        import sys
        from cnnlab.cli import main
        rc = main({argv!r})
        print(rc, "torch" in sys.modules)
        """,
        tmp_path,
    )
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "did you mean keras_mnist_cnn" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_misspelt_recipe_and_command_name_the_closest(capsys):
    assert main(["train", "mnist_fst", "--out", "unused"]) == 2
    assert "did you mean mnist_fast" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["sumary", "keras_mnist_cnn"])
    assert stop.value.code == 2
    assert "did you mean summary" in capsys.readouterr().err


def test_models_lists_the_registry_without_torch(tmp_path):
    done = _fresh(
        """
        import sys
        from cnnlab.cli import main
        main(["models", "--json"])
        print("torch" in sys.modules, file=sys.stderr)
        """,
        tmp_path,
    )
    rows = json.loads(done.stdout)
    assert done.stderr.split()[-1] == "False"
    from cnnlab.models import list_models

    assert [r["name"] for r in rows] == [e.name for e in list_models()]


def test_summary_and_code_take_the_recipe_name(capsys):
    assert main(["summary", "mnist_keras_cnn", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "keras_mnist_cnn" and summary["total_params"] == 225_034
    assert main(["code", "mnist_keras_cnn", "--framework", "keras"]) == 0
    assert "MADE_FROM = 'recipe recipes/mnist_keras_cnn.yaml'" in capsys.readouterr().out


def test_a_summary_is_kept_and_read_back_without_torch(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "data"))
    assert main(["summary", "lenet5"]) == 0
    first = capsys.readouterr().out
    again = _fresh(
        """
        import sys
        from cnnlab.cli import main
        main(["summary", "lenet5"])
        print("torch" in sys.modules, file=sys.stderr)
        """,
        tmp_path,
    )
    assert again.stdout == first + "\n" or again.stdout == first, again.stderr
    assert again.stderr.split()[-1] == "False"


def test_a_new_version_reads_no_old_summary(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    before = names.derived_path("summary", "lenet5")
    monkeypatch.setattr(names, "__version__", "99.0")
    assert names.derived_path("summary", "lenet5") != before


def test_app_takes_port_and_host(monkeypatch):
    started = {}
    monkeypatch.setattr("os.execve", lambda path, argv, env: started.update(argv=argv))
    assert main(["app", "--port", "8599", "--host", "0.0.0.0"]) == 0
    assert "--server.port=8599" in started["argv"]
    assert "--server.address=0.0.0.0" in started["argv"]
    assert "--server.address=127.0.0.1" not in started["argv"]  # the default steps aside


def test_rf_is_conv(capsys):
    assert main(["rf", "--size", "32", "--layers", "c3,c3,p2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"][-1]["rf"] == [6, 6]
