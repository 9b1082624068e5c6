"""Data-free adversarial distillation (Fang et al., 2019): a student that never sees a training image.

    python dfad_kd/train.py --teacher runs/dfad_kd/teacher_mnist_lenet5/checkpoint.pt --data-root ../shared/data
    python dfad_kd/train.py --dataset cifar10 --teacher pretrained:resnet20 --data-root ../shared/data
    python dfad_kd/train.py --method noise ...       # baselines: noise, real (KD on real images), labels
    python dfad_kd/train.py --smoke                  # trains a tiny teacher first (no --teacher)

Per iteration: --ks student steps minimising the mean absolute error between teacher and student logits
on generated images (generator fixed), then --kg generator steps maximising it (teacher and student fixed;
with --balance B > 0 the generator also maximises B x the entropy of the teacher's mean class prediction);
--iters-per-epoch iterations make an epoch. The teacher is frozen in eval mode. Real test images are used
only to evaluate, every epoch: the full test set and the seed's 10% / 20% test subsets. Without --teacher
a teacher is trained first on the real training set by train_teacher.py's code, into <out>/teacher/.

Writes, besides what every run writes (config.json, metrics.jsonl, summary.json, checkpoint.pt: the
state to resume, whose "model_config"/"model" are the last student): best.pt (the student of the best
test epoch), curves.png (accuracies, both losses, the teacher's class entropy on generated batches,
agreement), class_histogram.png, generated.png and samples/epoch_NNN.png (a grid at every evaluation).
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
import torch.nn.functional as F

from common.checkpoint import save_checkpoint
from common.classify import predict_logits
from common.cli import make_parser, non_negative_float, parse_args, positive_float, positive_int
from common.divergence import diverged
from common.errors import TrainingDiverged, UserError, run_cli
from common.models import count_parameters
from common.plots import plot_curves, plot_image_grid
from common.progress import progress
from common.rundir import CHECKPOINT, RunDir
from common.runtime import choose_device, seed_everything
from dfad_kd import train_teacher
from dfad_kd.data import DATASETS, load_data, seed_test_subsets
from dfad_kd.model import (GENERATOR_OUTPUTS, Generator, GeneratorConfig, Teacher, build, held, load_teacher, mae,
                           model_config_dict, student_config)
from dfad_kd.plots import plot_class_histogram

ASSIGNMENT = "dfad_kd"
SCHEDULES = {  # (epoch, epochs) -> multiplier of the learning rates, stepped once per epoch
    "cosine": lambda epoch, total: 0.5 * (1 + math.cos(math.pi * epoch / total)),
    "step": lambda epoch, total: 0.1 ** sum(epoch >= m * total for m in (0.3, 0.6, 0.8)),   # DFAD's milestones
    "constant": lambda epoch, total: 1.0,
}
GRID = 20   # generated images in each grid


@dataclass
class State:
    """Everything one epoch touches."""
    args: argparse.Namespace
    teacher: Teacher
    student: torch.nn.Module
    generator: Generator | None
    opt_s: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer | None
    data: object                # ImageTensors
    device: torch.device


def _method_dfad(state: State, rng: torch.Generator) -> dict:
    """ks student steps on generated images, then kg generator steps against the student."""
    a, g = state.args, state.generator
    meter = Meter(len(state.data.classes))
    for _ in progress(range(a.iters_per_epoch), desc="iterations", quiet=a.smoke):
        g.train()
        for _ in range(a.ks):
            with torch.no_grad(), held(g):
                x = g(_z(a, rng, state.device))
            meter.add_student(*student_step(state, x))
        for _ in range(a.kg):
            meter.add("loss_g", generator_step(state, _z(a, rng, state.device)))
    return meter.means()


def _method_noise(state: State, rng: torch.Generator) -> dict:
    """The same student steps on Gaussian noise N(0, 1) in the teacher's input space (no generator)."""
    a, (c, h, w) = state.args, state.data.shape
    meter = Meter(len(state.data.classes))
    for _ in progress(range(a.iters_per_epoch * a.ks), desc="steps", quiet=a.smoke):
        x = torch.randn(a.batch_size, c, h, w, generator=rng).to(state.device)
        meter.add_student(*student_step(state, x))
    return meter.means()


def _method_real(state: State, rng: torch.Generator) -> dict:
    """The same student steps on real training images (the upper bound of distillation)."""
    a, x_train = state.args, state.data.x_train
    meter = Meter(len(state.data.classes))
    for _ in progress(range(a.iters_per_epoch * a.ks), desc="steps", quiet=a.smoke):
        index = torch.randint(len(x_train), (a.batch_size,), generator=rng)
        meter.add_student(*student_step(state, x_train[index].to(state.device)))
    return meter.means()


def _method_labels(state: State, rng: torch.Generator) -> dict:
    """The student alone on the real labels (cross-entropy; no teacher)."""
    a, d = state.args, state.data
    meter = Meter(len(d.classes))
    state.student.train()
    for _ in progress(range(a.iters_per_epoch * a.ks), desc="steps", quiet=a.smoke):
        index = torch.randint(len(d.y_train), (a.batch_size,), generator=rng)
        x, y = d.x_train[index].to(state.device), d.y_train[index].to(state.device)
        loss = F.cross_entropy(state.student(x), y)
        state.opt_s.zero_grad(set_to_none=True)
        loss.backward()
        state.opt_s.step()
        meter.add("loss_s", loss.detach())
    return meter.means()


METHODS = {"dfad": _method_dfad, "noise": _method_noise, "real": _method_real, "labels": _method_labels}


def _z(args, rng: torch.Generator, device) -> torch.Tensor:
    return torch.randn(args.batch_size, args.nz, generator=rng).to(device)


def student_step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One student update on the batch x (B, C, H, W): minimise MAE(student(x), teacher(x)). The generator
    and the teacher are untouched. Returns the loss, the teacher's predicted classes and the agreement."""
    student = state.student
    student.train()
    with torch.no_grad():
        t_logits = state.teacher.model(x)                         # (B, K)
    s_logits = student(x)                                         # (B, K)
    loss = mae(s_logits, t_logits)
    state.opt_s.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_s.step()
    t_pred = t_logits.argmax(1)
    return loss.detach(), t_pred, (s_logits.detach().argmax(1) == t_pred).float().mean()


def generator_step(state: State, z: torch.Tensor) -> torch.Tensor:
    """One generator update: maximise MAE(student(G(z)), teacher(G(z))). The student runs in train mode
    (batch statistics, as in DFAD) but neither its parameters nor its BatchNorm buffers change; the teacher
    is frozen. Returns the MAE (the quantity the generator raises)."""
    state.generator.train()
    state.student.train()
    with held(state.student):
        x = state.generator(z)
        t_logits = state.teacher.model(x)                                     # (B, K)
        loss = mae(state.student(x), t_logits)
        objective = -loss + state.args.balance * neg_class_entropy(t_logits)
        state.opt_g.zero_grad(set_to_none=True)
        objective.backward()
        state.opt_g.step()
    return loss.detach()


def neg_class_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-H(mean_b softmax(logits_b)): the negative entropy of the teacher's mean prediction over the batch
    (minimum -log K when the batch covers every class equally; DAFL's information-entropy term)."""
    p = logits.softmax(1).mean(0)                                               # (K,)
    return (p * p.clamp_min(1e-12).log()).sum()


class Meter:
    """Epoch means on the device (one host sync at the end), and the teacher's class histogram."""

    def __init__(self, classes: int):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.hist = torch.zeros(classes)

    def add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums.get(key, 0) + value.float()
        self.counts[key] = self.counts.get(key, 0) + 1

    def add_student(self, loss: torch.Tensor, t_pred: torch.Tensor, agree: torch.Tensor) -> None:
        self.add("loss_s", loss)
        self.add("agree_input", agree)
        self.hist += torch.bincount(t_pred, minlength=len(self.hist)).cpu().float()

    def means(self) -> dict:
        out = {k: (v / self.counts[k]).item() for k, v in self.sums.items()}
        if self.hist.sum() > 0:
            share = self.hist / self.hist.sum()
            out["class_hist"] = share.tolist()
            entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
            out["class_entropy"] = entropy / math.log(len(share))        # 1: uniform, 0: one class
        return out


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__.splitlines()[0], epochs=100, batch_size=256, lr=0.1,
                         lr_help="the student's SGD learning rate (default: %(default)s)",
                         epochs_help="epochs of --iters-per-epoch iterations each (default: %(default)s)")
    add = parser.add_argument
    add("--dataset", choices=list(DATASETS), default="mnist", help="whose test set evaluates (default: %(default)s)")
    add("--teacher", default=None,
        help="teacher: a dfad_kd checkpoint.pt (train_teacher.py's), a published CIFAR-10 ResNet file, or "
             "pretrained:resnet20 / pretrained:resnet56 for <data-root>/pretrained/cifar10_resnet/resnet<D>-*.th "
             "(default: train one first into <out>/teacher)")
    add("--teacher-epochs", type=positive_int, default=None,
        help="without --teacher: the teacher's epochs (default: train_teacher.py's)")
    add("--method", choices=list(METHODS), default="dfad",
        help="dfad: generated images; noise: Gaussian-noise inputs; real: KD on real training images; labels: "
             "the student alone on real labels (default: %(default)s)")
    add("--student-ratio", type=positive_float, default=0.2,
        help="the student's parameters as a share of the teacher's (the seed: 0.1 and 0.2) (default: %(default)s)")
    add("--iters-per-epoch", type=positive_int, default=50, help="iterations per epoch (default: %(default)s)")
    add("--ks", type=positive_int, default=5, help="student steps per iteration (default: %(default)s)")
    add("--kg", type=positive_int, default=1, help="generator steps per iteration (default: %(default)s)")
    add("--lr-g", type=positive_float, default=1e-3, help="the generator's Adam learning rate (default: %(default)s)")
    add("--student-optimizer", choices=("sgd", "adam"), default="sgd",
        help="sgd: momentum 0.9, weight decay 5e-4 (DFAD's); adam: no weight decay (default: %(default)s)")
    add("--schedule", choices=list(SCHEDULES), default="cosine",
        help="both learning rates, per epoch; step: x0.1 at 30/60/80%% of the epochs (default: %(default)s)")
    add("--balance", type=non_negative_float, default=0.0,
        help="weight of a class-balance term in the generator's loss: it also maximises the entropy of the "
             "teacher's mean prediction over the batch (against mode collapse; 0: DFAD as published) "
             "(default: %(default)s)")
    add("--nz", type=positive_int, default=256, help="generator latent size (default: %(default)s)")
    add("--ngf", type=positive_int, default=64, help="generator width (default: %(default)s)")
    add("--gen-output", choices=GENERATOR_OUTPUTS, default="batchnorm",
        help="pixels: tanh -> [0, 1] -> the teacher's normalisation; batchnorm: tanh -> BatchNorm without affine "
             "(DFAD's GeneratorA) (default: %(default)s)")
    return parser


def run_name(args) -> str:
    teacher = Path(str(args.teacher)).stem.split("-")[0].replace(":", "-") if args.teacher else "own"
    return (f"{args.dataset}_{args.method}_t{teacher}_r{args.student_ratio:g}_e{args.epochs}x{args.iters_per_epoch}"
            f"_seed{args.seed}")


def parse(argv=None) -> argparse.Namespace:
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs, args.iters_per_epoch = min(args.epochs, 2), min(args.iters_per_epoch, 2)
        args.batch_size, args.ngf, args.nz = min(args.batch_size, 16), min(args.ngf, 8), min(args.nz, 16)
        args.teacher_epochs = 1
    if args.student_ratio > 1:
        raise UserError(f"--student-ratio must lie in (0, 1], got {args.student_ratio}")
    return args


def resolve_teacher_path(spec: str, data_root: Path) -> Path:
    """'pretrained:resnet20' -> <data-root>/pretrained/cifar10_resnet/resnet20-*.th; a path otherwise."""
    found = re.fullmatch(r"pretrained:(resnet\d+)", spec)
    if not found:
        return Path(spec).expanduser().resolve()
    folder = data_root / "pretrained" / "cifar10_resnet"
    files = sorted(folder.glob(f"{found.group(1)}-*.th"))
    if not files:
        raise UserError(f"--teacher {spec}: no {found.group(1)}-*.th in {folder}; point --data-root at the folder "
                        f"holding pretrained/cifar10_resnet, or give the file's path")
    return files[0]


def obtain_teacher(args, device) -> Teacher:
    """--teacher's file, or a teacher trained first (train_teacher.py's code) into <out>/teacher/."""
    if args.teacher:
        teacher = load_teacher(resolve_teacher_path(args.teacher, args.data_root))
    else:
        argv = ["--dataset", args.dataset, "--seed", str(args.seed), "--data", args.data, "--data-root",
                str(args.data_root), "--out", str(args.out / "teacher"), "--device", args.device, "--threads",
                str(args.threads), "--wandb", "off"]
        argv += ["--epochs", str(args.teacher_epochs)] if args.teacher_epochs else []
        argv += ["--smoke"] if args.smoke else []
        done = (args.out / "teacher" / "summary.json").exists() and args.resume
        argv += ["--resume"] if args.resume else ["--overwrite"]
        if not done:
            print(f"no --teacher: training one first into {args.out / 'teacher'}")
            train_teacher.main(argv)
        teacher = load_teacher(args.out / "teacher" / CHECKPOINT)
    teacher.model.to(device)
    return teacher


def check_fits(teacher: Teacher, dataset: str, path: str) -> None:
    """The teacher takes this data set's images and classes (checked before any data are read)."""
    c, h, _ = DATASETS[dataset][3]
    config = teacher.config
    have = (getattr(config, "in_channels", c), getattr(config, "num_classes", 10), getattr(config, "image_size", h))
    if have != (c, 10, h):
        raise UserError(f"--teacher {path} takes {have[0]}-channel {have[2]}px images and {have[1]} classes; "
                        f"{dataset} has {c}-channel {h}px images and 10 classes: pick the teacher of this --dataset")


def make_student(args, teacher: Teacher, device) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    config = student_config(teacher.family, teacher.config, args.student_ratio)
    return build(teacher.family, config).to(device)


def main(argv=None) -> dict:
    args = parse(argv)
    device = torch.device(choose_device(args.device))
    seed_everything(args.seed)
    teacher = obtain_teacher(args, device)
    check_fits(teacher, args.dataset, args.teacher or "(trained)")
    data = load_data(args.dataset, args.data, args.data_root, mean=teacher.mean, std=teacher.std, seed=args.seed,
                     smoke=args.smoke)
    student = make_student(args, teacher, device)
    t_params, s_params = count_parameters(teacher.model), count_parameters(student)
    generator = opt_g = None
    if args.method == "dfad":
        torch.manual_seed(args.seed + 1)
        c, h, _ = data.shape
        generator = Generator(GeneratorConfig(nz=args.nz, ngf=args.ngf, channels=c, image_size=h, mean=teacher.mean,
                                              std=teacher.std, output=args.gen_output)).to(device)
        opt_g = torch.optim.Adam(generator.parameters(), lr=args.lr_g, betas=(0.5, 0.999))
    if args.student_optimizer == "sgd":
        opt_s = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    else:
        opt_s = torch.optim.Adam(student.parameters(), lr=args.lr)
    optimizers = [o for o in (opt_s, opt_g) if o is not None]
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda e: SCHEDULES[args.schedule](e, args.epochs))
                  for o in optimizers]
    state = State(args, teacher, student, generator, opt_s, opt_g, data, device)
    run = RunDir(args, data_source=data.source, device=device.type)
    print(f"{ASSIGNMENT} ({args.method}): teacher {teacher.source}, {t_params:,} parameters; student "
          f"{student.config.describe()}, {s_params:,} parameters ({s_params / t_params:.1%} of the teacher's); "
          f"{args.epochs} epochs x {args.iters_per_epoch} iterations x ({args.ks} student + "
          f"{args.kg if generator else 0} generator steps), batch {args.batch_size}; data: {data.source}")
    evaluator = Evaluator(teacher, data, device)
    start, elapsed, best = resume(run, state, schedulers)
    if start == 0:
        print(f"teacher test acc {evaluator.teacher_acc['test_acc']:.2%}")
    z_grid = torch.randn(GRID, args.nz, generator=torch.Generator().manual_seed(args.seed)).to(device)
    student_config_dict = model_config_dict(student, teacher.mean, teacher.std)
    for epoch in range(start, args.epochs):
        rng = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)
        tic = time.perf_counter()
        means = METHODS[args.method](state, rng)
        for scheduler in schedulers:
            scheduler.step()
        elapsed += time.perf_counter() - tic
        if not all(math.isfinite(v) for k, v in means.items() if k.startswith("loss")):
            raise TrainingDiverged(diverged(f"a loss became non-finite ({means})", epoch + 1, epoch,
                                            run.path if epoch else None))
        record = {"epoch": epoch + 1, "lr": opt_s.param_groups[0]["lr"], **means, **evaluator(student),
                  "train_seconds": elapsed}
        record["train_loss"] = record["loss_s"]
        if record["test_acc"] > best["test_acc"]:
            best = {"test_acc": record["test_acc"], "epoch": epoch + 1}
            save_checkpoint(run.file("best.pt"), {"model_config": student_config_dict, "model": student.state_dict(),
                                                  "epoch": epoch + 1, "test_acc": record["test_acc"]})
        if generator is not None:
            save_grid(run, generator, teacher, data, z_grid, epoch + 1, args)
        run.log(record)
        run.save_checkpoint({
            "epoch": epoch + 1, "elapsed": elapsed, "best": best, "model_config": student_config_dict,
            "model": student.state_dict(), "optimizer": opt_s.state_dict(),
            "generator_config": generator.config.to_dict() if generator else None,
            "generator": generator.state_dict() if generator else None,
            "optimizer_g": opt_g.state_dict() if opt_g else None,
            "schedulers": [s.state_dict() for s in schedulers],
        })
        if not args.smoke:
            print(f"epoch {epoch + 1:>3}/{args.epochs}  loss_s {record['loss_s']:.4f}  "
                  + (f"loss_g {record['loss_g']:.4f}  " if "loss_g" in record else "")
                  + (f"entropy {record['class_entropy']:.3f}  " if "class_entropy" in record else "")
                  + f"test {record['test_acc']:.2%} (10% {record['test_acc_10']:.2%}, 20% {record['test_acc_20']:.2%})"
                  f"  agree real {record['agree_real']:.2%}  {elapsed:.0f} s", flush=True)
    return finish(run, state, evaluator, best, t_params, s_params)


class Evaluator:
    """Accuracy on the real test set and the seed's subsets, and agreement with the teacher's predictions."""

    def __init__(self, teacher: Teacher, data, device):
        self.data, self.device = data, device
        self.subsets = seed_test_subsets(len(data.y_test))
        self.t_pred = predict_logits(teacher.model, data.x_test, device).argmax(1).cpu()
        self.teacher_acc = self.scores(self.t_pred)

    def scores(self, pred: torch.Tensor) -> dict:
        hits = (pred == self.data.y_test).float()
        return {"test_acc": hits.mean().item(), **{f"test_acc_{k}": hits[i].mean().item()
                                                   for k, i in self.subsets.items()}}

    def __call__(self, student) -> dict:
        logits = predict_logits(student, self.data.x_test, self.device).cpu()
        pred = logits.argmax(1)
        return {**self.scores(pred), "test_loss": F.cross_entropy(logits, self.data.y_test).item(),
                "agree_real": (pred == self.t_pred).float().mean().item()}


def resume(run: RunDir, state: State, schedulers) -> tuple[int, float, dict]:
    saved = run.resume_state(required=("epoch", "model", "optimizer", "schedulers", "elapsed", "best"))
    if saved is None:
        return 0, 0.0, {"test_acc": -1.0, "epoch": 0}
    try:
        state.student.load_state_dict(saved["model"])
        state.opt_s.load_state_dict(saved["optimizer"])
        if state.generator is not None:
            state.generator.load_state_dict(saved["generator"])
            state.opt_g.load_state_dict(saved["optimizer_g"])
        for scheduler, s in zip(schedulers, saved["schedulers"], strict=True):
            scheduler.load_state_dict(s)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"{run.path / CHECKPOINT} does not fit this run ({first}); resume with the flags it was "
                        f"started with, or start over with --overwrite") from None
    print(f"resuming {run.path.name} after epoch {saved['epoch']}")
    return int(saved["epoch"]), float(saved["elapsed"]), dict(saved["best"])


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


def finish(run: RunDir, state: State, evaluator: Evaluator, best: dict, t_params: int, s_params: int) -> dict:
    records = run.metrics()
    if not records:
        raise UserError(f"{run.path} has no epochs to summarise; raise --epochs above the resumed run's")
    args, last = state.args, records[-1]
    title = (f"{args.method}: {state.student.config.describe()} from {state.teacher.config.describe()} "
             f"({state.data.source.split(' (')[0]})")
    panels = {"test accuracy": ["test_acc", "test_acc_10", "test_acc_20"], "loss (MAE)": ["loss_s", "loss_g"],
              "agreement / entropy": ["agree_real", "agree_input", "class_entropy"]}
    plot_curves(records, panels, run.file("curves.png"), title=title)
    if "class_hist" in last:
        plot_class_histogram(records, state.data.classes, run.file("class_histogram.png"), title=title)
    summary = run.finish({
        "method": args.method, "test_acc": last["test_acc"], "test_acc_10": last["test_acc_10"],
        "test_acc_20": last["test_acc_20"], "agree_real": last["agree_real"], "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"], "teacher_test_acc": evaluator.teacher_acc["test_acc"],
        **{f"teacher_test_acc_{k}": evaluator.teacher_acc[f"test_acc_{k}"] for k in evaluator.subsets},
        "teacher": state.teacher.source, "teacher_model": state.teacher.config.describe(),
        "teacher_parameters": t_params, "student_model": state.student.config.describe(),
        "student_parameters": s_params, "parameter_ratio": s_params / t_params,
        "student_steps": last["epoch"] * args.iters_per_epoch * args.ks,
        "class_entropy": last.get("class_entropy"), "dataset": args.dataset, "balance": args.balance,
    }, records)
    print(f"done: student test acc {summary['test_acc']:.2%} (10% subset {summary['test_acc_10']:.2%}, 20% "
          f"{summary['test_acc_20']:.2%}; best {summary['best_test_acc']:.2%} at epoch {summary['best_epoch']}), "
          f"teacher {summary['teacher_test_acc']:.2%}, after {summary['epochs']} epochs, "
          f"{summary['train_seconds']:.0f} s; run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
