"""Retrieval-augmented decoding with a trained model (a separate, clearly labelled decoding mode; not
the models' top-1): the candidates are the beam's programs plus the programs of the `--k` nearest
training problems (knn.py's TF-IDF), and the model's own length-normalised log-probability picks
among those that run. Reports top-1 and option-aware execution accuracy of the picked programs.

    python text2math/rerank.py --checkpoint runs/text2math/<run> --data real --data-root ../shared/data
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from common.cli import OneLineParser, positive_float, positive_int, thread_count
from common.errors import UserError, run_cli
from common.rundir import write_json
from common.runtime import set_cpu_threads
from text2math.data import carve_validation, load_mathqa
from text2math.evaluate import load_model, resolve_checkpoint
from text2math.evaluation import decode, score_predictions, value_of
from text2math.model import EOS, MODELS, SOS
from text2math.train import cache_features, encode


def build_parser():
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", type=Path, required=True, help="best.pt / checkpoint.pt of a train.py run, or its folder")
    add("--data", choices=("auto", "real", "generated"), default="auto", help="as train.py (default: %(default)s)")
    add("--data-root", type=Path, default=Path(__file__).resolve().parent.parent / "data", help="as train.py")
    add("--seed", type=int, default=0, help="the run's seed: the same split (default: %(default)s)")
    add("--beam", type=positive_int, default=10, help="beam whose programs are candidates (default: %(default)s)")
    add("--k", type=positive_int, default=10, help="nearest training problems whose programs are candidates "
                                                   "(default: %(default)s)")
    add("--tolerance", type=positive_float, default=0.02, help="relative tolerance (default: %(default)s)")
    add("--max-program-len", type=positive_int, default=60, help="(default: %(default)s)")
    add("--max-src-len", type=positive_int, default=160, help="(default: %(default)s)")
    add("--threads", type=thread_count, default="auto", help="CPU threads (default: %(default)s)")
    add("--out", type=Path, default=None, help="json file for the scores (default: beside the checkpoint)")
    return parser


def neighbours(memory, queries, k: int) -> list[list[int]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+")
    matrix = vectorizer.fit_transform([p.text for p in memory])
    similarity = (vectorizer.transform([p.text for p in queries]) @ matrix.T).toarray()
    return [list(np.argsort(-row, kind="stable")[:k]) for row in similarity]


@torch.no_grad()
def log_prob(model, tensors, row: int, programs: list[list[int]], sos: int, eos: int) -> list[float]:
    """Mean log-probability per token (with <eos>) of each program for source row `row`."""
    tgt = torch.zeros((len(programs), max(map(len, programs)) + 2), dtype=torch.long)
    for i, ids in enumerate(programs):
        tgt[i, :len(ids) + 2] = torch.tensor([sos, *ids, eos])
    src, mask, numbers = (t[row:row + 1].expand(len(programs), *t.shape[1:]) for t in tensors[:3])
    logp = model(src, mask, numbers, tgt).float().log_softmax(-1)
    gold = tgt[:, 1:]
    picked = logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1).masked_fill(gold == 0, 0)
    return (picked.sum(1) / (gold != 0).sum(1)).tolist()


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    set_cpu_threads(args.threads)
    path = resolve_checkpoint(args.checkpoint)
    model, tokenizer = load_model(path)
    config = model.config
    if config.retrieve:
        raise UserError(f"{path} was trained with --retrieve (retrieval inside the model): rerank.py is for "
                        "models without it; use evaluate.py")
    data = carve_validation(load_mathqa(args.data, args.data_root.expanduser().resolve(), seed=args.seed), 0.1,
                            args.seed)
    memory = data.train + data.val
    tensors, _ = encode(data.test, config, tokenizer, args, train=False)
    if MODELS[config.model].freeze_encoder:
        tensors = (cache_features(model, tensors[0], tensors[1], "cpu", quiet=True), *tensors[1:])
        model.encoder.cached = True
    model.eval()
    beams = decode(model, tensors, data.test, config, beam=args.beam, max_len=args.max_program_len)
    index = {t: i for i, t in enumerate(config.tgt_vocab)}
    sos, eos = index[SOS], index[EOS]
    picked = []
    for row, (found, near) in enumerate(zip(beams, neighbours(memory, data.test, args.k))):
        retrieved = [[index[t] for t in memory[j].program] for j in near
                     if all(t in index for t in memory[j].program) and len(memory[j].program) <= args.max_program_len]
        problem = data.test[row]
        candidates = [list(c) for c in dict.fromkeys(tuple(c) for c in found + retrieved if c)
                      if value_of([config.tgt_vocab[i] for i in c], problem.numbers) is not None]
        scores = log_prob(model, tensors, row, candidates, sos, eos) if candidates else []
        picked.append([c for _, c in sorted(zip(scores, candidates), key=lambda pair: -pair[0])] or found)
    scores = score_predictions(picked, data.test, config, args.tolerance)
    result = {"checkpoint": str(path), "beam": args.beam, "k": args.k, "n": len(data.test), **scores}
    write_json(args.out or path.parent / "rerank.json", result)
    print(f"{path}: beam {args.beam} + {args.k} retrieved programs, ranked by the model: top-1 execution accuracy "
          f"{scores['exec_acc']:.2%}, option-aware {scores['option_acc']:.2%} ({len(data.test)} problems)")
    return result


if __name__ == "__main__":
    run_cli(main)
