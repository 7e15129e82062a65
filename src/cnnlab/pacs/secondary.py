"""The answer as a picture a radiologist sees in any viewer: a Secondary Capture of the image
as the model saw it, with the Grad-CAM overlay and the verdict burned in, and "NOT FOR
DIAGNOSIS" burned in too (BurnedInAnnotation YES: the text is in the pixels, so no viewer can
hide it). highdicom's SCImage copies the patient and study from the image read, so it lands
in the same study, as a series of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cnnlab.pacs.structured import MANUFACTURER, SC_SERIES_NUMBER, Algorithm, header_of

if TYPE_CHECKING:
    from cnnlab.report.present import Presented

NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSIS"
WIDTH = 512  # the model's 224x224 view, enlarged so the burned-in text stays legible
BANNER = 64  # pixels of black band above the image for the text


def burn_in(overlay: np.ndarray, lines: list[str]) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (BANNER + H', WIDTH, 3): the image enlarged to WIDTH with a
    black band on top holding `lines` (the first in yellow: the warning)."""
    img = Image.fromarray(overlay).convert("RGB")
    height = round(img.height * WIDTH / img.width)
    img = img.resize((WIDTH, height), Image.Resampling.BILINEAR)
    out = Image.new("RGB", (WIDTH, height + BANNER), (0, 0, 0))
    out.paste(img, (0, BANNER))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=15)
    for i, line in enumerate(lines[:3]):
        colour = (255, 220, 0) if i == 0 else (255, 255, 255)
        draw.text((8, 4 + 20 * i), line[:70], fill=colour, font=font)
    return np.asarray(out)


def capture_lines(shown: Presented, algorithm: Algorithm) -> list[str]:
    headline = shown.verdict.headline
    figures = ""
    row = shown.row
    if row["positive_probability"] is not None and row["threshold"] is not None:
        figures = f"  p {row['positive_probability']:.3f}, threshold {row['threshold']:.3f}"
    return [f"{NOT_FOR_DIAGNOSIS}  -  {algorithm.name}", f"{headline}{figures}",
            "Grad-CAM: where the evidence for the label lies"]  # fmt: skip


def build_capture(
    source: Dataset,
    shown: Presented,
    overlay: np.ndarray,
    algorithm: Algorithm,
    series_uid: str,
    instance_number: int,
) -> Dataset:
    """A Secondary Capture (RGB) of `overlay` (the model's view with its Grad-CAM, uint8
    (H, W, 3)) with the verdict burned in, in `source`'s study, referencing `source`."""
    import highdicom as hd

    pixels = burn_in(overlay, capture_lines(shown, algorithm))
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header_of(source), pixel_array=pixels, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT", series_instance_uid=series_uid,
        series_number=SC_SERIES_NUMBER, sop_instance_uid=generate_uid(),
        instance_number=instance_number, manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"), transfer_syntax_uid=ExplicitVRLittleEndian,
    )  # fmt: skip
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = f"{algorithm.name}: Grad-CAM ({NOT_FOR_DIAGNOSIS})"[:64]
    sc.ImageComments = f"{NOT_FOR_DIAGNOSIS}. {shown.row['result']}"[:10240]
    sc.DerivationDescription = (f"{algorithm.name} {algorithm.version}; weights sha256 "
                                f"{algorithm.weights_sha256}")[:1024]  # fmt: skip
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = (
        source.SOPClassUID,
        source.SOPInstanceUID,
    )
    sc.SourceImageSequence = [ref]
    return sc
