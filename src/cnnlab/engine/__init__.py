"""Engine: the training loop, evaluation, inference and the runtime choices behind them."""

from cnnlab.engine.evaluate import classification_report
from cnnlab.engine.fit import FitResult, fit
from cnnlab.engine.inference import predict_logits, probabilities
from cnnlab.engine.runtime import Runtime, choose_runtime

__all__ = [
    "FitResult",
    "Runtime",
    "choose_runtime",
    "classification_report",
    "fit",
    "predict_logits",
    "probabilities",
]
