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


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test are dropped after it."""
    from cnnlab.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def _tiny(num_classes: int = 2) -> torch.nn.Module:
    return torch.nn.Linear(4, num_classes)


def test_a_second_builder_under_a_taken_name_is_refused_naming_both(scratch_registry):
    from cnnlab.models import register_model

    def fastnet(num_classes: int = 2):  # an unrelated builder that happens to share the name
        return _tiny(num_classes)

    original = get_entry("fastnet").builder
    with pytest.raises(CnnlabError) as e:
        register_model()(fastnet)
    assert "'fastnet' is taken" in str(e.value)
    assert "cnnlab.models.fast.fastnet" in str(e.value)  # the first builder
    assert f"{__name__}.{fastnet.__qualname__}" in str(e.value)  # the second
    assert get_entry("fastnet").builder is original  # nothing was replaced
    register_model(name="scratch_net")(_tiny)
    register_model(name="scratch_net")(_tiny)  # the same builder again (a reload) is no clash
    with pytest.raises(CnnlabError, match="'scratch_net' is taken"):
        register_model(name="scratch_net")(lambda num_classes=2: _tiny(num_classes))


def test_a_name_a_resolver_answers_is_refused(scratch_registry):
    from cnnlab.models import register_model

    with pytest.raises(CnnlabError, match="'timm/resnet18' is a name .*resolve"):
        register_model(name="timm/resnet18")(_tiny)
    assert get_entry("timm/resnet18").family == "transfer"  # still the resolver's


def test_a_module_dropped_into_the_package_registers_its_models(tmp_path):
    """Found by the package's own import, with nothing added to models/__init__.py: the
    package is imported with one more folder on its path, holding one new module."""
    import subprocess
    import sys

    (tmp_path / "dropped_in.py").write_text(
        "import torch.nn as nn\nfrom cnnlab.models.registry import register_model\n\n\n"
        "@register_model(input_size=(1, 8, 8), num_classes=2)\n"
        "def dropped_net(num_classes: int = 2):\n"
        '    """A model no list names."""\n'
        "    return nn.Linear(64, num_classes)\n"
    )
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.find_spec('cnnlab.models')\n"
        f"spec.submodule_search_locations.append({str(tmp_path)!r})\n"
        "package = importlib.util.module_from_spec(spec)\n"
        "sys.modules['cnnlab.models'] = package\n"
        "spec.loader.exec_module(package)\n"
        "entry = package.get_entry('dropped_net')\n"
        "print(entry.builder.__module__, entry.description, len(package.list_models()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    module, *words, count = done.stdout.split()
    assert module == "cnnlab.models.dropped_in" and " ".join(words) == "A model no list names."
    assert int(count) == len(list_models()) + 1  # every shipped model as well


def test_every_module_of_the_package_is_imported_with_it():
    import pkgutil
    import sys

    import cnnlab.models as package

    names = [m.name for m in pkgutil.iter_modules(package.__path__)]
    assert {"cifarnet", "classic", "fast", "transfer"} <= set(names)
    assert all(f"cnnlab.models.{name}" in sys.modules for name in names)
    assert {e.builder.__module__ for e in list_models()} <= {f"cnnlab.models.{n}" for n in names}
