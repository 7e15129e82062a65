"""Engine: the training loop, evaluation, inference and the runtime choices behind them."""

from cnnlab.runtime.device import Runtime, choose_runtime
from cnnlab.runtime.inference import predict_logits, probabilities
from cnnlab.train.evaluate import classification_report
from cnnlab.train.fit import FitResult, fit

__all__ = [
    "FitResult",
    "Runtime",
    "choose_runtime",
    "classification_report",
    "fit",
    "predict_logits",
    "probabilities",
]
