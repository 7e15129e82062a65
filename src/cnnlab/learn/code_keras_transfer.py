"""The Keras script of a transfer-learning recipe: a `keras.applications` backbone, frozen as
the recipe says, and the recipe's head. Keras has no EfficientNet-Lite: its EfficientNetB0..B2
(the same family, with squeeze-excitation and swish) stand in, named as such in the script."""

from __future__ import annotations

from cnnlab.errors import CnnlabError
from cnnlab.learn.code_text import literal

APPLICATIONS = {  # cnnlab model -> keras.applications class (EfficientNets rescale inside)
    "efficientnet_lite0": "EfficientNetB0",
    "efficientnet_lite1": "EfficientNetB1",
    "efficientnet_lite2": "EfficientNetB2",
}


def transfer_model(source, ops: list[str]) -> str:
    """build_model() for a transfer recipe; a backbone Keras does not ship is a CnnlabError."""
    app = APPLICATIONS.get(source.model_name)
    if app is None:
        raise CnnlabError(
            f"{source.model_name} is not a plain stack of layers ({source.why_not_plain}) and "
            f"keras.applications has no counterpart cnnlab maps it to (it maps "
            f"{', '.join(APPLICATIONS)}); use --framework pytorch"
        )
    args = source.model_args
    hidden, dropout = int(args.get("hidden", 128)), float(args.get("dropout", 0.5))
    frozen = args.get("freeze", "all") == "all"
    out = (
        '1, activation="sigmoid"'
        if source.binary
        else f'{source.num_outputs}, activation="softmax"'
    )
    lines = [
        "# ImageNet weights: downloaded by Keras itself on the first run (about 20 MB, into",
        "# ~/.keras/models; needs the network once). WEIGHTS = None trains from scratch.",
        'WEIGHTS = "imagenet"',
        "",
        "",
        "def build_model():",
        f'    """{app} (Keras has no {source.model_name}: the nearest of its family), frozen, then',
        '    global average pooling and the head of the brief."""',
        f"    base = keras.applications.{app}(include_top=False, weights=WEIGHTS,",
        '                                        input_shape=(*IMAGE_SIZE, 3), pooling="avg")',
        f"    base.trainable = {not frozen}  # the recipe's freeze: {literal(args.get('freeze', 'all'))[:40]}",
        "    inputs = keras.Input(shape=(*IMAGE_SIZE, CHANNELS))",
        "    x = inputs",
        *[f"    x = {op}(x)" for op in ops],
        "    # back to 0-255 pixels: the EfficientNets rescale and normalise inside",
        "    x = layers.Rescaling(np.asarray(STD, np.float32) * 255, np.asarray(MEAN, np.float32) * 255)(x)",
        "    if CHANNELS == 1:  # ImageNet filters read RGB",
        "        x = layers.Concatenate()([x, x, x])",
        "    x = base(x, training=False)",
        f'    x = layers.Dense({hidden}, activation="relu")(x)',
        f"    x = layers.Dropout({dropout:g})(x)",
        f"    outputs = layers.Dense({out})(x)",
        f'    return keras.Model(inputs, outputs, name="{app.lower()}_transfer")',
    ]
    return "\n".join(lines)
