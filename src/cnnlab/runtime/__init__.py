"""Runtime: where and how a model runs (device, precision, threads), batched inference, the
Decision that turns its logits into labels, and the out-of-distribution check that says when
an input is unlike the training images (runtime.ood), and `runtime.taps`: reading a layer's
features during one call without touching a model other callers share. Below the bundle,
which owns one of each."""

from cnnlab.runtime.decision import Decision, probabilities
from cnnlab.runtime.device import Runtime, choose_runtime, set_threads
from cnnlab.runtime.inference import predict_logits

__all__ = [
    "Decision",
    "Runtime",
    "choose_runtime",
    "predict_logits",
    "probabilities",
    "set_threads",
]
