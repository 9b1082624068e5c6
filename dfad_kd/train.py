"""Data-free adversarial distillation (Fang et al., 2019): a student that never sees a training image.

    python dfad_kd/train.py --teacher runs/dfad_kd/teacher_mnist_lenet5/checkpoint.pt --data-root ../shared/data
    python dfad_kd/train.py --dataset cifar10 --teacher pretrained:resnet20 --data-root ../shared/data
    python dfad_kd/train.py --method noise ...       # baselines: noise, real (KD on real images), labels
    python dfad_kd/train.py --smoke                  # trains a tiny teacher first (no --teacher)
    torchrun --nproc_per_node=2 dfad_kd/train.py --smoke                                  # DDP

Per iteration: --ks student steps minimising the mean absolute error between teacher and student logits
on generated images (generator fixed), then --kg generator steps maximising it (teacher and student fixed;
with --balance B > 0 the generator also maximises B x the entropy of the teacher's mean class prediction,
with --bn-match W > 0 it also minimises W x the gap between the batch statistics at the teacher's BatchNorm
layers and their running statistics); --iters-per-epoch iterations make an epoch. Each --dataset brings the
defaults of its measured recipe (PRESETS, the table at the end of --help); flags on the command line win. The
teacher is frozen in eval mode. Real test images are used only to evaluate, every epoch: the full test set and
the seed's 10% / 20% test subsets. Without --teacher a teacher is trained first on the real training set by
train_teacher.py's loop, into <out>/teacher/.

Under torchrun the student and the generator are wrapped in DDP and the teacher is frozen in every process;
every process draws the whole batch (the same seeded latents) and the generator makes all of it (its
BatchNorm statistics are one process's), then each process takes its B/N rows for the teacher and the
student; the batch-wide terms (balance, BN match) are averaged over the processes. Rank 0 alone evaluates and
writes.

Writes, besides what every run writes (config.json, metrics.jsonl, summary.json, checkpoint.pt: the
state to resume, whose "model_config"/"model" are the last student): best.pt (the student of the best
test epoch), curves.png (accuracies, the losses, the teacher's class entropy on generated batches,
agreement), class_histogram.png, generated.png and samples/epoch_NNN.png (a grid at every evaluation).

The pieces: methods.py (--method: the student's batch and loss), losses.py (the generator's extra terms),
teachers.py (teacher and student), evaluation.py (the epoch's means, the test evaluation), artefacts.py.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.optim.lr_scheduler import LambdaLR

from common import distributed
from common.checkpoint import save_checkpoint
from common.cli import int_in, make_parser, non_negative_float, parse_args, positive_float, positive_int
from common.divergence import diverged
from common.errors import TrainingDiverged, UserError, run_cli
from common.models import count_parameters
from common.progress import progress
from common.rundir import check_out
from common.runtime import seed_everything
from common.schedules import lr_lambda
from common.training import checkpoint, end_epoch, finished_records, resume
from dfad_kd.artefacts import GRID, finish, save_grid
from dfad_kd.data import DATASETS, load_data
from dfad_kd.evaluation import Best, Evaluator, StepMeans
from dfad_kd.losses import BatchNormMatch, neg_class_entropy
from dfad_kd.methods import METHODS
from dfad_kd.model import GENERATOR_OUTPUTS, Generator, GeneratorConfig, held, mae, model_config_dict
from dfad_kd.teachers import check_fits, make_student, obtain_teacher

ASSIGNMENT = "dfad_kd"
SCHEDULES = ("cosine", "milestones", "constant")   # of common.schedules, stepped once per epoch
STUDENT_OPTIMIZERS = {  # (parameters, lr) -> the student's optimiser
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4),   # DFAD's
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
}
# --dataset -> the defaults of its measured recipe (README): MNIST's 96.60% run; CIFAR-10's BN-matching run
PRESETS = {
    "mnist": {"batch_size": 128, "epochs": 30, "iters_per_epoch": 30, "student_optimizer": "adam", "lr": 1e-3,
              "lr_g": 1e-3, "schedule": "cosine", "ngf": 16, "gen_output": "batchnorm", "balance": 1.0,
              "bn_match": 0.0},
    "cifar10": {"batch_size": 64, "epochs": 30, "iters_per_epoch": 20, "student_optimizer": "adam", "lr": 1e-3,
                "lr_g": 5e-3, "schedule": "cosine", "ngf": 32, "gen_output": "pixels", "balance": 1.0,
                "bn_match": 10.0},
}
PRESET = "(default: from the --dataset preset, see the table below)"


MAX_STEPS = 1000   # --ks / --kg: steps inside one iteration, which the progress bar does not show; 1e9 looked hung


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__.splitlines()[0], epochs=None, batch_size=None, lr=None,
                         batch_size_help=f"GLOBAL mini-batch size, split over torchrun's processes {PRESET}",
                         lr_help=f"the student's learning rate {PRESET}",
                         epochs_help=f"epochs of --iters-per-epoch iterations each {PRESET}")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter     # the epilog's table as written
    parser.epilog = presets_table()
    add = parser.add_argument
    add("--dataset", choices=list(DATASETS), default="mnist",
        help="whose test set evaluates; also picks the preset defaults (the table below) (default: %(default)s)")
    add("--teacher", default=None,
        help="teacher: a dfad_kd checkpoint.pt (train_teacher.py's), a published CIFAR-10 ResNet file, or "
             "pretrained:resnet20 / pretrained:resnet56 for <data-root>/pretrained/cifar10_resnet/resnet<D>-*.th "
             "(default: train one first into <out>/teacher)")
    add("--teacher-epochs", type=positive_int, default=None,
        help="without --teacher: the teacher's epochs (default: train_teacher.py's; 1 under --smoke)")
    add("--method", choices=list(METHODS), default="dfad",
        help="dfad: generated images; noise: Gaussian-noise inputs; real: KD on real training images; labels: "
             "the student alone on real labels (default: %(default)s)")
    add("--student-ratio", type=positive_float, default=0.2,
        help="the student's parameters as a share of the teacher's (the seed: 0.1 and 0.2) (default: %(default)s)")
    add("--iters-per-epoch", type=positive_int, default=None, help=f"iterations per epoch {PRESET}")
    add("--ks", type=int_in(1, MAX_STEPS), default=5,
        help=f"student steps per iteration, at most {MAX_STEPS} (default: %(default)s)")
    add("--kg", type=int_in(1, MAX_STEPS), default=1,
        help=f"generator steps per iteration, at most {MAX_STEPS} (default: %(default)s)")
    add("--lr-g", type=positive_float, default=None, help=f"the generator's Adam learning rate {PRESET}")
    add("--student-optimizer", choices=list(STUDENT_OPTIMIZERS), default=None,
        help=f"sgd: momentum 0.9, weight decay 5e-4 (DFAD's); adam: no weight decay {PRESET}")
    add("--schedule", choices=SCHEDULES, default=None,
        help=f"both learning rates, per epoch (common.schedules): cosine to 0; milestones: x0.1 at 30/60/80%% of "
             f"the epochs (DFAD's); constant {PRESET}")
    add("--balance", type=non_negative_float, default=None,
        help="weight of a class-balance term in the generator's loss: it also maximises the entropy of the "
             "teacher's mean prediction over the batch (against mode collapse; --method dfad only; 0: DFAD as "
             f"published) {PRESET}")
    add("--bn-match", type=non_negative_float, default=None,
        help="weight of the teacher's BatchNorm statistics loss in the generator's loss: for every BatchNorm "
             "layer, ||batch mean - running mean|| + ||batch var - running var|| of its input on the generated "
             "batch (DeepInversion; Fang et al. 2022); --method dfad only; needs a teacher with BatchNorm; 0: off "
             f"{PRESET}")
    add("--nz", type=positive_int, default=256, help="generator latent size (default: %(default)s)")
    add("--ngf", type=positive_int, default=None, help=f"generator width {PRESET}")
    add("--gen-output", choices=GENERATOR_OUTPUTS, default=None,
        help="pixels: tanh -> [0, 1] -> the teacher's normalisation; batchnorm: tanh -> BatchNorm without affine "
             f"(DFAD's GeneratorA) {PRESET}")
    return parser


def presets_table() -> str:
    """PRESETS as --help's epilog: one row per flag, one column per --dataset."""
    def shown(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    rows = [["flag", *(f"--dataset {name}" for name in PRESETS)]]
    rows += [[f"--{key.replace('_', '-')}", *(shown(preset[key]) for preset in PRESETS.values())]
             for key in PRESETS["mnist"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "presets: the defaults --dataset brings (a flag on the command line wins):\n" + "\n".join(lines)


def run_name(args) -> str:
    teacher = Path(str(args.teacher)).stem.split("-")[0].replace(":", "-") if args.teacher else "own"
    return (f"{args.dataset}_{args.method}_t{teacher}_r{args.student_ratio:g}_e{args.epochs}x{args.iters_per_epoch}"
            f"_seed{args.seed}")


def parse(argv=None) -> argparse.Namespace:
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)         # the full parser: '--data real' is not an abbreviated --dataset
    parser.set_defaults(**PRESETS[known.dataset])    # the data set's recipe; flags on the command line win
    args = parse_args(parser, argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs, args.iters_per_epoch = min(args.epochs, 2), min(args.iters_per_epoch, 2)
        args.batch_size, args.ngf, args.nz = min(args.batch_size, 16), min(args.ngf, 8), min(args.nz, 16)
        args.teacher_epochs = 1
    if args.student_ratio > 1:
        raise UserError(f"--student-ratio must lie in (0, 1], got {args.student_ratio}")
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    with distributed.launch(args) as info:
        return train(args, info)


def train(args, info: distributed.DistInfo) -> dict:
    device = torch.device(info.device)
    seed_everything(args.seed)
    if info.is_main and not args.teacher:
        check_out(args, announce=False)   # before a teacher is trained into <out>/teacher: a refused run keeps it
    teacher = obtain_teacher(args, info)             # frozen, eval mode, in every process
    check_fits(teacher, args.dataset, args.teacher or "(trained)")
    data = load_data(args.dataset, args.data, args.data_root, mean=teacher.mean, std=teacher.std, seed=args.seed,
                     smoke=args.smoke)
    student = make_student(args, teacher, device)
    t_params, s_params = count_parameters(teacher.model), count_parameters(student)
    generator = None
    if METHODS[args.method].adversarial:
        torch.manual_seed(args.seed + 1)
        c, h, _ = data.shape
        generator = Generator(GeneratorConfig(nz=args.nz, ngf=args.ngf, channels=c, image_size=h, mean=teacher.mean,
                                              std=teacher.std, output=args.gen_output)).to(device)
    method = METHODS[args.method](args, data, device, generator)
    student_net = distributed.wrap_model(student, info.device)     # DDP under torchrun: gradients averaged
    opt_s = STUDENT_OPTIMIZERS[args.student_optimizer](student.parameters(), args.lr)
    sched_s = LambdaLR(opt_s, lr_lambda(args.schedule, args.epochs))
    best = Best()
    extra = {"best": best}                           # what --resume restores besides the student's
    if generator is not None:
        gen_net = distributed.wrap_model(generator, info.device)
        opt_g = torch.optim.Adam(generator.parameters(), lr=args.lr_g, betas=(0.5, 0.999))
        sched_g = LambdaLR(opt_g, lr_lambda(args.schedule, args.epochs))
        extra.update(generator=generator, optimizer_g=opt_g, scheduler_g=sched_g)
    bn_match = BatchNormMatch(teacher.model, teacher.source) if generator is not None and args.bn_match > 0 else None
    run = distributed.run_dir(args, data_source=data.source, device=str(device))
    print(f"{ASSIGNMENT} ({args.method}): teacher {teacher.source}, {t_params:,} parameters; student "
          f"{student.config.describe()}, {s_params:,} parameters ({s_params / t_params:.1%} of the teacher's); "
          f"{args.epochs} epochs x {args.iters_per_epoch} iterations x ({args.ks} student + "
          f"{args.kg if generator else 0} generator steps), batch {args.batch_size}; data: {data.source}")
    evaluator = Evaluator(teacher, data, device) if info.is_main else None
    start, elapsed = resume(run, student_net, opt_s, sched_s, extra)
    if start == 0 and evaluator is not None:
        print(f"teacher test acc {evaluator.teacher_acc['test_acc']:.2%}")
    z_grid = torch.randn(GRID, args.nz, generator=torch.Generator().manual_seed(args.seed)).to(device)
    student_config = model_config_dict(student, teacher.mean, teacher.std)

    for epoch in range(start, args.epochs):
        tic = time.perf_counter()
        rng = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)   # the same in every process, on resume
        meter = StepMeans(len(data.classes), device)
        student_net.train()
        if generator is not None:
            generator.train()
        for _ in progress(range(args.iters_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", quiet=args.smoke):
            for _ in range(args.ks):     # the student learns on a batch of the fixed generator (or the baseline's)
                x, y = method.batch(rng)                                      # this process's rows (B/N, C, H, W)
                with torch.no_grad():
                    t_logits = teacher.model(x) if method.distils else None  # (B/N, K)
                s_logits = student_net(x)                                     # (B/N, K)
                loss = method.loss(s_logits, t_logits, y)
                opt_s.zero_grad(set_to_none=True)
                loss.backward()
                opt_s.step()
                meter.add("loss_s", loss)
                if method.distils:
                    meter.add_agreement(s_logits, t_logits)
            for _ in range(args.kg if generator is not None else 0):   # the generator learns to raise the MAE
                z = torch.randn(args.batch_size, args.nz, generator=rng).to(device)
                with held(student):    # it plays in train mode but gets no gradients; its BN statistics restored
                    x = distributed.shard(gen_net(z))   # G makes the whole batch; this process keeps its rows
                    with bn_match.recording() if bn_match is not None else contextlib.nullcontext():
                        t_logits = teacher.model(x)
                    loss_g = mae(student(x), t_logits)
                    objective = -loss_g
                    if args.balance > 0:
                        objective = objective + args.balance * neg_class_entropy(t_logits)
                    if bn_match is not None:
                        loss_bn = bn_match.loss()
                        objective = objective + args.bn_match * loss_bn
                        meter.add("loss_bn", loss_bn)
                    opt_g.zero_grad(set_to_none=True)
                    objective.backward()
                    opt_g.step()
                meter.add("loss_g", loss_g)
        sched_s.step()
        if generator is not None:
            sched_g.step()
        means = meter.means()                        # one host sync, summed over the processes
        elapsed += time.perf_counter() - tic
        losses = {k: v for k, v in means.items() if k.startswith("loss")}
        if not all(math.isfinite(v) for v in losses.values()):
            raise TrainingDiverged(diverged(f"a loss became non-finite ({losses})", epoch + 1, epoch,
                                            run.path if epoch else None))

        if info.is_main:                             # rank 0 alone evaluates and writes
            record = {"epoch": epoch + 1, "lr": opt_s.param_groups[0]["lr"], **means, **evaluator(student),
                      "train_seconds": elapsed, "train_loss": means["loss_s"]}
            if best.improved(record):
                save_checkpoint(run.file("best.pt"), {"model_config": student_config, "model": student.state_dict(),
                                                      "epoch": epoch + 1, "test_acc": record["test_acc"]})
            if generator is not None:
                save_grid(run, generator, teacher, data, z_grid, epoch + 1, args)
            state = checkpoint(epoch + 1, elapsed, student_config, student_net, opt_s, sched_s, extra)
            state["generator_config"] = generator.config.to_dict() if generator is not None else None
            end_epoch(run, record, state, quiet=args.smoke)
    records = finished_records(run)
    if not info.is_main:
        return {}
    return finish(run, records, args, teacher, student, data, evaluator, best, t_params, s_params)


if __name__ == "__main__":
    run_cli(main)
