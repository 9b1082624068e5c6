"""Pictures of sketches: a grid PNG (matplotlib), an animated GIF of the strokes being drawn (Pillow),
and a live window that draws as the model generates (when a display exists)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw

from common.plots import save_figure  # importing common.plots also selects the Agg backend
import matplotlib.pyplot as plt
from matplotlib.collections import LineCollection

MAX_GIF_FRAMES = 40
INTERACTIVE_BACKENDS = ("QtAgg", "TkAgg", "MacOSX", "GTK4Agg", "GTK3Agg")


def segments(stroke3: np.ndarray) -> np.ndarray:
    """Stroke-3 (L, 3) -> (L, 2, 2) line segments in drawing order; a segment after a pen lift is NaN
    (kept so that frame k of an animation is simply the first k rows)."""
    points = np.vstack([[0.0, 0.0], np.cumsum(np.asarray(stroke3, dtype=float)[:, :2], axis=0)])  # (L + 1, 2)
    segs = np.stack([points[:-1], points[1:]], axis=1)
    lifted_before = np.concatenate([[0.0], np.asarray(stroke3)[:-1, 2]])[:len(segs)] > 0.5
    segs[lifted_before] = np.nan
    return segs


def _grid_axes(count: int, ncols: int, titles: list[str], title: str):
    nrows = max(1, int(np.ceil(count / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.75 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, label in zip(axes.flat, titles):
        ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig, list(axes.flat)[:count]


def _prepare(ax, segs: np.ndarray) -> LineCollection:
    finite = segs[np.isfinite(segs).all(axis=(1, 2))].reshape(-1, 2)
    low, high = (finite.min(0), finite.max(0)) if len(finite) else (np.zeros(2), np.ones(2))
    pad = 0.08 * max(float((high - low).max()), 1e-6)
    ax.set_xlim(low[0] - pad, high[0] + pad)
    ax.set_ylim(high[1] + pad, low[1] - pad)  # screen coordinates: y grows downwards
    ax.set_aspect("equal")
    lines = LineCollection([], linewidths=1.4, colors="black")
    ax.add_collection(lines)
    return lines


def plot_sketch_grid(sketches: list[np.ndarray], titles: list[str], path: Path, *, ncols: int, title: str = "") -> Path:
    fig, axes = _grid_axes(len(sketches), ncols, titles, title)
    for ax, sketch in zip(axes, sketches):
        segs = segments(sketch)
        _prepare(ax, segs).set_segments(list(segs))
    return save_figure(fig, path)


def _cell_transform(segs: np.ndarray, cell: int, margin: int) -> tuple[np.ndarray, float, np.ndarray]:
    """(low, scale, offset) fitting a sketch's finite points into a cell x cell square, aspect kept."""
    finite = segs[np.isfinite(segs).all(axis=(1, 2))].reshape(-1, 2)
    low, high = (finite.min(0), finite.max(0)) if len(finite) else (np.zeros(2), np.ones(2))
    scale = (cell - 2 * margin) / max(float((high - low).max()), 1e-9)
    return low, scale, margin + ((cell - 2 * margin) - (high - low) * scale) / 2


def write_gif(sketches: list[np.ndarray], titles: list[str], path: Path, *, ncols: int, title: str = "",
              fps: int = 8, cell: int = 110) -> Path:
    """All sketches drawn at once, row by row (at most MAX_GIF_FRAMES frames plus a held last frame),
    rendered with Pillow's ImageDraw (matplotlib's own dependency)."""
    label, top = 14, 18 if title else 0
    nrows = max(1, int(np.ceil(len(sketches) / ncols)))
    canvas = Image.new("L", (ncols * cell, top + nrows * (cell + label)), 255)
    pen = ImageDraw.Draw(canvas)
    if title:
        pen.text((4, 3), title, fill=0)
    all_segs = [segments(s) for s in sketches]
    origins = []
    for k, name in enumerate(titles):
        x0, y0 = (k % ncols) * cell, top + (k // ncols) * (cell + label)
        pen.text((x0 + 4, y0 + 1), name, fill=0)
        origins.append((x0, y0 + label))
    placements = [_cell_transform(segs, cell, 8) for segs in all_segs]
    longest = max([len(s) for s in all_segs] + [1])
    stops = np.unique(np.linspace(1, longest, min(longest, MAX_GIF_FRAMES)).round().astype(int))
    frames, drawn = [], 0
    for stop in stops:
        for segs, (low, scale, offset), (x0, y0) in zip(all_segs, placements, origins):
            for a, b in segs[drawn:stop]:
                if np.isfinite(a).all() and np.isfinite(b).all():
                    pa, pb = (a - low) * scale + offset, (b - low) * scale + offset
                    pen.line([(x0 + pa[0], y0 + pa[1]), (x0 + pb[0], y0 + pb[1])], fill=0, width=2)
        drawn = stop
        frames.append(canvas.copy())
    frames += [frames[-1]] * (fps // 2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0,
                   optimize=False)
    return path


def display_available() -> tuple[bool, str]:
    """Whether a window can be opened here, and why not."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    for backend in INTERACTIVE_BACKENDS:
        try:
            plt.switch_backend(backend)
            return True, backend
        except (ImportError, RuntimeError, ValueError):
            continue
    return False, f"no interactive matplotlib backend ({', '.join(INTERACTIVE_BACKENDS)}) can start"


def animate_live(steps: Iterable[np.ndarray], titles: list[str], *, ncols: int,
                 pause: float = 0.02) -> list[np.ndarray]:
    """Draw in an open window as the rows arrive: `steps` yields (B, 5) stroke-5 rows per step.
    Returns the rows collected, (B, steps, 5). Call only when display_available() said yes."""
    fig, axes = _grid_axes(len(titles), ncols, titles, "generating ...")
    collections = []
    for ax in axes:
        ax.set_xlim(-6, 6)
        ax.set_ylim(6, -6)
        ax.set_aspect("equal")
        collections.append(ax.add_collection(LineCollection([], linewidths=1.4, colors="black")))
    plt.show(block=False)
    rows = []
    for row in steps:
        rows.append(np.asarray(row))
        done = np.stack(rows, axis=1)                                         # (B, t, 5)
        for ax, lines, sketch_rows in zip(axes, collections, done):
            stroke3 = np.column_stack([sketch_rows[:, :2], sketch_rows[:, 3]])[sketch_rows[:, 4] < 0.5]
            segs = segments(stroke3) if len(stroke3) else np.zeros((0, 2, 2))
            lines.set_segments(list(segs))
            if len(segs):
                ax.update_datalim(segs[np.isfinite(segs).all(axis=(1, 2))].reshape(-1, 2))
                ax.autoscale_view()
        plt.pause(max(pause, 1e-3))  # pause(0) would wait forever
    fig.suptitle("done: close the window to finish", fontsize=9)
    plt.show(block=True)
    return rows
