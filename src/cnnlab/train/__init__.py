"""Train: the loop (fit: set-up, epoch, step), its callbacks, distributed data parallel, easy-image
pruning, transfer phases, calibration fitting, evaluation and external validation, and a whole
run from recipe to bundle (`run.train_recipe`)."""

from cnnlab.train.evaluate import classification_report
from cnnlab.train.fit import FitResult, fit

__all__ = ["FitResult", "classification_report", "fit"]
