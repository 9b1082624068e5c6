"""Convolution and pooling in NumPy, vectorised: im2col through strided views (no Python loop over
positions), col2im as one strided add per kernel offset. Layout NCHW like PyTorch.
Shapes: x (N, C, H, W), w (F, C, KH, KW), out (N, F, OH, OW) with OH = (H + 2p - KH) // s + 1."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from common.errors import UserError


def output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    out = (size + 2 * pad - kernel) // stride + 1
    if out <= 0:
        raise UserError(f"a {kernel}-wide window with stride {stride} and padding {pad} does not fit an input of {size}")
    return out


def _windows(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """(N, C, H, W) -> view (N, C, OH, OW, KH, KW) of every window, no copy."""
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """(N, C, H, W) -> columns (N * OH * OW, C * KH * KW)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    win = _windows(xp, kh, kw, stride)                          # (N, C, OH, OW, KH, KW)
    n, c, oh, ow = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)


def col2im(cols: np.ndarray, x_shape: tuple, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """Adjoint of im2col: columns (N * OH * OW, C * KH * KW) summed back into (N, C, H, W)."""
    n, c, h, w = x_shape
    oh, ow = output_size(h, kh, stride, pad), output_size(w, kw, stride, pad)
    grid = cols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)  # (N, C, KH, KW, OH, OW)
    dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += grid[:, :, i, j]
    return dxp[:, :, pad:pad + h, pad:pad + w] if pad else dxp


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, OH, OW), cache."""
    n, c, h, width = x.shape
    f, wc, kh, kw = w.shape
    if wc != c:
        raise UserError(f"conv2d: input has {c} channels, the filters expect {wc}")
    oh, ow = output_size(h, kh, stride, pad), output_size(width, kw, stride, pad)
    cols = im2col(x, kh, kw, stride, pad)                       # (N*OH*OW, C*KH*KW)
    out = cols @ w.reshape(f, -1).T                             # (N*OH*OW, F)
    out += b
    out = out.reshape(n, oh, ow, f).transpose(0, 3, 1, 2)       # (N, F, OH, OW)
    return out, (x.shape, cols, w, stride, pad)


def conv2d_backward(dout: np.ndarray, cache, need_dx: bool = True):
    """dout (N, F, OH, OW) -> dx (N, C, H, W) or None, dw (F, C, KH, KW), db (F,)."""
    x_shape, cols, w, stride, pad = cache
    f, _, kh, kw = w.shape
    dmat = dout.transpose(0, 2, 3, 1).reshape(-1, f)            # (N*OH*OW, F)
    dw = (dmat.T @ cols).reshape(w.shape)
    db = dmat.sum(axis=0)
    dx = col2im(dmat @ w.reshape(f, -1), x_shape, kh, kw, stride, pad) if need_dx else None
    return dx, dw, db


def maxpool_forward(x: np.ndarray, kernel: int = 2, stride: int | None = None):
    """x (N, C, H, W) -> out (N, C, OH, OW): the max of each kernel x kernel window."""
    stride = stride or kernel
    output_size(x.shape[2], kernel, stride, 0), output_size(x.shape[3], kernel, stride, 0)
    win = _windows(x, kernel, kernel, stride)                   # (N, C, OH, OW, K, K)
    flat = win.reshape(*win.shape[:4], kernel * kernel)
    arg = flat.argmax(axis=-1)                                  # (N, C, OH, OW), first max wins (as torch)
    out = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return out, (x.shape, arg, kernel, stride)


def maxpool_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Route each output gradient to the input position that held the max."""
    x_shape, arg, kernel, stride = cache
    oh, ow = arg.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for i in range(kernel):
        for j in range(kernel):
            hit = arg == i * kernel + j                          # (N, C, OH, OW)
            dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += dout * hit
    return dx


def avgpool_forward(x: np.ndarray, kernel: int = 2, stride: int | None = None):
    """x (N, C, H, W) -> out (N, C, OH, OW): the mean of each window."""
    stride = stride or kernel
    output_size(x.shape[2], kernel, stride, 0), output_size(x.shape[3], kernel, stride, 0)
    out = _windows(x, kernel, kernel, stride).mean(axis=(-2, -1))
    return out, (x.shape, kernel, stride)


def avgpool_backward(dout: np.ndarray, cache) -> np.ndarray:
    x_shape, kernel, stride = cache
    oh, ow = dout.shape[2:]
    dx = np.zeros(x_shape, dtype=dout.dtype)
    share = dout / (kernel * kernel)
    for i in range(kernel):
        for j in range(kernel):
            dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += share
    return dx
