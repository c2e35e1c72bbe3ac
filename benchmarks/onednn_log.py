"""oneDNN's verbose log (DNNL_VERBOSE=1 for MXNet's oneDNN 2.4.4, ONEDNN_VERBOSE=1 for
PyTorch's 3.12), read: the ISA the library dispatched to, and each primitive it executed with
its implementation (the kernel, e.g. `jit:avx2`) and time; and kernels(), which starts a tiny
convolution in each framework under an ISA cap to show which kernels it gets. Used by
profile_step.py and vs_pytorch.py.
"""
import re
import subprocess
import sys
from collections import defaultdict

import isa as isa_mod

ONEDNN_ISA = re.compile(r"(?:dnnl|onednn)_verbose,(?:v1,)?info,cpu,isa:(.*)")


def isa(verbose_text):
    """The ISA a oneDNN verbose log says the library dispatches to."""
    m = ONEDNN_ISA.search(verbose_text)
    return m.group(1).strip() if m else None


EXEC = re.compile(r"(?:dnnl|onednn)_verbose,(?:v1,)?(?:primitive,)?exec,cpu,(.*)")
CONV = re.compile(r"mb(\d+)_?(?:g\d+)?ic(\d+)oc(\d+)_ih(\d+)oh(\d+)kh(\d+)")


def primitives(inside, steps):
    """The primitives a log executed over `steps` training steps: rows per (kind, pass,
    implementation) and per convolution layer shape, in ms per step."""
    groups = defaultdict(lambda: [0, 0.0])
    convs = defaultdict(lambda: defaultdict(float))
    for line in inside.splitlines():
        m = EXEC.match(line.strip())
        if not m:
            continue
        fields = m.group(1).split(",")
        kind, impl, prop = fields[0], fields[1], fields[2].replace("forward_training", "forward")
        ms = float(fields[-1])
        problem = fields[-2]
        if kind == "reorder":
            prop = "weights" if re.fullmatch(r"\d+x\d+x3x3|\d+x\d+x1x1", problem) else "data"
        g = groups[(kind, prop, impl)]
        g[0] += 1
        g[1] += ms
        c = CONV.search(problem) if kind == "convolution" else None
        if c:
            layer = f"{c.group(2)}->{c.group(3)} @{c.group(4)}x{c.group(4)}"
            mb, ic, oc, oh, kh = (int(c.group(i)) for i in (1, 2, 3, 5, 6))
            if prop == "forward":  # layers of this shape, and their FLOPs of one pass
                convs[layer]["layers"] += 1
                convs[layer]["gflop"] += 2 * mb * ic * oc * kh * kh * oh * oh / 1e9
            convs[layer][prop] += ms
            convs[layer]["impl_" + prop] = impl
    rows = [{"kind": k, "prop": p, "impl": i, "count": n / steps, "ms": ms / steps}
            for (k, p, i), (n, ms) in groups.items()]
    rows.sort(key=lambda r: -r["ms"])
    layers = {name: {k: (v / steps if not k.startswith("impl_") else v) for k, v in d.items()}
              for name, d in convs.items()}
    return rows, layers


def kernels(isa_class, dtype="float32"):
    """The ISA and kernel each framework's oneDNN uses under this cap, in the dtype measured (a
    1-second tiny convolution; bfloat16: ours through precision.enable, PyTorch's autocast)."""
    env = isa_mod.environ(isa_class)
    env.update({"MKLDNN_VERBOSE": "1", "DNNL_VERBOSE": "1", "ONEDNN_VERBOSE": "1",
                "OMP_NUM_THREADS": "1"})
    bf16 = dtype == "bfloat16"
    snippets = {
        "mxnet": "from train_cli.startup import before_mxnet; before_mxnet(); " +
                 ("from train_cli.training import precision; precision.enable('bfloat16'); "
                  if bf16 else "") +
                 "import mxnet as mx; x = mx.nd.ones((2, 32, 8, 8));"
                 " w = mx.nd.ones((32, 32, 3, 3));"
                 " mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=32, no_bias=True)"
                 ".wait_to_read()",
        "torch": "import torch; print('aten', torch.backends.cpu.get_cpu_capability());"
                 f" torch.set_autocast_enabled('cpu', {bf16});"
                 " torch.set_autocast_dtype('cpu', torch.bfloat16);"
                 " torch.nn.functional.conv2d(torch.ones(2, 32, 8, 8), torch.ones(32, 32, 3, 3))",
    }
    found = {}
    for name, code in snippets.items():
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True).stdout
        impls = sorted({line.split("convolution,")[1].split(",")[0] for line in out.splitlines()
                        if ",exec," in line and ",convolution," in line})
        aten = [line.split()[1] for line in out.splitlines() if line.startswith("aten ")]
        found[name] = (f"{isa(out)}; conv {', '.join(impls)}"
                       + (f"; ATen {aten[0]}" if aten else ""))
    return found
