""" "Try a sample": the images shipped with cnnlab, as if uploaded, on Classify, Explain and Learn.
The model's best match is offered first; an upload always wins over a sample."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from cnnlab.samples import SAMPLES, samples_for


@dataclass
class SampleFile:
    """What the pages read from an upload: name, bytes, a stable id and the size."""

    name: str
    data: bytes
    file_id: str
    size: int

    def getvalue(self) -> bytes:
        return self.data


def sample_file(name: str) -> SampleFile:
    s = SAMPLES[name]
    data = s.path.read_bytes()
    return SampleFile(s.file, data, f"sample:{name}", len(data))


def sample_input(key: str, bundle, default: bool = False) -> SampleFile | None:
    """A sample picker and a "Try a sample" button; returns the sample in use (None until the
    button is pressed, unless `default`: then the model's best match at once).

    The sample follows the model: when another model is picked, the picker and the sample in
    use become the new model's best match (an X-ray is no test of a digit classifier)."""
    pre = bundle.preprocess
    samples = samples_for(pre.channels, pre.size[0], list(bundle.classes))
    names = [s.name for s in samples]
    pick_key, active_key, model_key = f"{key}_sample_pick", f"{key}_sample", f"{key}_sample_model"
    model = str(bundle.path or bundle.name)
    if st.session_state.get(model_key) != model:
        st.session_state[model_key] = model
        st.session_state[pick_key] = names[0]
        if st.session_state.get(active_key):
            st.session_state[active_key] = names[0]
    pick, button = st.columns([3, 1], vertical_alignment="bottom")
    name = pick.selectbox("Sample image", names, key=pick_key,
                          format_func=lambda n: f"{SAMPLES[n].what} ({SAMPLES[n].file})")  # fmt: skip
    if button.button("Try a sample", key=f"{key}_sample_button", icon=":material/image:"):
        st.session_state[active_key] = name
    active = st.session_state.get(active_key) or (names[0] if default else None)
    return sample_file(active) if active else None
