"""The judge of samples: a small CNN trained on rasterised sketches of the same data source (its train
split), then asked which class each generated sketch is. Recognisability = how often the answer is
the class the generator was asked for (chance: 1 / classes). Trained once per run by train.py after
the generator (its own short loop below) and cached in the run directory as recognizer.pt."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common.checkpoint import load_checkpoint, save_checkpoint
from common.models import ModelConfig, rebuild_model
from common.training import EpochGuard, Meter, tensor_batches
from sketch_rnn.strokes import rasterise, stroke3_to_strokes, stroke5_to_stroke3

RECOGNIZER_FILE = "recognizer.pt"


@dataclass(frozen=True)
class RecognizerConfig(ModelConfig):
    classes: list[str] = field(default_factory=list)
    size: int = 28
    channels: tuple[int, int] = (16, 32)
    hidden: int = 64

    def describe(self) -> str:
        channels = "-".join(map(str, self.channels))
        return f"CNN {channels} on {self.size}x{self.size} rasters, {len(self.classes)} classes"


class Recognizer(nn.Module):
    """conv3-relu-pool, conv3-relu-pool, dense, dense: (B, 1, S, S) -> (B, classes) logits."""

    def __init__(self, config: RecognizerConfig):
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        self.features = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classify = nn.Sequential(nn.Flatten(), nn.Linear(c2 * (config.size // 4) ** 2, config.hidden),
                                      nn.ReLU(), nn.Linear(config.hidden, len(config.classes)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(images))


def raster_batch(drawings: list[np.ndarray], size: int = 28) -> torch.Tensor:
    """Stroke-3 drawings -> (N, 1, size, size) float images."""
    images = np.stack([rasterise(stroke3_to_strokes(d), size) for d in drawings]) if drawings else \
        np.zeros((0, size, size), np.float32)
    return torch.from_numpy(images).unsqueeze(1)


def train_recognizer(train: tuple[list[np.ndarray], np.ndarray], test: tuple[list[np.ndarray], np.ndarray],
                     classes: list[str], *, seed: int, epochs: int = 6, quiet: bool = False
                     ) -> tuple[Recognizer, float]:
    """Train on the rasterised train split; returns the model and its accuracy on the test split."""
    torch.manual_seed(seed)
    model = Recognizer(RecognizerConfig(list(classes)))
    images, labels = raster_batch(train[0]), torch.as_tensor(train[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    guard = EpochGuard(None)   # a diverged recognizer stops the run (it writes no checkpoint of its own)
    for epoch in range(epochs):
        model.train()
        meter = Meter()
        for x, y in tensor_batches((images, labels), 64, seed=seed, epoch=epoch):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            meter.add(loss, len(y))
        guard.check(meter, model, epoch)
    accuracy = float((predict(model, test[0]) == test[1]).mean())
    if not quiet:
        print(f"recognizer: {accuracy:.2%} on the {len(test[1])} held-out test sketches")
    return model, accuracy


@torch.no_grad()
def predict(model: Recognizer, drawings: list[np.ndarray]) -> np.ndarray:
    model.eval()
    return model(raster_batch(drawings, model.config.size)).argmax(1).numpy()


def save_recognizer(path: Path, model: Recognizer, test_acc: float, source: str) -> None:
    save_checkpoint(path, {"model_config": model.config.to_dict(), "model": model.state_dict(), "test_acc": test_acc,
                           "data_source": source})


def load_recognizer(path: Path) -> tuple[Recognizer, dict]:
    state = load_checkpoint(path)
    model = rebuild_model(state, lambda config: Recognizer(RecognizerConfig.from_dict(config)), path, "recognizer")
    return model.eval(), state


def rows_to_stroke3(rows: torch.Tensor) -> list[np.ndarray]:
    """Generated stroke-5 rows (B, steps, 5) -> one stroke-3 per sketch (up to its end token)."""
    return [stroke5_to_stroke3(r) for r in rows.cpu().numpy()]


def recognisability(recognizer: Recognizer, sketches: list[np.ndarray], requested: np.ndarray
                    ) -> tuple[float, np.ndarray, np.ndarray]:
    """Share of sketches recognised as the requested class; the predictions; per-class shares.
    An empty sketch (ended at once) counts as not recognised."""
    predictions = predict(recognizer, sketches)
    empty = np.array([len(s) == 0 for s in sketches])
    hit = (predictions == requested) & ~empty
    classes = len(recognizer.config.classes)
    per_class = np.array([hit[requested == k].mean() if (requested == k).any() else np.nan for k in range(classes)])
    return float(hit.mean()), predictions, per_class
