"""Forward + backward time of each of resnet_norms' own normalisations vs torch's built-in counterpart.

    python bench/resnet_norms_norms.py                     # CPU, (64, 32, 16, 16) features, ~20 s
    python bench/resnet_norms_norms.py --device cuda --batch-size 256 --channels 64 --size 32

Both layers get the same input, in training mode (batch statistics; BN and BIN update running
statistics), and the same upstream gradient; the time is the median of --repeats interleaved runs of
forward + backward. BIN has no torch counterpart: it is compared with rho * BatchNorm2d(x) + (1 - rho) *
InstanceNorm2d(x) built from torch's layers. The ratio is ours / torch (above 1: ours is slower).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch import nn

from common.cli import DEVICES, OneLineParser, positive_int
from common.errors import run_cli
from common.runtime import choose_device
from resnet_norms.norms import NORMS, TORCH_COUNTERPARTS


class TorchBIN(nn.Module):
    """BIN from torch's layers: gamma * (rho * BN(x) + (1 - rho) * IN(x)) + beta."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn, self.inorm = nn.BatchNorm2d(channels, affine=False), nn.InstanceNorm2d(channels)
        self.rho = nn.Parameter(torch.full((channels,), 0.5))
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        rho = self.rho.view(1, -1, 1, 1)
        mixed = rho * self.bn(x) + (1 - rho) * self.inorm(x)
        return mixed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _step_time(layer: nn.Module, x: torch.Tensor, upstream: torch.Tensor, device: str) -> float:
    x = x.detach().requires_grad_(True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    tic = time.perf_counter()
    layer(x).backward(upstream)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - tic


def main(argv=None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--device", choices=DEVICES, default="cpu", help="where to compute (default: %(default)s)")
    add("--batch-size", type=positive_int, default=64, help="feature batch (default: %(default)s)")
    add("--channels", type=positive_int, default=32, help="channels (default: %(default)s)")
    add("--size", type=positive_int, default=16, help="feature map height = width (default: %(default)s)")
    add("--groups", type=positive_int, default=8, help="GroupNorm's groups (default: %(default)s)")
    add("--repeats", type=positive_int, default=30, help="timed runs of each layer (default: %(default)s)")
    add("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.channels, args.size, args.groups, args.repeats = 4, 8, 4, 2, 2
    device = choose_device(args.device)
    torch.manual_seed(0)
    shape = (args.batch_size, args.channels, args.size, args.size)
    x, upstream = torch.randn(shape, device=device), torch.randn(shape, device=device)
    print(f"features {tuple(shape)}, forward + backward in training mode, median of {args.repeats} interleaved runs, "
          f"device {device}, {torch.get_num_threads()} torch thread(s)")
    print(f"{'norm':>5}  {'ours ms':>8}  {'torch ms':>8}  ratio ours / torch")
    for name in NORMS:
        if name == "none":
            continue
        ours = NORMS[name](args.channels, args.groups).to(device)
        theirs = (TorchBIN(args.channels) if name == "bin" else
                  TORCH_COUNTERPARTS[name](args.channels, args.groups, (args.size, args.size))).to(device)
        times = {"ours": [], "torch": []}
        for _ in range(3):                                         # warm-up
            _step_time(ours, x, upstream, device), _step_time(theirs, x, upstream, device)
        for _ in range(args.repeats):
            times["ours"].append(_step_time(ours, x, upstream, device))
            times["torch"].append(_step_time(theirs, x, upstream, device))
        a, b = statistics.median(times["ours"]), statistics.median(times["torch"])
        print(f"{name:>5}  {1e3 * a:8.3f}  {1e3 * b:8.3f}  {a / b:.2f}x")


if __name__ == "__main__":
    run_cli(main)
