"""A DICOM receiver (C-STORE SCP, pynetdicom): a modality or a PACS pushes images; each is
screened as `cnnlab predict` would (`cnnlab.pacs.answers`), its decision recorded, and its SR
(and Secondary Capture, when screened) stored over DICOMweb into the image's study, in one SR
series and one SC series per study for the receiver's lifetime.

The push is acknowledged only once the results are stored: a status of failure (0xC211,
"out of resources: cannot store the results") tells the sender to push again later, so an
image whose results could not be delivered is not lost.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from pydicom.uid import generate_uid

from cnnlab.errors import CnnlabError
from cnnlab.explain import bundle_cam_layer
from cnnlab.pacs.answers import answer_images, results_for
from cnnlab.pacs.screening import _http, connect, record_answers

if TYPE_CHECKING:
    from cnnlab.bundle.loading import Bundle
    from cnnlab.records.store import DecisionStore

log = logging.getLogger("cnnlab")
SUCCESS, CANNOT_DELIVER = 0x0000, 0xC211


class Receiver:
    """C-STORE SCP that screens what it receives and sends the results to `to` (DICOMweb)."""

    def __init__(self, bundle: Bundle, to: str, store: DecisionStore | None,
                 ae_title: str = "CNNLAB") -> None:  # fmt: skip
        self.bundle, self.to, self.store, self.ae_title = bundle, to, store, ae_title
        self.client = connect(to)
        self.cam_layer = bundle_cam_layer(bundle)
        self.series: dict[str, tuple[str, str]] = {}  # study -> (SR series, SC series)
        self.lock = threading.Lock()  # the model and the series table: one image at a time
        self.server: Any = None
        self.numbers: dict[str, int] = {}  # "study/modality" -> the last instance number given

    def start(self, host: str, port: int) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        try:
            self.server = ae.start_server((host, port), block=False,
                                          evt_handlers=[(evt.EVT_C_STORE, self._on_store)])  # fmt: skip
        except OSError as e:
            raise CnnlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        sop = str(ds.get("SOPInstanceUID", "?"))
        try:
            with self.lock:
                self.handle(ds)
        except CnnlabError as e:
            log.error("cnnlab: error: image %s: %s (the sender is told to push it again)", sop, e)
            return CANNOT_DELIVER
        return SUCCESS

    def handle(self, ds: Any) -> None:
        """Screen one image, record the decision, store its results into its study."""
        started = time.perf_counter()
        answers = answer_images(self.bundle, [ds])
        if self.store is not None:
            record_answers(self.store, self.bundle, answers, (time.perf_counter() - started) * 1000)
        study = str(ds.StudyInstanceUID)
        sr_series, sc_series = self.series.setdefault(study, (generate_uid(), generate_uid()))
        results = results_for(self.bundle, answers, sr_series, sc_series, self.cam_layer)
        for r in results:  # numbered on in the receiver's series for this study
            r.InstanceNumber = self._next(study, str(r.Modality))
        try:
            self.client.store_instances(results, study_instance_uid=study)
        except Exception as e:  # noqa: BLE001
            raise _http(
                f"storing the results of {ds.SOPInstanceUID} (STOW-RS)", self.to, e
            ) from None
        log.info("%s", answers[0].shown.text or answers[0].shown.row["result"])

    def _next(self, study: str, modality: str) -> int:
        key = f"{study}/{modality}"
        self.numbers[key] = self.numbers.get(key, 0) + 1
        return self.numbers[key]
