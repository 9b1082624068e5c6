"""Several train.py runs' test-accuracy curves in one figure (e.g. DFAD beside its Gaussian-noise baseline).

    python dfad_kd/compare.py "DFAD + BN match=runs/dfad_kd/cifar_bn" "noise=runs/dfad_kd/cifar_noise" \
        --out dfad_kd/figures/cifar10_bn_vs_noise.png

Each LABEL=RUN_DIR reads RUN_DIR/metrics.jsonl; two panels: test accuracy on the full test set and the
student's agreement with the teacher on it, per epoch (runs of the same --iters-per-epoch and --ks take the
same student steps per epoch).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import OneLineParser
from common.errors import UserError, run_cli
from common.plots import plot_overlays
from common.rundir import METRICS, output_file, read_metrics

PLOTTED = ("test_acc", "agree_real")   # what each run's metrics.jsonl gives the two panels, per epoch


def read_runs(specs: list[str]) -> dict[str, list[dict]]:
    """'label=run_dir' -> {label: the run's metrics.jsonl records}; one UserError for a bad spec or run."""
    runs = {}
    for spec in specs:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            raise UserError(f"expected LABEL=RUN_DIR, got '{spec}'")
        path = Path(folder).expanduser() / METRICS
        if not path.is_file():
            raise UserError(f"{path} does not exist: point {label}= at a train.py run directory")
        records = read_metrics(path.parent)
        lacking = sorted({key for r in records for key in PLOTTED if not isinstance(r.get(key), (int, float))})
        if not records or lacking:
            what = f"no {' or '.join(map(repr, lacking))} for every epoch" if records else "no finished epoch"
            raise UserError(f"{path} holds {what}: point {label}= at a dfad_kd/train.py run directory")
        runs[label] = records
    return runs


def main(argv=None) -> Path:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR, one per run")
    parser.add_argument("--out", type=Path, required=True, help="the figure's path (.png)")
    parser.add_argument("--title", default="", help="the figure's title (default: none)")
    args = parser.parse_args(argv)
    out = output_file(args.out, "--out", ".png")
    runs = read_runs(args.runs)
    panels = {"test accuracy": {k: [r["test_acc"] for r in v] for k, v in runs.items()},
              "agreement with the teacher": {k: [r["agree_real"] for r in v]
                                                                for k, v in runs.items()}}
    path = plot_overlays(panels, out, ylabel="accuracy", title=args.title, xlabel="epoch")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    run_cli(main)
