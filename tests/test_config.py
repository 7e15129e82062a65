"""Recipes: strict keys and types, overrides, every shipped recipe loads."""

from pathlib import Path

import pytest

from cnnlab.config import Recipe, load_recipe, recipe_from_dict
from cnnlab.errors import CnnlabError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_types():
    r = recipe_from_dict(
        {"train": {"lr": 1, "epochs": 3}, "model": {"name": "fastnet", "args": {"widths": [8]}}}
    )
    assert isinstance(r, Recipe)
    assert r.train.lr == 1.0 and isinstance(r.train.lr, float)
    assert r.train.epochs == 3
    assert r.model.args == {"widths": [8]}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"lrr": 0.1}}, "unknown recipe key train.lrr"),
        ({"trian": {}}, "unknown recipe key trian"),
        ({"train": {"epochs": "ten"}}, "train.epochs: expected an integer"),
        ({"train": {"epochs": 2.5}}, "train.epochs: expected an integer"),
        ({"train": {"optimizer": "adagrad"}}, "train.optimizer: 'adagrad' is not one of"),
        ({"augment": {"horizontal_flip": "yes"}}, "'yes' is not true, false or 'alternate'"),
        ({"data": {"val_fraction": 1.5}}, "val_fraction must be in [0, 1)"),
        ({"train": {"lr": -1}}, "train.lr must be positive"),
        ({"data": {"image_size": [32]}}, "image_size must be [height, width]"),
        ({"train": "fast"}, "expected a mapping"),
    ],
)
def test_bad_recipes_name_the_problem(raw, message):
    with pytest.raises(CnnlabError) as e:
        recipe_from_dict(raw)
    assert message in str(e.value)


def test_overrides_parse_yaml_values(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("model:\n  name: fastnet\ntrain:\n  epochs: 5\n")
    r = load_recipe(
        p, ["train.epochs=2", "model.args.widths=[4, 8]", "train.nesterov=true", "data.source=/x"]
    )
    assert r.train.epochs == 2 and r.model.args["widths"] == [4, 8] and r.train.nesterov is True
    assert r.data.source == "/x" and r.name == "r"
    with pytest.raises(CnnlabError, match="key=value"):
        load_recipe(p, ["train.epochs"])
    with pytest.raises(CnnlabError, match="unknown recipe key train.epoch"):
        load_recipe(p, ["train.epoch=3"])


def test_bare_on_off_means_the_word(tmp_path):
    # YAML 1.1 reads a bare on/off as a boolean; where the setting is 'on' | 'off' it is the word
    p = tmp_path / "r.yaml"
    p.write_text("model:\n  name: fastnet\ntrain:\n  channels_last: off\n")
    assert load_recipe(p).train.channels_last == "off"
    assert load_recipe(p, ["train.channels_last=on"]).train.channels_last == "on"
    with pytest.raises(CnnlabError, match="train.precision: False is not one of"):
        load_recipe(p, ["train.precision=off"])


def test_malformed_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(CnnlabError, match="not valid YAML"):
        load_recipe(p)
    with pytest.raises(CnnlabError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    p.write_text("- just\n- a list\n")
    with pytest.raises(CnnlabError, match="must be a mapping"):
        load_recipe(p)


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_loads_and_builds(path):
    from cnnlab.models import get_entry

    r = load_recipe(path)
    assert r.name == path.stem
    get_entry(r.model.name)  # the model exists
