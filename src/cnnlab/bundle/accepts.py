"""What a bundle accepts: the DICOM images it was made for, declared in bundle.json, e.g.

    "accepts": {"modality": ["CR", "DX", "DR"], "body_part": ["CHEST"], "view": ["PA", "AP"]}

A chest X-ray model answers a lateral view, a CT slice or a knee with a confident-looking
probability; an image whose tags say it is something else gets "not screened" and the reason
instead, never a label. A tag the file leaves empty is not held against it (many CR files
carry no ViewPosition), and files without tags (PNG, JPEG) are screened as before: the
declaration speaks about what DICOM tags say, nothing more. Checked with bundle.json's other
fields and covered by the seal like them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnlab.data.dicom import DicomTags
from cnnlab.errors import CnnlabError

# bundle.json key -> (the DICOM keyword it is held against, how people call the thing)
KEYS = {"modality": ("Modality", "modality"), "body_part": ("BodyPartExamined", "body part"),
        "view": ("ViewPosition", "view")}  # fmt: skip
VIEW_WORDS = {"LL": "a left lateral view", "RL": "a right lateral view", "LATERAL": "a lateral view",
              "LLD": "a left lateral decubitus view", "RLD": "a right lateral decubitus view",
              "PA": "a postero-anterior view", "AP": "an antero-posterior view",
              "LAO": "an oblique view", "RAO": "an oblique view", "LPO": "an oblique view",
              "RPO": "an oblique view"}  # fmt: skip
MODALITY_WORDS = {"CT": "a CT image", "MR": "an MR image", "US": "an ultrasound image",
                  "MG": "a mammogram", "NM": "a nuclear medicine image", "PT": "a PET image",
                  "XA": "an angiography image", "RF": "a fluoroscopy image", "OT": "an image of "
                  "another modality", "SC": "a secondary capture", "SR": "a structured report"}  # fmt: skip


@dataclass(frozen=True)
class Accepts:
    """The tag values a bundle accepts (upper case); an empty tuple accepts any."""

    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    view: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, record: Any, where: Any = "bundle.json") -> Accepts | None:
        """bundle.json's `accepts` (None when absent), each field a list of DICOM terms."""
        if record is None:
            return None
        if not isinstance(record, dict) or not record:
            raise CnnlabError(f"{where}: accepts must be a mapping of {', '.join(KEYS)} to "
                              f"lists of DICOM terms, got {_short(record)}")  # fmt: skip
        unknown = sorted(set(record) - set(KEYS))
        if unknown:
            raise CnnlabError(f"{where}: accepts.{unknown[0]} is not a tag a bundle can accept "
                              f"(one of {', '.join(KEYS)})")  # fmt: skip
        values = {}
        for key, terms in record.items():
            if (not isinstance(terms, list) or not terms
                    or not all(isinstance(t, str) and t.strip() and len(t) <= 64 for t in terms)):  # fmt: skip
                raise CnnlabError(f"{where}: accepts.{key} must be a non-empty list of DICOM "
                                  f"terms (e.g. {_example(key)}), got {_short(terms)}")  # fmt: skip
            values[key] = tuple(t.strip().upper() for t in terms)
        return cls(**values)

    def to_record(self) -> dict[str, list[str]]:
        return {k: list(getattr(self, k)) for k in KEYS if getattr(self, k)}

    def describe(self) -> str:
        """'CR/DX/DR, CHEST, PA/AP' for `cnnlab check` and the SR."""
        return ", ".join(f"{KEYS[k][1]} {'/'.join(v)}" for k, v in self.to_record().items())

    def refusal(self, tags: DicomTags | None) -> str | None:
        """Why an image with these tags is not for this bundle, or None: the first of
        modality, body part and view whose tag says otherwise."""
        if tags is None:
            return None
        if self.modality and tags.modality and tags.modality not in self.modality:
            what = MODALITY_WORDS.get(tags.modality, f"a {tags.modality} image")
            return (f"{what} (Modality {tags.modality}); this model reads "
                    f"{'/'.join(self.modality)} images only")  # fmt: skip
        if self.body_part and tags.body_part and tags.body_part not in self.body_part:
            return (f"an image of the {tags.body_part.lower()} (BodyPartExamined "
                    f"{tags.body_part}); this model reads {'/'.join(self.body_part)} images only")  # fmt: skip
        if self.view and tags.view and tags.view not in self.view:
            what = VIEW_WORDS.get(tags.view, f"a {tags.view} view")
            return (f"{what} (ViewPosition {tags.view}); this model reads "
                    f"{'/'.join(self.view)} views only")  # fmt: skip
        return None


def _example(key: str) -> str:
    return {"modality": '["CR", "DX"]', "body_part": '["CHEST"]', "view": '["PA", "AP"]'}[key]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
