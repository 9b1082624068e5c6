"""Draw sketches from a trained generator: a grid PNG and an animated GIF, optionally live in a window.

    python sketch_rnn/sample.py --checkpoint runs/sketch_rnn/<run>/checkpoint.pt --per-class 5 --temperature 0.3
    python sketch_rnn/sample.py --checkpoint ... --live          # animate in a window while generating
    python sketch_rnn/sample.py --smoke                          # a tiny untrained model: checks the files

The model is rebuilt from the checkpoint alone (its config is stored in it). When the run directory
holds train.py's recognizer.pt, each sketch is titled with what the recognizer sees."""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from common.checkpoint import load_checkpoint
from common.cli import DEVICES, OneLineParser, positive_float, positive_int, seed_int
from common.errors import UserError, run_cli
from common.models import rebuild_model
from common.rundir import make_dir
from common.runtime import choose_device
from sketch_rnn.model import SAMPLE_TEMPERATURE, SketchConfig, SketchGenerator
from sketch_rnn.recognizer import RECOGNIZER_FILE, load_recognizer, recognisability, rows_to_stroke3
from sketch_rnn.render import animate_live, display_available, plot_sketch_grid, write_gif
from sketch_rnn.shapes import SHAPES

DEFAULTS = {"per_class": 5, "temperature": SAMPLE_TEMPERATURE, "seed": 0, "device": "auto"}   # --help shows these
# --smoke without --checkpoint: this tiny untrained generator, 2 sketches a class at most, on the CPU
SMOKE_MODEL = dict(embed_dim=8, prompt_len=2, encoder_hidden=8, decoder_hidden=16, attention_dim=8, max_len=20)


def build_parser() -> OneLineParser:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", type=Path, default=None, help="a train.py checkpoint.pt (required unless --smoke)")
    add("--per-class", type=positive_int, default=DEFAULTS["per_class"],
        help="sketches per class (default: %(default)s)")
    add("--temperature", type=positive_float, default=DEFAULTS["temperature"],
        help="sampling temperature: lower is tidier, higher is more varied (default: %(default)s)")
    add("--seed", type=seed_int, default=DEFAULTS["seed"], help="sampling seed (default: %(default)s)")
    add("--device", choices=DEVICES, default=DEFAULTS["device"], help="where to compute (default: %(default)s)")
    add("--out", type=Path, default=None, help="folder for samples.png and samples.gif "
                                               "(default: <checkpoint folder>/samples_T<temperature>; with --smoke "
                                               "and no --checkpoint, under the working folder)")
    add("--live", action="store_true", help="animate in a window as the model generates (needs a display)")
    add("--smoke", action="store_true", help="2 per class on the CPU; without --checkpoint a tiny untrained model")
    return parser


def parse(argv=None):
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.device, args.per_class = "cpu", min(args.per_class, 2)
    if args.checkpoint is not None:
        args.checkpoint = args.checkpoint.expanduser().resolve()
    if args.out is None and (args.checkpoint is not None or args.smoke):
        folder = args.checkpoint.parent if args.checkpoint is not None else Path.cwd()
        args.out = folder / f"samples_T{args.temperature:g}"
    if args.out is not None:
        args.out = args.out.expanduser().resolve()
    return args


def load_generator(path: Path, device: torch.device) -> SketchGenerator:
    state = load_checkpoint(path, map_location=str(device))
    model = rebuild_model(state, lambda config: SketchGenerator(SketchConfig.from_dict(config)), path,
                          "sketch_rnn/train.py")
    return model.to(device).eval()


def main(argv=None) -> Path:
    args = parse(argv)
    if args.checkpoint is None and not args.smoke:
        raise UserError("--checkpoint PATH is required (a run's checkpoint.pt from sketch_rnn/train.py)")
    device = torch.device(choose_device(args.device))
    if args.checkpoint is not None:
        model = load_generator(args.checkpoint, device)
        run_dir = args.checkpoint.parent
    else:
        torch.manual_seed(args.seed)
        model = SketchGenerator(SketchConfig(classes=list(SHAPES), **SMOKE_MODEL)).eval()
        run_dir = Path.cwd()
        print("smoke: a tiny untrained generator (no --checkpoint): the files show scribbles")
    out = make_dir(args.out)
    names = model.config.classes
    labels = torch.arange(len(names), device=device).repeat_interleave(args.per_class)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    steps = model.generate_steps(labels, args.temperature, generator)
    rows = live_or_collect(steps, [names[k] for k in labels.tolist()], args)
    sketches, requested = rows_to_stroke3(rows), labels.cpu().numpy()
    titles = [names[k] for k in requested]
    if (run_dir / RECOGNIZER_FILE).exists():
        recognizer, _ = load_recognizer(run_dir / RECOGNIZER_FILE)
        share, predictions, _ = recognisability(recognizer, sketches, requested)
        titles = [t if p == r else f"{t} (as {names[p]})" for t, p, r in zip(titles, predictions, requested)]
        print(f"the run's recognizer sees the requested class in {share:.0%} of {len(sketches)} sketches")
    what = f"T={args.temperature:g}, seed {args.seed}"
    grid = plot_sketch_grid(sketches, titles, out / "samples.png", ncols=args.per_class, title=f"samples ({what})")
    gif = write_gif(sketches, titles, out / "samples.gif", ncols=args.per_class, title=f"samples being drawn ({what})")
    print(f"wrote {grid} and {gif}")
    return out


def live_or_collect(steps, titles: list[str], args) -> torch.Tensor:
    """(B, steps, 5): drawn in a window as they come with --live and a display, else just collected."""
    if args.live:
        available, why = display_available()
        if available:
            rows = animate_live((r.cpu().numpy() for r in steps), titles, ncols=args.per_class)
            return torch.from_numpy(np.stack(rows, axis=1))
        print(f"--live: {why}; writing the PNG and GIF only")
    return torch.stack(list(steps), dim=1)


if __name__ == "__main__":
    run_cli(main)
