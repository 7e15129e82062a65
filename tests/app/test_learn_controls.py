"""Learn's convolution controls, headless: input sizes up to 64 (the course's 32x32 examples),
padding said exactly, the formula once, channels and filters with the parameter count."""

from __future__ import annotations

import torch.nn as nn

from tests.app.test_learn_page import open_learn


def test_size_to_64_exact_padding_and_the_parameter_count(app_env, app_bundle):
    at = open_learn(app_env, app_bundle)
    assert at.slider(key="learn_size").max == 64
    at.slider(key="learn_size").set_value(32).run()
    at.slider(key="learn_kernel").set_value(4).run()
    at.slider(key="learn_stride").set_value(1).run()
    at.radio(key="learn_padding_mode").set_value("same").run()
    assert not at.exception, at.exception
    text = at.code[0].value
    assert "input 32x32, kernel 4x4, stride 1, padding same: 1 before, 2 after," in text
    assert "output 32x32: 1024 positions" in text
    at.number_input(key="learn_channels").set_value(3).run()
    at.number_input(key="learn_filters").set_value(32).run()
    params = sum(p.numel() for p in nn.Conv2d(3, 32, 4).parameters())
    assert f"parameters = (4*4*3 + 1) * 32 = {params:,}" in at.code[0].value
    at.checkbox(key="learn_bias").uncheck().run()
    assert f"parameters = (4*4*3) * 32 = {params - 32:,}" in at.code[0].value
    page = "\n".join(e.value for kind in ("code", "markdown", "caption") for e in getattr(at, kind))
    assert page.count("out = floor(") == 1  # the formula once (the drawing no longer repeats it)
