"""Losses, each `loss(output, target) -> (mean loss, doutput)`, in two registries by target type:

    LOSSES             classification on logits: (logits (N, C), y (N,) int) -> (loss, dlogits (N, C))
    REGRESSION_LOSSES  regression: (pred (N, K), target (N, K) float) -> (loss, dpred (N, K))"""
from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray):
    """Mean of -log softmax(logits)[y]; numerically stable for any logit scale."""
    n = len(y)
    log_probs = log_softmax(logits)
    rows = np.arange(n)
    loss = -float(log_probs[rows, y].mean())
    dlogits = np.exp(log_probs)
    dlogits[rows, y] -= 1
    dlogits /= n
    return loss, dlogits


def softmax_squared_error(logits: np.ndarray, y: np.ndarray):
    """Mean over the batch of sum_c (softmax_c - onehot_c)^2, back-propagated through the softmax."""
    n, classes = logits.shape
    probs = softmax(logits)
    diff = probs - np.eye(classes, dtype=logits.dtype)[y]
    loss = float((diff * diff).sum(axis=1).mean())
    dprobs = 2 * diff / n
    dlogits = probs * (dprobs - (dprobs * probs).sum(axis=1, keepdims=True))
    return loss, dlogits


LOSSES = {"cross_entropy": softmax_cross_entropy, "squared_error": softmax_squared_error}


def mean_squared_error(pred: np.ndarray, target: np.ndarray):
    """Mean over all N * K entries of (pred - target)^2, like torch.nn.MSELoss()."""
    diff = pred - target
    loss = float(np.mean(diff * diff))
    return loss, (2.0 / diff.size) * diff


REGRESSION_LOSSES = {"mse": mean_squared_error}
