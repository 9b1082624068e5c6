"""Grad-CAM (Selvaraju et al., 2017) written with hooks, and the measurement of where the maps fall.

    cams, logits = grad_cam(model, model.gradcam_layer(), x)          # (B, H, W) in [0, 1], (B, K)

For each image: the target layer's activations A (C, h, w) and the gradient of the target class's logit
with respect to them; the channel weights are the gradients averaged over (h, w); the map is
relu(sum_c w_c A_c), scaled to [0, 1], resized to the input bilinearly and scaled to [0, 1] again: the
same steps as the `grad-cam` package's GradCAM (tests/test_resnet_norms.py checks they agree).
`central_fraction` is the share of a map's mass inside the central box (half the height and half the
width: a quarter of the image, so a map spread evenly scores 0.25).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from torch import nn


def _minmax(maps: torch.Tensor) -> torch.Tensor:  # (B, H, W) -> each map scaled to [0, 1]
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    shifted = maps - low
    return shifted / (1e-7 + shifted.flatten(1).max(dim=1).values.view(-1, 1, 1))


def grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor,
             targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps (B, H, W) in [0, 1] for `targets` (default: the predicted classes), and the logits."""
    saved: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output):
        saved["activations"] = output
        output.register_hook(lambda grad: saved.__setitem__("gradients", grad))

    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(x.detach().requires_grad_(False))                         # (B, K)
            if targets is None:
                targets = logits.argmax(1)
            model.zero_grad(set_to_none=True)
            logits.gather(1, targets.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
        model.train(was_training)
    activations, gradients = saved["activations"].detach(), saved["gradients"].detach()  # (B, C, h, w)
    weights = gradients.mean(dim=(2, 3), keepdim=True)                                    # (B, C, 1, 1)
    cams = _minmax(torch.relu((weights * activations).sum(1)))                            # (B, h, w)
    cams = F.interpolate(cams.unsqueeze(1), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return _minmax(cams.clamp_min(0)), logits.detach()


def central_fraction(cams: torch.Tensor | np.ndarray, box: float = 0.5) -> np.ndarray:
    """Per map (B, H, W): the share of its total mass inside the central box of `box` x the height and
    width. Uniform maps give box**2; an all-zero map (no positive evidence anywhere) gives NaN."""
    cams = torch.as_tensor(cams, dtype=torch.float32)
    _, h, w = cams.shape
    top, left = int(round(h * (1 - box) / 2)), int(round(w * (1 - box) / 2))
    inside = cams[:, top:h - top, left:w - left].sum(dim=(1, 2))
    total = cams.sum(dim=(1, 2))
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.nan).numpy()


def overlay(images: np.ndarray, cams: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Images (B, H, W, 3) in [0, 1] with the maps (B, H, W) blended on top in matplotlib's jet colours."""

    heat = colormaps["jet"](np.asarray(cams))[..., :3]
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    return np.clip((1 - alpha) * images + alpha * heat, 0, 1)
