"""`cnnlab conv`, `summary` and `zoo` end to end, and their answers to bad input."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cnnlab.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own errors
        code = int(e.code)
    out, err = capsys.readouterr()
    return code, out, err


def test_conv_single_layer_prints_size_formula_and_unused_column(capsys):
    code, out, _ = run(capsys, "conv", "--size", "32", "--kernel", "3", "--stride", "2", "--padding", "valid")  # fmt: skip
    assert code == 0
    assert "out = floor((32 - 3 + 2*0) / 2) + 1 = floor(14.5) + 1 = 15" in out
    assert "output: 15x15" in out and "1 row and 1 column never read" in out
    code, out, _ = run(capsys, "conv", "--size", "32", "--padding", "same", "--in-channels", "3", "--filters", "64")  # fmt: skip
    assert "output: 32x32" in out and "= 1,792" in out
    code, out, _ = run(capsys, "conv", "--size", "32", "--kernel", "5", "--in-channels", "3", "--filters", "64", "--json")  # fmt: skip
    data = json.loads(out)
    assert data["output"] == [28, 28] and data["params"] == 4_864 and data["unused"] == [0, 0]


def test_conv_stack_table(capsys):
    code, out, _ = run(capsys, "conv", "--size", "32", "--in-channels", "3", "--layers", "c3:32,c3:32,p2,c3:64s2")  # fmt: skip
    assert code == 0
    rows = [line.split() for line in out.splitlines()[2:6]]
    assert [r[4] for r in rows] == ["30x30", "28x28", "14x14", "6x6"]  # output
    assert [r[6] for r in rows] == ["3", "5", "6", "10"]  # receptive field
    assert rows[3][5] == "1"  # 14 - 3 = 11 is odd: stride 2 leaves one row and column
    assert "conv parameters: 28,640" in out  # 896 + 9,248 + 18,496
    code, out, _ = run(capsys, "conv", "--size", "32", "--layers", "c3,c3d2", "--json")
    assert [layer["rf"] for layer in json.loads(out)["layers"]] == [[3, 3], [7, 7]]


def test_summary_of_the_briefs_mnist_cnn(capsys):
    code, out, _ = run(capsys, "summary", "keras_mnist_cnn")
    assert code == 0
    for shape in ("26x26x32", "13x13x32", "11x11x64", "5x5x64", "1600", "128", "10"):
        assert f" {shape} " in out
    assert "Total params: 225,034" in out
    code, out, _ = run(capsys, "summary", "keras_mnist_cnn", "--json", "--classes", "4")
    data = json.loads(out)
    assert data["output_shape"] == [4] and data["layers"][0]["receptive_field"]["rf"] == [3, 3]


def test_zoo_compare_table_markdown_and_chart(capsys, tmp_path):
    chart = tmp_path / "zoo.png"
    code, out, _ = run(capsys, "zoo", "--compare", "lenet5,alexnet,vgg16", "--markdown", "--out", str(chart))  # fmt: skip
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("| model | year |") and len(lines) == 5
    vgg = lines[4].split(" | ")
    assert vgg[0] == "| vgg16" and vgg[1] == "2014" and vgg[3] == "13/3" and vgg[4] == "3x3"
    assert "138,357,544" in vgg[5] and vgg[7] == "212x212" and "7.3%" in lines[4]
    assert "11x11, 5x5, 3x3" in lines[3] and "61,100,840" in lines[3] and "15.3%" in lines[3]
    assert "1998" in lines[2] and "5x5" in lines[2]
    with Image.open(chart) as img:
        assert img.format == "PNG" and img.width > 400 and img.height > 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["summary", "no_such_net"], "unknown model 'no_such_net'"),
        (["summary", "keras_mnist_cnn", "--input", "1x5x5"], "too small"),
        (["summary", "keras_mnist_cnn", "--input", "1xbig"], "--input must look like"),
        (["summary", "runs/missing-bundle"], "no bundle at runs/missing-bundle"),
        (["conv", "--size", "2", "--kernel", "3"], "output would be < 1"),
        (["conv", "--size", "32", "--stride", "0"], "--stride must be a number >= 1"),
        (["conv", "--size", "32", "--padding", "full"], "--padding must be a number"),
        (["conv", "--size", "8", "--layers", "c3,c3,c3,c3"], "layer 4 (c3) on a 2x2 input"),
        (["conv", "--size", "32", "--layers", "c3,q2"], "cannot read layer 'q2'"),
        (["conv", "--size", "32", "--filters", "8"], "needs both --in-channels and --filters"),
        (["zoo", "--compare", "lenet5,nope"], "unknown model 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_bundle_that_cannot_take_the_input(capsys, tmp_path):
    from cnnlab.bundle import save_bundle
    from cnnlab.data.preprocess import Preprocess
    from cnnlab.models import create_model

    pre = Preprocess(1, [28, 28], [0.0], [1.0])
    save_bundle(tmp_path / "b", create_model("keras_mnist_cnn"), "keras_mnist_cnn", {}, pre, list("0123456789"))  # fmt: skip
    code, out, err = run(capsys, "summary", str(tmp_path / "b"), "--input", "1x20x20")
    assert code == 2 and "fails on input 1x20x20" in err and len(err.strip().splitlines()) == 1
