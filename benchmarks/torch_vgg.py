"""PyTorch eager reference: the same VGG trained the same way, for `benchmarks/vs_pytorch.py`.

Fairness: the architecture, initial layout and optimiser match swishtrain's (conv3x3 [+BN] + act
stages with max-pooling, Dense 4096 + act + Dropout 0.5 twice, Dense 10; SGD with momentum 0.9
and weight decay 1e-4; batch 128 of 3x32x32), it runs with the same number of threads
(torch.set_num_threads(OMP_NUM_THREADS)), the batch is already in memory as for swishtrain's
train-step figure, and both memory formats are measured (NCHW and channels_last) with the
faster one reported. It is plain eager PyTorch: no torch.compile; mixed precision only with
--autocast bfloat16 (torch.autocast on the CPU: convolutions and linear layers in bfloat16 on
float32 weights, the counterpart of swishtrain's --dtype bfloat16).

    python benchmarks/torch_vgg.py --model vgg16_bn --act relu --json
    python benchmarks/torch_vgg.py --width 0.125 --batch-size 8 --steps 1 --repeats 1 --warmup 1

The architecture is train_cli.model.spec's (VGG_SPEC, DENSE_UNITS, the width scaling), so the
two cannot drift apart; profile_step.py's PyTorch side is make_step below.
"""
import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

from train_cli.model.spec import DENSE_UNITS, NUM_CLASSES, VGG_SPEC, parse_name, scaled

ACTS = {"relu": lambda: nn.ReLU(inplace=True), "silu": lambda: nn.SiLU(inplace=True)}
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def vgg(depth, batch_norm, act, width=1.0, classes=NUM_CLASSES):
    """swishtrain's VGG (train_cli.model.spec's table and width scaling) in PyTorch."""
    layers, cin = [], 3
    for count, cout in zip(*VGG_SPEC[depth]):
        cout = scaled(cout, width)
        for _ in range(count):
            layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(ACTS[act]())
            cin = cout
        layers.append(nn.MaxPool2d(2))
    units = scaled(DENSE_UNITS, width)
    layers += [nn.Flatten(), nn.Linear(cin, units), ACTS[act](), nn.Dropout(0.5),
               nn.Linear(units, units), ACTS[act](), nn.Dropout(0.5), nn.Linear(units, classes)]
    return nn.Sequential(*layers)


def set_threads():
    """As many threads as swishtrain's OpenMP team (OMP_NUM_THREADS), one seed."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count()))
    torch.manual_seed(0)


def make_step(model, act, width, batch, memory_format="nchw", autocast="none"):
    """A function that runs one SGD step (lr 1e-4, as the harness) of the network named by
    model (depth and BatchNorm; act: relu or silu) on one random batch of 3x32x32 images."""
    depth, batch_norm, _ = parse_name(model)
    fmt = FORMATS[memory_format]
    net = vgg(depth, batch_norm, act, width).to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, NUM_CLASSES, (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast == "bfloat16"):
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    return step


def measure(args, memory_format):
    """Median img/s over --repeats timings of --steps steps, after --warmup untimed steps."""
    step = make_step(args.model, args.act, args.width, args.batch_size, memory_format,
                     args.autocast)
    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        rates.append(args.batch_size * args.steps / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    """Measure one configuration in each memory format asked for; report the faster."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16_bn", help="vgg{11,13,16,19}[_bn]")
    parser.add_argument("--act", default="relu", choices=sorted(ACTS))
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory-format", choices=["auto", "nchw", "channels_last"],
                        default="auto", help="auto: measure both, report the faster")
    parser.add_argument("--autocast", default="none", choices=["none", "bfloat16"],
                        help="torch.autocast('cpu', bfloat16) around the forward pass and loss")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    set_threads()
    rates = {fmt: measure(args, fmt) for fmt in FORMATS if args.memory_format in ("auto", fmt)}
    best = max(rates, key=rates.get)
    result = {"framework": f"pytorch {torch.__version__}", "model": args.model, "act": args.act,
              "threads": torch.get_num_threads(), "train_img_per_s": rates[best],
              "capability": torch.backends.cpu.get_cpu_capability(),
              "memory_format": best, "by_memory_format": rates, "autocast": args.autocast}
    print(json.dumps(result) if args.json else
          f"{args.model}/{args.act}: {rates[best]:.1f} img/s ({best}; {rates})")


if __name__ == "__main__":
    main()
