"""Convolution and pooling in NumPy, vectorised. Layout NCHW like PyTorch at the interface.
Shapes: x (N, C, H, W), w (F, C, KH, KW), out (N, F, OH, OW) with OH = (H + 2p - KH) // s + 1.

im2col works on a channels-last copy and orders each column as (KH, KW, C), so it is KH*KW block
copies of contiguous channel vectors (no Python loop over positions); col2im is the same KH*KW
strided adds in reverse. Pools take strided window views."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from common.errors import UserError
from mnist_scratch.engine.limits import check_array


def output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    out = (size + 2 * pad - kernel) // stride + 1
    if out <= 0:
        raise UserError(f"a {kernel}-wide window with stride {stride} and padding {pad} "
                        f"does not fit an input of {size}")
    return out


def _windows(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """(N, C, H, W) -> view (N, C, OH, OW, KH, KW) of every window, no copy."""
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]


def _padded_nhwc(x: np.ndarray, pad: int) -> np.ndarray:
    """(N, C, H, W) -> zero-padded channels-last copy (N, H + 2p, W + 2p, C)."""
    n, c, h, w = x.shape
    xp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=x.dtype)
    xp[:, pad:pad + h, pad:pad + w, :] = x.transpose(0, 2, 3, 1)
    return xp


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """(N, C, H, W) -> columns (N * OH * OW, KH * KW * C), each ordered (KH, KW, C)."""
    n, c, h, w = x.shape
    oh, ow = output_size(h, kh, stride, pad), output_size(w, kw, stride, pad)
    xp = _padded_nhwc(x, pad)
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :]
    return cols.reshape(n * oh * ow, kh * kw * c)


def col2im(cols: np.ndarray, x_shape: tuple, kh: int, kw: int, stride: int, pad: int) -> np.ndarray:
    """Adjoint of im2col: columns (N * OH * OW, KH * KW * C) summed back into (N, C, H, W)."""
    n, c, h, w = x_shape
    oh, ow = output_size(h, kh, stride, pad), output_size(w, kw, stride, pad)
    grid = cols.reshape(n, oh, ow, kh, kw, c)
    dxp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :] += grid[:, :, :, i, j, :]
    return dxp[:, pad:pad + h, pad:pad + w, :].transpose(0, 3, 1, 2)  # NCHW view of channels-last memory


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, OH, OW), cache."""
    n, c, h, width = x.shape
    f, wc, kh, kw = w.shape
    if wc != c:
        raise UserError(f"conv2d: input has {c} channels, the filters expect {wc}")
    oh, ow = output_size(h, kh, stride, pad), output_size(width, kw, stride, pad)
    check_array(n * oh * ow * kh * kw * c, x.dtype, f"the column buffer of a {kh}x{kw} convolution of {c:,} channels "
                                                     f"for {n:,} examples")
    check_array(n * oh * ow * f, x.dtype, f"the output of a convolution to {f:,} channels for {n:,} examples")
    cols = im2col(x, kh, kw, stride, pad)                       # (N*OH*OW, KH*KW*C)
    out = cols @ w.transpose(0, 2, 3, 1).reshape(f, -1).T       # (N*OH*OW, F)
    out += b
    out = out.reshape(n, oh, ow, f).transpose(0, 3, 1, 2)       # (N, F, OH, OW), channels-last memory
    return out, (x.shape, cols, w, stride, pad)


def conv2d_backward(dout: np.ndarray, cache, need_dx: bool = True):
    """dout (N, F, OH, OW) -> dx (N, C, H, W) or None, dw (F, C, KH, KW), db (F,)."""
    x_shape, cols, w, stride, pad = cache
    f, _, kh, kw = w.shape
    dmat = dout.transpose(0, 2, 3, 1).reshape(-1, f)            # (N*OH*OW, F)
    dw = (dmat.T @ cols).reshape(f, kh, kw, -1).transpose(0, 3, 1, 2)  # (F, C, KH, KW)
    db = dmat.sum(axis=0)
    w_mat = w.transpose(0, 2, 3, 1).reshape(f, -1)              # (F, KH*KW*C)
    dx = col2im(dmat @ w_mat, x_shape, kh, kw, stride, pad) if need_dx else None
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
