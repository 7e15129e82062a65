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


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"lrr": 0.1}}, "unknown recipe key train.lrr (did you mean train.lr?)"),
        ({"trian": {}}, "unknown recipe key trian (did you mean train?)"),
        ({"data": {"mean": [0.5, "a"]}}, "data.mean[1]: expected a number, got 'a'"),
        ({"data": {"mean": [0.5, float("nan")]}}, "data.mean[1]: expected a finite number, got nan"),
        ({"data": {"image_size": [32, 32.5]}}, "data.image_size[1]: expected an integer, got 32.5"),
        ({"data": {"class_names": ["a", 1]}}, "data.class_names[1]: expected a string, got 1"),
        ({"data": {"std": [0.2, 0]}}, "data.std[1] must be positive, got 0"),
        ({"augment": {"zoom_range": [0.9, "x"]}}, "augment.zoom_range[1]: expected a number, got 'x'"),
        ({"augment": {"zoom_range": float("nan")}}, "augment.zoom_range: expected a finite number"),
        ({"augment": {"rescale": float("inf")}}, "augment.rescale: expected a finite number, got inf"),
        ({"augment": {"rescale": [1]}}, "augment.rescale: [1] is not a number, a string or null"),
        ({"train": {"freeze_after": {"conv1": 0}}}, "train.freeze_after.conv1 must be at least 1"),
        ({"train": {"gamma": 0}}, "train.gamma must be positive, got 0"),
        ({"finetune": {"lr": 0}}, "finetune.lr must be positive, got 0"),
        ({"train": {"early_stopping": -2}}, "train.early_stopping must be at least 0, got -2"),
    ],
)  # fmt: skip
def test_messages_name_the_item_and_the_nearest_key(raw, message):
    """Inside lists, unions and mappings the message names the item, not the whole value."""
    with pytest.raises(CnnlabError) as e:
        recipe_from_dict(raw)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"epochs": "3"}}, "train.epochs: expected an integer, got '3'"),
        ({"train": {"epochs": True}}, "train.epochs: expected an integer, got True"),
        ({"train": {"lr": "0.1"}}, "train.lr: expected a number, got '0.1'"),
        ({"train": {"lr": False}}, "train.lr: expected a number, got False"),
        ({"train": {"nesterov": 1}}, "train.nesterov: expected true or false, got 1"),
        ({"data": {"source": 7}}, "data.source: expected a string, got 7"),
        ({"data": {"image_size": "32x32"}}, "data.image_size: expected a list, got '32x32'"),
        ({"model": {"args": [1]}}, "model.args: expected a mapping, got [1]"),
    ],
)
def test_types_are_strict_not_coerced(raw, message):
    with pytest.raises(CnnlabError) as e:
        recipe_from_dict(raw)
    assert message in str(e.value)
    assert isinstance(recipe_from_dict({"augment": {"zoom_range": 0}}).augment.zoom_range, float)


def test_an_unknown_key_is_reported_before_a_bad_value():
    with pytest.raises(CnnlabError, match="unknown recipe key train.lrr"):
        recipe_from_dict({"data": {"val_fraction": 2.0}, "train": {"lrr": 1}})


def test_recipes_are_pydantic_models_and_pydantic_is_declared():
    import tomllib

    from pydantic import BaseModel

    assert issubclass(Recipe, BaseModel)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pydantic,) = [d for d in deps if d.split(">")[0].split("<")[0].strip() == "pydantic"]
    assert ">=2" in pydantic and "<3" in pydantic  # a range over pydantic v2


def test_every_key_says_what_it_means():
    from cnnlab.config.reference import _section

    sections = {"": Recipe, **{k: _section(f) for k, f in Recipe.model_fields.items()}}
    for prefix, model in sections.items():
        for name, info in (model.model_fields if model else {}).items():
            if not _section(info):
                assert info.description, f"{prefix}.{name} needs Field(description=...)"


def test_saved_recipes_and_bundle_recipes_load_back_unchanged(tmp_path):
    import json

    from cnnlab.config import save_recipe

    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        save_recipe(recipe, tmp_path / "recipe.yaml")
        assert load_recipe(tmp_path / "recipe.yaml").to_dict() == recipe.to_dict()
        assert recipe_from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    # a bundle written before later keys existed: each missing key at its default, the rest kept
    meta = json.loads((ROOT / "src/cnnlab/shipped/pneumonia/bundle.json").read_text())
    resolved = recipe_from_dict(meta["recipe"]).to_dict()
    assert "freeze_after" not in meta["recipe"]["train"] and resolved["train"]["freeze_after"] == {}
    for section, values in meta["recipe"].items():
        if isinstance(values, dict):
            assert {k: resolved[section][k] for k in values} == values, section


def test_a_bound_is_read_without_importing_pydantic():
    """data.preprocess (every bundle load) needs only MAX_INPUT_PIXELS: pydantic costs ~0.25 s."""
    import subprocess
    import sys

    code = ("import sys; from cnnlab.config import MAX_INPUT_PIXELS, MAX_SEED; "
            "print(MAX_SEED, 'pydantic' in sys.modules); from cnnlab.config import Recipe; "
            "print('pydantic' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True, env={"PYTHONPATH": str(ROOT / "src")})  # fmt: skip
    assert done.stdout.split() == ["4294967295", "False", "True"]
