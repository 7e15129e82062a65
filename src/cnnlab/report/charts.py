"""Interactive charts (Vega-Lite through Altair) for the app: the runs' curves, where hovering
reads a value (run, epoch, figure) that a picture only lets you guess. The points are the ones
`cnnlab runs --plot` draws (report.figures.run_points)."""

from __future__ import annotations

from typing import Any

from cnnlab.report.figures import RUN_PANELS, run_points


def curve_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long rows (run, figure, epoch, value) of every run's curves, one per point."""
    titles = dict(RUN_PANELS)
    return [
        {"run": run["name"], "figure": titles[key], "key": key, "epoch": x, "value": y}
        for run in runs
        for key, pts in run_points(run).items()
        for x, y in pts
    ]


SHORT = {
    "loss": "training loss",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
}


def runs_chart(runs: list[dict[str, Any]], key: str):
    """One panel (`key` of RUN_PANELS) of the runs overlaid: a line per run; the point nearest
    the pointer is marked and its run, epoch and value shown in a tooltip. Colours follow the
    runs' order (matplotlib's, tableau10), so the panels and `cnnlab runs --plot` agree."""
    import altair as alt

    names = [run["name"] for run in runs]
    rows = [r for r in curve_rows(runs) if r["key"] == key]
    accuracy = key == "val_accuracy"
    value = alt.Y("value:Q", title=None, scale=alt.Scale(zero=False),
                  axis=alt.Axis(format="%" if accuracy else "~g"))  # fmt: skip
    colour = alt.Color("run:N", scale=alt.Scale(domain=names, scheme="tableau10"), title=None,
                       legend=alt.Legend(orient="top"))  # fmt: skip
    base = alt.Chart(alt.Data(values=rows)).encode(
        x=alt.X("epoch:Q", title="epoch", scale=alt.Scale(domainMin=0)), y=value, color=colour
    )
    near = alt.selection_point(nearest=True, on="pointerover", clear="pointerout", empty=False,
                               fields=["run", "epoch"])  # fmt: skip
    tooltip = [alt.Tooltip("run:N"), alt.Tooltip("epoch:Q", format=".3~f"),
               alt.Tooltip("value:Q", title=SHORT[key], format=".2%" if accuracy else ".4f")]  # fmt: skip
    zoom = alt.selection_interval(bind="scales", encodings=["x"])  # scroll zooms, drag pans
    lines = base.mark_line(strokeWidth=1.5).add_params(zoom)
    points = base.mark_circle().encode(
        size=alt.condition(near, alt.value(90), alt.value(18 if len(rows) < 60 else 0)),
        tooltip=tooltip,
    ).add_params(near)  # fmt: skip
    return (lines + points).properties(height=330, title=SHORT[key], padding={"right": 14})
