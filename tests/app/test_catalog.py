"""The model picker's list: the bundle asked for, shipped models, and bundles under runs/."""

from __future__ import annotations

import shutil

import pytest

import cnnlab.bundle.catalog as catalog
from cnnlab.bundle.catalog import bundles_under, find_bundles
from cnnlab.errors import CnnlabError


@pytest.fixture
def runs(tmp_path, app_bundle, digits_bundle):
    root = tmp_path / "runs"
    shutil.copytree(app_bundle, root / "xray")
    shutil.copytree(digits_bundle, root / "group" / "digits")
    (root / "not-a-bundle").mkdir()
    (root / "deep" / "a" / "b").mkdir(parents=True)
    shutil.copytree(app_bundle, root / "deep" / "a" / "b" / "too-deep")
    return root


def test_bundles_under_finds_two_levels_and_nothing_else(runs, tmp_path):
    assert bundles_under(runs) == [runs / "group" / "digits", runs / "xray"]
    assert bundles_under(tmp_path / "missing") == []


def test_order_explicit_then_shipped_pneumonia_first_then_runs(runs, app_bundle, monkeypatch):
    monkeypatch.setattr(catalog, "shipped_bundles",
                        lambda: {"mnist": runs / "group" / "digits", "pneumonia": app_bundle})  # fmt: skip
    entries = find_bundles([runs / "xray"], [runs])
    assert [e.label for e in entries][:3] == [str(runs / "xray"), "pneumonia (shipped)",
                                              "mnist (shipped)"]  # fmt: skip
    assert len(entries) == 3  # runs/xray and runs/group/digits already listed: once each
    assert [e.shipped for e in entries] == [False, True, True]


def test_an_explicit_shipped_model_keeps_its_name(monkeypatch, app_bundle):
    monkeypatch.setattr(catalog, "shipped_bundles", lambda: {"pneumonia": app_bundle})
    entries = find_bundles([str(app_bundle)], [])
    assert [(e.label, e.shipped) for e in entries] == [("pneumonia (shipped)", True)]


def test_labels_are_relative_to_the_working_folder(runs, monkeypatch):
    monkeypatch.setattr(catalog, "shipped_bundles", dict)
    monkeypatch.chdir(runs.parent)
    assert [e.label for e in find_bundles([], ["runs"])] == ["runs/group/digits", "runs/xray"]


def test_a_bad_explicit_reference_is_a_clear_error(tmp_path):
    with pytest.raises(CnnlabError, match="no bundle at"):
        find_bundles([tmp_path / "nope"], [])
