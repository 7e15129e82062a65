"""Tables for people: titles, separators, 15.47 G, blanks; the Styler keeps the values."""

from __future__ import annotations

import math

from cnnlab.report.tables import cell_text, people_rows, people_table, title


def test_counts_titles_and_blanks_read_as_a_person_writes_them():
    vgg = {"model": "vgg16", "params": 138_357_544, "mult_adds": 15_470_264_320,
           "receptive_field": "212x212", "ood_distance": None, "uncertain": False,
           "probability": 0.912345678, "top_k": [0.5, 0.25]}  # fmt: skip
    assert people_rows([vgg]) == [{
        "Model": "vgg16", "Params": "138,357,544", "Mult-adds": "15.47 G", "RF": "212x212",
        "OOD distance": "", "Uncertain": "no", "Probability": "0.9123", "Top k": "0.5; 0.25",
    }]  # fmt: skip
    assert cell_text(376_683_488, si_from=10**6) == "376.68 M"
    assert people_rows([{"year": 1998}]) == [{"Year": "1998"}]  # a year is not an amount
    assert ">2014<" in people_table([{"year": 2014, "params": 138_357_544}]).to_html()
    assert cell_text(15_470_264_320) == "15.47 G" and cell_text(6018) == "6,018"
    assert cell_text(float("nan")) == "" and cell_text("None") == ""
    assert cell_text(12345.678) == "12,346"
    assert title("best val acc") == "Best val acc" and title("study_uid") == "Study UID"
    assert title("validation (120)") == "Validation (120)" and title("final RF") == "Final RF"
    assert title("chest_xray/external (312 CV)") == "chest_xray/external (312 CV)"  # a name


def test_the_styler_shows_text_and_keeps_numbers_for_sorting():
    rows = [{"layer": "conv1", "params": 288, "mult_adds": 3_612_672},
            {"layer": "fc", "params": None, "mult_adds": 15_470_264_320}]  # fmt: skip
    styled = people_table(rows)
    assert list(styled.data.columns) == ["Layer", "Params", "Mult-adds"]
    assert styled.data["Mult-adds"].tolist() == [3_612_672, 15_470_264_320]  # values kept
    html = styled.to_html()
    assert ">3.61 M<" in html and ">15.47 G<" in html and ">288<" in html
    assert "None" not in html and "nan" not in html
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in styled.data["Params"][:1])
    assert list(people_table(rows, titled=False).data.columns) == ["layer", "params", "mult_adds"]
