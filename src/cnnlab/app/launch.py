"""`cnnlab app`: the `streamlit run` command line for the app, with cnnlab's defaults only where
the user has not set an option (a Streamlit config file, a STREAMLIT_* variable, a flag).

The chosen bundle and the folders searched for more reach the app in environment variables,
which `streamlit run`, AppTest and a plain `streamlit run main.py` all pass through.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

APP_SCRIPT = Path(__file__).with_name("main.py")
BUNDLE_ENV = "CNNLAB_APP_BUNDLE"  # a bundle folder or shipped name the picker opens with
RUNS_ENV = "CNNLAB_APP_RUNS"  # folders searched for bundles, os.pathsep-separated
REQUIRE_SIGNED_ENV = "CNNLAB_APP_REQUIRE_SIGNED"  # a PEM: every bundle loaded must verify with it
UPLOAD_LIMIT_MB = 32  # a large DICOM fits; a decompression bomb is refused by pixels, not bytes

DEFAULTS: dict[str, str] = {
    "server.maxUploadSize": str(UPLOAD_LIMIT_MB),
    "server.headless": "true",  # no browser opened, no first-run e-mail prompt in a terminal
    "server.address": "127.0.0.1",  # this machine only; --server.address 0.0.0.0 to share it
    "browser.gatherUsageStats": "false",  # medical images: nothing leaves the machine
    "server.fileWatcherType": "none",  # an installed app, not a script being edited
    "client.toolbarMode": "minimal",  # no "Deploy" button for the people using it
    "client.showErrorDetails": "none",  # no traceback in the browser; it goes to the log
}


def env_name(option: str) -> str:
    """'server.maxUploadSize' -> 'STREAMLIT_SERVER_MAX_UPLOAD_SIZE' (Streamlit's own naming)."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", option.replace(".", "_"))
    return "STREAMLIT_" + snake.upper()


def user_set(option: str, env: dict[str, str], flags: list[str]) -> bool:
    """Whether the user chose this option: flag, environment, or a config.toml Streamlit reads."""
    if any(f == f"--{option}" or f.startswith(f"--{option}=") for f in flags):
        return True
    if env.get(env_name(option)):
        return True
    from streamlit import config

    return config.get_where_defined(option) != config.ConfigOption.DEFAULT_DEFINITION


def streamlit_command(
    bundle: str | None = None,
    runs: list[str] | None = None,
    extra_flags: list[str] | None = None,
    env: dict[str, str] | None = None,
    require_signed: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that start the app; nothing is resolved or started here."""
    env = dict(os.environ if env is None else env)
    flags = list(extra_flags or [])
    for option, value in DEFAULTS.items():
        if not user_set(option, env, flags):
            flags.append(f"--{option}={value}")
    if bundle:
        env[BUNDLE_ENV] = str(bundle)
    roots = runs if runs is not None else ["runs"]
    env[RUNS_ENV] = os.pathsep.join(str(Path(r).expanduser().resolve()) for r in roots)
    if require_signed:
        env[REQUIRE_SIGNED_ENV] = str(Path(require_signed).expanduser().resolve())
    argv = [sys.executable, "-m", "cnnlab.app.preload", str(APP_SCRIPT), *flags]
    return argv, env


def locate_bundle(ref: str) -> str:
    """`resolve_bundle`'s answer for the app's environment: a shipped model by its name (the
    picker labels it so), any other bundle by its absolute path. A bad reference is a
    CnnlabError, raised before any server (or torch) starts."""
    from cnnlab.bundle.catalog import resolve_bundle, shipped_bundles

    path = resolve_bundle(ref)
    return ref if shipped_bundles().get(ref) == path else str(path.resolve())


def required_signer(env: dict[str, str] | None = None) -> str | None:
    """The PEM every bundle the app loads must verify with (`cnnlab app --require-signed`)."""
    return (os.environ if env is None else env).get(REQUIRE_SIGNED_ENV) or None


def app_settings(env: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(explicit bundle refs, folders to search) as the app reads them from its environment."""
    env = os.environ if env is None else env
    explicit = [env[BUNDLE_ENV]] if env.get(BUNDLE_ENV) else []
    runs = [r for r in env.get(RUNS_ENV, "runs").split(os.pathsep) if r]
    return explicit, runs
