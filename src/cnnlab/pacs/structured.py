"""The answer as a DICOM Structured Report, stored beside the image it read (IHE AI Results).

A Comprehensive 3D SR holding a TID 1500 Measurement Report: the template MONAI Deploy, OHIF,
3D Slicer and highdicom's own parser read, which Orthanc stores and shows as a tree in its
explorer. One measurement group (TID 1501) per image read, naming the image as its source,
with the algorithm (TID 4019: name, version, and as parameters the weights' sha256, the
threshold and temperature), and:

    Finding (DCM 121071, the        Pneumonia (SCT 233604007) / Normal (SCT 17621005) /
    group's finding type)           Not screened (99CNNLAB NOT-SCREENED)
    Unlike the training images      Yes / No (SCT), absent when the bundle has no check
    Calibrated probability          P(positive class), unit 1 (UCUM)
    Decision threshold              unit 1
    OOD distance, OOD cut-off       unit 1
    Comment (DCM 121106)            the sentence every surface shows ("Pneumonia likely
                                    (P(Pneumonia) 0.91; threshold 0.68)", "Not screened: ...")

Concepts without a standard code use the private scheme 99CNNLAB (PS3.16 8.2: "99" marks a
local scheme); `read_report` reads a report back into the same figures, for tests and tools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from cnnlab.errors import CnnlabError
from cnnlab.version import __version__

if TYPE_CHECKING:
    from cnnlab.bundle.loading import Bundle
    from cnnlab.report.present import Presented

SCHEME = "99CNNLAB"
COMMENT = Code("121106", "DCM", "Comment")
NOT_SCREENED = Code("NOT-SCREENED", SCHEME, "Not screened")
UNLIKE_TRAINING = Code("OOD", SCHEME, "Unlike the training images")
PROBABILITY = Code("PROBABILITY", SCHEME, "Calibrated probability")
THRESHOLD = Code("THRESHOLD", SCHEME, "Decision threshold")
OOD_DISTANCE = Code("OOD-DISTANCE", SCHEME, "Distance from the training images")
OOD_CUTOFF = Code("OOD-CUTOFF", SCHEME, "Out-of-distribution cut-off")
YES, NO = Code("373066001", "SCT", "Yes"), Code("373067005", "SCT", "No")
UNITLESS = Code("1", "UCUM", "no units")
PROCEDURE = Code("399208008", "SCT", "Plain chest X-ray")
# class names as SNOMED CT concepts where one is known; others get a code of the private scheme
CLASS_CODES = {"PNEUMONIA": Code("233604007", "SCT", "Pneumonia"),
               "NORMAL": Code("17621005", "SCT", "Normal")}  # fmt: skip
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9901, 9902
MANUFACTURER = "cnnlab"


# Patient and General Study attributes of type 2 (present, possibly empty) that highdicom copies
# from the image read: a loose image without them still gets its report
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate",
         "StudyTime", "ReferringPhysicianName", "AccessionNumber")  # fmt: skip


def header_of(source: Dataset) -> Dataset:
    """The image's header without its pixels, every type 2 attribute highdicom copies present
    (empty where the image left it out)."""
    head = Dataset()
    for elem in source:
        if elem.keyword not in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            head.add(elem)
    for keyword in TYPE2:
        if keyword not in head:
            setattr(head, keyword, None)
    return head


def class_code(label: str) -> Code:
    return CLASS_CODES.get(label.upper(), Code(label.upper()[:16], SCHEME, label[:64]))


@dataclass(frozen=True)
class Algorithm:
    """Who answered: the bundle's name, cnnlab's version and the sealed weights' sha256."""

    name: str
    version: str
    weights_sha256: str
    threshold: float | None
    temperature: float

    @classmethod
    def of(cls, bundle: Bundle) -> Algorithm:
        weights = (bundle.sealed.get("model.safetensors") or {}).get("sha256", "")
        created = str(bundle.meta.get("created", ""))
        version = f"cnnlab {__version__}" + (f", bundle of {created}" if created else "")
        return cls(f"cnnlab {bundle.name}", version[:64], weights, bundle.threshold,
                   bundle.temperature)  # fmt: skip

    def parameters(self) -> list[str]:
        said = [f"weights sha256 {self.weights_sha256}", f"temperature {self.temperature:g}"]
        if self.threshold is not None:
            said.append(f"threshold {self.threshold:g}")
        return said


def build_report(
    source: Dataset,
    shown: Presented,
    algorithm: Algorithm,
    series_uid: str,
    instance_number: int,
) -> Dataset:
    """A Comprehensive 3D SR (TID 1500) of one answer about `source` (the image read, its
    header suffices), in `source`'s study, in the series `series_uid`."""
    import highdicom as hd

    source = header_of(source)
    row = shown.row
    finding = class_code(row["label"]) if row["screened"] and row["label"] else NOT_SCREENED
    evaluations = []
    if row["out_of_distribution"] is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(UNLIKE_TRAINING,
                                                       YES if row["out_of_distribution"] else NO))  # fmt: skip
    figures = []
    probability = row["positive_probability"] if row["positive_probability"] is not None \
        else row["probability"]  # fmt: skip
    pred = shown.prediction
    for code, value in ((PROBABILITY, probability), (THRESHOLD, row["threshold"]),
                        (OOD_DISTANCE, row["ood_distance"]), (OOD_CUTOFF, pred.ood_threshold)):  # fmt: skip
        if value is not None and row["screened"]:
            figures.append(hd.sr.Measurement(name=code, value=float(value), unit=UNITLESS))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"{algorithm.name} answer"
        ),  # fmt: skip
        finding_type=finding,
        algorithm_id=hd.sr.AlgorithmIdentification(
            algorithm.name, algorithm.version, algorithm.parameters()
        ),  # fmt: skip
        measurements=figures or None,
        qualitative_evaluations=evaluations or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )
    group[0].ContentSequence.append(
        hd.sr.TextContentItem(COMMENT, row["result"][:1024], relationship_type="CONTAINS")
    )
    device = hd.sr.ObserverContext(
        observer_type=Code("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=algorithm.name[:64], manufacturer_name=MANUFACTURER,
            model_name=algorithm.version[:64], serial_number=algorithm.weights_sha256[:64] or None,
        ),
    )  # fmt: skip
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=PROCEDURE,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source], content=report[0], series_instance_uid=series_uid,
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(),
        instance_number=instance_number, manufacturer=MANUFACTURER, is_complete=True,
        series_description=f"{algorithm.name}: AI result (not for diagnosis)"[:64],
    )  # fmt: skip
    return sr


@dataclass(frozen=True)
class ReadReport:
    """What an SR made by `build_report` says, read back from its content tree."""

    study_uid: str
    series_uid: str
    referenced_sop_uid: str
    finding: str  # the finding code's meaning: "Pneumonia", "Normal", "Not screened"
    probability: float | None
    threshold: float | None
    ood_distance: float | None
    ood_cutoff: float | None
    out_of_distribution: bool | None
    comment: str
    algorithm: str
    version: str
    parameters: list[str]


def read_report(ds: Dataset) -> ReadReport:
    """The figures of an SR `build_report` made (highdicom's TID 1500 parser)."""
    import highdicom as hd

    try:
        sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
        group = sr.content.get_image_measurement_groups()[0]
    except (AttributeError, IndexError, ValueError, TypeError) as e:
        raise CnnlabError(f"not a cnnlab measurement report: {e}") from None
    numbers = {m.name.value: m.value for m in group.get_measurements()}
    evaluations = {q.name.value: q.value for q in group.get_qualitative_evaluations()}
    ood = evaluations.get(UNLIKE_TRAINING.value)
    texts = _texts(group[0])
    return ReadReport(
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        referenced_sop_uid=str(group.source_images[0].referenced_sop_instance_uid),
        finding=str(group.finding_type.meaning),
        probability=_float(numbers.get(PROBABILITY.value)),
        threshold=_float(numbers.get(THRESHOLD.value)),
        ood_distance=_float(numbers.get(OOD_DISTANCE.value)),
        ood_cutoff=_float(numbers.get(OOD_CUTOFF.value)),
        out_of_distribution=None if ood is None else ood.value == YES.value,
        comment=next(iter(texts.get(COMMENT.value, [])), ""),
        algorithm=next(iter(texts.get(ALGORITHM_NAME, [])), ""),
        version=next(iter(texts.get(ALGORITHM_VERSION, [])), ""),
        parameters=texts.get(ALGORITHM_PARAMETERS, []),
    )


ALGORITHM_NAME, ALGORITHM_PARAMETERS, ALGORITHM_VERSION = "111001", "111002", "111003"  # TID 4019


def _texts(container: Any) -> dict[str, list[str]]:
    """{concept code: [text values]} of the TEXT items under `container`, at any depth."""
    found: dict[str, list[str]] = {}
    for item in getattr(container, "ContentSequence", []):
        if item.ValueType == "TEXT":
            found.setdefault(str(item.ConceptNameCodeSequence[0].CodeValue), []).append(
                str(item.TextValue))  # fmt: skip
        for code, values in _texts(item).items():
            found.setdefault(code, []).extend(values)
    return found


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
