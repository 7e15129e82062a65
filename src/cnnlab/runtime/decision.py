"""The Decision: how a bundle turns its model's logits into a label.

Temperature scaling first (calibrated probabilities; it never changes the order of the scores),
then a rule: for a binary model, the positive class when p(positive) >= threshold; for the
others, the most probable class. Fitting the temperature and the threshold is training's work
(`cnnlab.evaluate.calibration`); applying them is here, so evaluate, predict, the app, the API
and the ONNX path all decide alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnlab.errors import CnnlabError

MAX_TEMPERATURE = 100.0  # fitted temperatures are about 0.5-5; beyond this every p is ~0.5
# What calibration can fit (`cnnlab.evaluate.calibration` clamps to these): a bundle's decision
# outside them was not made by training (1e-300 makes every probability 0 or 1)
THRESHOLD_MARGIN = 1e-6  # a fitted threshold stays this far inside (0, 1)
TEMPERATURE_RANGE = (0.05, 20.0)


def _number(value: Any, where: str) -> float:
    """A finite number (not a bool, not a string), or a CnnlabError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CnnlabError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise CnnlabError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(N, K) class probabilities; a single-logit (binary) model gives [1 - p, p]."""
    z = logits / temperature
    if z.shape[1] == 1:
        p = torch.sigmoid(z[:, 0])
        return torch.stack([1 - p, p], 1)
    return torch.softmax(z, 1)


def predictions(probs: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """Class indices: argmax, or for binary models `p(positive) >= threshold`."""
    if threshold is not None and probs.shape[1] == 2:
        return (probs[:, 1] >= threshold).long()
    return probs.argmax(1)


@dataclass(frozen=True)
class Decision(Mapping[str, Any]):
    """A bundle's decision rule. It also reads as the `decision` block of bundle.json it came
    from (`policy_text`, `positive_class`, `fitted_on`, ...), a mapping of that record."""

    threshold: float | None = None  # binary models: p(positive) >= threshold; None: argmax
    temperature: float = 1.0
    policy: str = "argmax"
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_record(cls, record: Any, binary: bool) -> Decision:
        """bundle.json's block (absent keys: threshold 0.5 for binary models, temperature 1),
        every value checked: a NaN threshold, a negative temperature or a threshold outside
        (0, 1) would turn answers silently; each is a CnnlabError naming the field."""
        if record is None:
            record = {}
        if not isinstance(record, dict):
            raise CnnlabError(f"decision must be a mapping, got {record!r}")
        record = dict(record)
        threshold = None
        if binary:
            threshold = _number(record.get("threshold", 0.5), "decision.threshold")
            if not 0.0 < threshold < 1.0:
                raise CnnlabError(f"decision.threshold must be in (0, 1), got {threshold}")
        temperature = _number(record.get("temperature", 1.0), "decision.temperature")
        if not 0.0 < temperature <= MAX_TEMPERATURE:
            raise CnnlabError(
                f"decision.temperature must be in (0, {MAX_TEMPERATURE:g}], got {temperature}"
            )
        policy = record.get("policy", "fixed" if binary else "argmax")
        if not isinstance(policy, str):
            raise CnnlabError(f"decision.policy must be a string, got {policy!r}")
        return cls(threshold, temperature, policy, record)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated (N, K) probabilities of raw logits."""
        return probabilities(logits, self.temperature)

    def predict(self, probs: torch.Tensor) -> torch.Tensor:
        """Class indices of (N, K) calibrated probabilities, by this rule."""
        return predictions(probs, self.threshold)

    def __getitem__(self, key: str) -> Any:
        return self.record[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.record)

    def __len__(self) -> int:
        return len(self.record)
