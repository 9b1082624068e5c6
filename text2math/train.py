"""Train one seq2seq model from MathQA word problems to programs; exact match and execution accuracy.

    python text2math/train.py --model glove_attention --glove ../shared/data/glove/glove.6B.50d.5k.txt
    python text2math/train.py --model bert_frozen                      # the packaged MiniLM encoder
    python text2math/train.py --model bert_finetuned --bert bert-base-uncased --bert-lr 2e-5
    python text2math/train.py --teacher-forcing 0.6 --beam-sizes 1 10 20
    torchrun --nproc_per_node=4 text2math/train.py --model bert_frozen   # DDP; --batch-size is the global batch
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from common import distributed
from common.cli import make_parser, non_negative_float, open_fraction, parse_args, positive_float, positive_int
from common.data_source import short_source
from common.errors import UserError, run_cli
from common.plots import plot_curves
from common.rundir import RunDir
from common.runtime import seed_everything
from common.torch_fit import FitSettings, batch_count, fit, tensor_batches
from text2math.bert import default_bert, load_bert
from text2math.data import load_mathqa, read_glove
from text2math.evaluation import decode, score_predictions
from common.models import count_parameters
from text2math.model import MODELS, Seq2Seq, Seq2SeqConfig, sequence_loss
from text2math.vocab import encode_sources, encode_targets, glove_matrix, source_vocab, target_vocab

ASSIGNMENT = "text2math"


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], epochs=6, batch_size=64, lr=3e-3,
                         batch_size_help=distributed.GLOBAL_BATCH_HELP)
    add = parser.add_argument
    add("--model", choices=list(MODELS), default="glove_attention",
        help="which of the four models (default: %(default)s)")
    add("--glove", type=Path, default=None,
        help="GloVe text file (default: <data-root>/glove/glove.6B.50d.txt or glove.6B.50d.5k.txt when present; "
             "else embeddings are learned from scratch)")
    add("--bert", default=None, help="BERT name or folder (default: the packaged all-MiniLM-L6-v2, offline)")
    add("--bert-layers", type=positive_int, default=None, help="keep only the first N BERT layers (default: all)")
    add("--bert-lr", type=positive_float, default=5e-5,
        help="learning rate of a fine-tuned BERT (default: %(default)s)")
    add("--teacher-forcing", type=non_negative_float, default=0.9,
        help="probability of feeding the gold token (else the model's own) at each step (default: %(default)s)")
    add("--beam-sizes", type=positive_int, nargs="+", default=[1],
        help="beam widths for the final evaluation; 1 is greedy (default: %(default)s)")
    add("--length-alpha", type=non_negative_float, default=1.0,
        help="beam scores are sum(log p) / length**alpha (default: %(default)s)")
    add("--hidden-size", type=positive_int, default=128, help="LSTM hidden size (default: %(default)s)")
    add("--emb-dim", type=positive_int, default=50, help="word / program token embedding size (default: %(default)s)")
    add("--dropout", type=non_negative_float, default=0.2, help="dropout (default: %(default)s)")
    add("--grad-clip", type=positive_float, default=5.0, help="max global gradient norm (default: %(default)s)")
    add("--max-src-len", type=positive_int, default=120, help="source tokens kept (default: %(default)s)")
    add("--max-program-len", type=positive_int, default=60,
        help="program tokens; longer training programs are dropped (default: %(default)s)")
    add("--test-fraction", type=open_fraction, default=0.1, help="share of dev.json held out (default: %(default)s)")
    add("--n-generated", type=positive_int, default=3000, help="generated problems (default: %(default)s)")
    add("--tolerance", type=positive_float, default=0.02,
        help="relative tolerance of execution accuracy (default: %(default)s)")
    return parser


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
    args = parse_args(build_parser(), argv, assignment=ASSIGNMENT, run_name=run_name)
    if args.smoke:
        args.epochs, args.hidden_size, args.emb_dim = min(args.epochs, 2), 16, 16
    is_bert = MODELS[args.model].encoder == "bert"
    args.bert = (args.bert or default_bert()) if is_bert else args.bert
    if args.teacher_forcing > 1:
        raise UserError(f"--teacher-forcing is a probability: got {args.teacher_forcing}")
    with distributed.launch(args) as info:
        return train(args, info)


def train(args, info: distributed.DistInfo) -> dict:
    spec = MODELS[args.model]
    is_bert = spec.encoder == "bert"
    device = torch.device(info.device)
    seed_everything(args.seed)
    data = load_mathqa(args.data, args.data_root, seed=args.seed, smoke=args.smoke,
                       n_generated=args.n_generated, test_fraction=args.test_fraction)
    tokenizer, trunk = load_bert(args.bert, args.bert_layers) if is_bert else (None, None)
    glove = resolve_glove(args)
    src_words = [] if is_bert else source_vocab(data.train)
    vectors = read_glove(glove, src_words) if (glove and not is_bert) else {}
    if vectors:
        args.emb_dim = len(next(iter(vectors.values())))
    config = Seq2SeqConfig(args.model, target_vocab(data.train + data.test), src_words, args.bert or "",
                           args.emb_dim, args.hidden_size, args.dropout, args.bert_layers)
    torch.manual_seed(args.seed)
    model = Seq2Seq(config, trunk)
    embedding_note = ""
    if not is_bert:
        if vectors:
            embedding = model.encoder.embedding.weight
            embedding.data.copy_(glove_matrix(src_words, vectors, embedding.data))
        embedding_note = (f", GloVe {glove.name}: {len(vectors):,}/{len(src_words):,} words found, the rest learned"
                          if glove else ", no GloVe file: embeddings learned from scratch")
    model.to(device)
    tgt_train, kept = encode_targets(data.train, config.tgt_vocab, args.max_program_len)
    train_problems = [p for p, k in zip(data.train, kept) if k]
    src_train, mask_train = encode_sources(train_problems, config.src_vocab, tokenizer, args.max_src_len)
    src_test, mask_test = encode_sources(data.test, config.src_vocab, tokenizer, args.max_src_len)
    tgt_test, _ = encode_targets(data.test, config.tgt_vocab, args.max_program_len, truncate=True)
    if spec.freeze_encoder:  # run the frozen encoder once over the data set
        src_train = cache_features(model, src_train, mask_train, device, args.smoke)
        src_test = cache_features(model, src_test, mask_test, device, args.smoke)
        model.encoder.cached = True
    train_tensors = tuple(t.to(device) for t in (src_train, mask_train, tgt_train))
    test_tensors = tuple(t.to(device) for t in (src_test, mask_test, tgt_test))
    # a fine-tuned trunk's pooler is trained by no loss: DDP must not wait for its gradients
    net = distributed.wrap_model(model, info.device, find_unused_parameters=is_bert and not spec.freeze_encoder)
    run = distributed.run_dir(args, data_source=data.source, device=device.type)
    trained = count_parameters(model, trainable_only=True)
    print(f"{ASSIGNMENT}: {config.describe()}{embedding_note}; {trained:,} trainable parameters; "
          f"{len(train_problems):,} train ({len(data.train) - len(train_problems)} longer than "
          f"{args.max_program_len} tokens dropped) / {len(data.test):,} test; teacher forcing "
          f"{args.teacher_forcing:g}; data: {data.source}")
    optimizer = build_optimizer(model, args, is_bert and not spec.freeze_encoder)

    def train_step(batch):
        src, mask, tgt = trim(*batch)
        logits = net(src, mask, tgt, teacher_forcing=args.teacher_forcing)
        loss_sum, tokens, correct = sequence_loss(logits, tgt)
        return loss_sum / tokens.clamp(min=1), {"n": tokens, "loss": loss_sum.detach(), "token_acc": correct}

    def evaluate(epoch: int) -> dict:   # each rank a strided share of the test problems
        share, problems = tuple(distributed.shard(t) for t in test_tensors), distributed.shard(data.test)
        scores = score_predictions(decode(model, share[:2], config, beam=1, max_len=args.max_program_len),
                                   problems, config, args.tolerance)
        return {**teacher_forced_loss(model, share), **distributed.reduce_means(
            {f"test_{k}": scores[k] for k in ("exact_match", "exec_acc")}, len(problems))}

    batch = distributed.per_rank_batch(args.batch_size)
    settings = FitSettings(epochs=args.epochs, grad_clip=args.grad_clip, quiet=args.smoke,
                           steps_per_epoch=batch_count(len(train_problems), batch))
    fit(net, optimizer, run, lambda epoch: tensor_batches(train_tensors, batch, seed=args.seed, epoch=epoch),
        train_step, evaluate, settings, config.to_dict(), device=device)
    return distributed.on_rank0(write_artefacts, run, model, data, config, test_tensors, args)


def trim(src: torch.Tensor, mask: torch.Tensor, tgt: torch.Tensor):
    """Drop the padding columns every row of this batch has (sources and targets)."""
    source_len, target_len = int(mask.sum(1).max()), int((tgt != 0).sum(1).max())
    return src[:, :source_len], mask[:, :source_len], tgt[:, :target_len]


def build_optimizer(model: Seq2Seq, args, fine_tune_bert: bool) -> torch.optim.Optimizer:
    """Adam; a fine-tuned BERT trunk gets its own (smaller) learning rate."""
    trunk = list(model.encoder.trunk.parameters()) if fine_tune_bert else []
    trunk_ids = {id(p) for p in trunk}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in trunk_ids]
    groups = [{"params": rest, "lr": args.lr}] + ([{"params": trunk, "lr": args.bert_lr}] if trunk else [])
    return torch.optim.Adam(groups)


@torch.no_grad()
def cache_features(model: Seq2Seq, ids: torch.Tensor, mask: torch.Tensor, device, quiet: bool,
                   batch: int = 64) -> torch.Tensor:
    """The frozen encoder's last hidden states for every example, once: (N, S, D) float16."""
    from common.progress import progress

    model.eval()
    parts = [model.encoder.features(ids[i:i + batch].to(device), mask[i:i + batch].to(device)).half().cpu()
             for i in progress(range(0, len(ids), batch), desc="caching frozen encoder outputs", quiet=quiet)]
    return torch.cat(parts)


def teacher_forced_loss(model: Seq2Seq, tensors, batch: int = 128) -> dict:
    total, count = 0.0, 0
    src, mask, tgt = tensors
    for i in range(0, len(src), batch):
        part = trim(src[i:i + batch], mask[i:i + batch], tgt[i:i + batch])
        loss_sum, tokens, _ = sequence_loss(model(*part), part[2])
        total, count = total + float(loss_sum), count + int(tokens)
    return distributed.reduce_means({"test_loss": total / max(count, 1)}, count)   # over every rank's tokens


def write_artefacts(run: RunDir, model: Seq2Seq, data, config: Seq2SeqConfig, test_tensors, args) -> dict:
    records = run.metrics()
    plot_curves(records, {"loss (per program token)": ["train_loss", "test_loss"],
                          "accuracy": ["train_token_acc", "test_exact_match", "test_exec_acc"]},
                run.file("curves.png"), title=f"{config.describe()} ({short_source(data.source)})")
    model.eval()
    beams = {}
    for beam in args.beam_sizes:
        with torch.no_grad():
            predictions = decode(model, test_tensors[:2], config, beam=beam, max_len=args.max_program_len,
                                 alpha=args.length_alpha)
        beams[str(beam)] = score_predictions(predictions, data.test, config, args.tolerance)
        if beam == args.beam_sizes[0]:
            write_predictions(run.file("predictions.jsonl"), predictions, data.test, config)
    first = beams[str(args.beam_sizes[0])]
    last = records[-1]
    summary = run.finish({
        "model": args.model, "title": MODELS[args.model].title, "description": config.describe(),
        "exact_match": first["exact_match"], "exec_acc": first["exec_acc"], "beams": beams,
        "teacher_forcing": args.teacher_forcing, "train_loss": last["train_loss"], "test_loss": last["test_loss"],
        "parameters": count_parameters(model, trainable_only=True),
        "n_train": len(data.train), "n_test": len(data.test), "tolerance": args.tolerance,
        "model_config": {k: v for k, v in config.to_dict().items() if not k.endswith("vocab")},
    }, records)
    scores = ", ".join(f"beam {b}: exact match {s['exact_match']:.2%}, execution accuracy {s['exec_acc']:.2%}"
                       for b, s in beams.items())
    print(f"done: {scores} on {len(data.test):,} test problems; run directory {run.path}")
    return summary


def write_predictions(path: Path, predictions, problems, config) -> None:
    from text2math.program import detokenize

    with open(path, "w") as handle:
        for tokens, problem in zip(predictions, problems):
            handle.write(json.dumps({"problem": problem.text, "numbers": problem.numbers, "gold": problem.formula,
                                     "predicted": detokenize([config.tgt_vocab[i] for i in tokens])}) + "\n")


if __name__ == "__main__":
    run_cli(main)
