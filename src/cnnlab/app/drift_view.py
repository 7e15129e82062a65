"""The Worklist page's drift section: have the inputs moved since the picked model was
validated? The same figures and verdict as `cnnlab drift` (evaluate/drift.py), for the
decisions of the page's window."""

from __future__ import annotations

import streamlit as st

from cnnlab.errors import CnnlabError

VERDICT_BOX = {"drift": st.error, "watch": st.warning, "stable": st.success, "too few": st.info}


def show_drift(decisions: list, window: str) -> None:
    """Drift of the picked model's decisions among `decisions` (the page's window), against its
    validation split; a note instead when it cannot be measured."""
    from cnnlab.app.resources import picked_entry
    from cnnlab.bundle.catalog import META
    from cnnlab.bundle.check import read_meta
    from cnnlab.evaluate import drift

    st.subheader("Drift since validation")
    entry = picked_entry()
    if entry is None:
        st.info("Pick a model in the sidebar to compare its decisions with its validation.")
        return
    try:  # bundle.json alone (its validation logits and rule): the page loads no model
        meta = read_meta(entry.path, META)
        reference = drift.reference_of({**meta, "name": meta.get("name") or entry.path.name})
    except CnnlabError as e:
        st.info(f"Drift cannot be measured for {entry.label}: {e}")
        return
    name = reference["name"]
    period = drift.period_of([d for d in decisions if d.bundle == name], reference)
    report = drift.drift_report(reference, period)
    verdict = drift.format_drift(report, name).splitlines()[-1]
    VERDICT_BOX[report["verdict"]](verdict)
    st.caption(f"{name}'s {period['n']} screened decisions in the {window}, against its "
               f"{reference['n']} validation images: population stability index (under 0.1 "
               "stable, over 0.25 a major shift), a two-sample KS test, and the share flagged "
               "out of distribution. `cnnlab drift` gives the same.")  # fmt: skip
    if "psi" not in report:
        return
    cols = st.columns(4)
    cols[0].metric("PSI", f"{report['psi']:.3f}")
    cols[1].metric("KS p-value", f"{report['ks']['p_value']:.2g}")
    s = report["positive_share"]
    cols[2].metric("Called positive", f"{s['period']:.1%}",
                   f"{(s['period'] - s['reference']) * 100:+.1f} pts vs validation",
                   delta_color="off")  # fmt: skip
    if "ood" in report:
        o = report["ood"]
        cols[3].metric("Unlike training images", f"{o['share']:.1%}",
                       f"{(o['share'] - o['reference_share']) * 100:+.1f} pts vs validation",
                       delta_color="off")  # fmt: skip
    st.bar_chart(drift.shares_by_bin(reference["p"], period["p"]), x="p(positive)",
                 y=["validation", "period"], stack=False, y_label="share of images")  # fmt: skip
