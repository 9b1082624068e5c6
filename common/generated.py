"""Embedded stand-ins for the real image sets: made in seconds, deterministic from the seed,
with the real set's shapes and label structure, and learnable."""
from __future__ import annotations

import numpy as np

DIGIT_NAMES = [str(d) for d in range(10)]


def sklearn_digits_28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, UCI) in MNIST's layout:
    upscaled to 20x20 and centred by centre of mass in a 28x28 frame, uint8 0-255.
    Returns images (N, 28, 28) uint8 and labels (N,) int64."""
    from scipy import ndimage   # scipy and scikit-learn take a second to import: only for this stand-in
    from sklearn.datasets import load_digits

    digits = load_digits()
    scans = digits.images.astype(np.float64) / 16.0  # (N, 8, 8) in [0, 1]
    big = ndimage.zoom(scans, (1, 2.5, 2.5), order=1).clip(0, 1)  # (N, 20, 20)
    frames = np.zeros((len(big), 28, 28))
    for i, image in enumerate(big):
        cy, cx = ndimage.center_of_mass(image)
        top = int(np.clip(round(14 - cy), 0, 8))
        left = int(np.clip(round(14 - cx), 0, 8))
        frames[i, top:top + 20, left:left + 20] = image
    return (frames * 255).round().astype(np.uint8), digits.target.astype(np.int64)


def pattern_classes(n: int, shape: tuple[int, ...], num_classes: int, seed: int, split: str = "train",
                    noise: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Generated image classes: each class is a fixed smooth prototype (a few Gaussian blobs and an
    oriented grating, per channel); samples are the prototype shifted by up to 3 pixels, with random
    contrast and pixel noise. The prototypes depend on `seed` alone, the samples on `seed` and `split`.
    Returns images `shape`-shaped uint8 (N, H, W[, C]) and labels (N,)."""
    height, width = shape[:2]
    channels = shape[2] if len(shape) == 3 else 1
    proto_rng = np.random.default_rng([seed, 7919])  # prototypes depend on the seed only
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    prototypes = np.zeros((num_classes, height, width, channels))
    for k in range(num_classes):
        for c in range(channels):
            canvas = np.zeros((height, width))
            for _ in range(3):
                cy, cx = proto_rng.uniform(0.2, 0.8, 2)
                sigma = proto_rng.uniform(0.08, 0.2)
                canvas += proto_rng.uniform(0.5, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
            angle, freq = proto_rng.uniform(0, np.pi), proto_rng.uniform(2, 6)
            canvas += 0.3 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
            prototypes[k, :, :, c] = canvas
    prototypes = (prototypes - prototypes.min()) / (np.ptp(prototypes) + 1e-9)

    rng = np.random.default_rng([seed, n, {"train": 0, "test": 1}[split]])
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    shifts = rng.integers(-3, 4, size=(n, 2))
    contrast = rng.uniform(0.6, 1.2, size=(n, 1, 1, 1))
    images = np.stack([np.roll(prototypes[k], tuple(s), axis=(0, 1)) for k, s in zip(labels, shifts)])
    images = images * contrast + noise * rng.standard_normal(images.shape)
    images = (images.clip(0, 1) * 255).round().astype(np.uint8)
    if len(shape) == 2:
        images = images[..., 0]
    return images, labels.astype(np.int64)
