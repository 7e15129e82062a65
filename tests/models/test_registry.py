"""Every registered model builds by name, runs forward and backward, and has its documented size."""

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import count_params, create_model, get_entry, list_models
from cnnlab.models.base import tta_logits

# the brief's counts (SPEC points 5-9, issue 2) at native inputs
DOCUMENTED = {
    "keras_mnist_cnn": 225_034,
    "torch_mnist_net": 421_642,
    "keras_cifar10_cnn": 1_250_858,
    "keras_folder_cnn": 19_034_177,
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
}

# small inputs that still exercise every layer
TINY = {"alexnet": (3, 64, 64), "vgg16": (3, 32, 32), "keras_folder_cnn": (3, 48, 48)}


def test_documented_parameter_counts():
    for name, expected in DOCUMENTED.items():
        with torch.device("meta"):
            model = create_model(name)
        assert count_params(model) == expected, name


@pytest.mark.parametrize("name", [e.name for e in list_models() if e.family != "transfer"])
def test_forward_and_backward_on_a_tiny_input(name):
    entry = get_entry(name)
    c, h, w = TINY.get(name, entry.input_size)
    torch.manual_seed(0)
    model = create_model(name, in_channels=c, num_classes=3, input_size=(h, w))
    x = torch.randn(2, c, h, w)
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert hasattr(model, "forward_features") and hasattr(model, "forward_head")
    model.eval()
    with torch.no_grad():
        logits = model.forward_head(model.forward_features(x))
        if getattr(model, "tta", "none") != "none":  # test-time augmentation in eval mode
            plain = lambda z: model.forward_head(model.forward_features(z))  # noqa: E731
            assert torch.allclose(tta_logits(plain, x, model.tta), model(x), atol=1e-5)
            model.tta = "none"
        assert torch.allclose(logits, model(x), atol=1e-5)


def test_input_size_and_channels_are_honoured():
    model = create_model("keras_mnist_cnn", in_channels=3, num_classes=5, input_size=(32, 32))
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    # flatten width follows the input size: (32-2)/2=15 -> (15-2)/2=6 -> 6*6*64
    assert model.head.dense1.in_features == 6 * 6 * 64
    lenet = create_model("lenet5", input_size=(28, 28))
    assert lenet.features.c1.padding == (2, 2)
    assert count_params(lenet) == 61_706


def test_unknown_arguments_are_refused_with_the_valid_ones():
    with pytest.raises(CnnlabError) as e:
        create_model("keras_mnist_cnn", widht=3)
    assert "no argument 'widht'" in str(e.value)
    for arg in ("in_channels", "num_classes", "input_size", "dropout"):
        assert arg in str(e.value)


def test_unknown_model_and_bad_sizes():
    with pytest.raises(CnnlabError, match="unknown model 'kerass_mnist'"):
        create_model("kerass_mnist")
    with pytest.raises(CnnlabError, match="too small"):
        create_model("keras_cifar10_cnn", input_size=(8, 8))
    with pytest.raises(CnnlabError, match="at least 63x63"):
        create_model("alexnet", input_size=(32, 32))


def test_fastnet_shifts_its_test_views():
    model = create_model("fastnet", widths=[8, 16], kernel_size=3, padding="same", tta="translate")
    model.eval()
    x = torch.randn(3, 1, 28, 28)
    plain = lambda z: model.forward_head(model.forward_features(z))  # noqa: E731
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    expect = 0.5 * plain(x) + 0.25 * (plain(padded[..., :28, :28]) + plain(padded[..., 2:, 2:]))
    assert torch.allclose(model(x), expect, atol=1e-5)  # no mirror images for fastnet's translate


@pytest.mark.parametrize("name", ["keras_mnist_cnn", "keras_cifar10_cnn", "keras_folder_cnn"])
def test_the_briefs_keras_models_start_from_keras_initial_weights(name):
    """Glorot-uniform kernels (bound sqrt(6 / (fan_in + fan_out)), spread over it) and zero
    biases, as Keras's Conv2D and Dense start; the PyTorch net of point 8 keeps PyTorch's."""
    import math

    import torch.nn as nn

    layers = [m for m in create_model(name).modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for m in layers:
        w, b = m.weight.detach(), m.bias.detach()
        receptive = w[0, 0].numel() if w.dim() == 4 else 1
        bound = math.sqrt(6 / ((w.shape[1] + w.shape[0]) * receptive))
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
        assert float(b.abs().max()) == 0.0
    torch_net = create_model("torch_mnist_net")
    assert any(
        float(m.bias.detach().abs().max()) > 0
        for m in torch_net.modules()
        if isinstance(m, nn.Linear)
    )


def test_dropout_keeps_a_share_and_scales_like_torch():
    """models.base.Dropout (a faster mask) behaves as nn.Dropout: about 1 - p kept, each kept
    value scaled by 1 / (1 - p), the gradient through the same mask, nothing in eval mode."""
    from cnnlab.models.base import Dropout

    drop = Dropout(0.25).train()
    x = torch.ones(400, 500, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75))
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("name", ["keras_mnist_cnn", "keras_cifar10_cnn", "torch_mnist_net"])
def test_relu_then_max_pool_runs_pooled_first_with_the_same_values_and_gradients(name):
    """Layers pools before rectifying (cheaper, exact); a copy run as plain nn.Sequential in
    the written order must agree bit for bit, in values and in every gradient."""
    import copy

    size = get_entry(name).input_size
    torch.manual_seed(0)
    model = create_model(name).train()
    plain = copy.deepcopy(model)
    plain.features = torch.nn.Sequential(*plain.features)
    x = torch.randn(4, *size)
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)  # same dropout draws
    expected = plain(x)
    assert torch.equal(out, expected)
    out.square().sum().backward()
    expected.square().sum().backward()
    for (pname, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), pname
    # the swap happened: the feature stack's last operation is the ReLU, not the pooling
    model.eval(), plain.eval()  # (no dropout after them)
    assert "Relu" in model.features(x).grad_fn.name()
    assert "MaxPool" in plain.features(x).grad_fn.name()


def test_watched_or_traced_layers_run_in_the_written_order():
    """A hook on a layer sees that layer's own output (the 26x26 map after relu1, not a
    pooled one), and torch.fx traces the net as written, so feature maps and code agree."""
    model = create_model("keras_mnist_cnn").eval()
    seen = {}
    handle = model.features.relu1.register_forward_hook(lambda m, a, o: seen.update(relu1=o.shape))
    with torch.no_grad():
        model(torch.randn(2, 1, 28, 28))
    handle.remove()
    assert tuple(seen["relu1"]) == (2, 32, 26, 26)
    traced = [n.target for n in torch.fx.symbolic_trace(model.features).graph.nodes]
    assert traced.index("relu1") < traced.index("pool1")
