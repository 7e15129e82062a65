"""A complete Keras 3 script: the model as a `keras.Sequential` (brief style: activations folded
into Conv2D/Dense, softmax or sigmoid on the last Dense), the recipe's data, augmentation
layers, optimiser, schedule and `model.fit`. Runs on any Keras backend (torch by default)."""

from __future__ import annotations

from cnnlab.anatomy.arithmetic import conv_output_size
from cnnlab.errors import CnnlabError
from cnnlab.learn.code_data import KERAS_NAMED, LOAD, READERS
from cnnlab.learn.code_pytorch import aids_left_out, header, settings, shape_text
from cnnlab.learn.code_text import literal, model_word
from cnnlab.learn.plain_layers import PlainLayer, PlainModel

FOLDABLE = {"relu", "tanh", "sigmoid", "gelu", "silu", "relu6"}


def _hw(v: tuple[int, int]) -> str:
    return str(v[0]) if v[0] == v[1] else f"({v[0]}, {v[1]})"


def _conv_padding(a: dict) -> tuple[str | None, str]:
    """(a ZeroPadding2D to put before, the Conv2D's padding) for PyTorch's padding."""
    pad = a["padding"]
    if pad == "valid" or pad == (0, 0):
        return None, "valid"
    if pad == "same":
        return None, "same"
    k_eff = [d * (k - 1) + 1 for d, k in zip(a["dilation"], a["kernel"], strict=True)]
    if a["stride"] == (1, 1) and all(
        ke % 2 == 1 and p == ke // 2 for ke, p in zip(k_eff, pad, strict=True)
    ):
        return None, "same"  # stride 1, odd kernel: Keras 'same' pads exactly like PyTorch
    return f"layers.ZeroPadding2D({_hw(pad)})", "valid"


def _pool_check(layer: PlainLayer) -> None:
    a = layer.args
    if a["padding"] != (0, 0):
        raise CnnlabError(f"{layer.name}: a padded pooling layer has no exact Keras equivalent")
    if a["ceil_mode"]:
        floor = tuple(conv_output_size(n, k, s) for n, k, s in
                      zip(layer.in_shape[1:], a["kernel"], a["stride"], strict=True))  # fmt: skip
        if floor != tuple(layer.out_shape[1:]):
            raise CnnlabError(f"{layer.name}: ceil_mode pooling has no exact Keras equivalent")


def keras_layers(plain: PlainModel) -> list[tuple[str, str]]:
    """(Keras layer source, comment) per layer, activations folded into the layer before."""
    out: list[tuple[str, str]] = []
    layers = plain.layers
    i = 0
    last_dense = max((j for j, la in enumerate(layers) if la.kind == "linear"), default=-1)
    while i < len(layers):
        la, a = layers[i], layers[i].args
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        fold = nxt is not None and nxt.kind == "act" and nxt.args["fn"] in FOLDABLE
        act = f', activation="{nxt.args["fn"]}"' if fold and nxt is not None else ""
        shown = nxt if fold and nxt is not None else la
        note = shape_text(shown.out_shape) + (f", {la.params:,} params" if la.params else "")
        if la.kind == "conv":
            pre, pad = _conv_padding(a)
            if pre:
                out.append((pre, shape_text((la.in_shape[0], la.in_shape[1] + 2 * a["padding"][0],
                                             la.in_shape[2] + 2 * a["padding"][1]))))  # fmt: skip
            parts = [str(a["out"]), _hw(a["kernel"])]
            if a["stride"] != (1, 1):
                parts.append(f"strides={_hw(a['stride'])}")
            if pad != "valid":
                parts.append(f'padding="{pad}"')
            if a["dilation"] != (1, 1):
                parts.append(f"dilation_rate={_hw(a['dilation'])}")
            if a["groups"] != 1:
                parts.append(f"groups={a['groups']}")
            if not a["bias"]:
                parts.append("use_bias=False")
            out.append((f"layers.Conv2D({', '.join(parts)}{act})", note))
        elif la.kind == "linear":
            final = ""
            if i == last_dense and not fold:
                final = ', activation="sigmoid"' if a["out"] == 1 else ', activation="softmax"'
            bias = "" if a["bias"] else ", use_bias=False"
            out.append((f"layers.Dense({a['out']}{bias}{act}{final})", note))
        elif la.kind in ("maxpool", "avgpool"):
            _pool_check(la)
            name = "MaxPooling2D" if la.kind == "maxpool" else "AveragePooling2D"
            stride = "" if a["stride"] == a["kernel"] else f", strides={_hw(a['stride'])}"
            out.append((f"layers.{name}({_hw(a['kernel'])}{stride})", note))
            fold = False
        elif la.kind in ("adaptive_avg", "adaptive_max"):
            avg = la.kind == "adaptive_avg"
            (h, w), size = la.in_shape[1:], a["size"]
            if size == (1, 1):
                out.append(
                    (
                        f"layers.Global{'Average' if avg else 'Max'}Pooling2D()",
                        shape_text(la.out_shape[:1]),
                    )
                )
                if nxt is not None and nxt.kind == "flatten":
                    i += 1  # Keras's global pooling already gives a vector
            elif (h, w) == size:
                pass  # adaptive pooling to the size it already has: nothing to do
            elif h % size[0] == 0 and w % size[1] == 0:
                name = "AveragePooling2D" if avg else "MaxPooling2D"
                out.append((f"layers.{name}({_hw((h // size[0], w // size[1]))})", note))
            else:
                raise CnnlabError(
                    f"{la.name}: adaptive pooling {h}x{w} -> {size} has no Keras layer"
                )
            fold = False
        elif la.kind == "bn":
            out.append((f"layers.BatchNormalization(epsilon={a['eps']:g}, momentum={1 - a['momentum']:g})",
                        shape_text(la.out_shape)))  # fmt: skip
            fold = False
        elif la.kind == "act":
            if a["fn"] == "leaky_relu":
                out.append((f"layers.LeakyReLU(negative_slope={a['slope']:g})", note))
            else:
                out.append((f'layers.Activation("{a["fn"]}")', note))
            fold = False
        elif la.kind == "dropout":
            name = "SpatialDropout2D" if a["spatial"] else "Dropout"
            out.append((f"layers.{name}({a['p']:g})", shape_text(la.out_shape)))
            fold = False
        elif la.kind == "flatten":
            out.append(("layers.Flatten()", shape_text(la.out_shape)))
            fold = False
        elif la.kind == "lrn":
            raise CnnlabError(f"{la.name}: Keras 3 has no local response normalisation layer")
        else:  # pragma: no cover - plain_layers only makes the kinds above
            raise CnnlabError(f"{la.name}: no Keras layer for {la.kind}")
        i += 2 if fold else 1
    if layers and layers[-1].kind != "linear":
        out.append(('layers.Activation("sigmoid" if BINARY else "softmax")', "probabilities"))
    return out


def augmentation_layers(aug) -> tuple[list[str], list[str]]:
    """The recipe's augmentation as Keras 3 layers, and notes on what has none."""
    ops, notes = [], []
    flips = [
        d for d, on in (("horizontal", aug.horizontal_flip), ("vertical", aug.vertical_flip)) if on
    ]
    if flips:
        ops.append(f'layers.RandomFlip("{"_and_".join(flips)}")')
    if aug.horizontal_flip == "alternate":
        notes.append("horizontal_flip alternate: cnnlab mirrors each image in every other epoch; "
                     "RandomFlip flips at random")  # fmt: skip
    fill = f"fill_mode={literal(aug.fill_mode)}"
    if aug.fill_mode == "constant":  # cval is on the 0-255 scale, the layers see normalised x
        fill += f", fill_value=float((({aug.cval:g} / 255 - MEAN[0]) / STD[0]))"
    if aug.rotation_range:
        ops.append(f"layers.RandomRotation({aug.rotation_range:g} / 360, {fill})")
    if aug.width_shift_range or aug.height_shift_range:
        ops.append(
            f"layers.RandomTranslation({aug.height_shift_range:g}, {aug.width_shift_range:g}, {fill})"
        )
    if aug.shear_range:  # ImageDataGenerator: an angle in degrees; RandomShear: its tangent
        ops.append(f"layers.RandomShear(x_factor=math.tan(math.radians({aug.shear_range:g})), "
                   f"{fill})")  # fmt: skip
    if aug.zoom_range:
        z = aug.zoom_range
        lo, hi = (-z, z) if isinstance(z, float | int) else (z[0] - 1, z[1] - 1)
        ops.append(f"layers.RandomZoom(({lo:g}, {hi:g}), {fill})")
    if aug.random_crop:
        notes.append(f"random_crop {aug.random_crop}: a random translation of up to "
                     f"{aug.random_crop} pixels; use RandomTranslation for it")  # fmt: skip
    if aug.brightness_range or aug.cutout:
        notes.append("brightness_range / cutout are left out")
    return ops, notes


def generator_mapping(aug, normalize: str) -> list[str]:
    """Every ImageDataGenerator argument and what this script does for it (Keras 3 has no
    ImageDataGenerator: preprocessing layers replace it), as comment lines."""

    def used(value) -> str:
        return f" (here {value})" if value not in (None, False, 0, 0.0, "", []) else ""

    rescale = {
        "unit": "x / 255 in normalise()",
        "symmetric": "(x / 255 - 0.5) / 0.5 in normalise()",
    }
    rows = [
        ("rescale=1./255", rescale.get(normalize, "MEAN/STD in normalise()") + f" (here {normalize})"),
        ("featurewise_center, featurewise_std_normalization",
         "normalise() with the training images' mean/std when data.normalize is dataset"
         + (" (here)" if normalize == "dataset" else "")),
        ("rotation_range", "layers.RandomRotation(degrees / 360)" + used(aug.rotation_range)),
        ("width_shift_range, height_shift_range",
         "layers.RandomTranslation(height, width)"
         + used(aug.width_shift_range or aug.height_shift_range)),
        ("shear_range (degrees)",
         "layers.RandomShear(x_factor=tan(angle)); it shears about the top-left corner where "
         "ImageDataGenerator shears about the centre (the same shear, shifted)"
         + used(aug.shear_range)),
        ("zoom_range", "layers.RandomZoom((-z, z))" + used(aug.zoom_range)),
        ("horizontal_flip, vertical_flip",
         "layers.RandomFlip" + used(aug.horizontal_flip or aug.vertical_flip)),
        ("fill_mode, cval", "fill_mode= (and fill_value=) of each layer above" + used(aug.fill_mode)),
        ("brightness_range", "left out: ImageDataGenerator multiplies, layers.RandomBrightness "
         "adds" + used(aug.brightness_range)),
        ("channel_shift_range", "not supported here (no recipe key; layers.RandomColorJitter is "
         "the nearest)"),
        ("samplewise_center, samplewise_std_normalization, zca_whitening, zca_epsilon",
         "not supported by Keras 3 layers (no recipe key either)"),
        ("validation_split", "VAL_FRACTION"),
        ("preprocessing_function, interpolation_order, data_format, dtype",
         "not used: bilinear resizing, channels last, float32"),
    ]  # fmt: skip
    out = ["# ImageDataGenerator (Keras 2) argument -> what this script does (Keras 3)"]
    out += [f"#   {arg}: {what}" for arg, what in rows]
    return out


def _optimizer(t) -> str:
    wd = f", weight_decay={t.weight_decay:g}" if t.weight_decay else ""
    if t.optimizer in ("sgd", "muon"):
        return f"keras.optimizers.SGD(learning_rate=lr, momentum={t.momentum:g}, nesterov={t.nesterov}{wd})"
    return f"keras.optimizers.{'Adam' if t.optimizer == 'adam' else 'AdamW'}(learning_rate=lr{wd})"


def _schedule(t) -> str:
    if t.schedule == "onecycle":
        return (f"keras.optimizers.schedules.CosineDecay(LR / 25, steps, warmup_target=LR, "
                f"warmup_steps=int(steps * {t.warmup_fraction:g}))  # one-cycle-like")  # fmt: skip
    if t.schedule == "cosine":
        return "keras.optimizers.schedules.CosineDecay(LR, steps)"
    if t.schedule == "step":
        return (f"keras.optimizers.schedules.ExponentialDecay(LR, {t.step_size} * steps_per_epoch, "
                f"{t.gamma:g}, staircase=True)")  # fmt: skip
    return "LR"


RUN = "KERAS_BACKEND=torch python train.py [--data PATH] [--epochs N]"


def _sequential(source, lines: list[str]) -> str:
    return "\n".join([
        "def build_model():",
        f'    """{model_word(source.model_name)} as a keras.Sequential ({source.params:,} '
        'parameters in cnnlab)."""',
        "    return keras.Sequential([",
        *lines,
        f"    ], name={literal(source.model_name)})",
    ])  # fmt: skip


def keras_script(source) -> str:
    r = source.recipe
    t = r.train
    ops, notes = augmentation_layers(r.augment)
    body = keras_layers(source.plain) if source.plain is not None else []
    h, w = source.size
    lines = [f"        keras.Input(shape=({h}, {w}, {source.channels})),"]
    if ops:
        lines.append("        # augmentation: active in model.fit only")
        lines += [f"        {op}," for op in ops]
    lines += [f"        {code},  # {note}" for code, note in body]
    left_out = generator_mapping(r.augment, r.data.normalize) if ops else []
    left_out += [f"# {n}" for n in notes] + aids_left_out(t)
    if t.label_smoothing:
        left_out.append(f"# label_smoothing {t.label_smoothing:g} is left out (sparse labels)")
    if t.class_weight == "auto":
        left_out.append("# train.class_weight: auto is left out (model.fit takes class_weight=)")
    if t.optimizer == "muon":
        left_out.append("# train.optimizer: muon is left out: cnnlab's Muon steps the conv filters "
                        "along their orthogonalised momentum; SGD here")  # fmt: skip
    loss = "binary_crossentropy" if source.binary else "sparse_categorical_crossentropy"
    if source.plain is None:  # a pretrained backbone: keras.applications, or a refusal
        from cnnlab.learn.code_keras_transfer import transfer_model

        model = transfer_model(source, ops)
    else:
        model = _sequential(source, lines)
    train = (TRAIN.strip("\n").replace("{optimizer}", _optimizer(t))
             .replace("{schedule}", _schedule(t)).replace("{loss}", loss))  # fmt: skip
    parts = [
        header("Keras 3", source.model_name, source.params, RUN),
        "",
        "import argparse\nimport gzip\nimport math\nimport os\nimport struct\nfrom pathlib import Path\n",
        'os.environ.setdefault("KERAS_BACKEND", "torch")  # or "tensorflow", "jax": any Keras 3 backend\n',
        "import keras  # noqa: E402\nimport numpy as np  # noqa: E402\nfrom keras import layers  # noqa: E402",
        "from PIL import Image  # noqa: E402",
        "\n\n# ---------------------------------------------------------------- settings (the recipe)",
        settings(source),
        *left_out,
        "\n\n# ---------------------------------------------------------------- data",
        READERS.strip("\n"),
        "\n",
        KERAS_NAMED.strip("\n"),
        "\n",
        LOAD.strip("\n"),
        "\n\n# ---------------------------------------------------------------- model",
        model,
        "\n\n# ---------------------------------------------------------------- training",
        train,
        "",
    ]
    return "\n".join(parts)


TRAIN = """
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help="a dataset name or a folder")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", help="save the trained model here (a .keras file)")
    args = parser.parse_args()
    keras.utils.set_random_seed(SEED)

    x, y, classes = load_data(args.data)
    order = np.random.default_rng(SEED).permutation(len(x))  # shuffled once: validation_split
    x, y = x[order], y[order]                                # takes the last VAL_FRACTION
    n_train = len(x) - int(len(x) * VAL_FRACTION)
    x = normalise(x, x[:n_train])
    print(f"{len(x)} images ({VAL_FRACTION:g} held out for validation), classes {classes}")

    model = build_model()
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    print(f"parameters: {trainable:,}")
    steps_per_epoch = math.ceil(n_train / BATCH_SIZE)
    steps = args.epochs * steps_per_epoch
    lr = {schedule}
    model.compile(optimizer={optimizer}, loss="{loss}",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=args.epochs,
              validation_split=VAL_FRACTION if n_train < len(x) else 0.0, verbose=2)
    if args.out:
        model.save(args.out)
        print(f"model saved to {args.out}")


if __name__ == "__main__":
    main()
"""
