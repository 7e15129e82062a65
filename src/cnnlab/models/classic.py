"""The brief's CNNs, layer for layer, and the classic architectures LeNet-5, AlexNet, VGG-16.

Parameter counts are part of the contract (tests check them): keras_mnist_cnn 225,034,
torch_mnist_net 421,642, keras_cifar10_cnn 1,250,858, keras_folder_cnn 19,034,177,
alexnet 61,100,840 and vgg16 138,357,544 at their native inputs.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cache

import torch
import torch.nn as nn

from cnnlab.models.base import ClassifierCNN, Dropout, as_size, flat_features
from cnnlab.models.registry import register_model


def _head(
    flat_in: int, hidden: int, num_classes: int, dropout: float, dropout_first: bool
) -> OrderedDict:
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    if dropout_first:
        layers.append(("dropout", Dropout(dropout)))
    layers += [("dense1", nn.Linear(flat_in, hidden)), ("relu_d1", nn.ReLU(inplace=True))]
    if not dropout_first:
        layers.append(("dropout", Dropout(dropout)))
    layers.append(("dense2", nn.Linear(hidden, num_classes)))
    return OrderedDict(layers)


def _build(features: OrderedDict, in_channels, size, hidden, num_classes, dropout, dropout_first):
    feats = nn.Sequential(features)
    flat = flat_features(feats, in_channels, size)
    return ClassifierCNN(features, _head(flat, hidden, num_classes, dropout, dropout_first))


def keras_init(model: nn.Module) -> nn.Module:
    """Keras's defaults for Conv2D and Dense: Glorot-uniform weights, zero biases (PyTorch's
    own, Kaiming-uniform with a=sqrt(5) and random biases, learn these nets more slowly:
    keras_cifar10_cnn was 8 points behind Keras after 3 epochs). Part of "the brief's way"."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


@register_model(input_size=(1, 28, 28), num_classes=10, family="brief")
def keras_mnist_cnn(
    in_channels: int = 1, num_classes: int = 10, input_size=(28, 28), dropout: float = 0.5
):
    """The brief's Keras MNIST CNN: Conv32-Pool-Conv64-Pool-Flatten-Dropout-Dense128-Dense10."""
    f = OrderedDict(
        conv1=nn.Conv2d(in_channels, 32, 3), relu1=nn.ReLU(inplace=True), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(32, 64, 3), relu2=nn.ReLU(inplace=True), pool2=nn.MaxPool2d(2),
    )  # fmt: skip
    return keras_init(
        _build(f, in_channels, as_size(input_size), 128, num_classes, dropout, dropout_first=True)
    )


@register_model(input_size=(1, 28, 28), num_classes=10, family="brief")
def torch_mnist_net(
    in_channels: int = 1, num_classes: int = 10, input_size=(28, 28), dropout: float = 0.5
):
    """The brief's PyTorch MNIST net: two padded 3x3 convs with pooling, fc 3136-128-10."""
    f = OrderedDict(
        conv1=nn.Conv2d(in_channels, 32, 3, padding=1), relu1=nn.ReLU(inplace=True), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(32, 64, 3, padding=1), relu2=nn.ReLU(inplace=True), pool2=nn.MaxPool2d(2),
    )  # fmt: skip
    return _build(
        f, in_channels, as_size(input_size), 128, num_classes, dropout, dropout_first=False
    )


@register_model(input_size=(3, 32, 32), num_classes=10, family="brief")
def keras_cifar10_cnn(
    in_channels: int = 3, num_classes: int = 10, input_size=(32, 32), dropout: float = 0.5
):
    """The brief's Keras CIFAR-10 CNN: (Conv-Conv-Pool-Dropout) x2, Dense512, Dense10."""
    f = OrderedDict(
        conv1=nn.Conv2d(in_channels, 32, 3, padding=1), relu1=nn.ReLU(inplace=True),
        conv2=nn.Conv2d(32, 32, 3), relu2=nn.ReLU(inplace=True), pool1=nn.MaxPool2d(2), drop1=Dropout(0.25),
        conv3=nn.Conv2d(32, 64, 3, padding=1), relu3=nn.ReLU(inplace=True),
        conv4=nn.Conv2d(64, 64, 3), relu4=nn.ReLU(inplace=True), pool2=nn.MaxPool2d(2), drop2=Dropout(0.25),
    )  # fmt: skip
    return keras_init(
        _build(f, in_channels, as_size(input_size), 512, num_classes, dropout, dropout_first=False)
    )


@register_model(input_size=(3, 150, 150), num_classes=1, family="brief")
def keras_folder_cnn(
    in_channels: int = 3, num_classes: int = 1, input_size=(150, 150), dropout: float = 0.5
):
    """The brief's 150x150 image-folder CNN: Conv32/64/128 with pooling, Dense512, Dense1 (binary)."""
    f = OrderedDict(
        conv1=nn.Conv2d(in_channels, 32, 3), relu1=nn.ReLU(inplace=True), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(32, 64, 3), relu2=nn.ReLU(inplace=True), pool2=nn.MaxPool2d(2),
        conv3=nn.Conv2d(64, 128, 3), relu3=nn.ReLU(inplace=True), pool3=nn.MaxPool2d(2),
    )  # fmt: skip
    return keras_init(
        _build(f, in_channels, as_size(input_size), 512, num_classes, dropout, dropout_first=False)
    )


@register_model(
    input_size=(1, 32, 32), num_classes=10, family="classic", year=1998,
    result="MNIST: 0.95% test error (LeCun et al. 1998)",
)  # fmt: skip
def lenet5(in_channels: int = 1, num_classes: int = 10, input_size=(32, 32)):
    """LeNet-5 (LeCun et al. 1998): tanh convs with average-pool subsampling, 120-84-10.

    On 28x28 inputs (MNIST) the first conv pads by 2, as common ports do, so C1 stays 28x28.
    """
    h, w = as_size(input_size)
    pad = max(0, (32 - min(h, w)) // 2)
    f = OrderedDict(
        c1=nn.Conv2d(in_channels, 6, 5, padding=pad), tanh1=nn.Tanh(), s2=nn.AvgPool2d(2),
        c3=nn.Conv2d(6, 16, 5), tanh2=nn.Tanh(), s4=nn.AvgPool2d(2),
    )  # fmt: skip
    flat = flat_features(nn.Sequential(f), in_channels, (h, w))
    head = OrderedDict(
        flatten=nn.Flatten(), c5=nn.Linear(flat, 120), tanh3=nn.Tanh(),
        f6=nn.Linear(120, 84), tanh4=nn.Tanh(), output=nn.Linear(84, num_classes),
    )  # fmt: skip
    return ClassifierCNN(f, head)


class _TorchvisionInterface:
    """forward_features / forward_head on torchvision's AlexNet and VGG (keys stay torchvision's,
    so their ImageNet state dicts load as they are)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]


@cache
def _torchvision_classes() -> tuple[type, type]:
    """AlexNet and VGG with the interface, made on first use: importing torchvision costs
    seconds (its ops import torch._dynamo), which `cnnlab summary keras_mnist_cnn` must not pay."""
    import torchvision.models as tvm

    class AlexNet(_TorchvisionInterface, tvm.AlexNet):
        pass

    class VGG(_TorchvisionInterface, tvm.VGG):
        pass

    return AlexNet, VGG


def _check_min_size(name: str, size: tuple[int, int], minimum: int) -> None:
    if min(size) < minimum:
        raise ValueError(
            f"{name} needs inputs of at least {minimum}x{minimum}, got {size[0]}x{size[1]}"
        )


@register_model(
    input_size=(3, 224, 224), num_classes=1000, family="classic", year=2012,
    result="ImageNet (ILSVRC-2012): 15.3% top-5 error vs 26.2% for the runner-up",
)  # fmt: skip
def alexnet(
    in_channels: int = 3, num_classes: int = 1000, input_size=(224, 224), dropout: float = 0.5
):
    """AlexNet (Krizhevsky et al. 2012), torchvision's single-GPU layout."""
    _check_min_size("alexnet", as_size(input_size), 63)
    model = _torchvision_classes()[0](num_classes=num_classes, dropout=dropout)
    if in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2)
    return model


@register_model(
    input_size=(3, 224, 224), num_classes=1000, family="classic", year=2014,
    result="ImageNet (ILSVRC-2014): 7.3% top-5 error (VGG ensemble, 2nd in classification)",
)  # fmt: skip
def vgg16(
    in_channels: int = 3,
    num_classes: int = 1000,
    input_size=(224, 224),
    dropout: float = 0.5,
    batch_norm: bool = False,
):
    """VGG-16 (Simonyan & Zisserman 2014): thirteen 3x3 convs in five blocks, three dense layers."""
    from torchvision.models.vgg import cfgs, make_layers

    _check_min_size("vgg16", as_size(input_size), 32)
    model = _torchvision_classes()[1](
        make_layers(cfgs["D"], batch_norm=batch_norm), num_classes=num_classes, dropout=dropout
    )
    if in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
    return model
