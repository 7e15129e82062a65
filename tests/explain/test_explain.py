"""Filter grids, feature maps and Grad-CAM: arrays of the right shape, PNGs written, bad names refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cnnlab.bundle import save_bundle
from cnnlab.cli import main
from cnnlab.data.preprocess import Preprocess
from cnnlab.errors import CnnlabError
from cnnlab.explain.capture import capture_outputs, resolve_layer
from cnnlab.explain.feature_maps import feature_map_grid
from cnnlab.explain.filters import conv_weight, filter_grid
from cnnlab.explain.gradcam import default_layer, gradcam, overlay_heatmap
from cnnlab.explain.render import grid_shape
from cnnlab.models import create_model


@pytest.fixture
def mnist_bundle(tmp_path):
    torch.manual_seed(0)
    model = create_model("keras_mnist_cnn")
    pre = Preprocess(1, [28, 28], [0.1307], [0.3081])
    return save_bundle(tmp_path / "mnist", model, "keras_mnist_cnn", {}, pre, list("0123456789"))


@pytest.fixture
def colour_image(tmp_path):
    arr = np.zeros((40, 30, 3), np.uint8)
    arr[5:20, 5:25] = (220, 30, 30)
    path = tmp_path / "red.png"
    Image.fromarray(arr).save(path)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_grids_have_the_expected_layout():
    assert grid_shape(32) == (6, 6) and grid_shape(64) == (8, 8) and grid_shape(3) == (2, 2)
    weight = np.random.default_rng(0).normal(size=(64, 32, 3, 3)).astype(np.float32)
    grid = filter_grid(weight, "conv2")
    assert grid.mode == "channels" and (grid.mosaic.rows, grid.mosaic.cols) == (32, 16)
    assert grid.mosaic.image.shape == (32 * 4 - 1, 16 * 4 - 1)  # 3x3 tiles, 1-pixel gaps
    gray = filter_grid(weight[:, :1], "conv1")
    assert gray.mode == "gray" and gray.mosaic.count == 64 and gray.mosaic.image.ndim == 2
    rgb = filter_grid(weight[:10, :3], "stem", rgb=True)
    assert rgb.mode == "rgb" and (rgb.mosaic.rows, rgb.mosaic.cols) == (3, 4)
    assert rgb.mosaic.image.shape == (3 * 4 - 1, 4 * 4 - 1, 3)
    vmax = np.abs(weight[:10, :3]).max()  # one scale for every colour filter (issue 29)
    tile = rgb.mosaic.image[:3, :3]
    assert np.allclose(tile, 0.5 + weight[0, :3].transpose(1, 2, 0) / (2 * vmax))
    raw = torch.randn(100, 5, 7)
    maps = feature_map_grid(raw, "x", max_maps=64)
    assert maps.shown == 64 and (maps.mosaic.rows, maps.mosaic.cols) == (8, 8)
    assert np.allclose(maps.mosaic.image[:5, :7], raw[0].numpy())  # the values, one shared scale
    assert (maps.low, maps.high) == (raw[:64].min().item(), raw[:64].max().item())


def test_layer_names_are_the_summarys(mnist_bundle):
    names = ["features.conv1", "features.relu1", "head.dense1"]
    assert resolve_layer(names, "conv1") == "features.conv1"
    with pytest.raises(CnnlabError, match=r"no layer 'conv9' \(did you mean features.conv1\?\)"):
        resolve_layer(names, "conv9")
    model = create_model("keras_mnist_cnn")
    outs = capture_outputs(model, torch.randn(1, 1, 28, 28), ["features.conv1", "features.pool2"])
    assert outs["features.conv1"].shape == (1, 32, 26, 26)
    assert outs["features.conv1"].min() < 0  # the conv's own output, before the in-place ReLU
    assert conv_weight(model, "features.conv2").shape == (64, 32, 3, 3)
    with pytest.raises(CnnlabError, match="no conv filters"):
        conv_weight(model, "features.pool1")


def test_explain_cli_writes_pngs_for_a_grayscale_bundle(
    capsys, tmp_path, mnist_bundle, colour_image
):
    out_dir = tmp_path / "out"
    code, out, _ = run(capsys, "explain", str(mnist_bundle), str(colour_image), "--filters", "conv1",
                       "--feature-maps", "all", "--gradcam", "--out", str(out_dir))  # fmt: skip
    assert code == 0
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == sorted([
        "filters_features.conv1.png", "gradcam.png",
        *[f"feature_maps_features.{n}.png" for n in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2")],
    ])  # fmt: skip
    assert len(out.splitlines()) == 8
    for name in written:
        with Image.open(out_dir / name) as img:
            assert img.format == "PNG" and min(img.size) > 150
    with Image.open(out_dir / "gradcam.png") as img:  # the input panel is grey: R == G == B there
        rgb = np.asarray(img.convert("RGB")).astype(int)
    panel = rgb[60:300, 20:300]
    assert np.abs(panel[..., 0] - panel[..., 1]).max() <= 2


def test_explain_a_registered_colour_model_shows_rgb_filters(capsys, tmp_path, colour_image):
    code, out, _ = run(capsys, "explain", "keras_cifar10_cnn", str(colour_image), "--filters",
                       "conv1", "--feature-maps", "conv4", "--out", str(tmp_path))  # fmt: skip
    assert code == 0 and len(out.splitlines()) == 2
    model = create_model("keras_cifar10_cnn")
    assert filter_grid(conv_weight(model, "features.conv1"), rgb=True).mode == "rgb"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--filters", "conv7"], "no layer 'conv7'"),
        (["--feature-maps", "dense1"], "outputs a vector (128)"),
        (["--filters", "pool1"], "has no conv filters"),
        (["--gradcam", "--class", "eleven"], "unknown class 'eleven'"),
        (["--gradcam", "--layer", "nope"], "no layer 'nope'"),
        ([], "nothing to explain"),
    ],
)
def test_explain_bad_input(capsys, tmp_path, mnist_bundle, colour_image, extra, message):
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "explain", str(mnist_bundle), str(colour_image), "--out", str(out_dir), *extra)  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists() or not any(out_dir.iterdir())  # nothing half-written


def test_explain_unreadable_image_and_unknown_model(capsys, tmp_path, mnist_bundle):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code, _, err = run(capsys, "explain", str(mnist_bundle), str(bad), "--feature-maps", "conv1", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "not a recognised image" in err
    code, _, err = run(capsys, "explain", "no_such_net", "--filters", "conv1", "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2 and "unknown model" in err


# ----------------------------------------------------------------------------- Grad-CAM


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 2))

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x):
        return self.head(self.features(x))


def squares(n: int, seed: int, size: int = 20):
    """Class 1 has a bright 5x5 square somewhere; every image has a bright bar as a distractor."""
    g = np.random.default_rng(seed)
    x = g.normal(0, 0.3, (n, 1, size, size)).astype(np.float32)
    y = g.integers(0, 2, n)
    boxes = []
    for i in range(n):
        r, c = g.integers(0, size - 5, 2)
        boxes.append((int(r), int(c)))
        if y[i]:
            x[i, 0, r : r + 5, c : c + 5] += 2.0
        br, bc = g.integers(0, size), g.integers(0, size - 8)
        x[i, 0, br, bc : bc + 8] += 2.0
    return torch.tensor(x), torch.tensor(y), boxes


def test_gradcam_finds_the_informative_square_on_a_briefly_trained_model():
    torch.manual_seed(0)
    x, y, _ = squares(256, 0)
    model = Toy()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt, boxes = squares(60, 1)
    assert (model(xt).argmax(1) == yt).float().mean() > 0.9
    assert default_layer(model, xt[:1]) == "features.2"
    hits = total = 0
    for i in np.flatnonzero(yt.numpy() == 1):
        cam = gradcam(model, xt[i : i + 1], class_index=1)
        assert cam.heatmap.shape == (20, 20) and cam.heatmap.dtype == np.float32
        assert cam.heatmap.min() >= 0 and cam.heatmap.max() == pytest.approx(1.0)
        r, c = np.unravel_index(cam.heatmap.argmax(), cam.heatmap.shape)
        br, bc = boxes[i]
        hits += br - 1 <= r <= br + 5 and bc - 1 <= c <= bc + 5
        total += 1
    assert total >= 20 and hits / total >= 0.9


def test_gradcam_of_a_one_output_model_and_the_overlay():
    torch.manual_seed(0)
    model = create_model("keras_folder_cnn", input_size=(40, 40))
    x = torch.randn(1, 3, 40, 40)
    pos, neg = gradcam(model, x, class_index=1), gradcam(model, x, class_index=0)
    assert pos.layer == "features.conv3" and pos.score == pytest.approx(-neg.score)
    assert pos.heatmap.shape == (40, 40)
    gray = np.full((1, 40, 40), 128, np.uint8)
    blend = overlay_heatmap(gray, pos.heatmap)
    assert blend.shape == (40, 40, 3) and blend.dtype == np.uint8
    with pytest.raises(CnnlabError, match="classes 0 and 1"):
        gradcam(model, x, class_index=2)


@pytest.mark.parametrize(("threshold", "expected"), [(0.001, 1), (0.999, 0)])
def test_gradcam_image_follows_the_bundles_decision_rule(
    tmp_path, colour_image, threshold, expected
):
    from cnnlab.bundle import load_bundle
    from cnnlab.explain import gradcam_image

    torch.manual_seed(0)
    model = create_model("keras_folder_cnn", input_size=(36, 36))
    pre = Preprocess(3, [36, 36], [0.5] * 3, [0.5] * 3)
    decision = {"threshold": threshold, "temperature": 1.0}
    path = save_bundle(tmp_path / "b", model, "keras_folder_cnn", {"input_size": [36, 36]}, pre,
                       ["NORMAL", "PNEUMONIA"], class_mode="binary", decision=decision)  # fmt: skip
    bundle = load_bundle(path)
    image, cam = gradcam_image(bundle, colour_image.read_bytes())
    assert image.shape == (36, 36, 3) and image.dtype == np.uint8
    assert cam.class_index == expected and cam.heatmap.shape == (36, 36)
    _, named = gradcam_image(bundle, colour_image, label="NORMAL")
    assert named.class_index == 0


def test_gradcam_and_feature_maps_see_the_image_not_a_test_time_view():
    torch.manual_seed(0)
    model = create_model("cifarnet", whiten=True)  # mirror + shift views in eval mode
    model.train()
    model(torch.randn(16, 3, 32, 32))  # fits the whitening stem, sets BatchNorm statistics
    x = torch.zeros(1, 3, 32, 32)
    x[..., 4:12, 2:10] = 3.0  # a bright square near the top-left corner: mirrors move it
    plain = create_model("cifarnet", whiten=True, tta="none")
    plain.load_state_dict(model.state_dict())
    with_views = gradcam(model, x, "features.group2_conv1", class_index=3)
    reference = gradcam(plain, x, "features.group2_conv1", class_index=3)
    assert np.allclose(with_views.heatmap, reference.heatmap, atol=1e-5)
    maps = capture_outputs(model, x, ["features.group1_conv1"])["features.group1_conv1"]
    assert torch.allclose(
        maps, capture_outputs(plain, x, ["features.group1_conv1"])["features.group1_conv1"]
    )
    assert model.tta == "mirror+translate"  # put back afterwards
