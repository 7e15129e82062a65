"""`cnnlab code`: the generated scripts are run, not just read. One subprocess runs the PyTorch
and the Keras 3 (torch backend) script of each of the brief's four recipes for one epoch on
tiny data; the parameter counts each prints must be `cnnlab summary`'s."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.anatomy.summary import target_summary
from cnnlab.errors import CnnlabError
from cnnlab.learn.codegen import code_source, generate_code
from tests.conftest import ROOT, digit_images, write_idx, write_image_folder

BRIEF = {  # recipe: (summary's parameter count, the tiny data it runs on)
    "mnist_keras_cnn": (225_034, "idx"),
    "mnist_torch_net": (421_642, "idx"),
    "cifar10_keras_cnn": (1_250_858, "cifar"),
    "folder_keras_cnn": (19_034_177, "folder"),
}

DRIVER = """
import runpy, sys
for script, data in zip(sys.argv[1::2], sys.argv[2::2]):
    print("== " + script, flush=True)
    sys.argv = [script, "--data", data, "--epochs", "1"]
    runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="module")
def scripts_run(tmp_path_factory):
    """Every generated script run once; returns {(recipe, framework): its output}."""
    d = tmp_path_factory.mktemp("code")
    x, y = digit_images(12)
    (d / "idx").mkdir()
    write_idx(d / "idx" / "train-images-idx3-ubyte.gz", x)
    write_idx(d / "idx" / "train-labels-idx1-ubyte.gz", y)
    write_image_folder(d / "cifar", [f"c{i}" for i in range(10)], 1, size=32)
    write_image_folder(d / "folder", ["NORMAL", "PNEUMONIA"], 3, size=40, splits=["train"])
    args = []
    for name, (_, data) in BRIEF.items():
        for fw in ("pytorch", "keras"):
            script = d / f"{name}_{fw}.py"
            script.write_text(generate_code(str(ROOT / "recipes" / f"{name}.yaml"), fw))
            args += [str(script), str(d / data)]
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True,
                          cwd=d, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parts = re.split(r"^== (.*)$", proc.stdout, flags=re.M)[1:]
    return {
        tuple(Path(p).stem.rsplit("_", 1)): out
        for p, out in zip(parts[::2], parts[1::2], strict=True)
    }


@pytest.mark.parametrize("framework", ["pytorch", "keras"])
def test_generated_scripts_train_and_count_the_summarys_parameters(scripts_run, framework):
    for name, (count, _) in BRIEF.items():
        out = scripts_run[(name, framework)]
        printed = re.search(r"^parameters: ([\d,]+)", out, re.M)
        assert printed, out
        assert int(printed.group(1).replace(",", "")) == count, (name, framework, out)
        if framework == "pytorch":
            assert re.search(r"^epoch 1/1: loss \d+\.\d+", out, re.M), out
        else:
            assert re.search(r"1/1 - .* - loss: \d", out), out  # one step of model.fit


def test_counts_match_cnnlab_summary():
    for name, (count, _) in BRIEF.items():
        source = code_source(str(ROOT / "recipes" / f"{name}.yaml"))
        _, summary = target_summary(source.model_name, (source.channels, *source.size),
                                    source.num_outputs)  # fmt: skip
        assert source.params == summary.total_params == count
        assert source.plain is not None and source.plain.params == count


def test_the_brief_models_read_like_the_brief():
    keras_text = generate_code(str(ROOT / "recipes" / "mnist_keras_cnn.yaml"), "keras")
    assert 'layers.Conv2D(32, 3, activation="relu"),  # 26x26x32, 320 params' in keras_text
    assert 'layers.Dense(10, activation="softmax")' in keras_text
    assert (
        "keras.optimizers.Adam(learning_rate=lr)" in keras_text and "BATCH_SIZE = 128" in keras_text
    )
    cifar = generate_code(str(ROOT / "recipes" / "cifar10_keras_cnn.yaml"), "keras")
    assert 'layers.Conv2D(32, 3, padding="same", activation="relu")' in cifar  # PyTorch pad 1
    torch_text = generate_code(str(ROOT / "recipes" / "mnist_torch_net.yaml"))
    assert "nn.Conv2d(1, 32, kernel_size=3, padding=1),  # 28x28x32, 320 params" in torch_text
    assert "MEAN, STD = [0.5], [0.5]" in torch_text  # inputs normalised to [-1, 1]
    folder = generate_code(str(ROOT / "recipes" / "folder_keras_cnn.yaml"))
    assert (
        "v2.RandomAffine(degrees=40, translate=(0.2, 0.2), scale=(0.8, 1.2), shear=0.2)" in folder
    )
    assert "nn.BCEWithLogitsLoss()" in folder


def test_models_without_a_keras_sequential_say_why(run_cli):
    with pytest.raises(CnnlabError, match="not a plain stack of layers.*--framework pytorch"):
        generate_code("cifarnet", "keras")
    text = generate_code("cifarnet")  # PyTorch: cnnlab builds what is not a plain stack
    assert "create_model('cifarnet'" in text
    compile(text, "cifarnet.py", "exec")
    r = run_cli("code", "timm/resnet18", "--framework", "keras")  # no keras.applications map
    assert r.returncode == 2 and "use --framework pytorch" in r.stderr
    r = run_cli("code", "lenet5", "--framework", "keras")
    assert r.returncode == 0 and 'layers.Dense(10, activation="softmax")' in r.stdout
    compile(r.stdout, "lenet5.py", "exec")


def test_a_muon_recipe_says_the_scripts_use_sgd(tmp_path):
    """Neither plain PyTorch nor Keras has cnnlab's Muon for conv filters: the scripts train with
    Nesterov SGD and say so, rather than silently show another optimiser."""
    text = (ROOT / "recipes" / "mnist_keras_cnn.yaml").read_text()
    assert "optimizer: adam" in text
    recipe = tmp_path / "muon.yaml"
    recipe.write_text(text.replace("optimizer: adam", "optimizer: muon"))
    torch_text = generate_code(str(recipe))
    assert "torch.optim.SGD(model.parameters()" in torch_text and "with Muon" in torch_text
    compile(torch_text, "muon.py", "exec")
    keras_text = generate_code(str(recipe), "keras")
    assert "keras.optimizers.SGD(" in keras_text and "muon is left out" in keras_text
    compile(keras_text, "muon_keras.py", "exec")


def test_the_scripts_name_the_training_aids_they_leave_out(tmp_path):
    text = (ROOT / "recipes" / "mnist_keras_cnn.yaml").read_text()
    recipe = tmp_path / "aids.yaml"
    recipe.write_text(text.replace("  optimizer: adam", "  optimizer: adam\n  lookahead: true\n"
                                   "  freeze_after: {conv1: 5}"))  # fmt: skip
    for framework in ("pytorch", "keras"):
        script = generate_code(str(recipe), framework)
        assert "# train.lookahead, train.freeze_after: cnnlab's training aids, left out" in script
        compile(script, f"aids_{framework}.py", "exec")
    plain = generate_code(str(ROOT / "recipes" / "mnist_keras_cnn.yaml"))
    assert "training aids" not in plain


def test_a_brief_model_name_brings_the_brief_recipe():
    """`cnnlab code torch_mnist_net` (Q8): the brief's [-1, 1] inputs, not a generic 0-1."""
    text = generate_code("torch_mnist_net")
    assert "MEAN, STD = [0.5], [0.5]" in text
    assert "MADE_FROM = 'recipe recipes/mnist_torch_net.yaml'" in text
    assert "MADE_FROM = 'model fastnet'" in generate_code("fastnet")  # many recipes: none chosen


def test_the_keras_folder_script_maps_every_image_data_generator_argument():
    """Q9: each ImageDataGenerator argument is named with what became of it; shear is a layer
    (the script itself runs in scripts_run above)."""
    text = generate_code(str(ROOT / "recipes" / "folder_keras_cnn.yaml"), "keras")
    mapping = text[text.index("# ImageDataGenerator (Keras 2) argument") :].split("\n\n")[0]
    arguments = [  # keras.preprocessing.image.ImageDataGenerator's, Keras 2.15
        "featurewise_center", "samplewise_center", "featurewise_std_normalization",
        "samplewise_std_normalization", "zca_whitening", "zca_epsilon", "rotation_range",
        "width_shift_range", "height_shift_range", "brightness_range", "shear_range",
        "zoom_range", "channel_shift_range", "fill_mode", "cval", "horizontal_flip",
        "vertical_flip", "rescale", "preprocessing_function", "data_format",
        "validation_split", "interpolation_order", "dtype",
    ]  # fmt: skip
    assert [a for a in arguments if a not in mapping] == []
    assert "layers.RandomShear(x_factor=math.tan(math.radians(0.2)), fill_mode='nearest')" in text


def test_a_streamlit_app_needs_a_bundle_or_a_recipe():
    text = generate_code("chest_xray_brief", "streamlit")  # the bundle its training writes
    assert "'runs/chest_xray_brief'" in text
    assert "cnnlab train recipes/chest_xray_brief.yaml --out runs/chest_xray_brief" in text
    with pytest.raises(CnnlabError, match="needs a trained model"):
        generate_code("keras_mnist_cnn", "streamlit")


def test_a_transfer_recipe_in_keras_uses_keras_applications(tmp_path):
    """chest_xray_brief --framework keras: EfficientNetB0 from keras.applications, frozen, the
    brief's head; the script says Keras downloads the weights. Run here from scratch
    (WEIGHTS = None: no network) at 64x64 for one step."""
    text = generate_code("chest_xray_brief", "keras")
    assert "keras.applications.EfficientNetB0(include_top=False, weights=WEIGHTS" in text
    assert "downloaded by Keras itself" in text and "base.trainable = False" in text
    script = tmp_path / "xray.py"
    script.write_text(text.replace('WEIGHTS = "imagenet"', "WEIGHTS = None")
                      .replace("IMAGE_SIZE = (224, 224)", "IMAGE_SIZE = (64, 64)"))  # fmt: skip
    write_image_folder(tmp_path / "folder", ["NORMAL", "PNEUMONIA"], 3, size=40, splits=["train"])
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(script), "--data", str(tmp_path / "folder"),
                           "--epochs", "1"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(r"1/1 - .* - loss: \d", proc.stdout), proc.stdout
