"""Where one training step spends its time, per operator, in swishtrain (MXNet) and in PyTorch.

For each framework, in child processes started with the ISA cap of --isa (benchmarks/isa.py):
- oneDNN's verbose log of --steps steps after --warmup (MXNet's oneDNN 2.4.4: DNNL_VERBOSE;
  PyTorch's oneDNN 3.12: ONEDNN_VERBOSE): every primitive executed, its implementation (the
  kernel, e.g. `jit:avx2`, `brg_conv_fwd:avx2`) and its time, summed per kind and per
  convolution layer;
- the framework's own profiler over the same number of steps (MXNet: mx.profiler aggregate
  statistics, one row per operator, so whatever is not oneDNN shows too: the SGD update, dropout,
  the loss; PyTorch: torch.profiler, self CPU time per aten operator);
- the plain step time (without verbose or profiler), for scale.

    python benchmarks/profile_step.py --isa avx2 [--model vgg16_bn] [--width 1] [--steps 2]
    python benchmarks/profile_step.py --isa native --framework mxnet --width 0.25   # quick look
    python benchmarks/profile_step.py --isa native --dtype bfloat16   # AMX: ours vs autocast

    python benchmarks/profile_step.py --width 0.125 --batch-size 8 --steps 1 --warmup 1 --top 5
                                      (the smoke test's tiny run)

Prints markdown tables (ms per step); --json FILE keeps everything. Exit status 0; 2 when this
CPU cannot run --isa or --dtype (bfloat16 needs AMX or AVX512_BF16), after one line saying so.
"""
# ruff: noqa: E402
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import isa as isa_mod  # noqa: I001
import onednn_log

from train_cli import cpu
from train_cli.training import precision  # no mxnet import: the parent never loads MXNet

START, END = "### profile-step start", "### profile-step end"
RESULT = "### profile-step result "


# ---------------------------------------------------------------------------------------------
# children

def _mark(text):
    """A marker line on stdout, in order with oneDNN's printf lines (both fd 1, flushed)."""
    sys.stdout.flush()
    os.write(1, (text + "\n").encode())


def _mxnet_step(args):
    """swishtrain's step through the benchmark harness (train_cli/analysis/harness.py)."""
    from train_cli.startup import before_mxnet
    before_mxnet()
    import mxnet as mx

    from train_cli.analysis.harness import TrainStep
    from train_cli.config import TrainConfig
    step = TrainStep(TrainConfig(model=args.model, width=args.width, batch_size=args.batch_size,
                                 dtype=args.dtype), [mx.cpu()])
    return mx, step.run


def _torch_step(args):
    """The PyTorch reference's step (torch_vgg.make_step)."""
    import torch
    import torch_vgg
    torch_vgg.set_threads()
    return torch, torch_vgg.make_step(args.model, args.act, args.width, args.batch_size,
                                      args.memory_format, args.dtype)


def child(args):
    """In a child process: warm up, then time, log or profile --steps steps; print the result."""
    mod, step = (_mxnet_step if args.child == "mxnet" else _torch_step)(args)
    for _ in range(args.warmup):
        step()
    result = {}
    if args.what == "verbose":
        _mark(START)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        result["seconds"] = time.perf_counter() - start
        _mark(END)
    elif args.what == "time":
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        result["step_ms"] = statistics.median(times) * 1e3
        result["all_ms"] = [t * 1e3 for t in times]
    elif args.child == "mxnet":
        mx = mod
        # never os.devnull: MXNet's profiler replaces its output file (it deleted /dev/null
        # and left a regular file there); a temporary file it may do with as it likes
        trace = tempfile.NamedTemporaryFile(prefix="swishtrain-profile-", suffix=".json",
                                            delete=False).name
        mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=trace)
        mx.profiler.set_state("run")
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        result["seconds"] = time.perf_counter() - start
        mx.profiler.set_state("stop")
        result["aggregate"] = json.loads(mx.profiler.dumps(reset=True, format="json"))
    else:
        import torch
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            result["seconds"] = time.perf_counter() - start
        result["ops"] = [{"name": e.key, "count": e.count, "self_us": e.self_cpu_time_total,
                          "total_us": e.cpu_time_total} for e in prof.key_averages()]
        result["capability"] = torch.backends.cpu.get_cpu_capability()
    _mark(RESULT + json.dumps(result))


# ---------------------------------------------------------------------------------------------
# parent: run the children, parse, tabulate

def run_child(framework, what, args, extra_env=None):
    """(result, stdout) of one child process under the ISA cap of --isa."""
    env = isa_mod.environ(args.isa)
    env.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    env.update(extra_env or {})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", framework, "--what", what,
           "--model", args.model, "--width", str(args.width), "--batch-size",
           str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--act", args.act, "--memory-format", args.memory_format, "--dtype", args.dtype]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{framework} {what} child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.split(RESULT, 1)[1].splitlines()[0])
    return result, proc.stdout


MX_GROUPS = [  # MXNet operator name (regex) -> group, for the per-operator table
    (r"Convolution", "convolution"), (r"FullyConnected", "dense (FullyConnected)"),
    (r"BatchNorm", "BatchNorm"), (r"Pooling", "max-pooling"), (r"Activation|relu", "ReLU"),
    (r"fused_swish|Swish|sigmoid", "Swish"), (r"Dropout", "dropout"),
    (r"sgd|update", "SGD-momentum update"), (r"softmax|pick|log|SoftmaxOutput", "loss"),
    (r"Reorder|reorder", "reorder"),
]
TORCH_GROUPS = [
    (r"convolution|conv2d", "convolution"), (r"addmm|linear|\bmm\b|aten::mm|matmul", "dense"),
    (r"batch_norm", "BatchNorm"), (r"max_pool", "max-pooling"),
    (r"relu|threshold", "ReLU"), (r"silu", "Swish"), (r"dropout|bernoulli", "dropout"),
    (r"_foreach|sgd|Optimizer", "SGD-momentum update"),
    (r"cross_entropy|log_softmax|nll_loss", "loss"),
]


def group_of(name, table):
    """The group (convolution, BatchNorm, ...) an operator name belongs to."""
    for pattern, group in table:
        if re.search(pattern, name, re.IGNORECASE):
            return group
    return "other"


def mxnet_ops(aggregate, steps):
    """[(operator, count per step, ms per step)] from mx.profiler's aggregate JSON."""
    rows = []
    for domain, ops in aggregate.get("Time", {}).items():
        if not isinstance(ops, dict) or domain == "MXNET_C_API":  # API calls wrap the operators
            continue
        for name, s in ops.items():
            rows.append((name, s["Count"] / steps, s["Total"] / steps))
    return sorted(rows, key=lambda r: -r[2])


def torch_ops(ops, steps):
    """[(operator, count per step, ms per step)] from torch.profiler's self CPU times."""
    rows = [(o["name"], o["count"] / steps, o["self_us"] / 1e3 / steps) for o in ops
            if o["self_us"] > 0]
    return sorted(rows, key=lambda r: -r[2])


def fmt_table(header, rows):
    """A markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def profile(framework, args):
    """Time, oneDNN log and profiler of one framework's step, each in its own process."""
    timing, _ = run_child(framework, "time", args)
    verbose_env = ({"MKLDNN_VERBOSE": "1", "DNNL_VERBOSE": "1"} if framework == "mxnet"
                   else {"ONEDNN_VERBOSE": "1", "DNNL_VERBOSE": "1"})
    vres, vtext = run_child(framework, "verbose", args, verbose_env)
    rows, layers = onednn_log.primitives(vtext.split(START, 1)[1].split(END, 1)[0],
                                          args.steps)
    pres, _ = run_child(framework, "profiler", args,
                        {"MXNET_EXEC_BULK_EXEC_TRAIN": "0"} if framework == "mxnet" else {})
    ops = (mxnet_ops(pres["aggregate"], args.steps) if framework == "mxnet"
           else torch_ops(pres["ops"], args.steps))
    return {"framework": framework, "step_ms": timing["step_ms"], "step_ms_all": timing["all_ms"],
            "onednn_isa": onednn_log.isa(vtext), "verbose_step_ms":
            vres["seconds"] / args.steps * 1e3, "primitives": rows, "conv_layers": layers,
            "profiler_step_ms": pres["seconds"] / args.steps * 1e3, "ops": ops,
            "capability": pres.get("capability")}


def report(results, args):
    """The markdown report of every framework profiled."""
    lines = [f"## {args.model} width {args.width:g}, batch {args.batch_size}, ISA cap "
             f"{args.isa} ({isa_mod.describe(args.isa)})",
             f"machine: {isa_mod.machine_line()}; OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS') or len(os.sched_getaffinity(0))}", ""]
    for r in results:
        name = "swishtrain (MXNet 1.9.1, oneDNN 2.4.4)" if r["framework"] == "mxnet" else \
            f"PyTorch eager ({args.memory_format}, oneDNN 3.12, ATen {r['capability']})"
        total = sum(p["ms"] for p in r["primitives"])
        lines += [f"### {name}: {r['step_ms']:.0f} ms/step (median of {args.steps} steps); "
                  f"oneDNN isa: {r['onednn_isa']}", "",
                  f"oneDNN primitives, ms per step ({total:.0f} ms in oneDNN of "
                  f"{r['verbose_step_ms']:.0f} ms with the verbose log on):", ""]
        lines.append(fmt_table(["primitive", "pass", "implementation", "calls", "ms"],
                               [(p["kind"], p["prop"], p["impl"], f"{p['count']:g}",
                                 f"{p['ms']:.1f}") for p in r["primitives"] if p["ms"] >= 0.05]))
        groups = defaultdict(lambda: [0.0, 0.0])
        table = MX_GROUPS if r["framework"] == "mxnet" else TORCH_GROUPS
        for name_, count, ms in r["ops"]:
            g = groups[group_of(name_, table)]
            g[0] += count
            g[1] += ms
        ptotal = sum(ms for _, _, ms in r["ops"])
        how = ("mx.profiler aggregate, bulking off" if r["framework"] == "mxnet"
               else "torch.profiler self CPU time")
        lines += ["", f"framework profiler ({how}): "
                  f"{ptotal:.0f} ms of operators per step ({r['profiler_step_ms']:.0f} ms "
                  "wall with the profiler on); top operators:", ""]
        lines.append(fmt_table(["operator", "calls", "ms"],
                               [(n, f"{c:g}", f"{ms:.1f}") for n, c, ms in r["ops"][:args.top]]))
        lines += ["", "grouped:", ""]
        lines.append(fmt_table(["group", "ms", "share"],
                               [(g, f"{v[1]:.1f}", f"{v[1] / ptotal:.0%}") for g, v in
                                sorted(groups.items(), key=lambda kv: -kv[1][1])]))
        lines.append("")
    if len(results) == 2:
        mx_, th = results
        passes = ("forward", "backward_data", "backward_weights")
        lines += ["### convolutions per layer shape, ms per step (MX: swishtrain, PT: PyTorch; "
                  "kernels in pass order fwd / bwd-data / bwd-weights)", ""]
        rows = []
        for layer in mx_["conv_layers"]:
            a, b = mx_["conv_layers"][layer], th["conv_layers"].get(layer, {})

            def impls(d):
                return " / ".join(d.get("impl_" + p, "-") for p in passes)
            rows.append((f"{layer} (x{a.get('layers', 0):g})", f"{a.get('gflop', 0):.1f}",
                         *(f"{a.get(p, 0):.1f}" for p in passes), impls(a),
                         *(f"{b.get(p, 0):.1f}" for p in passes), impls(b)))
        lines.append(fmt_table(["layer shape (count)", "GFLOP/pass", "MX fwd", "MX bwd-d",
                                "MX bwd-w", "MX kernels", "PT fwd", "PT bwd-d", "PT bwd-w",
                                "PT kernels"], rows))
    return "\n".join(lines)


def not_available(args):
    """What of the request this CPU lacks (None: it can run all of it)."""
    if not isa_mod.available(args.isa):
        return f"--isa {args.isa}"
    if args.dtype == "bfloat16" and precision.bfloat16_isa(cpu.flags()) is None:
        return "--dtype bfloat16 (needs AMX or AVX512_BF16)"
    return None


def main():
    """Profile the frameworks asked for, or (--child) be one of the measured processes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", choices=sorted(isa_mod.CAPS), default="native")
    parser.add_argument("--framework", choices=["mxnet", "torch", "both"], default="both")
    parser.add_argument("--model", default="vgg16_bn")
    parser.add_argument("--act", default="relu", help="PyTorch's activation (relu, silu); "
                        "MXNet's follows --model")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="ours: --dtype; PyTorch: torch.autocast('cpu', bfloat16) if bfloat16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory-format", default="channels_last",
                        choices=["channels_last", "nchw"], help="PyTorch's (default: its "
                        "faster one on this machine, see torch_vgg.py)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", help="write everything measured here")
    parser.add_argument("--child", choices=["mxnet", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=["time", "verbose", "profiler"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    missing = not_available(args)
    if missing:
        print(f"not available on this CPU: {missing} ({isa_mod.machine_line()})")
        return 2
    frameworks = ["mxnet", "torch"] if args.framework == "both" else [args.framework]
    results = [profile(f, args) for f in frameworks]
    text = report(results, args)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"isa": args.isa, "cap": isa_mod.CAPS[args.isa],
                                               "machine": isa_mod.machine_line(),
                                               "args": vars(args), "results": results,
                                               "markdown": text}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
