"""What each classic network introduced, beside the numbers `cnnlab zoo` measures from code."""

from __future__ import annotations

from typing import Any

INTRODUCED = {
    "lenet5": "convolutions and subsampling (average pooling) learned end to end by "
    "backpropagation; shared weights; tanh units; a small dense head",
    "alexnet": "ReLU (trains several times faster than tanh), dropout in the dense layers, "
    "local response normalisation (LRN), overlapping max-pooling, data augmentation, "
    "large 11x11 stride-4 first filters, training on GPUs",
    "vgg16": "stacks of 3x3 convolutions only (two see 5x5, three see 7x7, with fewer "
    "parameters and more non-linearities), depth 16, one uniform design",
    "keras_mnist_cnn": "the brief's first CNN: two 3x3 conv + max-pool stages, dropout, Dense",
    "torch_mnist_net": "the brief's PyTorch net: 'same' padding keeps 28x28 until each pool",
    "keras_cifar10_cnn": "the brief's CIFAR-10 CNN: VGG-style pairs of 3x3 convs with dropout",
    "fastnet": "cnnlab's speed net: pool before BatchNorm and ReLU (a quarter of the pixels)",
    "efficientnet_lite0": "depthwise-separable inverted residual blocks scaled by compound "
    "scaling (EfficientNet, 2019); the Lite variant drops squeeze-excitation and uses ReLU6",
}


def architecture_rows(names: list[str]) -> list[dict[str, Any]]:
    """`cnnlab zoo`'s comparison (measured from code) with what each network introduced."""
    from cnnlab.anatomy.compare import compare_models

    rows = []
    for r in compare_models(names):
        rows.append({
            "model": r.name, "year": r.year or "", "introduced": INTRODUCED.get(r.name, ""),
            "input": r.input, "conv/fc": f"{r.conv_layers}/{r.fc_layers}",
            "filters": ", ".join(r.filter_sizes), "params": r.params, "mult_adds": r.mult_adds,
            "final RF": r.receptive_field, "result": r.result,
        })  # fmt: skip
    return rows
