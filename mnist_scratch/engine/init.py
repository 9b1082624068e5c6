"""Weight initialisations: `init(fan_in, fan_out, rng, shape=None) -> float64 array`, of `shape`
(default (fan_in, fan_out)). A conv filter bank passes fan_in = C*KH*KW, fan_out = F*KH*KW."""
from __future__ import annotations

import numpy as np


def random_normal(fan_in: int, fan_out: int, rng: np.random.Generator, shape=None) -> np.ndarray:
    """N(0, 0.01^2), the classic small random init (CS231n's weight_scale=1e-2)."""
    return 0.01 * rng.standard_normal(shape or (fan_in, fan_out))


def xavier_normal(fan_in: int, fan_out: int, rng: np.random.Generator, shape=None) -> np.ndarray:
    """Glorot & Bengio (2010): variance 2 / (fan_in + fan_out)."""
    return np.sqrt(2.0 / (fan_in + fan_out)) * rng.standard_normal(shape or (fan_in, fan_out))


def he_normal(fan_in: int, fan_out: int, rng: np.random.Generator, shape=None) -> np.ndarray:
    """He et al. (2015), for ReLU: variance 2 / fan_in."""
    return np.sqrt(2.0 / fan_in) * rng.standard_normal(shape or (fan_in, fan_out))


INITS = {"random": random_normal, "xavier": xavier_normal, "he": he_normal}
