"""Transfer backbones: offline EfficientNet-Lite0 weights, timm/torchvision by name, freezing,
BatchNorm kept in eval mode while frozen, discriminative learning rates, 1-channel inputs,
and ImageNet weights found in (fake) caches or refused clearly when offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models import pretrained as weights
from cnnlab.models.transfer import TransferNet


def test_lite0_package_weights_map_in_order_onto_timm() -> None:
    state = weights.lite_state_dict(0, 3)
    model = timm.create_model("efficientnet_lite0", num_classes=0, global_pool="")
    assert len(state) == 294  # 296 tensors less the ImageNet classifier's weight and bias
    model.load_state_dict(state, strict=True)  # every name and shape fits
    raw = torch.load(weights.lite_weights_file(0), map_location="cpu", weights_only=True)
    assert torch.equal(state["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(state["bn2.running_var"], raw["_bn1.running_var"])


def test_gray_input_sums_the_rgb_filters_like_timm_in_chans() -> None:
    rgb = weights.lite_state_dict(0, 3)["conv_stem.weight"]
    gray = weights.lite_state_dict(0, 1)["conv_stem.weight"]
    assert gray.shape[1] == 1
    torch.testing.assert_close(gray[:, 0], rgb.sum(1))
    m1 = create_model("efficientnet_lite0", in_channels=1, input_size=[64, 64]).eval()
    m3 = create_model("efficientnet_lite0", in_channels=3, input_size=[64, 64]).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            m1.forward_features(x),
            m3.forward_features(x.expand(-1, 3, -1, -1)),
            atol=1e-4,
            rtol=1e-4,
        )


def test_pretrained_lite0_gives_imagenet_features_random_init_does_not() -> None:
    # ImageNet BatchNorm statistics come with the weights: the running variances of the
    # pretrained model differ from the all-ones of a fresh one, and its features are sparse
    # after the final ReLU6 in a way random weights are not.
    pre = create_model("efficientnet_lite0", num_classes=1, input_size=[64, 64])
    fresh = create_model("efficientnet_lite0", num_classes=1, input_size=[64, 64], pretrained=False)
    assert not torch.allclose(pre.backbone.model.bn2.running_var, torch.ones(1280))
    assert torch.allclose(fresh.backbone.model.bn2.running_var, torch.ones(1280))


def test_brief_head_is_the_default_for_binary_and_linear_otherwise() -> None:
    binary = create_model(
        "efficientnet_lite0", num_classes=1, input_size=[64, 64], pretrained=False
    )
    names = [n for n, _ in binary.head.named_children()]
    assert names == ["pool", "flatten", "dense1", "relu", "dropout", "dense2"]
    assert binary.head.dense1.out_features == 128 and binary.head.dropout.p == 0.5
    multi = create_model("efficientnet_lite0", num_classes=4, input_size=[64, 64], pretrained=False)
    assert multi.get_classifier().out_features == 4 and not hasattr(multi.head, "dense1")
    out = multi(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 4)


def test_freeze_all_stage_and_none() -> None:
    m = create_model("efficientnet_lite0", input_size=[64, 64], pretrained=False)
    assert m.backbone_frozen and all(p.requires_grad for p in m.head.parameters())
    m.freeze("blocks.5")
    named = dict(m.backbone.model.named_parameters())
    assert not named["blocks.4.0.conv_pw.weight"].requires_grad
    assert named["blocks.5.0.conv_pw.weight"].requires_grad
    assert named["conv_head.weight"].requires_grad
    m.freeze(2)
    assert (
        not named["conv_stem.weight"].requires_grad
        and named["blocks.0.0.conv_dw.weight"].requires_grad
    )
    m.freeze("none")
    assert all(p.requires_grad for p in m.parameters())
    with pytest.raises(CnnlabError, match="stage name"):
        create_model(
            "efficientnet_lite0", input_size=[64, 64], pretrained=False, freeze="blocks.99"
        )


def test_frozen_stages_keep_batchnorm_in_eval_mode() -> None:
    m = create_model("efficientnet_lite0", input_size=[64, 64], pretrained=False, freeze="blocks.5")
    m.train()
    m.on_train_mode()
    bb = m.backbone.model
    assert not bb.bn1.training and not bb.blocks[4][0].bn1.training
    assert bb.blocks[5][0].bn1.training and m.head.training
    before = bb.bn1.running_mean.clone()
    m(torch.rand(4, 3, 64, 64))
    assert torch.equal(bb.bn1.running_mean, before)  # frozen statistics untouched


def test_param_groups_give_the_backbone_a_lower_learning_rate() -> None:
    m = create_model("efficientnet_lite0", input_size=[64, 64], pretrained=False, freeze="none",
                     backbone_lr_scale=0.1)  # fmt: skip
    groups = m.param_groups(1e-3)
    head_ids = {id(p) for p in m.head.parameters()}
    for g in groups:
        in_head = {id(p) in head_ids for p in g["params"]}
        assert len(in_head) <= 1
        if in_head == {True}:
            assert g["lr"] == pytest.approx(1e-3)
        elif in_head == {False}:
            assert g["lr"] == pytest.approx(1e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))


def test_timm_and_torchvision_models_by_name() -> None:
    t = create_model(
        "timm/resnet18", pretrained=False, in_channels=1, num_classes=3, input_size=[64, 64]
    )
    assert isinstance(t, TransferNet) and t(torch.zeros(2, 1, 64, 64)).shape == (2, 3)
    v = create_model("torchvision/resnet18", pretrained=False, num_classes=1, in_channels=1,
                     input_size=[64, 64])  # fmt: skip
    assert v.backbone.conv1.in_channels == 1 and v(torch.zeros(2, 1, 64, 64)).shape == (2, 1)
    assert v.stage_names[:2] == ["conv1", "bn1"] and "layer4.1" in v.stage_names
    with pytest.raises(CnnlabError, match="timm has no model"):
        create_model("timm/no_such_net", pretrained=False)
    with pytest.raises(CnnlabError, match="torchvision has no"):
        create_model("torchvision/no_such_net", pretrained=False)


def test_torchvision_weights_come_from_torch_hub_cache(tmp_path: Path, monkeypatch) -> None:
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = tvm.get_model_weights("mobilenet_v3_small").DEFAULT.url
    fake = tvm.get_model("mobilenet_v3_small", weights=None).state_dict()
    fake["features.0.0.weight"] = torch.full_like(fake["features.0.0.weight"], 0.123)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(fake, tmp_path / "hub" / "checkpoints" / Path(url).name)
    m = create_model("torchvision/mobilenet_v3_small", num_classes=1, input_size=[64, 64])
    assert torch.all(m.backbone[0][0].weight == 0.123)


def test_timm_weights_come_from_the_hugging_face_cache(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants
    from safetensors.torch import save_file

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    arch = "mobilenetv3_small_050"
    repo = timm.models.get_pretrained_cfg(arch).hf_hub_id
    snap = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("abc123")
    fake = timm.create_model(arch).state_dict()
    fake["conv_stem.weight"] = torch.full_like(fake["conv_stem.weight"], 0.5)
    save_file({k: v.contiguous() for k, v in fake.items()}, str(snap / "model.safetensors"))
    m = create_model(f"timm/{arch}", num_classes=1, input_size=[64, 64])
    assert torch.all(m.backbone.model.conv_stem.weight == 0.5)


def test_offline_download_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(weights, "reachable", lambda url, timeout=3.0: False)
    with pytest.raises(
        CnnlabError, match="cannot download ImageNet weights for torchvision/resnet18"
    ):
        create_model("torchvision/resnet18")
    with pytest.raises(CnnlabError, match="pretrained: false"):
        create_model("timm/resnet18")


def test_bundles_never_download(tmp_path: Path, monkeypatch) -> None:
    from cnnlab.bundle import load_bundle, save_bundle
    from cnnlab.data.preprocess import Preprocess

    m = create_model("efficientnet_lite0", in_channels=1, input_size=[64, 64], pretrained=False)
    pre = Preprocess(1, [64, 64], [0.449], [0.226])
    args = {"in_channels": 1, "num_classes": 1, "input_size": [64, 64]}
    save_bundle(tmp_path / "b", m, "efficientnet_lite0", args, pre, ["NORMAL", "PNEUMONIA"],
                class_mode="binary")  # fmt: skip

    def no_weights(*a, **k):
        raise AssertionError("load_bundle must not load ImageNet weights")

    monkeypatch.setattr(weights, "lite_state_dict", no_weights)
    b = load_bundle(tmp_path / "b")
    torch.testing.assert_close(b.model.head.dense2.weight, m.head.dense2.weight)


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_and_lite2_weights_load_offline(variant):
    import timm

    state = weights.lite_state_dict(variant, 1)
    ref = timm.create_model(f"efficientnet_lite{variant}", pretrained=False).state_dict()
    assert set(state) == {k for k in ref if not k.startswith("classifier.")}
    assert state["conv_stem.weight"].shape[1] == 1  # gray stem: RGB filters summed
    m = create_model(f"efficientnet_lite{variant}", in_channels=1, input_size=[64, 64])
    torch.testing.assert_close(m.backbone.model.blocks[0][0].conv_dw.weight,
                               state["blocks.0.0.conv_dw.weight"])  # fmt: skip


def test_mirror_tta_averages_the_image_and_its_mirror_in_eval_only():
    torch.manual_seed(0)
    m = create_model("efficientnet_lite0", in_channels=1, input_size=[64, 64], pretrained=False,
                     tta="mirror").eval()  # fmt: skip
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        plain = m.head(m.backbone(x))
        mirrored = m.head(m.backbone(x.flip(-1)))
        torch.testing.assert_close(m(x), (plain + mirrored) / 2)
        assert not torch.allclose(plain, mirrored)
        m.train()
        m.head.dropout.p = 0.0
        torch.testing.assert_close(m(x).shape, plain.shape)
