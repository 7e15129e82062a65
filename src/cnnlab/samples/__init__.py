"""Sample images shipped with cnnlab (source and licence of each in README.md beside them):
for the README's examples and the app's "Try a sample" buttons, never for training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import CnnlabError

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sample:
    name: str
    file: str
    what: str
    channels: int  # 1 grey, 3 colour
    size: int  # side in pixels

    @property
    def path(self) -> Path:
        return FOLDER / self.file


SAMPLES = {
    s.name: s
    for s in (
        Sample("xray_pneumonia", "xray_pneumonia.jpeg", "chest X-ray, pneumonia", 1, 224),
        Sample("xray_normal", "xray_normal.jpeg", "chest X-ray, normal", 1, 224),
        Sample("mnist_7", "mnist_7.png", "MNIST digit 7", 1, 28),
        Sample("mnist_2", "mnist_2.png", "MNIST digit 2", 1, 28),
        Sample("cifar10_cat", "cifar10_cat.jpg", "CIFAR-10 cat", 3, 32),
    )
}


def sample_path(name: str) -> Path:
    """The file of a sample by name (`mnist_7`), or a CnnlabError that lists the names."""
    if name not in SAMPLES:
        raise CnnlabError(f"no sample {name!r}; samples: {', '.join(SAMPLES)}")
    return SAMPLES[name].path


def samples_for(channels: int, size: int, classes: list[str] | None = None) -> list[Sample]:
    """Every sample, the ones that suit a model first: its class names (NORMAL/PNEUMONIA,
    digits), then its channels and the nearest image size."""
    names = {c.lower() for c in classes or []}

    def rank(s: Sample) -> tuple:
        xray = s.name.startswith("xray")
        if {"normal", "pneumonia"} & names:
            topic = 0 if xray else 1
        elif names and names <= {str(i) for i in range(10)}:
            topic = 0 if s.name.startswith("mnist") else 1
        else:
            topic = 0
        return (topic, s.channels != channels, abs(s.size - size))

    return sorted(SAMPLES.values(), key=rank)
