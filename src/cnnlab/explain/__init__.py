"""See what a CNN learned: filter grids, feature maps and Grad-CAM, as arrays and figures only
(the CLI writes them as PNGs; the app shows them)."""

from cnnlab.explain.capture import capture_outputs, resolve_layer
from cnnlab.explain.feature_maps import feature_map_grid, feature_maps, plot_feature_maps
from cnnlab.explain.filters import conv_weight, filter_grid, plot_filters
from cnnlab.explain.gallery import explain_to_files, gradcam_image
from cnnlab.explain.gradcam import (
    GradCam,
    bundle_cam_layer,
    default_layer,
    gradcam,
    overlay_heatmap,
    plot_gradcam,
)

__all__ = [
    "GradCam", "bundle_cam_layer", "capture_outputs", "conv_weight", "default_layer", "explain_to_files",
    "feature_map_grid", "feature_maps", "filter_grid", "gradcam", "gradcam_image",
    "overlay_heatmap", "plot_feature_maps", "plot_filters", "plot_gradcam", "resolve_layer",
]  # fmt: skip
