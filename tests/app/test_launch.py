"""`cnnlab app`: Streamlit's own settings win; cnnlab fills in only what the user left unset."""

from __future__ import annotations

import os
import sys

import pytest

from cnnlab.app.launch import (
    APP_SCRIPT,
    BUNDLE_ENV,
    RUNS_ENV,
    app_settings,
    env_name,
    locate_bundle,
    streamlit_command,
)


@pytest.fixture(autouse=True)
def fresh_config(tmp_path, monkeypatch):
    """Streamlit config is parsed from the working folder (and ~): use clean ones."""
    from streamlit import config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    config.get_config_options(force_reparse=True)
    yield
    monkeypatch.undo()
    config.get_config_options(force_reparse=True)


def test_env_name_follows_streamlit():
    assert env_name("server.maxUploadSize") == "STREAMLIT_SERVER_MAX_UPLOAD_SIZE"
    assert env_name("browser.gatherUsageStats") == "STREAMLIT_BROWSER_GATHER_USAGE_STATS"
    assert env_name("server.port") == "STREAMLIT_SERVER_PORT"


def test_defaults_filled_in_and_bundle_passed(tmp_path):
    argv, env = streamlit_command("pneumonia", ["runs", str(tmp_path / "more")], env={})
    assert argv[:4] == [sys.executable, "-m", "cnnlab.app.preload", str(APP_SCRIPT)]
    assert "--server.maxUploadSize=32" in argv and "--server.headless=true" in argv
    assert "--browser.gatherUsageStats=false" in argv
    assert not any(a.startswith("--server.port") for a in argv)  # Streamlit's own default: 8501
    assert env[BUNDLE_ENV] == "pneumonia"
    assert env[RUNS_ENV].split(os.pathsep) == [str(tmp_path / "runs"), str(tmp_path / "more")]
    assert app_settings(env) == (["pneumonia"], env[RUNS_ENV].split(os.pathsep))


def test_user_environment_and_flags_win():
    env = {"STREAMLIT_SERVER_MAX_UPLOAD_SIZE": "5", "STREAMLIT_SERVER_PORT": "9999"}
    argv, out = streamlit_command(None, None, ["--server.headless", "false"], env=env)
    assert not any(a.startswith("--server.maxUploadSize") for a in argv)
    assert argv.count("--server.headless") == 1 and "--server.headless=true" not in argv
    assert out["STREAMLIT_SERVER_PORT"] == "9999" and BUNDLE_ENV not in out


def test_a_config_file_wins(tmp_path):
    from streamlit import config

    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "config.toml").write_text("[server]\nmaxUploadSize = 7\n")
    config.get_config_options(force_reparse=True)
    argv, _ = streamlit_command(None, None, env={})
    assert not any(a.startswith("--server.maxUploadSize") for a in argv)
    assert "--server.headless=true" in argv


def test_cli_refuses_a_bad_bundle_before_starting(run_cli, tmp_path):
    result = run_cli("app", str(tmp_path / "missing"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"cnnlab: error: no bundle at {tmp_path / 'missing'}"
    )


def test_locate_bundle_agrees_with_resolve_bundle(app_bundle, tmp_path, monkeypatch):
    from cnnlab.bundle import resolve_bundle, shipped_bundles
    from cnnlab.errors import CnnlabError

    assert locate_bundle(str(app_bundle)) == str(resolve_bundle(app_bundle).resolve())
    assert locate_bundle(str(app_bundle / "bundle.json")) == str(app_bundle.resolve())
    for name in shipped_bundles():
        assert locate_bundle(name) == name
    with pytest.raises(CnnlabError, match="no bundle at"):
        locate_bundle(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match="not a cnnlab bundle"):
        locate_bundle(str(tmp_path / "empty"))


def test_cnnlab_app_starts_the_server_without_importing_torch(app_bundle):
    """Torch loads in the server when a page first runs; the CLI in front of it stays light."""
    import subprocess

    code = (
        "import sys; from cnnlab.cli import build_parser; build_parser(); "
        "from cnnlab.app.launch import locate_bundle, streamlit_command; "
        f"streamlit_command(locate_bundle({str(app_bundle)!r})); "
        "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_cli_backends_match_the_library():
    from cnnlab.cli.common import BACKENDS as CLI_BACKENDS
    from cnnlab.deploy.backends import BACKENDS

    assert CLI_BACKENDS == BACKENDS


def test_warm_up_preloads_the_default_bundle_for_the_pages(
    app_bundle, tmp_path, monkeypatch, capsys
):
    import shutil

    import cnnlab.app.resources as resources
    from cnnlab.app.preload import PRELOADED, warm_up

    own = tmp_path / "warm"  # a path no test has loaded yet
    shutil.copytree(app_bundle, own)
    monkeypatch.setenv(BUNDLE_ENV, str(own))
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))
    warm_up(wait=False)
    assert f"{PRELOADED} warm in " in capsys.readouterr().err  # labelled relative to the cwd
    monkeypatch.setattr(resources, "load_bundle", lambda p: pytest.fail("loaded a second time"))
    assert resources.get_bundle(str(own)).path == own  # served from the cache
    assert resources.get_cam_layer(str(own)) == "features.stage2_conv1"
