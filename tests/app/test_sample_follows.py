"""The sample follows the model picked in the sidebar: a sample tried with the X-ray model is
replaced by a digit when the digits model is picked, on the picker and in the results."""

from __future__ import annotations


def test_switching_to_the_digits_model_classifies_a_digit_sample(
    app_env, app_bundle, digits_bundle
):
    at = app_env(app_bundle, extra_runs=[digits_bundle.parent]).run()
    assert not at.exception
    at.button(key="classify_sample_button").click().run()
    assert at.selectbox(key="classify_sample_pick").value.startswith("xray")
    assert "**xray_pneumonia.jpeg**" in [m.value for m in at.markdown]

    picker = at.selectbox(key="picked_bundle")
    digits = next(label for label in picker.options if "digits" in label)
    picker.set_value(digits).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="classify_sample_pick").value == "mnist_7"
    shown = [m.value for m in at.markdown]
    assert "**mnist_7.png**" in shown and "**xray_pneumonia.jpeg**" not in shown
    assert list(at.dataframe[0].value.iloc[:, 0]) == ["mnist_7.png"]  # the table: the digit
