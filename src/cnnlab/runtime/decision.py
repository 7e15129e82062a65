"""The Decision: how a bundle turns its model's logits into a label.

Temperature scaling first (calibrated probabilities; it never changes the order of the scores),
then a rule: for a binary model, the positive class when p(positive) >= threshold; for the
others, the most probable class. Fitting the temperature and the threshold is training's work
(`cnnlab.train.calibration`); applying them is here, so evaluate, predict, the app, the API
and the ONNX path all decide alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


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
    def from_record(cls, record: dict[str, Any] | None, binary: bool) -> Decision:
        """bundle.json's block (absent keys: threshold 0.5 for binary models, temperature 1)."""
        record = dict(record or {})
        threshold = float(record.get("threshold", 0.5)) if binary else None
        policy = str(record.get("policy", "fixed" if binary else "argmax"))
        return cls(threshold, float(record.get("temperature", 1.0)), policy, record)

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
