"""A card that ships names its data, never the absolute path of the machine it was trained on."""

from __future__ import annotations

from cnnlab.bundle.save import default_card
from cnnlab.report.card import medical_card


def meta(source: str) -> dict:
    return {
        "name": "xray", "classes": ["NORMAL", "PNEUMONIA"], "params": 10,
        "model": {"name": "fastnet", "args": {}},
        "preprocess": {"channels": 1, "size": [64, 64], "resize": "stretch", "mean": [0.5],
                       "std": [0.25]},
        "decision": {"threshold": 0.37, "policy": "youden", "fitted_on": "val"},
        "data": {"source": source, "format": "image-folder", "val_origin": "held-out",
                 "counts": {"train": {"NORMAL": 3, "PNEUMONIA": 5}}},
        "recipe": {"data": {"source": source, "external": "/srv/site/hospital_b"}},
        "command": f"cnnlab train recipes/x.yaml --data {source} --out /home/me/runs/xray",
        "versions": {"cnnlab": "0.1.0", "torch": "2"},
    }  # fmt: skip


def test_cards_name_their_data_without_absolute_paths() -> None:
    for card in (medical_card(meta("/work/shared/data/chest_xray/train")),
                 default_card(meta("/work/shared/data/chest_xray/train"))):  # fmt: skip
        assert "chest_xray/train" in card
        assert "/work/" not in card and "/srv/" not in card and "/home/" not in card
    card = medical_card(meta("/work/shared/data/chest_xray/train"))
    assert "source: chest_xray/train" in card and "external: site/hospital_b" in card
    assert "--data chest_xray/train --out runs/xray" in card
    assert "threshold policy `youden`" in card
    relative = medical_card(meta("../shared/data/chest_xray/train"))
    assert "source: ../shared/data/chest_xray/train" in relative  # as the recipe gave it
