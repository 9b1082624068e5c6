"""Data-free adversarial distillation (Fang et al., 2019): a student that never sees a training image.

    python dfad_kd/train.py --teacher runs/dfad_kd/teacher_mnist_lenet5/checkpoint.pt --data-root ../shared/data
    python dfad_kd/train.py --dataset cifar10 --teacher pretrained:resnet20 --data-root ../shared/data
    python dfad_kd/train.py --method noise ...       # baselines: noise, real (KD on real images), labels
    python dfad_kd/train.py --smoke                  # trains a tiny teacher first (no --teacher)

Per iteration: --ks student steps minimising the mean absolute error between teacher and student logits
on generated images (generator fixed), then --kg generator steps maximising it (teacher and student fixed;
with --balance B > 0 the generator also maximises B x the entropy of the teacher's mean class prediction,
with --bn-match W > 0 it also minimises W x the gap between the batch statistics at the teacher's BatchNorm
layers and their running statistics); --iters-per-epoch iterations make an epoch. Each --dataset brings the
defaults of its measured recipe (options.PRESETS); flags on the command line win. The teacher is frozen in
eval mode. Real test images are used only to evaluate, every epoch: the full test set and the seed's 10% /
20% test subsets. Without --teacher a teacher is trained first on the real training set by train_teacher.py's
code, into <out>/teacher/.

Writes, besides what every run writes (config.json, metrics.jsonl, summary.json, checkpoint.pt: the
state to resume, whose "model_config"/"model" are the last student): best.pt (the student of the best
test epoch), curves.png (accuracies, the losses, the teacher's class entropy on generated batches,
agreement), class_histogram.png, generated.png and samples/epoch_NNN.png (a grid at every evaluation).

The pieces: options.py (flags, presets), teachers.py (teacher and student), methods.py (the methods registry
and the adversarial steps), losses.py (the generator's extra terms), evaluation.py, artefacts.py.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from common.checkpoint import save_checkpoint
from common.divergence import diverged
from common.errors import TrainingDiverged, UserError, run_cli
from common.models import count_parameters
from common.rundir import CHECKPOINT, RunDir
from common.runtime import choose_device, seed_everything
from dfad_kd.artefacts import GRID, finish, save_grid
from dfad_kd.data import load_data
from dfad_kd.evaluation import Evaluator
from dfad_kd.losses import BatchNormMatch
from dfad_kd.methods import METHODS, State
from dfad_kd.model import Generator, GeneratorConfig, model_config_dict
from dfad_kd.options import ASSIGNMENT, SCHEDULES, STUDENT_OPTIMIZERS, parse
from dfad_kd.teachers import check_fits, make_student, obtain_teacher


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
    opt_s = STUDENT_OPTIMIZERS[args.student_optimizer](student.parameters(), args.lr)
    optimizers = [o for o in (opt_s, opt_g) if o is not None]
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda e: SCHEDULES[args.schedule](e, args.epochs))
                  for o in optimizers]
    bn_match = BatchNormMatch(teacher.model, teacher.source) if generator is not None and args.bn_match > 0 else None
    state = State(args, teacher, student, generator, opt_s, opt_g, data, device, bn_match)
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
                  + (f"loss_bn {record['loss_bn']:.3f}  " if "loss_bn" in record else "")
                  + (f"entropy {record['class_entropy']:.3f}  " if "class_entropy" in record else "")
                  + f"test {record['test_acc']:.2%} (10% {record['test_acc_10']:.2%}, 20% {record['test_acc_20']:.2%})"
                  f"  agree real {record['agree_real']:.2%}  {elapsed:.0f} s", flush=True)
    return finish(run, state, evaluator, best, t_params, s_params)


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


if __name__ == "__main__":
    run_cli(main)
