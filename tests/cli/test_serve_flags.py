"""`cnnlab serve`'s limit flags are made from ServeLimits' fields: each flag's default, type and
help are the field's, and the flags build the ServeLimits they name. Derived from the dataclass,
so a field added with a help text gets a flag, and a flag cannot drift from its field."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields

import pytest

from cnnlab.cli import build_parser, main
from cnnlab.cli.deployment import limit_flags, serve_limits
from cnnlab.serve.limits import ServeLimits, flag_of


def _serve_args(*flags: str):
    return build_parser().parse_args(["serve", "some-bundle", *flags])


def test_without_flags_the_cli_serves_the_dataclass_defaults():
    assert serve_limits(_serve_args()) == ServeLimits()


def test_every_flagged_field_is_set_by_its_flag_and_shows_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    flagged = limit_flags()
    assert {f.name for f, _ in flagged} == {f.name for f in fields(ServeLimits) if flag_of(f)}
    assert len(flagged) >= 11  # every limit `cnnlab serve` had before the flags were derived
    for f, flag in flagged:
        default = f.default / flag.scale
        assert f"--{flag.name} " in shown and f"default {default:g})" in shown, flag.name
        given = 3 * default if default else 7  # a value no field holds by default
        limits = serve_limits(_serve_args(f"--{flag.name}", f"{given:g}"))
        assert getattr(limits, f.name) == pytest.approx(given * flag.scale), flag.name
        assert isinstance(getattr(limits, f.name), f.type), flag.name
        others = {g.name for g in fields(ServeLimits)} - {f.name, "max_queue"}
        assert all(getattr(limits, o) == getattr(ServeLimits(), o) for o in others), flag.name


def test_a_field_without_help_gets_no_flag_and_the_queue_keeps_room_for_four_batches():
    unflagged = [f for f in fields(ServeLimits) if not flag_of(f)]
    assert {f.name for f in unflagged} == {"max_queue", "keep_alive_s"}
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "b", "--keep-alive-s", "1"])
    assert serve_limits(_serve_args("--max-batch", "256")).max_queue == 4 * 256


@pytest.mark.parametrize("flag", [flag.name for _, flag in limit_flags()])
def test_every_limit_flag_refuses_a_senseless_value_naming_itself(flag, capsys):
    f, spec = next((f, s) for f, s in limit_flags() if s.name == flag)
    bad = ["-1", "inf"] if spec.zero_ok else ["0", "-1"]
    if f.type is float or spec.scale != 1:
        bad.append("nan")
    for value in bad:
        assert main(["serve", "no-such-bundle", f"--{flag}", value]) == 2, value
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--{flag} must" in err, err


def test_backends_are_listed_without_loading_torch():
    code = (
        "import sys\nfrom cnnlab.deploy import BACKENDS\nimport cnnlab.cli.common as cli\n"
        "assert cli.BACKENDS is BACKENDS\nprint(BACKENDS, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "('torch', 'onnx') False", done.stderr
    from cnnlab.deploy import backends

    assert backends.BACKENDS is sys.modules["cnnlab.deploy"].BACKENDS


def test_the_readme_table_lists_every_limit_flag_with_its_default():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\s*\| `--([a-z-]+)` \| ([0-9.]+) \|", readme, flags=re.MULTILINE)
    expected = {flag.name: f.default / flag.scale for f, flag in limit_flags()}
    assert {name: float(default) for name, default in rows} == expected
