"""Train the class-conditioned stroke generator on Quick, Draw! (or its generated stand-in).

    python sketch_rnn/train.py --epochs 10                      # offline: the generated stand-in
    python sketch_rnn/train.py --head gmm                       # Sketch-RNN's mixture-of-Gaussians head
    python sketch_rnn/train.py --data real --data-root ../shared/data --max-per-class 2000
    python sketch_rnn/sample.py --checkpoint runs/sketch_rnn/<run>/checkpoint.pt --per-class 5
    torchrun --nproc_per_node=4 sketch_rnn/train.py --epochs 10  # DDP; --batch-size is the global batch

Per epoch: loss (offset and pen terms apart, padding masked out) and pen-state accuracy on train and
val. At the end: test metrics, a recognizer trained on the rasterised train split (recognizer.pt),
the recognisability of generated samples, the sample grid (samples.png) and its animation (samples.gif).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from common import distributed
from common.cli import fraction, layer_count, make_parser, non_negative_float, parse_args, positive_float, positive_int
from common.data_source import short_source
from common.errors import UserError, run_cli
from common.models import count_parameters
from common.plots import plot_curves
from common.progress import progress
from common.rundir import RunDir
from common.runtime import seed_everything
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             prefixed, resume, tensor_batches)
from sketch_rnn.data import REAL_CLASSES, load_sketches
from sketch_rnn.heads import HEADS
from sketch_rnn.model import SAMPLE_TEMPERATURE, SketchConfig, SketchGenerator, sketch_loss
from sketch_rnn.recognizer import (RECOGNIZER_FILE, load_recognizer, recognisability, rows_to_stroke3,
                                   save_recognizer, train_recognizer)
from sketch_rnn.render import plot_sketch_grid, write_gif

ASSIGNMENT = "sketch_rnn"
METRICS = ("loss", "offset_loss", "pen_loss", "pen_acc")
SWEEP_TEMPERATURES = (0.1, 0.3, 0.5, 1.0)  # recognisability is also reported at these
MODEL = SketchConfig()   # the architecture's sizes: its config's defaults
# The recipe behind the README's figures: every flag's default comes from here (--help shows these values).
# The head and the pen inputs differ from SketchConfig's defaults, which read checkpoints older than them.
RECIPE = {"epochs": 10, "batch_size": 32, "lr": 2e-3, "weight_decay": 1e-4, "grad_clip": 1.0, "head": "gmm",
          "classes": list(REAL_CLASSES), "max_per_class": 1000, "max_len": MODEL.max_len,
          "embed_dim": MODEL.embed_dim, "prompt_len": MODEL.prompt_len, "encoder_hidden": MODEL.encoder_hidden,
          "decoder_hidden": MODEL.decoder_hidden, "layers": MODEL.layers, "attention_dim": MODEL.attention_dim,
          "pen_position": True, "pen_turning": True, "mixtures": MODEL.mixtures, "dropout": MODEL.dropout,
          "temperature": SAMPLE_TEMPERATURE, "eval_per_class": 100, "grid_per_class": 5}
# --smoke: at most 2 epochs of sketches cut to 40 rows, a tiny model, 2 samples a class
SMOKE = {"eval_per_class": 2, "grid_per_class": 2, "embed_dim": 8, "prompt_len": 2, "encoder_hidden": 8,
         "decoder_hidden": 16, "attention_dim": 8, "mixtures": 3}


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=RECIPE["epochs"], batch_size=RECIPE["batch_size"],
                         lr=RECIPE["lr"], batch_size_help=distributed.GLOBAL_BATCH_HELP)
    add = parser.add_argument
    add("--head", choices=list(HEADS), default=RECIPE["head"],
        help="gmm: Sketch-RNN's bivariate Gaussian mixture; seed: the seed's MSE offsets + pen logits, whose "
             "samples drift (README) (default: %(default)s)")
    add("--classes", nargs="+", default=RECIPE["classes"],
        help="Quick, Draw! classes for real data; the generated stand-in has its own five (default: %(default)s)")
    add("--max-per-class", type=positive_int, default=RECIPE["max_per_class"],
        help="drawings read per class (the generated stand-in: at most 20,000) (default: %(default)s)")
    add("--max-len", type=positive_int, default=RECIPE["max_len"],
        help="stroke-5 rows kept per sketch (default: %(default)s)")
    add("--embed-dim", type=positive_int, default=RECIPE["embed_dim"],
        help="class embedding size (default: %(default)s)")
    add("--prompt-len", type=positive_int, default=RECIPE["prompt_len"],
        help="class-prompt steps the encoder reads (default: %(default)s)")
    add("--encoder-hidden", type=positive_int, default=RECIPE["encoder_hidden"],
        help="BiLSTM units per direction (default: %(default)s)")
    add("--decoder-hidden", type=positive_int, default=RECIPE["decoder_hidden"],
        help="decoder LSTM units (default: %(default)s)")
    add("--layers", type=layer_count, default=RECIPE["layers"],
        help="LSTM layers in encoder and decoder (default: %(default)s)")
    add("--attention-dim", type=positive_int, default=RECIPE["attention_dim"],
        help="additive attention size (default: %(default)s)")
    add("--pen-position", action=argparse.BooleanOptionalAction, default=RECIPE["pen_position"],
        help="the decoder also reads where the pen is relative to the start of the sketch, so it can tell when an "
             "outline is closed (default: %(default)s)")
    add("--pen-turning", action=argparse.BooleanOptionalAction, default=RECIPE["pen_turning"],
        help="the decoder also reads how far the pen has turned since the start (signed full turns), so it keeps "
             "turning one way round an outline (default: %(default)s)")
    add("--mixtures", type=positive_int, default=RECIPE["mixtures"],
        help="Gaussians in the gmm head (default: %(default)s)")
    add("--dropout", type=fraction, default=RECIPE["dropout"],
        help="between LSTM layers (default: %(default)s)")
    add("--weight-decay", type=non_negative_float, default=RECIPE["weight_decay"],
        help="AdamW weight decay (default: %(default)s)")
    add("--grad-clip", type=positive_float, default=RECIPE["grad_clip"],
        help="max global gradient norm (default: %(default)s)")
    add("--temperature", type=positive_float, default=RECIPE["temperature"],
        help="sampling temperature of the end-of-run samples (default: %(default)s)")
    add("--eval-per-class", type=positive_int, default=RECIPE["eval_per_class"],
        help="samples per class judged by the recognizer; 100 a class puts the standard error of a class's share "
             "near 4 points (default: %(default)s)")
    add("--grid-per-class", type=positive_int, default=RECIPE["grid_per_class"],
        help="samples per class in the grid and GIF (default: %(default)s)")
    return parser


def parse(argv=None):
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs, args.max_len = min(args.epochs, 2), min(args.max_len, 40)
        vars(args).update(SMOKE)
    return args


def run_name(args) -> str:
    return (f"{args.head}_{args.data}_h{args.decoder_hidden}_b{args.batch_size}_lr{args.lr:g}"
            f"_n{args.max_per_class}_seed{args.seed}")


def main(argv=None) -> dict:
    args = parse(argv)
    with distributed.launch(args) as info:
        return train(args, info)


def train(args, info: distributed.DistInfo) -> dict:
    seed_everything(args.seed)
    device = torch.device(info.device)
    data = load_sketches(args.data, args.data_root, args.classes, args.max_per_class, args.seed, args.smoke)
    config = SketchConfig(classes=data.classes, head=args.head, embed_dim=args.embed_dim, prompt_len=args.prompt_len,
                          encoder_hidden=args.encoder_hidden, decoder_hidden=args.decoder_hidden, layers=args.layers,
                          attention_dim=args.attention_dim, mixtures=args.mixtures, dropout=args.dropout,
                          pen_position=args.pen_position, pen_turning=args.pen_turning,
                          max_len=min(args.max_len, data.longest() + 1), scale=data.scale)
    tensors = {split: tuple(t.to(device) for t in data.tensors(split, config.max_len)) for split in data.drawings}
    model = SketchGenerator(config).to(device)
    net = distributed.wrap_model(model, info.device)
    run = distributed.run_dir(args, data_source=data.source, device=str(device))
    print(f"{ASSIGNMENT}: {config.describe()}, {count_parameters(model):,} parameters; "
          f"{', '.join(f'{len(t[2]):,} {k}' for k, t in tensors.items())}, max length {config.max_len}; "
          f"data: {data.source}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)   # stepped per epoch
    batch = distributed.per_rank_batch(args.batch_size)
    steps = batch_count(len(tensors["train"][2]), batch)

    start, elapsed = resume(run, net, optimizer, scheduler)
    guard = EpochGuard(run)
    for epoch in range(start, args.epochs):
        tic = time.perf_counter()
        net.train()
        meter = Meter()
        batches = tensor_batches(tensors["train"], batch, seed=args.seed, epoch=epoch)
        for rows in progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}", total=steps, quiet=args.smoke):
            stroke5, lengths, labels = trim(*rows)
            with autocast(device):
                out = sketch_loss(model, net(stroke5, labels), stroke5, lengths)   # loss, its terms, pen_acc
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.grad_clip)
            optimizer.step()
            meter.add(out["loss"], len(labels), **{k: out[k].detach() * len(labels) for k in METRICS[1:]})
        train_means = guard.check(meter, net, epoch)
        scheduler.step()
        elapsed += time.perf_counter() - tic

        net.eval()
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", train_means)}
        with torch.no_grad():   # each rank a strided share of the validation set
            share = tuple(distributed.shard(t) for t in tensors["val"])
            means, residuals = evaluate_split(model, share)
            model.head.calibrate(distributed.gather(residuals))  # the seed head samples with their spread
            record.update(prefixed("val", distributed.reduce_means(means, len(share[2]))))
        record["train_seconds"] = elapsed
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), net, optimizer, scheduler),
                  quiet=args.smoke)
    net.eval()
    finished_records(run)   # every rank waits for rank 0's last record
    return distributed.on_rank0(write_artefacts, run, model, data, tensors, args)


def trim(stroke5: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor):
    """Drop the padding columns every sketch of the batch has (keeps one end token)."""
    steps = min(int(lengths.max()) + 2, stroke5.shape[1])
    return stroke5[:, :steps], lengths, labels


@torch.no_grad()
def evaluate_split(model: SketchGenerator, split: tuple[torch.Tensor, ...], batch_size: int = 256
                   ) -> tuple[dict, torch.Tensor]:
    """Mean loss terms and pen accuracy over a split, and the offset residuals of the point estimate (N, 2)."""
    model.eval()
    totals, count, residuals = dict.fromkeys(METRICS, 0.0), 0, []
    for start in range(0, len(split[2]), batch_size):
        stroke5, lengths, labels = trim(*(t[start:start + batch_size] for t in split))
        params = model(stroke5, labels)
        out = sketch_loss(model, params, stroke5, lengths)
        for key in METRICS:
            totals[key] += float(out[key]) * len(labels)
        count += len(labels)
        offset_mask = torch.arange(stroke5.shape[1] - 1, device=lengths.device) < lengths.unsqueeze(1)
        residuals.append((model.head.point_estimate(params) - stroke5[:, 1:, :2])[offset_mask])
    return {k: v / max(count, 1) for k, v in totals.items()}, torch.cat(residuals).float()


def generate_sketches(model: SketchGenerator, per_class: int, temperature: float, seed: int
                      ) -> tuple[list[np.ndarray], np.ndarray]:
    """per_class sketches of every class (class-major order) as stroke-3 in model units, and their labels."""
    device = next(model.parameters()).device
    labels = torch.arange(len(model.config.classes), device=device).repeat_interleave(per_class)
    generator = torch.Generator(device=device).manual_seed(seed)
    rows = model.eval().generate(labels, temperature, generator)
    return rows_to_stroke3(rows), labels.cpu().numpy()


def judge(run_path: Path, data, seed: int, quiet: bool):
    """The recognizer cached in the run directory, trained on this data source's train split if absent."""
    path = run_path / RECOGNIZER_FILE
    if path.exists():
        try:
            recognizer, state = load_recognizer(path)
        except UserError as err:    # an older format or a damaged file: it is a cache, so train it again
            print(f"note: retraining the recognizer ({err})")
            state = {}
        if state.get("data_source") == data.source:
            return recognizer, state["test_acc"]
    recognizer, test_acc = train_recognizer((data.drawings["train"], data.labels["train"]),
                                            (data.drawings["test"], data.labels["test"]), data.classes,
                                            seed=seed, epochs=2 if quiet else 6, quiet=quiet)
    save_recognizer(path, recognizer, test_acc, data.source)
    return recognizer, test_acc


def write_artefacts(run: RunDir, model: SketchGenerator, data, tensors: dict, args) -> dict:
    records = run.metrics()
    test, _ = evaluate_split(model, tensors["test"])
    recognizer, recognizer_acc = judge(run.path, data, args.seed, args.smoke)
    sketches, requested = generate_sketches(model, args.eval_per_class, args.temperature, args.seed)
    recognised, predictions, per_class = recognisability(recognizer, sketches, requested)
    by_temperature = {f"{t:g}": recognised if t == args.temperature else
                      recognisability(recognizer, *generate_sketches(model, args.eval_per_class, t, args.seed))[0]
                      for t in ([] if args.smoke else SWEEP_TEMPERATURES)}   # the same seed: T equal, samples equal
    names = data.classes
    columns = min(args.grid_per_class, args.eval_per_class)
    shown = [i for i in range(len(sketches)) if i % args.eval_per_class < columns]
    titles = [f"{names[requested[i]]}" + ("" if predictions[i] == requested[i] else f" (as {names[predictions[i]]})")
              for i in shown]
    what = f"head {args.head}, T={args.temperature:g}"
    plot_sketch_grid([sketches[i] for i in shown], titles, run.file("samples.png"), ncols=columns,
                     title=f"samples per class ({what}); recognised {recognised:.0%}")
    write_gif([sketches[i] for i in shown], titles, run.file("samples.gif"), ncols=columns,
              title=f"samples being drawn ({what})")
    examples = np.concatenate([np.flatnonzero(data.labels["train"] == k)[:args.grid_per_class]
                               for k in range(len(names))])
    plot_sketch_grid([data.drawings["train"][i] for i in examples], [names[data.labels["train"][i]] for i in examples],
                     run.file("training_examples.png"), ncols=args.grid_per_class,
                     title=f"training sketches ({short_source(data.source)})")
    plot_curves(records, {"offset loss": ["train_offset_loss", "val_offset_loss"],
                          "pen loss": ["train_pen_loss", "val_pen_loss"],
                          "pen-state accuracy": ["train_pen_acc", "val_pen_acc"]},
                run.file("curves.png"), title=f"{model.config.describe()} ({short_source(data.source)})")
    last = records[-1]
    summary = run.finish({
        **{f"test_{k}": v for k, v in test.items()},
        **{k: last[k] for k in last if k.startswith(("train_", "val_"))},
        "recognisability": recognised, "recognisability_per_class": dict(zip(names, per_class.tolist())),
        "recognisability_by_temperature": by_temperature, "recognizer_test_acc": recognizer_acc,
        "chance": 1 / len(names), "temperature": args.temperature,
        "samples_judged": len(sketches), "mean_sample_rows": float(np.mean([len(s) for s in sketches])),
        "mean_data_rows": float(np.mean([len(d) for d in data.drawings["test"]])),
        "head": args.head, "parameters": count_parameters(model),
        "model_config": model.config.to_dict(), "model": model.config.describe(), "classes": names,
        "n_train": len(data.labels["train"]), "n_val": len(data.labels["val"]), "n_test": len(data.labels["test"]),
    }, records)
    print(f"done: test pen accuracy {test['pen_acc']:.2%}, offset loss {test['offset_loss']:.4f}; samples at "
          f"T={args.temperature:g} recognised as their class {recognised:.2%} (chance {1 / len(names):.0%}; the "
          f"recognizer scores {recognizer_acc:.2%} on held-out test sketches of the data) after "
          f"{last['epoch']} epochs, "
          f"{last['train_seconds']:.0f} s; run directory {run.path}")
    return summary


if __name__ == "__main__":
    run_cli(main)
