"""Train one seq2seq model from MathQA word problems to programs; exact match and execution accuracy.

    python text2math/train.py --model glove_attention --glove ../shared/data/glove/glove.6B.50d.5k.txt
    python text2math/train.py --model bert_frozen                      # the packaged MiniLM encoder
    python text2math/train.py --model bert_finetuned --bert bert-base-uncased --bert-lr 2e-5
    python text2math/train.py --teacher-forcing 0.6 --beam-sizes 1 10 20
    python text2math/train.py --train-file MathQA/train.json --eval-file MathQA/challenge_test.json
    torchrun --nproc_per_node=4 text2math/train.py --model bert_frozen   # DDP; --batch-size is the global batch
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from common import distributed
from common.checkpoint import load_checkpoint, save_checkpoint
from common.cli import (fraction, int_in, make_parser, non_negative_float, non_negative_int, open_fraction, parse_args,
                        positive_float, positive_int)
from common.data_source import short_source
from common.errors import UserError, run_cli
from common.formats import is_whole
from common.models import count_parameters
from common.plots import plot_curves
from common.progress import progress
from common.rundir import RunDir, write_json
from common.runtime import seed_everything
from common.schedules import lr_lambda
from common.training import (EpochGuard, Meter, autocast, batch_count, checkpoint, end_epoch, finished_records,
                             prefixed, resume, tensor_batches)
from text2math.beam import MAX_BEAM
from text2math.bert import default_bert, load_bert
from text2math.data import N_GENERATED, MathQASplits, carve_validation, load_mathqa, read_glove, with_files
from text2math.evaluation import decode, score_predictions
from text2math.model import MAX_RETRIEVE, MODELS, Seq2Seq, Seq2SeqConfig, sequence_loss
from text2math.program import detokenize
from text2math.reranker import fit_and_score
from text2math.retrieval import MAX_NEIGHBOURS, RetrievalPool, retrieved_tensor
from text2math.vocab import encode_sources, encode_targets, glove_matrix, source_vocab, target_vocab

ASSIGNMENT = "text2math"
BEST = "best.pt"      # the weights of the epoch best on validation (trained parts only)
MODEL = {f.name: f.default for f in dataclasses.fields(Seq2SeqConfig)}   # the model flags' defaults
RERANKER = "reranker.json"   # the fitted reranker and the pool its neighbours come from (--rerank-k)
BERT_LR = 5e-5   # --bert-lr: the fine-tuned BERT's learning rate (bert_finetuned; the rest of the model takes --lr)
# the recipe of the README's headline figure (model 1 + retrieval + the learned reranker); the model's shape
# (hidden size, dropout, number index) comes from Seq2SeqConfig's defaults
RECIPE = {"model": "glove_lstm", "epochs": 6, "batch_size": 16, "lr": 2e-3, "teacher_forcing": 1.0,
          "retrieve": 2, "beam_sizes": [1, 10], "rerank_k": 20, "rerank_beam": 10, "rerank_options": True}


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=RECIPE["epochs"], batch_size=RECIPE["batch_size"],
                         lr=RECIPE["lr"],
                         batch_size_help=distributed.GLOBAL_BATCH_HELP)
    add = parser.add_argument
    add("--model", choices=list(MODELS), default=RECIPE["model"],
        help="which of the four models (default: %(default)s)")
    add("--glove", type=Path, default=None,
        help="GloVe text file, GloVe models only (default: <data-root>/glove/glove.6B.50d.txt or "
             "glove.6B.50d.5k.txt when present, not under --smoke; else embeddings are learned from scratch)")
    add("--bert", default=None,
        help="BERT name or folder, BERT models only (default: the packaged all-MiniLM-L6-v2, offline)")
    add("--bert-layers", type=positive_int, default=None,
        help="keep only the first N BERT layers, BERT models only (default: all)")
    add("--bert-lr", type=positive_float, default=None,
        help=f"learning rate of the fine-tuned BERT, bert_finetuned only (default: {BERT_LR:g})")
    add("--teacher-forcing", type=fraction, default=RECIPE["teacher_forcing"],
        help="probability of feeding the gold token (else the model's own) at each step (default: %(default)s)")
    add("--beam-sizes", type=int_in(1, MAX_BEAM), nargs="+", default=RECIPE["beam_sizes"],
        help="beam widths for the final evaluation; 1 is greedy, at most 200 (default: %(default)s)")
    add("--length-alpha", type=non_negative_float, default=1.0,
        help="beam scores are sum(log p) / length**alpha (default: %(default)s)")
    add("--hidden-size", type=positive_int, default=MODEL["hidden"],
        help="LSTM hidden size (default: %(default)s; 16 under --smoke)")
    add("--emb-dim", type=positive_int, default=MODEL["emb_dim"],
        help="word / program token embedding size (default: %(default)s; 16 under --smoke; a GloVe file's "
             "vectors set it to their dimension)")
    add("--dropout", type=fraction, default=MODEL["dropout"], help="dropout (default: %(default)s)")
    add("--label-smoothing", type=fraction, default=0.0,
        help="label smoothing over the tokens that can be scored (default: %(default)s)")
    add("--lr-schedule", choices=("cosine_floor", "constant"), default="cosine_floor",
        help="per-epoch learning-rate schedule over --epochs (common.schedules; cosine_floor: half a cosine "
             "down to 5%% of the learning rates) (default: %(default)s)")
    add("--patience", type=positive_int, default=6,
        help="stop when validation execution accuracy has not risen for this many epochs (default: %(default)s)")
    add("--val-fraction", type=non_negative_float, default=0.1,
        help="share of the training problems held out for early stopping and the reranker's fit; 0: none (every "
             "epoch runs, the last one's weights are evaluated, no reranker) (default: %(default)s)")
    add("--train-file", type=Path, default=None,
        help="MathQA json to train on (default: train.json under --data-root, else 90%% of dev.json)")
    add("--eval-file", type=Path, default=None,
        help="MathQA json to evaluate on (default: test.json beside train.json, else the held-out 10%% of dev.json)")
    add("--grad-clip", type=positive_float, default=5.0, help="max global gradient norm (default: %(default)s)")
    add("--max-src-len", type=positive_int, default=160, help="source tokens kept (default: %(default)s)")
    add("--max-program-len", type=positive_int, default=60,
        help="program tokens; longer training programs are dropped (default: %(default)s)")
    add("--test-fraction", type=open_fraction, default=0.1, help="share of dev.json held out (default: %(default)s)")
    add("--n-generated", type=positive_int, default=N_GENERATED,
        help="problems of the generated stand-in, at most 200,000 (default: %(default)s)")
    add("--tolerance", type=positive_float, default=0.02,
        help="relative tolerance of execution accuracy (default: %(default)s)")
    add("--number-index", action=argparse.BooleanOptionalAction, default=MODEL["number_index"],
        help="add a learned embedding of each number's index (n0, n1, ...) to the pointer's keys "
             "(default: %(default)s)")
    add("--retrieve", type=int_in(0, MAX_RETRIEVE), default=RECIPE["retrieve"], metavar="K",
        help="retrieval-augmented decoding: the decoder also attends to and may copy from the programs of the K "
             f"nearest TRAINING problems (TF-IDF; a training problem never retrieves itself), 0-{MAX_RETRIEVE}; 0: off "
             "(default: %(default)s)")
    add("--fit-check", type=non_negative_int, default=200, metavar="N",
        help="after every epoch, greedy exact match / execution accuracy on N training problems (how well the "
             "model fits what it trains on); 0: off (default: %(default)s)")
    add("--rerank-k", type=int_in(0, MAX_NEIGHBOURS), default=RECIPE["rerank_k"], metavar="K",
        help="after training, fit the learned reranker (reranker.py) on the validation problems: candidates = the "
             "beam's programs + the programs of the K nearest training problems; scored on the test problems "
             "(summary 'rerank'); 0: off (default: %(default)s)")
    add("--rerank-beam", type=int_in(1, MAX_BEAM), default=RECIPE["rerank_beam"],
        help="beam whose programs are the reranker's candidates, at most 200 (default: %(default)s)")
    add("--rerank-options", action=argparse.BooleanOptionalAction, default=RECIPE["rerank_options"],
        help="the reranker's features include whether a candidate's value is one of the five options (its top-1 "
             "then uses the options, as option-aware selection does); the other variant is scored too "
             "(default: %(default)s)")
    return parser


def parse(argv=None) -> argparse.Namespace:
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    is_bert = MODELS[args.model].encoder == "bert"
    if args.val_fraction >= 1:
        raise UserError(f"--val-fraction is a share below 1: got {args.val_fraction}")
    if is_bert and args.glove is not None:
        raise UserError(f"--glove: --model {args.model} reads BERT word pieces, not GloVe vectors; drop --glove")
    if not is_bert and (args.bert is not None or args.bert_layers is not None):
        raise UserError(f"--bert / --bert-layers: --model {args.model} has a GloVe encoder; drop them, or pick "
                        "bert_frozen / bert_finetuned")
    fine_tuned = is_bert and not MODELS[args.model].freeze_encoder
    if args.bert_lr is not None and not fine_tuned:
        raise UserError(f"--bert-lr: --model {args.model} fine-tunes no BERT; drop it, or pick bert_finetuned")
    args.bert_lr = (args.bert_lr or BERT_LR) if fine_tuned else None
    if args.smoke:
        args.epochs, args.hidden_size, args.emb_dim = min(args.epochs, 2), 16, 16
    args.bert = (args.bert or default_bert()) if is_bert else None
    args.glove = None if is_bert else resolve_glove(args)
    return args


def run_name(args) -> str:
    return f"{args.model}_tf{args.teacher_forcing:g}_h{args.hidden_size}_e{args.epochs}_seed{args.seed}"


def resolve_glove(args) -> Path | None:
    if args.glove is not None:
        return args.glove
    if args.smoke:
        return None
    return next((p for p in (args.data_root / "glove" / n for n in ("glove.6B.50d.txt", "glove.6B.50d.5k.txt"))
                 if p.exists()), None)


def main(argv=None) -> dict:
    args = parse(argv)
    with distributed.launch(args) as info:
        return train(args, info)


def load_data(args) -> MathQASplits:
    """The resolved data (or --train-file / --eval-file), with a validation share carved from training."""
    if args.train_file is not None and args.eval_file is not None:
        data = MathQASplits([], [], "")
    else:
        data = load_mathqa(args.data, args.data_root, seed=args.seed, smoke=args.smoke,
                           n_generated=args.n_generated, test_fraction=args.test_fraction)
    data = with_files(data, args.train_file, args.eval_file, seed=args.seed, test_fraction=args.test_fraction)
    return carve_validation(data, args.val_fraction, args.seed)


def encode(problems, config: Seq2SeqConfig, tokenizer, args, *, train: bool):
    """(src, mask, number positions, tgt, retrieved) and the problems they hold (training drops programs
    that do not fit: too long, or using a number the pointer cannot reach). `retrieved` holds the programs
    of each problem's config.retrieve nearest problems of the training pool (retrieval.py; training
    problems are the pool, in order, and never retrieve themselves); a (N, 1) placeholder when off."""
    src, mask, numbers = encode_sources(problems, config.src_vocab, tokenizer, args.max_src_len)
    tgt, kept = encode_targets(problems, config.tgt_vocab, args.max_program_len, truncate=not train,
                               positions=numbers)
    if config.retrieve:
        retrieved = retrieved_tensor(RetrievalPool.from_dict(config.retrieval_pool), [p.text for p in problems],
                                     config.tgt_vocab, config.retrieve, exclude_self=train,
                                     max_len=args.max_program_len)
    else:
        retrieved = torch.zeros((len(problems), 1), dtype=torch.long)
    keep = torch.tensor(kept, dtype=torch.bool)
    return (src[keep], mask[keep], numbers[keep], tgt, retrieved[keep]), [p for p, k in zip(problems, kept) if k]


def train(args, info: distributed.DistInfo) -> dict:
    spec = MODELS[args.model]
    is_bert = spec.encoder == "bert"
    device = torch.device(info.device)
    seed_everything(args.seed)
    data = load_data(args)
    tokenizer, trunk = load_bert(args.bert, args.bert_layers) if is_bert else (None, None)
    src_words = [] if is_bert else source_vocab(data.train)
    vectors = read_glove(args.glove, src_words) if args.glove else {}
    if vectors:
        args.emb_dim = len(next(iter(vectors.values())))   # the GloVe file's dimension
    pool = RetrievalPool.from_problems(data.train).to_dict() if args.retrieve else {}   # training part only
    config = Seq2SeqConfig(args.model, target_vocab(data.train), src_words, args.bert or "",   # training programs only
                           args.emb_dim, args.hidden_size, args.dropout, args.bert_layers, args.number_index,
                           args.retrieve, pool)
    torch.manual_seed(args.seed)
    model = Seq2Seq(config, trunk)
    embedding_note = ""
    if not is_bert:
        if vectors:
            embedding = model.encoder.embedding.weight
            embedding.data.copy_(glove_matrix(src_words, vectors, embedding.data))
        embedding_note = (f", GloVe {args.glove.name}: {len(vectors):,}/{len(src_words):,} words found, the rest "
                          "learned" if args.glove else ", no GloVe file: embeddings learned from scratch")
    model.to(device)
    train_tensors, train_problems = encode(data.train, config, tokenizer, args, train=True)
    val_tensors, val_problems = encode(data.val or data.test, config, tokenizer, args, train=False)
    val_problems = val_problems if data.val else []   # no validation part: no early stopping
    test_tensors, _ = encode(data.test, config, tokenizer, args, train=False)
    if spec.freeze_encoder:  # run the frozen encoder once over the data set
        train_tensors, val_tensors, test_tensors = (
            (cache_features(model, t[0], t[1], device, args.smoke, cache_dir=feature_cache(args)), *t[1:])
            for t in (train_tensors, val_tensors, test_tensors))
        model.encoder.cached = True
    train_tensors, val_tensors, test_tensors = (tuple(x.to(device) for x in t)
                                                for t in (train_tensors, val_tensors, test_tensors))
    fit_rows = torch.randperm(len(train_problems), generator=torch.Generator().manual_seed(args.seed))[:args.fit_check]
    fit_check = (tuple(t[fit_rows] for t in train_tensors), [train_problems[i] for i in fit_rows.tolist()])
    # a fine-tuned trunk's pooler is trained by no loss: DDP must not wait for its gradients
    net = distributed.wrap_model(model, info.device, find_unused_parameters=is_bert and not spec.freeze_encoder)
    run = distributed.run_dir(args, data_source=data.source, device=device.type)
    print(f"{ASSIGNMENT}: {config.describe()}{embedding_note}; {count_parameters(model, trainable_only=True):,} "
          f"trainable parameters; {len(train_problems):,} train ({len(data.train) - len(train_problems)} dropped: "
          f"longer than {args.max_program_len} tokens, or a number or token outside reach) / {len(data.val):,} "
          f"validation / {len(data.test):,} test; teacher forcing {args.teacher_forcing:g}; data: {data.source}")
    optimizer = build_optimizer(model, args, is_bert and not spec.freeze_encoder)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.lr_schedule, args.epochs))  # per epoch
    batch_size = distributed.per_rank_batch(args.batch_size)
    steps = batch_count(len(train_problems), batch_size)

    start, elapsed = resume(run, net, optimizer, scheduler)   # the LR follows this run's curve, --epochs too
    history = [r for r in run.metrics() if r["epoch"] <= start]   # on every rank: early stopping's evidence
    guard = EpochGuard(run, chance_loss=math.log(len(config.tgt_vocab)))   # a uniform guess over the program tokens
    for epoch in range(start, args.epochs):
        if val_problems and stale_epochs(history) >= args.patience:
            if distributed.is_main_process():
                print(f"early stop: validation execution accuracy has not risen for {args.patience} epochs")
            break
        tic = time.perf_counter()
        net.train()
        meter = Meter()
        batches = tensor_batches(train_tensors, batch_size, seed=args.seed, epoch=epoch)
        for batch in progress(batches, desc=f"epoch {epoch + 1}/{args.epochs}", total=steps, quiet=args.smoke):
            src, mask, numbers, tgt, retrieved = trim(*batch)
            with autocast(device):
                logits = net(src, mask, numbers, tgt, teacher_forcing=args.teacher_forcing, retrieved=retrieved)
                loss_sum, tokens, correct = sequence_loss(logits, tgt, args.label_smoothing)
                loss = loss_sum / tokens.clamp(min=1)                  # per program token
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.grad_clip)
            optimizer.step()
            meter.add(loss, tokens, loss=loss_sum, token_acc=correct)
        means = guard.check(meter, net, epoch)   # one host sync; a diverged run stops here
        scheduler.step()
        elapsed += time.perf_counter() - tic

        net.eval()
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **prefixed("train", means)}
        with torch.no_grad():
            record.update(evaluate(model, config, args, test_tensors, (val_tensors, val_problems), fit_check))
        record["train_seconds"] = elapsed
        if distributed.is_main_process() and val_problems and is_best(history, record):   # else the last epoch
            save_checkpoint(run.file(BEST), {"epoch": epoch + 1, "model": model.state_dict(),
                                             "model_config": config.to_dict()})
        history.append(record)
        end_epoch(run, record, checkpoint(epoch + 1, elapsed, config.to_dict(), net, optimizer, scheduler),
                  quiet=args.smoke)
    net.eval()
    records = finished_records(run)
    best_epoch = load_best(run.path / BEST, model, records)
    return distributed.on_rank0(write_artefacts, run, model, data, config, test_tensors, records, args,
                                (val_tensors, val_problems), best_epoch)


def evaluate(model: Seq2Seq, config: Seq2SeqConfig, args, test_tensors, val, fit_check) -> dict:
    """One epoch's evaluation entries: the teacher-forced test loss; greedy exact match / execution accuracy
    on the fit-check training problems (rank 0) and, with their loss, on the validation problems (each rank
    a strided share). `val` and `fit_check` are (tensors, problems)."""
    record = teacher_forced_loss(model, test_tensors, "test")
    if fit_check[1] and distributed.is_main_process():   # how well it fits its own training problems
        scores = score_predictions(decode(model, *fit_check, config, beam=1, max_len=args.max_program_len),
                                   fit_check[1], config, args.tolerance)
        record.update({f"fit_{k}": scores[k] for k in ("exact_match", "exec_acc")})
    if val[1]:
        record.update(teacher_forced_loss(model, val[0], "val"))
        share, problems = tuple(distributed.shard(t) for t in val[0]), distributed.shard(val[1])
        scores = score_predictions(decode(model, share, problems, config, beam=1, max_len=args.max_program_len),
                                   problems, config, args.tolerance)
        record.update(distributed.reduce_means({f"val_{k}": scores[k] for k in ("exact_match", "exec_acc")},
                                               len(problems)))
    return record


def _key(record: dict) -> tuple[float, float]:
    """What early stopping maximises: validation execution accuracy, then the lower validation loss."""
    return record.get("val_exec_acc", 0.0), -record.get("val_loss", float("inf"))


def is_best(previous: list[dict], record: dict) -> bool:
    return all(_key(record) > _key(r) for r in previous)


def stale_epochs(records: list[dict]) -> int:
    """Epochs since the best one (0 when the last epoch is the best, or there are none)."""
    if not records:
        return 0
    best = max(range(len(records)), key=lambda i: (_key(records[i]), -i))
    return len(records) - 1 - best


def feature_cache(args) -> Path | None:
    """Where the frozen encoder's outputs are kept between runs: runs/text2math/feature_cache (not under --smoke)."""
    return None if args.smoke else args.out.parent / "feature_cache"


def trim(src: torch.Tensor, mask: torch.Tensor, numbers: torch.Tensor, tgt: torch.Tensor,
         retrieved: torch.Tensor | None = None):
    """Drop the padding columns every row of this batch has (sources, targets, retrieved programs)."""
    source_len, target_len = int(mask.sum(1).max()), int((tgt != 0).sum(1).max())
    if retrieved is not None:
        retrieved = retrieved[:, :max(int((retrieved != 0).sum(1).max()), 1)]
    return src[:, :source_len], mask[:, :source_len], numbers, tgt[:, :target_len], retrieved


def build_optimizer(model: Seq2Seq, args, fine_tune_bert: bool) -> torch.optim.Optimizer:
    """Adam; a fine-tuned BERT trunk gets its own (smaller) learning rate."""
    trunk = list(model.encoder.trunk.parameters()) if fine_tune_bert else []
    trunk_ids = {id(p) for p in trunk}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in trunk_ids]
    groups = [{"params": rest, "lr": args.lr}] + ([{"params": trunk, "lr": args.bert_lr}] if trunk else [])
    return torch.optim.Adam(groups)


@torch.no_grad()
def cache_features(model: Seq2Seq, ids: torch.Tensor, mask: torch.Tensor, device, quiet: bool,
                   batch: int = 64, cache_dir: Path | None = None) -> torch.Tensor:
    """The frozen encoder's last hidden states for every example, once: (N, S, D) float16. Rows are run
    in order of length, each batch cut to its longest row (no work on padding); with `cache_dir`, the
    result is kept on disk under a hash of the encoder and the token ids, and reused by later runs."""
    key = hashlib.sha1(f"{model.config.bert}|{model.config.bert_layers}".encode() + ids.numpy().tobytes()
                       + mask.numpy().tobytes()).hexdigest()[:20]
    path = cache_dir / f"features_{key}.pt" if cache_dir is not None else None
    shape = (*ids.shape, model.encoder.out_dim)
    if path is not None and path.exists():
        try:
            cached = load_checkpoint(path)
        except UserError:          # damaged: a cache is made again, not a reason to stop
            cached = None
        features = cached.get("features") if isinstance(cached, dict) else None
        if isinstance(features, torch.Tensor) and features.shape == shape and features.dtype == torch.float16:
            return features
        print(f"note: {path} holds no cached features of these problems; computing them again")
    model.eval()
    lengths = mask.sum(1)
    order = lengths.argsort(descending=True)
    out = torch.zeros(shape, dtype=torch.float16)
    for i in progress(range(0, len(ids), batch), desc="caching frozen encoder outputs", quiet=quiet):
        rows = order[i:i + batch]
        width = max(int(lengths[rows].max()), 1)
        part = model.encoder.features(ids[rows, :width].to(device), mask[rows, :width].to(device))
        out[rows, :width] = part.half().cpu()
    if path is not None:
        save_checkpoint(path, {"features": out})
    return out


def teacher_forced_loss(model: Seq2Seq, tensors, name: str, batch: int = 128) -> dict:
    total, count = 0.0, 0
    for i in range(0, len(tensors[0]), batch):
        src, mask, numbers, tgt, retrieved = trim(*(t[i:i + batch] for t in tensors))
        loss_sum, tokens, _ = sequence_loss(model(src, mask, numbers, tgt, retrieved=retrieved), tgt)
        total, count = total + float(loss_sum), count + int(tokens)
    return distributed.reduce_means({f"{name}_loss": total / max(count, 1)}, count)   # over every rank's tokens


def load_best(path: Path, model: Seq2Seq, records: list[dict]) -> int:
    """The epoch of the weights early stopping kept (best.pt), loaded into `model`; the last epoch, with the
    weights as they are, when there is none. A best.pt that is not this run's (no such epoch, other weights) is
    one line."""
    if not path.exists():
        return len(records)
    state = load_checkpoint(path)
    epoch = state.get("epoch") if isinstance(state, dict) else None
    fix = "delete it and --resume (the last epoch's weights are then evaluated), or start over with --overwrite"
    if not is_whole(epoch) or not 1 <= epoch <= len(records) or "model" not in state:
        raise UserError(f"{path} is not this run's best checkpoint (epoch {str(epoch)[:40]} of {len(records)}); {fix}")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, KeyError, ValueError, AttributeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise UserError(f"{path} does not fit this run's model ({first}); {fix}") from None
    return epoch


def write_artefacts(run: RunDir, model: Seq2Seq, data, config: Seq2SeqConfig, test_tensors, records: list[dict],
                    args, val, best_epoch: int) -> dict:
    plot_curves(records, {"loss (per program token)": ["train_loss", "val_loss", "test_loss"],
                          "accuracy": ["train_token_acc", "fit_exact_match", "fit_exec_acc", "val_exact_match",
                                       "val_exec_acc"]},
                run.file("curves.png"), title=f"{config.describe()} ({short_source(data.source)})")
    beams = evaluate_beams(model, test_tensors, data.test, config, args, run.file("predictions.jsonl"))
    first = beams[str(args.beam_sizes[0])]
    rerank = rerank_test(run, model, val, (test_tensors, data.test), data, args)
    best = records[best_epoch - 1] if records else {}
    summary = run.finish({
        "model": args.model, "title": MODELS[args.model].title, "description": config.describe(),
        **{k: first[k] for k in ("exact_match", "exec_acc", "exec_gold", "option_acc", "runs")}, "beams": beams,
        "teacher_forcing": args.teacher_forcing, "best_epoch": best_epoch,
        "train_loss": best.get("train_loss"), "test_loss": best.get("test_loss"),
        "val_exec_acc": best.get("val_exec_acc"), "rerank": rerank,
        "parameters": count_parameters(model, trainable_only=True),
        "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
        "tolerance": args.tolerance,
        "model_config": {k: v for k, v in config.to_dict().items() if not k.endswith(("vocab", "pool"))},
    }, records)
    chosen = "best on validation" if val[1] else "the last: no validation part"
    print(f"done (weights of epoch {best_epoch}, {chosen}): " + describe_beams(beams)
          + (f"; reranked: {describe_rerank(rerank)}" if rerank else "")
          + f" on {len(data.test):,} test problems; run directory {run.path}")
    return summary


def rerank_settings(args) -> dict:
    return {"beam": args.rerank_beam, "k": args.rerank_k, "max_len": args.max_program_len,
            "alpha": args.length_alpha, "tolerance": args.tolerance, "options": args.rerank_options}


def rerank_test(run: RunDir, model: Seq2Seq, val, test, data, args) -> dict | None:
    """Fit the reranker on the validation problems, score it on the test problems, keep it in reranker.json
    (with its pool: every training problem, validation part included, as knn.py searches). None when off."""
    if not args.rerank_k or not val[1]:
        return None
    pool = data.train + data.val
    reranker, scores, _ = fit_and_score(model, val, test, pool, **rerank_settings(args))
    write_json(run.file(RERANKER), saved_reranker(reranker, args.rerank_beam, args.rerank_k, args.rerank_options, pool))
    return scores


def saved_reranker(reranker, beam: int, k: int, options: bool, pool) -> dict:
    """What evaluate.py reads back (its load_reranker): the fitted reranker, its candidates' settings and the pool
    its neighbours come from."""
    return {"reranker": reranker.to_dict(), "beam": beam, "k": k, "options": options,
            "pool": RetrievalPool.from_problems(pool).to_dict()}


def describe_rerank(scores: dict) -> str:
    other = scores.get("other")

    def uses(options) -> str:
        return "options in the features" if options else "options not in the features"

    return (f"execution accuracy {scores['exec_acc']:.2%}, option-aware {scores['option_acc']:.2%} (beam "
            f"{scores['beam']} + {scores['k']} neighbours' programs, {uses(scores.get('options'))}; a correct "
            f"candidate for {scores['oracle']:.2%})"
            + (f"; {uses(other['options'])}: {other['exec_acc']:.2%} / {other['option_acc']:.2%}" if other else ""))


def evaluate_beams(model: Seq2Seq, tensors, problems, config: Seq2SeqConfig, args, predictions: Path | None) -> dict:
    """{beam: scores} for every --beam-sizes; the first beam's top-1 programs written to `predictions`."""
    model.eval()
    beams = {}
    for beam in args.beam_sizes:
        found = decode(model, tensors, problems, config, beam=beam, max_len=args.max_program_len,
                       alpha=args.length_alpha)
        beams[str(beam)] = score_predictions(found, problems, config, args.tolerance)
        if beam == args.beam_sizes[0] and predictions is not None:
            write_predictions(predictions, [h[0] for h in found], problems, config)
    return beams


def describe_beams(beams: dict) -> str:
    return "; ".join(f"beam {b}: exact match {s['exact_match']:.2%}, execution accuracy {s['exec_acc']:.2%} "
                     f"(gold program's value {s['exec_gold']:.2%}), option-aware {s['option_acc']:.2%}"
                     for b, s in beams.items())


def write_predictions(path: Path, predictions, problems, config) -> None:
    with open(path, "w") as handle:
        for tokens, problem in zip(predictions, problems):
            handle.write(json.dumps({"problem": problem.text, "numbers": problem.numbers, "gold": problem.formula,
                                     "predicted": detokenize([config.tgt_vocab[i] for i in tokens])}) + "\n")


if __name__ == "__main__":
    run_cli(main)
