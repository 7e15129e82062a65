"""Learn page: what the picked model computes, seen on an uploaded or sample image. The
convolution drawn and stepped (and on a real first-layer filter: patch x filter + bias =
value), a unit's receptive field (theoretical box beside the effective field), filters beside
their feature maps, the classic architectures and this model's block diagram, and its code.

Only the chosen section runs on a rerun, and everything slow is cached per model and image,
so each interaction answers within a second (benchmarks/app_latency.py measures it)."""

import io

import numpy as np
import streamlit as st

from cnnlab.app.page_guard import plain_errors
from cnnlab.app.resources import get_summary, require_bundle, upload_limit_mb
from cnnlab.app.sample_input import sample_input
from cnnlab.app.table_widget import static_table
from cnnlab.data.images import UPLOAD_KINDS, UPLOAD_TYPES
from cnnlab.errors import CnnlabError
from cnnlab.explain.gallery import load_input
from cnnlab.explain.layer_view import conv_layers
from cnnlab.learn.conv_drawing import draw_conv, draw_partial_map, draw_window_on_image, gif_bytes
from cnnlab.learn.convolution import ConvSetting, RealConv, first_conv
from cnnlab.learn.fields import (
    draw_fields,
    effective_field,
    field_past_image,
    spatial_rows,
    unit_field,
)

SECTIONS = ["Convolution", "Receptive field", "Filters and maps", "Architectures", "Code"]

entry, bundle = require_bundle()
path = str(entry.path)
summary = get_summary(path)
st.title("Learn")
st.caption(f"See what **{entry.label}** computes, on your image or a sample: the convolution, "
           "a unit's receptive field, filters beside their feature maps, the architecture and "
           "the code.")  # fmt: skip
upload = st.file_uploader(f"An image ({UPLOAD_KINDS}, up to {upload_limit_mb()} MB)",
                          type=UPLOAD_TYPES, key="learn_file")  # fmt: skip
sample = sample_input("learn", bundle, default=True)  # drawn even when an upload wins
image = upload or sample
section = st.segmented_control("Section", SECTIONS, default=SECTIONS[0], key="learn_section") or SECTIONS[0]  # fmt: skip


def png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@st.cache_resource(max_entries=8, show_spinner=False)
def model_input(bundle_path: str, file_id: str, _data: bytes):
    """(uint8 (C, H, W) as the model sees it, normalised (1, C, H, W)) of one image."""
    return load_input(bundle, _data)


@st.cache_resource(max_entries=8, show_spinner=False)
def real_conv(bundle_path: str, file_id: str, _data: bytes) -> RealConv:
    name, conv = first_conv(bundle.model)
    return RealConv(conv, model_input(bundle_path, file_id, _data)[1], name)


@st.cache_data(max_entries=64, show_spinner=False)
def feature_map(bundle_path: str, file_id: str, f: int, _data: bytes) -> np.ndarray:
    return real_conv(bundle_path, file_id, _data).feature_map(f)


@st.cache_data(max_entries=128, show_spinner="Computing the input gradient ...")
def gradient(bundle_path: str, file_id: str, layer: str, unit: tuple[int, int], _data: bytes):
    field = unit_field(summary, layer, unit)
    return effective_field(
        bundle.model, model_input(bundle_path, file_id, _data)[1], field
    ).gradient


def clamp(key: str, top: int, default: int, low: int = 0) -> None:
    """Keep a slider's remembered value inside its new range (the layer or setting changed)."""
    if key not in st.session_state or not low <= st.session_state[key] <= top:
        st.session_state[key] = min(max(default, low), top)


def numbers(a: np.ndarray) -> str:
    """A small matrix as a Markdown table."""
    head = "| " + " | ".join(" " for _ in range(a.shape[1])) + " |\n|" + "---|" * a.shape[1]
    return head + "\n" + "\n".join("| " + " | ".join(f"{v:.3f}" for v in row) + " |" for row in a)


def arithmetic() -> None:
    st.subheader("How padding, stride and dilation set the output size, and channels and "
                 "filters the parameters")  # fmt: skip
    c = st.columns(5)
    size = c[0].slider("Input size", 3, 64, 7, key="learn_size")
    kernel = c[1].slider("Kernel", 1, 7, 3, key="learn_kernel")
    stride = c[2].slider("Stride", 1, 4, 2, key="learn_stride")
    dilation = c[3].slider("Dilation", 1, 3, 1, key="learn_dilation")
    mode = c[4].radio("Padding", ["valid", "same", "number"], index=2, horizontal=True,
                      key="learn_padding_mode")  # fmt: skip
    padding = mode
    if mode == "number":
        padding = st.slider("Padding (pixels per side)", 0, 3, 1, key="learn_padding")
    try:
        setting = ConvSetting.make(size, kernel, stride, padding, dilation)
    except CnnlabError as e:
        st.error(f"This setting has no output: {e}")
        return
    c = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
    channels = c[0].number_input("Input channels", 1, 2048, 3, key="learn_channels",
                                 help="1 for a grey image, 3 for RGB, the previous layer's "
                                 "filters deeper in")  # fmt: skip
    filters = c[1].number_input("Filters", 1, 2048, 16, key="learn_filters",
                                help="output channels: one feature map per filter")  # fmt: skip
    bias = c[2].checkbox("Bias", True, key="learn_bias", help="one per filter")
    c[3].caption("Stride, padding and dilation change the output size, never the parameters.")
    lines = [*setting.describe(), *setting.parameters(int(channels), int(filters), bias)]
    st.code("\n".join(lines), language=None)
    clamp("learn_pos", setting.positions, 1, low=1)
    play = st.toggle("Play: slide the window", key="learn_play")
    animate(setting, play)
    with st.expander("The whole animation as a GIF (what `cnnlab conv --draw FILE.gif` writes)"):
        if st.button("Make the GIF", key="learn_gif"):
            st.image(gif_bytes(setting, max_frames=64), caption="first 64 positions")


def animate(setting: ConvSetting, play: bool) -> None:
    @st.fragment(run_every=0.8 if play else None)
    @plain_errors("the convolution animation")  # a fragment reruns alone, outside the page guard
    def frame() -> None:
        n = setting.positions
        if play:
            st.session_state["learn_pos"] = st.session_state.get("learn_pos", 1) % n + 1
        pos = st.slider("Output position (row by row)", 1, n, key="learn_pos")
        st.image(png(draw_conv(setting, pos - 1, header=False)), caption="conv_arithmetic style: kernel "
                 "taps dark blue, padding white, rows/columns never read salmon")  # fmt: skip

    frame()


def real_filter() -> None:
    st.subheader("On your image, with the model's own first-layer filter")
    if image is None:
        st.info("Upload an image or try a sample.")
        return
    try:
        rc = real_conv(path, image.file_id, image.getvalue())
        pixels = model_input(path, image.file_id, image.getvalue())[0]
    except CnnlabError as e:
        st.error(str(e))
        return
    s = rc.setting
    oh, ow = s.out
    c = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    f = c[0].number_input(f"Filter (0-{rc.filters - 1})", 0, rc.filters - 1, 0, key="learn_filter")
    clamp("learn_row", oh - 1, oh // 2)
    clamp("learn_col", ow - 1, ow // 2)
    if c[3].button("Next →", key="learn_next", help="the next output position, row by row"):
        pos = (st.session_state["learn_row"] * ow + st.session_state["learn_col"] + 1) % (oh * ow)
        st.session_state["learn_row"], st.session_state["learn_col"] = divmod(pos, ow)
    row = c[1].slider("Output row", 0, oh - 1, key="learn_row")
    col = c[2].slider("Output column", 0, ow - 1, key="learn_col")
    step = rc.step(int(f), row * ow + col)
    st.markdown(f"`{rc.name}`: {rc.filters} filters {s.kernel[0]}x{s.kernel[1]}x"
                f"{rc.weight.shape[1]}, stride {s.stride[0]}, {s.padding_text()}: "
                f"{s.size[0]}x{s.size[1]} -> {oh}x{ow}. **Filter {int(f)}, output (row {row}, "
                f"column {col})**, input rows {step.taps[0][0]}..{step.taps[-1][0]}, columns "
                f"{step.taps[0][1]}..{step.taps[-1][1]}.")  # fmt: skip
    st.success(f"patch x filter + bias = value: {step.equation(6)}")
    img, patch, weights, fmap = st.columns([2, 3, 3, 2])  # the numbers never clipped
    img.image(png(draw_window_on_image(pixels.cpu().numpy(), s, row * ow + col)),
              caption="the window on the image (as the model sees it)")  # fmt: skip
    for ch in range(step.patch.shape[0]):
        label = f" (channel {ch})" if step.patch.shape[0] > 1 else ""
        patch.markdown(f"patch{label}, normalised\n\n" + numbers(step.patch[ch]))
        weights.markdown(f"filter {int(f)}{label}\n\n" + numbers(step.weights[ch]))
    fm = feature_map(path, image.file_id, int(f), image.getvalue())
    fmap.image(png(draw_partial_map(fm, (row, col))),
               caption=f"feature map {int(f)} filling in, row by row ({oh}x{ow})")  # fmt: skip


def receptive_field() -> None:
    st.subheader("A unit's receptive field: theoretical and effective")
    if image is None:
        st.info("Upload an image or try a sample.")
        return
    rows = spatial_rows(summary)
    names = [r.name for r in rows]
    by_name = {r.name: r for r in rows}
    layer = st.selectbox("Layer", names, index=min(len(names) - 1, len(names) // 3),
                         key="learn_rf_layer", format_func=lambda n: (
                             f"{n} ({by_name[n].type}, {by_name[n].shape_text}, RF "
                             f"{by_name[n].field.describe()})"))  # fmt: skip
    h, w = by_name[layer].output_shape[1:]
    clamp("learn_rf_row", h - 1, h // 2)
    clamp("learn_rf_col", w - 1, w // 2)
    c = st.columns(2)
    uy = c[0].slider(f"Unit row (0-{h - 1})", 0, h - 1, key="learn_rf_row")
    ux = c[1].slider(f"Unit column (0-{w - 1})", 0, w - 1, key="learn_rf_col")
    field = unit_field(summary, layer, (uy, ux))
    pixels = model_input(path, image.file_id, image.getvalue())[0]
    field.gradient = gradient(path, image.file_id, layer, (uy, ux), image.getvalue())
    (t, b), (lft, r) = field.box
    rh, rw = field.rf
    st.markdown(f"**Theoretical field {rh}x{rw}** (`cnnlab summary`'s RF for `{layer}`, jump "
                f"{field.jump[0]}): unit ({uy}, {ux}) sees input rows {t:g}..{b:g} and columns "
                f"{lft:g}..{r:g}"
                + (" (beyond the image's edge: padding)." if min(t, lft) < 0 or b >= field.image_size[0]
                   or r >= field.image_size[1] else "."))  # fmt: skip
    if note := field_past_image((rh, rw), field.image_size):
        st.warning(note, icon=":material/open_in_full:")
    st.image(png(draw_fields(pixels.cpu().numpy(), field)),
             caption="left: the box on the image; right: |input gradient| of the unit "
             "(its channels summed), square-root scale")  # fmt: skip
    st.info(field.comparison())


def filters_and_maps() -> None:
    from cnnlab.learn.filters_maps import filters_beside_maps

    st.subheader("Filters and their feature maps together")
    if image is None:
        st.info("Upload an image or try a sample.")
        return
    layers = conv_layers(summary)
    c = st.columns([3, 1])
    layer = c[0].selectbox("Conv layer", layers, key="learn_fm_layer")
    count = c[1].slider("Filters", 4, 16, 8, step=4, key="learn_fm_count")

    @st.cache_data(max_entries=32, show_spinner="Computing the feature maps ...")
    def pairs(bundle_path: str, file_id: str, layer: str, count: int, _data: bytes) -> bytes:
        pixels, x = model_input(bundle_path, file_id, _data)
        return png(filters_beside_maps(bundle, summary, x, pixels.cpu().numpy(), layer, count))

    st.image(pairs(path, image.file_id, layer, count, image.getvalue()))


def architectures() -> None:
    from cnnlab.learn.diagram import draw_diagram
    from cnnlab.learn.history import architecture_rows

    @st.cache_resource(show_spinner="Measuring the classic networks ...")
    def classic():
        return architecture_rows(["lenet5", "alexnet", "vgg16"])

    @st.cache_data(show_spinner="Drawing the block diagram ...")
    def diagram(bundle_path: str) -> bytes:
        return png(draw_diagram(bundle.model, summary))

    st.subheader("LeNet-5, AlexNet, VGG-16: what each introduced")
    static_table(classic())
    st.caption("Numbers measured from cnnlab's own model code (`cnnlab zoo`); year, result and "
               "what each introduced from the papers.")  # fmt: skip
    st.subheader(f"{entry.label}, block by block")
    st.image(diagram(path), caption="from the model's module graph (`cnnlab zoo --diagram`)")


def code() -> None:
    from cnnlab.learn.codegen import generate_code

    @st.cache_data(show_spinner="Writing the code ...")
    def script(bundle_path: str, framework: str) -> str:
        return generate_code(bundle_path, framework)

    st.subheader("The model and its training, as code to copy")
    fw = st.radio("Framework", ["pytorch", "keras"], horizontal=True, key="learn_framework")
    try:
        text = script(path, fw)
    except CnnlabError as e:
        st.info(str(e))
        return
    st.caption(f"What `cnnlab code {entry.label} --framework {fw}` prints: a complete script "
               "that trains this model as its recipe did.")  # fmt: skip
    st.download_button("Download the script", text, file_name=f"train_{fw}.py", key="learn_code_dl")
    st.code(text, language="python")


if section == "Convolution":
    arithmetic()
    real_filter()
elif section == "Receptive field":
    receptive_field()
elif section == "Filters and maps":
    filters_and_maps()
elif section == "Architectures":
    architectures()
else:
    code()
