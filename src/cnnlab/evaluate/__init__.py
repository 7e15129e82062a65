"""Evaluate: how good a trained bundle is, and the rules fitted to what it outputs. Its scores on
a split (scores.py: loss, accuracy, per-class precision/recall/F1, the confusion matrix), what
clinicians ask of a binary model (medical.py), external validation on a site's sample
(external.py) and the rule refitted there (recalibrate.py), and the fitting of a bundle's
decision rule (calibration.py) and out-of-distribution check (ood_fit.py). The runtime applies
what is fitted here; training calls these once it has a model, and so do `cnnlab evaluate`,
`recalibrate` and `ood-fit` on a bundle that exists."""

from cnnlab.evaluate.scores import classification_report, evaluate_bundle

__all__ = ["classification_report", "evaluate_bundle"]
