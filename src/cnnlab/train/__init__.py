"""Train: the loop (fit: set-up, epoch, step) over batches of images or of cached features, its
callbacks, distributed data parallel, easy-image pruning, transfer phases, the memory budget,
and a whole run from recipe to bundle (`run.train_recipe`), which calls evaluate/ to score the
model and fit its decision rule and out-of-distribution check."""

from cnnlab.train.fit import FitResult, fit

__all__ = ["FitResult", "fit"]
