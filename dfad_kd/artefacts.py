"""What a run leaves besides its metrics: the grids of generated images and, at the end, the curves, the
teacher's class histogram and summary.json."""
from __future__ import annotations

import numpy as np
import torch

from common.errors import UserError
from common.plots import plot_curves, plot_image_grid
from common.rundir import RunDir
from dfad_kd.evaluation import Best, Evaluator
from dfad_kd.model import Generator, Teacher
from dfad_kd.plots import plot_class_histogram

GRID = 20   # generated images in each grid


def pixels(x: torch.Tensor, mean, std) -> np.ndarray:
    """Normalised (B, C, H, W) -> displayable (B, H, W[, C]) in [0, 1]."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    out = (x.detach().float().cpu() * s + m).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return out[..., 0] if out.shape[-1] == 1 else out


def save_grid(run: RunDir, generator: Generator, teacher: Teacher, data, z: torch.Tensor, epoch: int, args) -> None:
    """GRID generated images of fixed latents (generator in eval mode), titled with the teacher's class."""
    generator.eval()
    with torch.no_grad():
        x = generator(z)
        probs = teacher.model(x).softmax(1)
    conf, pred = probs.max(1)
    titles = [f"{data.classes[p][:8]} {c:.2f}" for p, c in zip(pred.tolist(), conf.tolist())]
    path = run.file("samples") / f"epoch_{epoch:03d}.png"
    plot_image_grid(pixels(x, teacher.mean, teacher.std), titles, path, ncols=10,
                    title=f"generated, epoch {epoch} (teacher's class and confidence)")
    (run.path / "generated.png").write_bytes(path.read_bytes())


def finish(run: RunDir, records: list[dict], args, teacher: Teacher, student, data, evaluator: Evaluator,
           best: Best, t_params: int, s_params: int) -> dict:
    """curves.png, class_histogram.png and summary.json of a finished run (rank 0)."""
    if not records:
        raise UserError(f"{run.path} has no epochs to summarise; raise --epochs above the resumed run's")
    last = records[-1]
    title = (f"{args.method}: {student.config.describe()} from {teacher.config.describe()} "
             f"({data.source.split(' (')[0]})")
    panels = {"test accuracy": ["test_acc", "test_acc_10", "test_acc_20"], "loss (MAE)": ["loss_s", "loss_g"],
              "agreement / entropy": ["agree_real", "agree_input", "class_entropy"]}
    if "loss_bn" in last:
        panels["teacher BatchNorm statistics gap"] = ["loss_bn"]
    plot_curves(records, panels, run.file("curves.png"), title=title)
    if "class_hist" in last:
        plot_class_histogram(records, data.classes, run.file("class_histogram.png"), title=title)
    summary = run.finish({
        "method": args.method, "test_acc": last["test_acc"], "test_acc_10": last["test_acc_10"],
        "test_acc_20": last["test_acc_20"], "agree_real": last["agree_real"], "best_test_acc": best.test_acc,
        "best_epoch": best.epoch, "teacher_test_acc": evaluator.teacher_acc["test_acc"],
        **{f"teacher_test_acc_{k}": evaluator.teacher_acc[f"test_acc_{k}"] for k in evaluator.subsets},
        "teacher": teacher.source, "teacher_model": teacher.config.describe(),
        "teacher_parameters": t_params, "student_model": student.config.describe(),
        "student_parameters": s_params, "parameter_ratio": s_params / t_params,
        "student_steps": last["epoch"] * args.iters_per_epoch * args.ks,
        "class_entropy": last.get("class_entropy"), "dataset": args.dataset, "balance": args.balance,
        "bn_match": args.bn_match,
    }, records)
    print(f"done: student test acc {summary['test_acc']:.2%} (10% subset {summary['test_acc_10']:.2%}, 20% "
          f"{summary['test_acc_20']:.2%}; best {summary['best_test_acc']:.2%} at epoch {summary['best_epoch']}), "
          f"teacher {summary['teacher_test_acc']:.2%}, after {summary['epochs']} epochs, "
          f"{summary['train_seconds']:.0f} s; run directory {run.path}")
    return summary
