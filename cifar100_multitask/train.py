"""Train one CNN backbone with fine / superclass / group heads on CIFAR-100 (one configuration, one run).

    python cifar100_multitask/train.py --split 90:10                        # three heads, plain CE
    python cifar100_multitask/train.py --split 90:10 --severity linear      # severity-weighted loss
    python cifar100_multitask/train.py --heads fine                         # single head; super/group derived
    python cifar100_multitask/train.py --imbalance 20 --sampler class_weighted
    torchrun --nproc_per_node=4 cifar100_multitask/train.py --sync-bn  # DDP; --batch-size is the global batch
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from common import distributed
from common.cli import fraction, layer_count, make_parser, non_negative_float, parse_args, positive_float, positive_int
from common.errors import run_cli
from common.images import channel_stats, to_nchw
from common.progress import progress
from common.runtime import seed_everything
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             order_batches, prefixed, resume, tensor_batches)
from cifar100_multitask.artefacts import write_artefacts
from cifar100_multitask.data import HIERARCHY, SPLITS, class_weighted_order, load_pooled, long_tail, \
    split_indices
from cifar100_multitask.evaluation import evaluate_split
from cifar100_multitask.model import LEVELS, SEVERITY, MultiTaskConfig, MultiTaskLoss, MultiTaskNet, \
    level_probabilities

ASSIGNMENT = "cifar100_multitask"
HEAD_SETS = {"fine,super,group": LEVELS, "fine": ("fine",)}
MODEL = MultiTaskConfig()   # the backbone's recipe: its config's defaults
# The recipe behind the README's tables: every flag's default comes from here (--help shows these values).
RECIPE = {"epochs": 30, "batch_size": 128, "lr": 1e-3, "weight_decay": 5e-4, "split": "90:10",
          "heads": "fine,super,group", "severity": "none", "sampler": "uniform", "imbalance": 1.0,
          "depth": MODEL.depth, "width": MODEL.width, "convs_per_stage": MODEL.convs_per_stage,
          "dropout": MODEL.dropout, "per_class": 600}
SMOKE = {"per_class": 6, "depth": 1, "width": 4, "convs_per_stage": 1}   # --smoke: at most 2 epochs of this


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=RECIPE["epochs"], batch_size=RECIPE["batch_size"],
                         lr=RECIPE["lr"], batch_size_help=distributed.GLOBAL_BATCH_HELP)
    distributed.add_sync_bn_flag(parser)
    add = parser.add_argument
    add("--split", choices=list(SPLITS), default=RECIPE["split"],
        help="train:test share of the pooled images (default: %(default)s)")
    add("--heads", choices=list(HEAD_SETS), default=RECIPE["heads"], metavar="{" + " | ".join(HEAD_SETS) + "}",
        help="the heads trained; with 'fine' alone, superclass and group are derived from the fine "
             "distribution (default: %(default)s)")
    add("--severity", choices=list(SEVERITY), default=RECIPE["severity"],
        help="severity weights of mistakes by tree distance d (none: 1, linear: 1+d, exponential: 2^d) "
             "multiplying each head's cross-entropy through the expected severity (default: %(default)s)")
    add("--sampler", choices=list(SAMPLERS), default=RECIPE["sampler"],
        help="uniform: each training image once per epoch; class_weighted: drawn with probability "
             "1/(its fine class's count) (default: %(default)s)")
    add("--imbalance", type=positive_float, default=RECIPE["imbalance"],
        help="long-tail the training part: most / least frequent fine class, exponential in between; "
             "1 keeps it balanced (default: %(default)s)")
    add("--depth", type=layer_count, default=RECIPE["depth"], help="backbone stages (default: %(default)s)")
    add("--width", type=positive_int, default=RECIPE["width"],
        help="channels of the first stage, doubled per stage (default: %(default)s)")
    add("--convs-per-stage", type=layer_count, default=RECIPE["convs_per_stage"],
        help="Conv-BN-ReLU blocks per stage (default: %(default)s)")
    add("--dropout", type=fraction, default=RECIPE["dropout"],
        help="dropout after each stage (default: %(default)s)")
    add("--weight-decay", type=non_negative_float, default=RECIPE["weight_decay"],
        help="AdamW weight decay (default: %(default)s)")
    add("--per-class", type=positive_int, default=RECIPE["per_class"],
        help="generated stand-in only: images per fine class, pooled (default: %(default)s, as CIFAR-100)")
    return parser


def parse(argv=None):
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs = min(args.epochs, 2)
        vars(args).update(SMOKE)
    return args


def run_name(args) -> str:
    heads = "3heads" if args.heads != "fine" else "1head"
    tail = f"_imb{args.imbalance:g}_{args.sampler}" if args.imbalance != 1 or args.sampler != "uniform" else ""
    return (f"{heads}_{args.severity}_{args.split.replace(':', '-')}{tail}_d{args.depth}w{args.width}"
            f"c{args.convs_per_stage}_seed{args.seed}")


def uniform_batches(tensors, batch_size: int, seed: int, epoch: int) -> Iterable:
    return tensor_batches(tensors, batch_size, seed=seed, epoch=epoch)


def class_weighted_batches(tensors, batch_size: int, seed: int, epoch: int) -> Iterable:
    order = class_weighted_order(tensors[1], HIERARCHY.sizes["fine"], seed=seed, epoch=epoch)
    return order_batches(tensors, order, batch_size)


SAMPLERS = {"uniform": uniform_batches, "class_weighted": class_weighted_batches}


def main(argv=None) -> dict:
    args = parse(argv)
    with distributed.launch(args) as info:
        return train(args, info)


def train(args, info: distributed.DistInfo) -> dict:
    device = info.device
    seed_everything(args.seed)
    pooled = load_pooled(args.data, args.data_root, seed=args.seed, smoke=args.smoke, per_class=args.per_class)
    train_idx, test_idx = split_indices(len(pooled.fine), SPLITS[args.split], args.seed)
    train_idx = train_idx[long_tail(pooled.fine[train_idx], args.imbalance, args.seed)]

    def tensors(index: np.ndarray) -> tuple[torch.Tensor, ...]:
        images = torch.from_numpy(pooled.images[index]).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32) uint8
        labels = HIERARCHY.labels(pooled.fine[index])
        return (images.to(device), *(torch.from_numpy(labels[h]).to(device) for h in LEVELS))

    train_set, test_set = tensors(train_idx), tensors(test_idx)
    mean, std = channel_stats(to_nchw(pooled.images[train_idx]))
    heads = HEAD_SETS[args.heads]
    config = MultiTaskConfig(heads=heads, classes=tuple(HIERARCHY.sizes[h] for h in heads), depth=args.depth,
                             width=args.width, convs_per_stage=args.convs_per_stage, dropout=args.dropout,
                             mean=mean, std=std)
    model = MultiTaskNet(config).to(device)
    net = distributed.wrap_model(model, device, sync_batchnorm=args.sync_bn)
    loss_fn = MultiTaskLoss(HIERARCHY.parents, heads, args.severity).to(device)
    fine_to = {h: torch.from_numpy(HIERARCHY.fine_to(h)).to(device) for h in LEVELS}
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)   # stepped per epoch
    batch = distributed.per_rank_batch(args.batch_size)
    steps = batch_count(len(train_idx), batch)
    run = distributed.run_dir(args, data_source=pooled.source, device=device)
    print(f"{ASSIGNMENT}: {config.describe()}, severity {args.severity}, sampler {args.sampler}, split {args.split}, "
          f"{len(train_idx):,} train / {len(test_idx):,} test, device {device}, data: {pooled.source}")

    start, elapsed = resume(run, net, optimizer, scheduler)
    guard = EpochGuard(run)
    for epoch in range(start, args.epochs):
        tic = time.perf_counter()
        net.train()
        meter = Meter()
        batches = SAMPLERS[args.sampler](train_set, batch, args.seed, epoch)
        for images, *labels in progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}", total=steps,
                                        quiet=args.smoke):
            targets = dict(zip(LEVELS, labels))
            with autocast(device):
                logits = net(images)                                           # {head: (B, K_head)}
                loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            probs = level_probabilities({h: v.detach() for h, v in logits.items()}, fine_to)
            meter.add(loss, len(images), **{f"{h}_acc": (probs[h].argmax(1) == targets[h]).sum() for h in LEVELS})
        train_means = guard.check(meter, net, epoch)
        scheduler.step()
        elapsed += time.perf_counter() - tic

        net.eval()
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", train_means)}
        with torch.no_grad():   # each rank a strided share of the test set, with rank 0's BatchNorm statistics
            distributed.broadcast_buffers(model)
            share = tuple(distributed.shard(t) for t in test_set)
            record.update(distributed.reduce_means(evaluate_split(model, share, fine_to, HIERARCHY).record,
                                                   len(share[0])))
        record["train_seconds"] = elapsed
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), net, optimizer, scheduler),
                  quiet=args.smoke)
    net.eval()
    finished_records(run)   # every rank waits for rank 0's last record
    if not info.is_main:
        return {}
    final = evaluate_split(model, test_set, fine_to, HIERARCHY)
    train_counts = np.bincount(pooled.fine[train_idx], minlength=HIERARCHY.sizes["fine"])
    return write_artefacts(run, model, config, final, args, pooled, train_idx, train_counts)


if __name__ == "__main__":
    run_cli(main)
