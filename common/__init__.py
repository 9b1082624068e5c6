"""Thin shared package: data resolution, generated data sets, metrics, plots, run logging,
checkpoints, device/seed and CLI flags. No assignment logic lives here."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
