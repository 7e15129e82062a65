"""Response bodies of the HTTP API, as pydantic models: they make the OpenAPI schema exact."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="a short code, e.g. too_many_images, bad_image, unknown_model")
    detail: str = Field(description="what was wrong, in a sentence")


def ERRORS(statuses: list[int]) -> dict[int | str, dict[str, Any]]:  # noqa: N802 - a constant table
    """OpenAPI `responses` entries for the refusals an endpoint can give."""
    what = {
        400: "malformed request or no images, or a Host header the server does not answer to",
        404: "unknown model",
        408: "the request body did not arrive within the read timeout",
        413: "request too large, too many images, or too many pixels",
        415: "not multipart/form-data",
        422: "an upload is not a usable image, or a bad query parameter",
        503: "cannot answer within the time budget (queue), the model is not ready, or the "
        "server is at its cap of requests or connections, or the decisions could not be put on "
        "record (then none is answered); retry after the Retry-After seconds",
    }
    return {s: {"model": ErrorBody, "description": what[s]} for s in statuses}


class TopK(BaseModel):
    label: str
    probability: float


class ImagePrediction(BaseModel):
    """One image's prediction, in the row schema the CLI and the app share (cnnlab.report.rows)."""

    file: str = Field(description="the upload's file name, or files[i]")
    label: str | None = Field(description="the decision: argmax, or the threshold rule for "
                              "binary models; null when not screened")  # fmt: skip
    probability: float | None = Field(description="calibrated probability of `label`")
    positive_probability: float | None = Field(
        None, description="binary models: calibrated p(positive class), compared with threshold"
    )
    threshold: float | None = Field(None, description="binary models: the decision threshold")
    top_k: list[TopK]
    result: str = Field(description="the sentence people read, e.g. 'Pneumonia likely "
                        "(P(Pneumonia) 0.91; threshold 0.37)'; 'Uncertain (...)' when the model "
                        "is unsure; 'Does not look like the training images (...)' when the "
                        "out-of-distribution check flags the input")  # fmt: skip
    uncertain: bool | None = Field(description="whether `result` withholds the label as a "
                                   "headline (the model is unsure, or the input is out of "
                                   "distribution); null when not screened")  # fmt: skip
    out_of_distribution: bool | None = Field(
        None, description="true when the input does not look like the training images (the "
        "bundle's out-of-distribution check); `label` is still given. Null when the bundle has "
        "no check",
    )  # fmt: skip
    ood_distance: float | None = Field(
        None, description="Mahalanobis distance of the input's features from the training "
        "images; above the model's `ood_threshold` it is out of distribution",
    )  # fmt: skip
    error: str | None = Field(
        None, description="always null here: an unreadable upload refuses the request (422)"
    )
    screened: bool = Field(description="whether the model gave a label; false when the model "
                           "does not accept the image by its DICOM tags (a lateral view, a CT "
                           "slice, a knee: the model's `accepts`)")  # fmt: skip
    reason: str | None = Field(None, description="why it was not screened, e.g. 'a left "
                               "lateral view (ViewPosition LL); this model reads PA/AP views "
                               "only'")  # fmt: skip
    study_uid: str | None = Field(None, description="DICOM StudyInstanceUID (DICOM inputs)")
    series_uid: str | None = Field(None, description="DICOM SeriesInstanceUID (DICOM inputs)")
    sop_uid: str | None = Field(None, description="DICOM SOPInstanceUID (DICOM inputs)")
    accession: str | None = Field(None, description="DICOM AccessionNumber (DICOM inputs)")
    patient_id: str | None = Field(None, description="DICOM PatientID: only with "
                                   "`?with_patient_id=true`")  # fmt: skip


class PredictResponse(BaseModel):
    model: str
    backend: str
    predictions: list[ImagePrediction]


class ModelInput(BaseModel):
    channels: int
    size: list[int]
    resize: str


class ModelSummary(BaseModel):
    name: str
    architecture: str
    classes: list[str]
    class_mode: str
    threshold: float | None
    temperature: float | None = Field(description="null only while the model is not ready")
    ood_threshold: float | None = Field(
        None, description="the out-of-distribution check's cut-off (null: the model has none)"
    )
    input: ModelInput
    backend: str


class ModelDetail(ModelSummary):
    metadata: dict[str, Any] = Field(description="bundle.json, without the training recipe")
    card: str = Field(description="the model card (Markdown)")
    ready: bool = Field(description="whether it takes requests now (see /v1/health/ready)")
    problems: list[str] = Field(description="why it is not ready; empty when it is")


class Health(BaseModel):
    status: str = Field(description="'ok' while the server answers (liveness)")
    ready: bool = Field(description="whether every model takes requests (see /v1/health/ready)")
    models: list[str]
    batching: dict[str, dict[str, int]]


class Live(BaseModel):
    status: str = Field(description="'live' while the server answers")


class ModelReadiness(BaseModel):
    ready: bool
    problems: list[str]
    queued: int = Field(description="images waiting or running")
    expected_wait_s: float = Field(
        description="how long a new image would wait, at the recent pace"
    )


class Ready(BaseModel):
    status: str = Field(description="'ready', or 'not_ready' (HTTP 503)")
    models: dict[str, ModelReadiness]
