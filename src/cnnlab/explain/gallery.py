"""`cnnlab explain` as one library call: filters, feature maps and Grad-CAM written as PNGs.

Images are read with the target's `Preprocess.load` (a bundle's own), so the model sees
exactly what it saw in training; layer names are the ones `cnnlab summary` prints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.anatomy.summary import Summary, summarize
from cnnlab.anatomy.target import Target
from cnnlab.data.images import ImageReadError
from cnnlab.errors import CnnlabError
from cnnlab.explain.capture import resolve_layer
from cnnlab.explain.feature_maps import feature_map_grid, feature_maps, plot_feature_maps
from cnnlab.explain.filters import conv_weight, filter_grid, plot_filters
from cnnlab.explain.gradcam import GradCam, gradcam, plot_gradcam
from cnnlab.report.figures import save_figure

DPI = 110  # the explain PNGs' resolution (training's charts use 100)


def load_input(
    target, image: str | Path | bytes | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 (C, H, W) as the model sees it, normalised float batch (1, C, H, W)). `image` is a
    file, its bytes, or pixels decoded already (a prediction's `pixels`: not read again)."""
    if isinstance(image, torch.Tensor):
        pixels = image
    else:
        try:
            pixels = target.preprocess.load(image)
        except ImageReadError as e:
            raise CnnlabError(f"{'upload' if isinstance(image, bytes) else image}: {e}") from None
    param = next(target.model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return pixels, target.preprocess.normalize(pixels[None].to(device))


def class_index(target, label: str | None) -> int | None:
    """A class by name (bundle classes) or by number; None means the predicted class."""
    if label is None:
        return None
    if target.classes and label in target.classes:
        return target.classes.index(label)
    if label.lstrip("-").isdigit():
        return int(label)
    known = ", ".join(target.classes) if target.classes else "a class number"
    raise CnnlabError(f"unknown class {label!r}; use one of: {known}")


def predicted_class(target, pixels: torch.Tensor) -> int | None:
    """The class the bundle's own decision rule picks (its threshold, for binary bundles)."""
    bundle = getattr(target, "bundle", None) or (
        target if hasattr(target, "predict_proba") else None
    )
    if bundle is None:
        return None  # a bare model: Grad-CAM takes the top logit
    return int(bundle.decision.predict(bundle.predict_proba(pixels[None]))[0])


def gradcam_image(
    target,
    image: str | Path | bytes | torch.Tensor,
    layer: str | None = None,
    label: str | None = None,
) -> tuple[np.ndarray, GradCam]:
    """For the app and API: a file, upload or decoded input through the bundle's preprocessing,
    then Grad-CAM.

    `target` is a Bundle or a Target. Returns the image as the model saw it (uint8 H x W x C,
    grey stays one channel) and the Grad-CAM result (heatmap in [0, 1] at that size).
    """
    pixels, x = load_input(target, image)
    cls = class_index(target, label)
    if cls is None:
        cls = predicted_class(target, pixels)
    result = gradcam(target.model, x, layer, cls)
    return pixels.permute(1, 2, 0).cpu().numpy(), result


def _file_name(kind: str, layer: str) -> str:
    return f"{kind}_{layer.replace('#', '_call')}.png"


def spatial_layers(summary: Summary) -> list[str]:
    """Layers whose output is a stack of maps (a 1x1 'map' after global pooling is not one)."""
    return [
        r.name for r in summary.rows if len(r.output_shape) == 3 and r.output_shape[1:] != (1, 1)
    ]


def explain_to_files(
    target: Target,
    image: str | Path | None,
    out_dir: str | Path,
    filters: str | None = None,
    maps: str | None = None,
    cam: bool = False,
    cam_layer: str | None = None,
    cam_class: str | None = None,
    max_maps: int = 64,
) -> list[Path]:
    """Write the asked-for PNGs into `out_dir`; every bad name or file fails before any writing."""
    if not (filters or maps or cam):
        raise CnnlabError(
            "nothing to explain: give --filters LAYER, --feature-maps LAYER|all or --gradcam"
        )
    if (maps or cam) and image is None:
        raise CnnlabError("feature maps and Grad-CAM need an IMAGE")
    summary = summarize(target.model, target.input_shape, target.name)
    names = summary.layer_names()
    rows = {r.name: r for r in summary.rows}
    filter_layer = resolve_layer(names, filters) if filters else None
    if maps == "all":
        map_layers = spatial_layers(summary)
    else:
        map_layers = [resolve_layer(names, maps)] if maps else []
    for name in map_layers:
        if len(rows[name].output_shape) != 3:
            raise CnnlabError(
                f"layer {name!r} outputs a vector ({rows[name].shape_text}), not feature maps; "
                f"layers with maps: {', '.join(spatial_layers(summary)[:30])}"
            )
    if cam_layer:
        cam_layer = resolve_layer(names, cam_layer)
        if len(rows[cam_layer].output_shape) != 3:
            raise CnnlabError(f"layer {cam_layer!r} has no spatial output for Grad-CAM")
    cls = class_index(target, cam_class) if cam else None
    weight = conv_weight(target.model, filter_layer) if filter_layer else None
    pixels = x = None
    if image is not None and (maps or cam):
        pixels, x = load_input(target, image)
    out = Path(out_dir)
    written: list[Path] = []
    if weight is not None and filter_layer:
        first_conv = next((r.name for r in summary.rows if r.type.startswith("Conv")), None)
        rgb = filter_layer == first_conv and weight.shape[1] == 3 and target.input_shape[0] == 3
        grid = filter_grid(weight, filter_layer, rgb=rgb)
        written.append(
            save_figure(plot_filters(grid), out / _file_name("filters", filter_layer), DPI)
        )
    if map_layers and x is not None:
        for name, fmap in feature_maps(target.model, x, map_layers).items():
            fig = plot_feature_maps(feature_map_grid(fmap, name, max_maps), rows[name].type)
            written.append(save_figure(fig, out / _file_name("feature_maps", name), DPI))
    if cam and x is not None and pixels is not None:
        if cls is None:
            cls = predicted_class(target, pixels)
        result = gradcam(target.model, x, cam_layer, cls)
        classes = target.classes
        label = classes[result.class_index] if classes and result.class_index < len(classes) else str(result.class_index)  # fmt: skip
        fig = plot_gradcam(pixels.cpu().numpy(), result, label)
        written.append(save_figure(fig, out / "gradcam.png", DPI))
    return written
