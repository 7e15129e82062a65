"""Strict JSON and YAML: what a plain json.loads / yaml.safe_load lets through is refused."""

from __future__ import annotations

import pytest

from cnnlab.config import load_recipe
from cnnlab.errors import CnnlabError
from cnnlab.strict import MAX_DEPTH, Refused, strict_json, strict_yaml

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=False)
)  # about 400 bytes that expand to 9**9 values


def test_alias_bomb_is_refused_quickly_by_its_expanded_size():
    with pytest.raises(Refused, match="expand to more than"):  # counted, never expanded
        strict_yaml(LAUGHS, "recipe r")


def test_an_alias_of_itself_is_refused():
    with pytest.raises(Refused, match="expand"):
        strict_yaml("a: &a [*a]\n", "doc")


def test_yaml_duplicate_key_names_the_key_and_its_line():
    with pytest.raises(Refused, match=r"'lr' appears twice \(line 3\)"):
        strict_yaml("train:\n  lr: 0.1\n  lr: 0.5\n", "recipe r")


def test_yaml_and_json_nested_past_the_limit_are_refused_not_a_recursion_error():
    deep = "[" * 5000 + "]" * 5000
    for parse in (strict_yaml, strict_json):
        with pytest.raises(Refused, match=f"more than {MAX_DEPTH} levels"):
            parse(deep, "doc")


def test_yaml_that_builds_python_objects_is_not_valid():
    with pytest.raises(CnnlabError, match="not valid YAML"):
        strict_yaml("a: !!python/object/apply:os.system ['true']\n", "doc")


def test_ordinary_yaml_with_a_merge_key_still_loads():
    doc = strict_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n", "doc")
    assert doc["c"] == {"x": 3, "y": 2}


def test_json_duplicate_key_and_nan_are_refused():
    with pytest.raises(Refused, match="'threshold' appears twice"):
        strict_json('{"decision": {"threshold": 0.5, "threshold": 0.01}}', "bundle.json")
    with pytest.raises(Refused, match="NaN is not a JSON number"):
        strict_json('{"a": NaN}', "doc")
    assert strict_json('{"a": NaN}', "doc", nonfinite=True)["a"] != 0  # NaN read as a float
    with pytest.raises(CnnlabError, match=r"not valid JSON \(line 1\)"):
        strict_json("{", "doc")


def test_recipe_file_and_set_values_go_through_the_strict_loader(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  epochs: 1\n  epochs: 2\n")
    with pytest.raises(Refused, match="'epochs' appears twice"):
        load_recipe(recipe)
    recipe.write_text("train:\n  epochs: 1\nextra:\n" + "".join(
        "  " + line + "\n" for line in LAUGHS.splitlines()
    ))  # fmt: skip
    with pytest.raises(Refused, match="expand"):
        load_recipe(recipe)
    recipe.write_text("train:\n  epochs: 1\n")
    with pytest.raises(Refused, match="more than"):
        load_recipe(recipe, ["extra.x=" + "[" * 200 + "]" * 200])
