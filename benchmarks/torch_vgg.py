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
"""
import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

SPEC = {11: ([1, 1, 2, 2, 2], [64, 128, 256, 512, 512]),
        13: ([2, 2, 2, 2, 2], [64, 128, 256, 512, 512]),
        16: ([2, 2, 3, 3, 3], [64, 128, 256, 512, 512]),
        19: ([2, 2, 4, 4, 4], [64, 128, 256, 512, 512])}
ACTS = {"relu": lambda: nn.ReLU(inplace=True), "silu": lambda: nn.SiLU(inplace=True)}


def vgg(depth, batch_norm, act, width=1.0, classes=10):
    layers, cin = [], 3
    for count, cout in zip(*SPEC[depth]):
        cout = int(cout * width + 0.5)
        for _ in range(count):
            layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(ACTS[act]())
            cin = cout
        layers.append(nn.MaxPool2d(2))
    units = int(4096 * width + 0.5)
    layers += [nn.Flatten(), nn.Linear(cin, units), ACTS[act](), nn.Dropout(0.5),
               nn.Linear(units, units), ACTS[act](), nn.Dropout(0.5), nn.Linear(units, classes)]
    return nn.Sequential(*layers)


def measure(model, memory_format, batch, steps, repeats, autocast="none"):
    net = model().to(memory_format=memory_format)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast == "bfloat16"):
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16_bn", help="vgg{11,13,16,19}[_bn]")
    parser.add_argument("--act", default="relu", choices=sorted(ACTS))
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-format", choices=["auto", "nchw", "channels_last"],
                        default="auto", help="auto: measure both, report the faster")
    parser.add_argument("--autocast", default="none", choices=["none", "bfloat16"],
                        help="torch.autocast('cpu', bfloat16) around the forward pass and loss")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count()))
    torch.manual_seed(0)
    depth = int(args.model[3:5])
    model = lambda: vgg(depth, "_bn" in args.model, args.act, args.width)  # noqa: E731
    rates = {fmt: measure(model, mf, args.batch_size, args.steps, args.repeats, args.autocast)
             for fmt, mf in (("nchw", torch.contiguous_format),
                             ("channels_last", torch.channels_last))
             if args.memory_format in ("auto", fmt)}
    best = max(rates, key=rates.get)
    result = {"framework": f"pytorch {torch.__version__}", "model": args.model, "act": args.act,
              "threads": torch.get_num_threads(), "train_img_per_s": rates[best],
              "capability": torch.backends.cpu.get_cpu_capability(),
              "memory_format": best, "by_memory_format": rates, "autocast": args.autocast}
    print(json.dumps(result) if args.json else
          f"{args.model}/{args.act}: {rates[best]:.1f} img/s ({best}; {rates})")


if __name__ == "__main__":
    main()
