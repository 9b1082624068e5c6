"""Metrics against scikit-learn / hand counts; plots written as PNG files."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix

from common.metrics import accuracy, confusion, loss_trend, macro_f1, sparkline
from common.plots import plot_confusion, plot_curves, plot_image_grid, plot_overlays


def test_confusion_counts_by_hand():
    y_true, y_pred = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2])
    expected = np.zeros((4, 4), int)
    for t, p in zip(y_true, y_pred):
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion(y_true, y_pred, 4), expected)  # class 3 absent still gets a row
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6) == accuracy_score(y_true, y_pred)
    np.testing.assert_array_equal(confusion(y_true, y_pred, 3), confusion_matrix(y_true, y_pred))
    assert 0 < macro_f1(y_true, y_pred) < 1


def test_loss_trend_describes_direction_and_divergence():
    assert loss_trend([2.3, 1.0, 0.5]).startswith("2.3→0.5 ↓")
    assert "→ " in loss_trend([1.0, 1.01, 1.02])
    assert "↑" in loss_trend([1.0, 2.0])
    assert loss_trend([1.0, float("nan")]) == "diverged (NaN/inf)"
    assert sparkline([3, 2, 1]) == "█▅▁"  # 3.5 of 7 levels rounds half to even


def test_plots_write_pngs(tmp_path):
    records = [{"epoch": e, "train_loss": 1 / e, "test_loss": 1.2 / e, "train_acc": 1 - 1 / e} for e in (1, 2, 3)]
    paths = [
        plot_curves(records, {"loss": ["train_loss", "test_loss"], "accuracy": ["train_acc"]}, tmp_path / "c.png"),
        plot_confusion(np.eye(3) * 5, ["a", "b", "c"], tmp_path / "m.png", normalize=True),
        plot_image_grid(np.zeros((4, 28, 28)), list("abcd"), tmp_path / "g.png", ncols=2),
        plot_overlays({"p": {"x": [1, 2], "y": [2, 1]}}, tmp_path / "o.png", ylabel="v"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
