"""The process's numeric precision: the one place that turns `--dtype` into MXNet settings.

float32 changes nothing. float16 (GPUs) casts the network; the engine adds loss scaling.
bfloat16 (CPUs with AMX or AVX512_BF16) is MXNet 1.9.1's `mx.contrib.amp` on oneDNN:
Convolution and FullyConnected run in bfloat16 on float32 master weights (the parameters,
gradients, optimiser state and checkpoints stay float32, so resume is unchanged), BatchNorm,
pooling and ReLU run on the bfloat16 activations, the loss in float32. The fused Swish has
float32 kernels, and amp casts its input to float32: measured against bfloat16 kernels in the
operator (which then needs MXNet's activations converted from oneDNN's bfloat16 channels-last
layout to the default one, a slow transpose), casting was 2-4% faster per VGG16 step.

bfloat16 is process-wide and must be switched on before MXNet does any work:
- oneDNN 2.4.4 fixes its instruction set at its first primitive and treats AMX as opt-in, so
  DNNL_MAX_CPU_ISA=AVX512_CORE_AMX must be in the environment by then;
- Linux grants the AMX tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM), and oneDNN
  2.4.4 does not ask: without it the first AMX instruction dies with SIGILL;
- amp wraps mx.sym / mx.nd functions once and for good, and loading an operator library
  re-creates those modules (undoing amp), so the Swish library is loaded before amp.
enable() does all of it, once; the engine calls it before it builds anything. Measured on a
Sapphire Rapids machine (docs/PERFORMANCE.md): AMX 1.5-1.6x float32 at full width; AVX512_BF16
without AMX 0.76x, and bfloat16 is slower than float32 at width 0.25 even with AMX.
"""
import ctypes
import os
import sys

from train_cli.errors import UserError

# what oneDNN 2.4.4 may use for each kind of bfloat16 support (its DNNL_MAX_CPU_ISA names)
AMX_ISA = "AVX512_CORE_AMX"
BF16_ISA = "AVX512_CORE_BF16"

_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA, _SYS_ARCH_PRCTL = 0x1023, 18, 158

_enabled = {"dtype": None}


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags, as lscpu shows them (empty if they cannot be read)."""
    try:
        with open(cpuinfo) as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def bfloat16_isa(flags):
    """The oneDNN ISA that runs bfloat16 on a CPU with these flags, or None (no support)."""
    if {"amx_bf16", "amx_tile"} <= flags:
        return AMX_ISA
    if "avx512_bf16" in flags:
        return BF16_ISA
    return None


def check_bfloat16(flags):
    """The ISA to use; UserError when this CPU cannot run bfloat16 at all."""
    isa = bfloat16_isa(flags)
    if isa is None:
        raise UserError("--dtype bfloat16 needs a CPU with AMX (lscpu flag amx_bf16) or "
                        "AVX512_BF16 (avx512_bf16), and this one has neither; use "
                        "--dtype float32")
    return isa


def storage_dtype(dtype):
    """The dtype of the parameters and of the images fed to the network."""
    return "float16" if dtype == "float16" else "float32"  # bfloat16: float32 master weights


def request_amx():
    """Ask Linux for the AMX tile state for this process; UserError if it says no."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
        raise UserError("the kernel refused AMX to this process (arch_prctl "
                        f"ARCH_REQ_XCOMP_PERM: {os.strerror(ctypes.get_errno())}); it needs "
                        "Linux 5.16 or later; use --dtype float32")


def enable(dtype, environ=os.environ, flags=None):
    """Set this process up for dtype (once; a second, different dtype is an error)."""
    if _enabled["dtype"] == dtype:
        return
    if "bfloat16" in (_enabled["dtype"], dtype) and _enabled["dtype"] is not None:
        raise UserError(f"this process already trains in {_enabled['dtype']}: bfloat16 is "
                        f"process-wide in MXNet, so a {dtype} run needs a process of its own")
    if dtype == "bfloat16":
        isa = check_bfloat16(cpu_flags() if flags is None else flags)
        if isa == BF16_ISA:
            print("warning: this CPU has AVX512_BF16 but no AMX: oneDNN's bfloat16 kernels "
                  "were measured at 0.76x float32 on such a CPU (docs/PERFORMANCE.md)",
                  file=sys.stderr)
        # a user's own cap wins (e.g. to compare AMX with AVX512_BF16)
        if environ.setdefault("DNNL_MAX_CPU_ISA", isa) == AMX_ISA:
            request_amx()
        from train_cli.model import swish_op  # its library first: loading it would undo amp
        swish_op.load()
        from mxnet.contrib import amp
        from mxnet.contrib.amp.lists import symbol_bf16
        amp.init(target_dtype="bfloat16",
                 fp32_ops=symbol_bf16.FP32_FUNCS + list(swish_op.OPS if swish_op.load() else ()))
    _enabled["dtype"] = dtype
