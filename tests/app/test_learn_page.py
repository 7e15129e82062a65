"""The Learn page and the "Try a sample" buttons, headless (Streamlit AppTest): every number the
page shows is checked against PyTorch or `cnnlab summary`, not just looked for."""

from __future__ import annotations

import re

import torch.nn.functional as F

from cnnlab.anatomy.summary import summarize
from cnnlab.bundle import load_bundle
from cnnlab.explain.gallery import load_input
from cnnlab.learn.convolution import first_conv
from cnnlab.learn.fields import spatial_rows
from cnnlab.samples import samples_for
from tests.app.conftest import verdicts

LEARN = "views/learn_page.py"
VALUE = re.compile(r"= (-?\d+\.\d+)$")


def open_learn(app_env, bundle):
    at = app_env(bundle).run()  # a first run registers the pages (st.navigation's url paths)
    at.switch_page(LEARN)
    at.run()
    assert not at.exception, at.exception
    return at


def expected_value(bundle_path, row: int, col: int, f: int = 0) -> float:
    bundle = load_bundle(bundle_path)
    pre = bundle.preprocess
    sample = samples_for(pre.channels, pre.size[0], list(bundle.classes))[0]
    _, x = load_input(bundle, sample.path)
    _, conv = first_conv(bundle.model)
    out = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
    return float(out[0, f, row, col].detach())


def test_convolution_section_formula_drawing_and_the_real_step(app_env, app_bundle):
    at = open_learn(app_env, app_bundle)
    assert at.title[0].value == "Learn"
    formula = at.code[0].value
    assert "out = floor((7 - 3 + 2*1) / 2) + 1 = floor(3) + 1 = 4" in formula
    images = len(at.image)
    at.slider(key="learn_kernel").set_value(5).run()
    assert "out = floor((7 - 5 + 2*1) / 2) + 1 = floor(2) + 1 = 3" in at.code[0].value
    at.radio(key="learn_padding_mode").set_value("valid").run()
    at.slider(key="learn_size").set_value(8).run()
    assert "lost: 1 row (7) and 1 column (7)" in at.code[0].value
    assert len(at.image) == images  # drawing, the window on the image, the feature map
    row, col = at.slider(key="learn_row").value, at.slider(key="learn_col").value
    value = float(VALUE.search(at.success[0].value).group(1))
    assert abs(value - expected_value(app_bundle, row, col)) < 1e-5
    at.button(key="learn_next").click().run()
    assert (at.slider(key="learn_row").value, at.slider(key="learn_col").value) == (row, col + 1)
    at.number_input(key="learn_filter").set_value(3).run()
    value = float(VALUE.search(at.success[0].value).group(1))
    assert abs(value - expected_value(app_bundle, row, col + 1, 3)) < 1e-5


def test_receptive_field_section_shows_the_summarys_size(app_env, app_bundle):
    at = open_learn(app_env, app_bundle)
    at.segmented_control(key="learn_section").set_value("Receptive field").run()
    assert not at.exception, at.exception
    bundle = load_bundle(app_bundle)
    pre = bundle.preprocess
    summary = summarize(bundle.model, (pre.channels, *pre.size), "x")
    rows = {r.name: r for r in spatial_rows(summary)}
    layer = at.selectbox(key="learn_rf_layer").value
    rf = rows[layer].field.rf
    text = " ".join(m.value for m in at.markdown)
    assert f"**Theoretical field {rf[0]}x{rf[1]}**" in text
    last = list(rows)[-1]
    at.selectbox(key="learn_rf_layer").set_value(last).run()
    rf = rows[last].field.rf
    assert f"**Theoretical field {rf[0]}x{rf[1]}**" in " ".join(m.value for m in at.markdown)
    assert "100.0% of it inside the box" in at.info[0].value


def test_other_sections_filters_architectures_and_code(app_env, app_bundle):
    at = open_learn(app_env, app_bundle)
    for section, check in (
        ("Filters and maps", lambda: len(at.image) == 1),
        ("Architectures", lambda: at.table[0].value["Params"].tolist()[2] == 138_357_544),
        ("Code", lambda: "class Net(nn.Module):" in at.code[0].value),
    ):
        at.segmented_control(key="learn_section").set_value(section).run()
        assert not at.exception, (section, at.exception)
        assert check(), section
    at.radio(key="learn_framework").set_value("keras").run()
    assert "keras.Sequential" in at.code[0].value


def test_try_a_sample_on_classify_and_explain(app_env, app_bundle):
    at = app_env(app_bundle).run()
    assert not verdicts(at) and len(at.dataframe) == 0
    at.button(key="classify_sample_button").click().run()
    assert not at.exception, at.exception
    assert len(verdicts(at)) == 1 and "threshold" in verdicts(at)[0]
    assert at.dataframe[0].value["file"].tolist() == ["xray_pneumonia.jpeg"]
    at.switch_page("views/explain_page.py").run()
    at.button(key="explain_sample_button").click().run()
    assert not at.exception, at.exception
    assert len(at.image) == 2  # the filters, and the sample's feature maps
    assert not [i for i in at.info if "Upload an image" in i.value]
