"""Images/s of the distillation teacher's training step: our loop vs a plain reference loop, one run.

    python bench/kd_cifar10_step.py                    # CPU, small sizes (about a minute)
    python bench/kd_cifar10_step.py --device cuda --width 64 --images 20000 --batch-size 512

ours: kd_cifar10/distill.py's written-out step (common.training's tensor_batches, autocast and Meter): the data
already on the device, bf16 autocast and channels_last on CUDA, the loss summed on the device (one host sync
per pass, Meter.means).
reference: a torch DataLoader over CPU tensors (each batch copied to the device), float32, the default
memory format, and `loss.item()` every step. The same model, initial weights, batch size and optimizer.
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from common.cli import DEVICES, OneLineParser, layer_count, positive_int
from common.errors import run_cli
from common.models import count_parameters
from common.runtime import choose_device
from common.training import Meter, autocast, tensor_batches
from kd_cifar10.model import build_model


def ours(model, x, y, batch_size: int, device: str, passes: int) -> float:
    model = model.to(device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def one_pass(epoch):
        model.train()
        meter = Meter()
        for xb, yb in tensor_batches((x, y), batch_size, seed=0, epoch=epoch):
            with autocast(device):
                logits = model(xb)                                  # (B, 10)
                loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            meter.add(loss, torch.full((), len(yb), device=yb.device))
        return meter.means()                                        # the pass's one host sync
    return _timed(one_pass, len(y), passes, device)


def reference(model, x, y, batch_size: int, device: str, passes: int) -> float:
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=True)

    def one_pass(epoch):
        model.train()
        total = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()                                    # a host sync every step
        return total
    return _timed(one_pass, len(y), passes, device)


def _timed(one_pass, images: int, passes: int, device: str) -> float:
    """Images per second over `passes` passes after one warm-up pass."""
    one_pass(0)
    if device == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for epoch in range(1, passes + 1):
        one_pass(epoch)
    if device == "cuda":
        torch.cuda.synchronize()
    return images * passes / (time.perf_counter() - tic)


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", choices=DEVICES, default="cpu", help="where to compute (default: %(default)s)")
    add("--layers", type=layer_count, nargs=4, default=[2, 2, 2, 2],
        help="teacher blocks per stage (default: %(default)s)")
    add("--width", type=positive_int, default=16, help="teacher first-stage width (default: %(default)s)")
    add("--images", type=positive_int, default=1024, help="images per pass (default: %(default)s)")
    add("--batch-size", type=positive_int, default=128, help="mini-batch size (default: %(default)s)")
    add("--passes", type=positive_int, default=2, help="timed passes per loop (default: %(default)s)")
    add("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.layers, args.width, args.images, args.batch_size, args.passes = [1, 1, 1, 1], 4, 64, 32, 1
    device = choose_device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.images, 3, 32, 32)                         # (N, 3, 32, 32)
    y = torch.randint(0, 10, (args.images,))                         # (N,)
    model = build_model("cnn", layers=tuple(args.layers), width=args.width)
    print(f"teacher CNN {'-'.join(map(str, args.layers))} width {args.width} ({count_parameters(model):,} parameters), "
          f"{args.images} images x {args.passes} passes, batch {args.batch_size}, device {device}, "
          f"{torch.get_num_threads()} torch thread(s)")
    rates = {}
    for name, loop in (("reference", reference), ("ours", ours)):
        rates[name] = loop(copy.deepcopy(model), x, y, args.batch_size, device, args.passes)
        print(f"{name:>9}: {rates[name]:,.0f} images/s")
    print(f"ratio ours / reference: {rates['ours'] / rates['reference']:.2f}x")


if __name__ == "__main__":
    run_cli(main)
