"""Lazy exports: a package names its public parts without importing them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnnlab.lazy import lazy_exports


def test_a_name_loads_on_first_use_and_is_kept() -> None:
    package = {"__name__": "fake"}
    lazy_exports(package, {"dumps": "json", "sqrt": "math"}, eager=("here",))
    assert package["__all__"] == ["here", "dumps", "sqrt"]
    assert "dumps" not in package
    import json

    assert package["__getattr__"]("dumps") is json.dumps
    assert package["dumps"] is json.dumps  # kept: the next lookup is a plain global
    assert package["__dir__"]() == sorted({*package, "sqrt"})


def test_an_unknown_name_is_an_attribute_error_naming_the_package() -> None:
    package = {"__name__": "cnnlab.fake"}
    lazy_exports(package, {})
    with pytest.raises(AttributeError, match="module 'cnnlab.fake' has no attribute 'nope'"):
        package["__getattr__"]("nope")


def test_the_packages_import_nothing_heavy_until_asked() -> None:
    code = (
        "import sys, cnnlab, cnnlab.bundle, cnnlab.config, cnnlab.data, cnnlab.deploy, "
        "cnnlab.serve, cnnlab.anatomy\n"
        "before = [m for m in ('torch', 'pydantic', 'fastapi') if m in sys.modules]\n"
        "from cnnlab.bundle import load_bundle\n"
        "print(before, 'torch' in sys.modules, sorted(cnnlab.deploy.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "[] True ['BACKENDS', 'Backend', 'use_backend']"


def test_loading_at_start_pauses_the_collector_and_freezes_what_loaded():
    import gc

    import pytest

    from cnnlab.lazy import loading_at_start

    try:
        with loading_at_start():
            assert not gc.isenabled()
            kept = [[] for _ in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= len(kept)
        with pytest.raises(RuntimeError), loading_at_start():  # a failed start restores it too
            raise RuntimeError("bad bundle")
        assert gc.isenabled()
        gc.disable()  # a caller that had it off keeps it off
        with loading_at_start():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
