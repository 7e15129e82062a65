"""The runs' interactive chart: the points `cnnlab runs --plot` draws, with a tooltip."""

from __future__ import annotations

from cnnlab.report.charts import curve_rows, runs_chart

RUNS = [
    {"name": "a", "history": [{"loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.7},
                              {"loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.8}],
     "steps": [{"epoch": 0.5, "loss": 1.5}, {"epoch": 1.0, "loss": 1.0}, {"epoch": 2.0, "loss": 0.5}]},
    {"name": "b", "history": [{"loss": 2.0, "val_loss": 1.9, "val_accuracy": 0.4}], "steps": []},
]  # fmt: skip


def test_curve_rows_are_the_plotted_points():
    rows = curve_rows(RUNS)
    loss_a = [(r["epoch"], r["value"]) for r in rows if r["run"] == "a" and r["key"] == "loss"]
    assert loss_a == [(0.5, 1.5), (1.0, 1.0), (2.0, 0.5)]  # per step where recorded
    acc_b = [
        (r["epoch"], r["value"]) for r in rows if r["run"] == "b" and r["key"] == "val_accuracy"
    ]
    assert acc_b == [(1.0, 0.4)]
    assert len(rows) == 3 + 2 + 2 + 1 + 1 + 1


def test_the_chart_is_vega_lite_with_a_tooltip_on_the_nearest_point():
    spec = runs_chart(RUNS, "val_accuracy").to_dict()
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    points = spec["layer"][1]
    assert [t["field"] for t in points["encoding"]["tooltip"]] == ["run", "epoch", "value"]
    selects = {p["select"]["type"]: p for p in spec["params"]}  # Altair lifts them to the top
    assert (
        selects["point"]["select"]["nearest"] is True
        and points["name"] in selects["point"]["views"]
    )
    assert selects["interval"]["bind"] == "scales"  # zoom and pan
    assert spec["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["a", "b"]
    assert [r["value"] for r in spec["data"]["values"]] == [0.7, 0.8, 0.4]
