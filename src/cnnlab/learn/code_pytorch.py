"""A complete PyTorch training script: the model as a plain `nn.Module`, the recipe's data
loading, augmentation, optimiser, schedule and training loop, in one readable file."""

from __future__ import annotations

from cnnlab.learn.code_data import LOAD, READERS, TORCH_NAMED, normalisation
from cnnlab.learn.code_text import literal, model_word
from cnnlab.learn.plain_layers import PlainLayer, PlainModel

HEAD_KINDS = ("flatten", "adaptive_avg", "adaptive_max", "linear")


def _hw(v: tuple[int, int]) -> str:
    return str(v[0]) if v[0] == v[1] else f"({v[0]}, {v[1]})"


def shape_text(shape: tuple[int, ...]) -> str:
    """Keras order, as `cnnlab summary` prints it: 26x26x32 for a map, 1600 for a vector."""
    dims = (*shape[1:], shape[0]) if len(shape) == 3 else shape
    return "x".join(map(str, dims))


def torch_layer(layer: PlainLayer) -> str:
    a = layer.args
    k = layer.kind
    if k == "conv":
        parts = [str(a["in"]), str(a["out"]), f"kernel_size={_hw(a['kernel'])}"]
        if a["stride"] != (1, 1):
            parts.append(f"stride={_hw(a['stride'])}")
        pad = a["padding"]
        if isinstance(pad, str):
            parts.append(f"padding={pad!r}")
        elif pad != (0, 0):
            parts.append(f"padding={_hw(pad)}")
        if a["dilation"] != (1, 1):
            parts.append(f"dilation={_hw(a['dilation'])}")
        if a["groups"] != 1:
            parts.append(f"groups={a['groups']}")
        if not a["bias"]:
            parts.append("bias=False")
        return f"nn.Conv2d({', '.join(parts)})"
    if k in ("maxpool", "avgpool"):
        parts = [_hw(a["kernel"])]
        if a["stride"] != a["kernel"]:
            parts.append(f"stride={_hw(a['stride'])}")
        if a["padding"] != (0, 0):
            parts.append(f"padding={_hw(a['padding'])}")
        if a["ceil_mode"]:
            parts.append("ceil_mode=True")
        return f"nn.{'MaxPool2d' if k == 'maxpool' else 'AvgPool2d'}({', '.join(parts)})"
    if k in ("adaptive_avg", "adaptive_max"):
        return f"nn.Adaptive{'Avg' if k == 'adaptive_avg' else 'Max'}Pool2d({_hw(a['size'])})"
    if k == "bn":
        extra = "" if a["eps"] == 1e-5 else f", eps={a['eps']}"
        extra += "" if a["momentum"] == 0.1 else f", momentum={a['momentum']}"
        return f"nn.BatchNorm2d({a['features']}{extra})"
    if k == "act":
        names = {"relu": "ReLU()", "tanh": "Tanh()", "sigmoid": "Sigmoid()", "gelu": "GELU()",
                 "silu": "SiLU()", "relu6": "ReLU6()"}  # fmt: skip
        if a["fn"] == "leaky_relu":
            return f"nn.LeakyReLU({a['slope']})"
        return f"nn.{names[a['fn']]}"
    if k == "dropout":
        return f"nn.{'Dropout2d' if a['spatial'] else 'Dropout'}({a['p']})"
    if k == "flatten":
        return "nn.Flatten()"
    if k == "linear":
        return f"nn.Linear({a['in']}, {a['out']}{'' if a['bias'] else ', bias=False'})"
    if k == "lrn":
        return (
            f"nn.LocalResponseNorm({a['size']}, alpha={a['alpha']}, beta={a['beta']}, k={a['k']})"
        )
    raise ValueError(f"no PyTorch text for {k}")  # pragma: no cover - plain_layers checks kinds


def _layer_lines(layers: list[PlainLayer], indent: str) -> list[str]:
    lines = []
    for layer in layers:
        note = shape_text(layer.out_shape)
        if layer.params:
            note += f", {layer.params:,} params"
        lines.append(f"{indent}{torch_layer(layer)},  # {note}")
    return lines


def model_class(plain: PlainModel) -> str:
    """`class Net(nn.Module)` with a `features` and a `head` Sequential, shapes in comments."""
    split = next(
        (i for i, la in enumerate(plain.layers) if la.kind in HEAD_KINDS), len(plain.layers)
    )
    features, head = plain.layers[:split], plain.layers[split:]
    c, h, w = plain.input_shape
    lines = [
        "class Net(nn.Module):",
        f'    """{model_word(plain.name)}, layer for layer: input {h}x{w}x{c}, '
        f'{plain.params:,} parameters."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
        "        self.features = nn.Sequential(",
        *_layer_lines(features, " " * 12),
        "        )",
        "        self.head = nn.Sequential(",
        *_layer_lines(head, " " * 12),
        "        )",
        "",
        "    def forward(self, x):",
        "        return self.head(self.features(x))",
    ]
    return "\n".join(lines)


def library_model(source) -> str:
    """For a model that is not a plain stack (skip connections, pretrained backbones)."""
    return "\n".join([
        "from cnnlab import create_model  # noqa: E402",
        "",
        f"NOT_PLAIN = {literal(source.why_not_plain)}  # why the layers are not spelt out",
        "",
        "",
        "class Net(nn.Module):",
        f'    """{model_word(source.model_name)}: not a plain stack of layers (NOT_PLAIN says why),',
        '    so cnnlab builds it (`pip install cnnlab`); `cnnlab summary` shows its layers."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
        f"        self.net = create_model({literal(source.model_name)}, "
        f"**{literal(source.model_args)})",
        "",
        "    def forward(self, x):",
        "        return self.net(x)",
    ])  # fmt: skip


def augmentation(aug, size) -> tuple[str, list[str]]:
    """(the transform's source, comments on what has no torchvision equivalent)."""
    ops, notes = [], []
    if aug.random_crop:
        ops.append(
            f"v2.RandomCrop({list(size)}, padding={aug.random_crop}, padding_mode='reflect')"
        )
    affine = []
    if aug.rotation_range:
        affine.append(f"degrees={aug.rotation_range:g}")
    if aug.width_shift_range or aug.height_shift_range:
        affine.append(f"translate=({aug.width_shift_range:g}, {aug.height_shift_range:g})")
    zoom = aug.zoom_range
    if zoom:
        lo, hi = (1 - zoom, 1 + zoom) if isinstance(zoom, float | int) else zoom
        affine.append(f"scale=({lo:g}, {hi:g})")
    if aug.shear_range:
        affine.append(f"shear={aug.shear_range:g}")
    if affine:
        if not aug.rotation_range:
            affine.insert(0, "degrees=0")
        ops.append(f"v2.RandomAffine({', '.join(affine)})")
        if aug.fill_mode != "constant":
            notes.append(f"fill_mode {aug.fill_mode!r}: torchvision fills uncovered pixels with 0 "
                         "(the mean, after normalising)")  # fmt: skip
    if aug.horizontal_flip:
        ops.append("v2.RandomHorizontalFlip()")
        if aug.horizontal_flip == "alternate":
            notes.append("horizontal_flip alternate: cnnlab mirrors each image in every other "
                         "epoch; this script flips at random")  # fmt: skip
    if aug.vertical_flip:
        ops.append("v2.RandomVerticalFlip()")
    if aug.brightness_range:
        notes.append("brightness_range is left out here (cnnlab applies it before normalising)")
    if aug.cutout:
        notes.append("cutout is left out here")
    if not ops:
        return "None", notes
    inner = ",\n    ".join(ops)
    return f"v2.Compose([\n    {inner},\n])", notes


MUON_NOTE = "  # cnnlab trained the conv filters with Muon (cnnlab.train.optim.Muon)"


def _optimizer(t) -> str:
    if t.optimizer in ("sgd", "muon"):
        sgd = (f"torch.optim.SGD(model.parameters(), lr=LR, momentum={t.momentum:g}, "
               f"nesterov={t.nesterov}, weight_decay={t.weight_decay:g})")  # fmt: skip
        return sgd + (MUON_NOTE if t.optimizer == "muon" else "")
    name = "Adam" if t.optimizer == "adam" else "AdamW"
    return f"torch.optim.{name}(model.parameters(), lr=LR, weight_decay={t.weight_decay:g})"


def _schedule(t) -> str:
    if t.schedule == "onecycle":
        return (f"torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps, "
                f"pct_start={t.warmup_fraction:g})")  # fmt: skip
    if t.schedule == "cosine":
        return "torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)"
    if t.schedule == "step":
        return (f"torch.optim.lr_scheduler.StepLR(optimizer, step_size={t.step_size} * "
                f"len(train_loader), gamma={t.gamma:g})")  # fmt: skip
    return "None"


def settings(source, size_note: str = "") -> str:
    r = source.recipe
    d, t = r.data, r.train
    mean, std, how = normalisation(d.normalize, source.channels, d.mean, d.std)
    return "\n".join([
        f"MADE_FROM = {literal(source.what)}  # what `cnnlab code` was given",
        f"DESCRIPTION = {literal((r.description or '').strip())}",
        f"DATA = {literal(d.source)}  # a dataset name (mnist, fashion-mnist, cifar10) or a folder",
        f"IMAGE_SIZE = {literal(tuple(source.size))}  # (height, width){size_note}",
        f"CHANNELS = {source.channels}",
        f"MEAN, STD = {mean}, {std}  # {how}",
        f"VAL_FRACTION = {d.val_fraction:g}  # held out for validation",
        f"BINARY = {source.binary}  # one sigmoid output" if source.binary else
        f"BINARY = {source.binary}  # {source.num_outputs} classes, softmax",
        f"BATCH_SIZE = {t.batch_size}",
        f"EPOCHS = {t.epochs}",
        f"LR = {t.lr:g}",
        f"SEED = {t.seed}",
    ])  # fmt: skip


def header(framework: str, model_name: str, params: int, run: str) -> str:
    """The module docstring: fixed sentences only. What the script was made from, its data and
    the recipe's description are the MADE_FROM, DATA and DESCRIPTION settings below it."""
    return "\n".join([
        f'"""{model_word(model_name)} in {framework}: a training script written by `cnnlab code`.',
        "",
        "MADE_FROM (below) names the recipe, bundle or model it was written from, DESCRIPTION",
        "holds that recipe's description, and DATA the images it trains on unless --data says",
        "otherwise.",
        "",
        f"Model: {params:,} parameters, as `cnnlab summary` counts them.",
        f"Run:   {run}",
        '"""',
    ])  # fmt: skip


def aids_left_out(t) -> list[str]:
    """cnnlab's training aids that the plain scripts leave out, named in a comment so that a
    script never passes for the whole recipe."""
    on = {"prune_easy": t.prune_easy, "lookahead": t.lookahead, "ema": t.ema,
          "freeze_after": t.freeze_after}  # fmt: skip
    names = [f"train.{k}" for k, v in on.items() if v]
    return [f"# {', '.join(names)}: cnnlab's training aids, left out here"] if names else []


RUN = "python train.py [--data PATH] [--epochs N] [--out model.pt]"


def pytorch_script(source) -> str:
    r = source.recipe
    t = r.train
    model = model_class(source.plain) if source.plain is not None else library_model(source)
    aug, notes = augmentation(r.augment, source.size)
    smoothing = f"label_smoothing={t.label_smoothing:g}" if t.label_smoothing else ""
    loss = "nn.BCEWithLogitsLoss()" if source.binary else f"nn.CrossEntropyLoss({smoothing})"
    left_out = [f"# {n}" for n in notes] + aids_left_out(t)
    if t.class_weight == "auto":
        left_out.append("# train.class_weight: auto (loss weighted by class frequency) is left out")
    if r.finetune.epochs:
        left_out.append(f"# the recipe's fine-tuning phase ({r.finetune.epochs} epochs, unfreezing "
                        f"{literal(r.finetune.unfreeze)}) is left out")  # fmt: skip
    parts = [
        header("PyTorch", source.model_name, source.params, RUN),
        "",
        "import argparse\nimport gzip\nimport struct\nfrom pathlib import Path\n",
        "import numpy as np\nimport torch\nimport torch.nn as nn\nfrom PIL import Image",
        "from torch.utils.data import DataLoader, TensorDataset\nfrom torchvision.transforms import v2",
        "\n\n# ---------------------------------------------------------------- settings (the recipe)",
        settings(source),
        f"AUGMENT = {aug}",
        *left_out,
        "\n\n# ---------------------------------------------------------------- data",
        READERS.strip("\n"),
        "\n",
        TORCH_NAMED.strip("\n"),
        "\n",
        LOAD.strip("\n"),
        "\n\n# ---------------------------------------------------------------- model",
        model,
        "\n\n# ---------------------------------------------------------------- training",
        TRAIN.strip("\n")
        .replace("{optimizer}", _optimizer(t))
        .replace("{schedule}", _schedule(t))
        .replace("{loss}", loss),  # fmt: skip
        "",
    ]
    return "\n".join(parts)


TRAIN = """
def accuracy(model, loader):
    model.eval()
    right = total = 0
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb)
            pred = (logits[:, 0] > 0).long() if BINARY else logits.argmax(1)
            right += int((pred == yb).sum())
            total += len(yb)
    return right / max(total, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help="a dataset name or a folder")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", help="save the trained weights here (a .pt file)")
    args = parser.parse_args()
    torch.manual_seed(SEED)

    x, y, classes = load_data(args.data)
    order = np.random.default_rng(SEED).permutation(len(x))  # a seeded validation split
    n_val = int(round(len(x) * VAL_FRACTION))
    val, train = order[:n_val], order[n_val:]
    x = normalise(x, x[train])
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    labels = torch.from_numpy(y)
    train_loader = DataLoader(TensorDataset(images[train], labels[train]),
                              batch_size=BATCH_SIZE, shuffle=True)
    val_loader = DataLoader(TensorDataset(images[val], labels[val]), batch_size=256)
    print(f"{len(train)} training and {len(val)} validation images, classes {classes}")

    model = Net()
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    optimizer = {optimizer}
    steps = args.epochs * len(train_loader)
    scheduler = {schedule}
    loss_fn = {loss}

    for epoch in range(args.epochs):
        model.train()
        seen, loss_sum = 0, 0.0
        for xb, yb in train_loader:
            if AUGMENT is not None:
                xb = torch.stack([AUGMENT(img) for img in xb])
            logits = model(xb)
            loss = loss_fn(logits[:, 0], yb.float()) if BINARY else loss_fn(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            seen += len(yb)
            loss_sum += loss.item() * len(yb)
        val_text = f", val accuracy {accuracy(model, val_loader):.4f}" if len(val) else ""
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss_sum / seen:.4f}{val_text}")
    if args.out:
        torch.save(model.state_dict(), args.out)
        print(f"weights saved to {args.out}")


if __name__ == "__main__":
    main()
"""
