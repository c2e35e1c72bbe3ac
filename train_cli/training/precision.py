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
enable() does all of it, once; set_up(spec) calls it before an engine is built (the engine
refuses to be built otherwise), and check() lets a run refuse an unable CPU before any slow
work. Measured on a Sapphire Rapids machine (docs/PERFORMANCE.md): AMX 1.47-1.55x float32 for
vgg16_bn at full width; with oneDNN capped at AVX512_BF16 (no AMX) 0.74-0.81x at every width
measured.
"""
import ctypes
import os
import sys

from train_cli import cpu
from train_cli.errors import UserError

# what oneDNN 2.4.4 may use for each kind of bfloat16 support (its DNNL_MAX_CPU_ISA names)
AMX_ISA = "AVX512_CORE_AMX"
BF16_ISA = "AVX512_CORE_BF16"
NEEDS = {AMX_ISA: {"amx_bf16", "amx_tile"}, BF16_ISA: {"avx512_bf16"}}  # lscpu flags

_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA, _SYS_ARCH_PRCTL = 0x1023, 18, 158

_enabled = {"dtype": None}


def bfloat16_isa(flags):
    """The oneDNN ISA that runs bfloat16 on a CPU with these flags, or None (no support)."""
    return next((isa for isa, needs in NEEDS.items() if needs <= flags), None)


def check(dtype, flags=None, environ=os.environ):
    """The oneDNN ISA cap a bfloat16 run will use (None for other dtypes): the user's own
    DNNL_MAX_CPU_ISA, else the best this CPU has. UserError when this CPU cannot run bfloat16,
    or Linux refuses it AMX (asking is the only way to know, and harmless: the permission is
    this process's). Runs call it before any slow work."""
    if dtype != "bfloat16":
        return None
    isa = bfloat16_isa(cpu.flags() if flags is None else flags)
    if isa is None:
        raise UserError("--dtype bfloat16 needs a CPU with AMX (lscpu flags amx_bf16, amx_tile) "
                        "or AVX512_BF16 (avx512_bf16), and this one has neither; train with "
                        "--dtype float32 (a bfloat16 run resumes only on such a CPU)")
    cap = environ.get("DNNL_MAX_CPU_ISA") or isa
    if cap == AMX_ISA:
        request_amx()
    return cap


def storage_dtype(dtype):
    """The dtype of the parameters and of the images fed to the network."""
    return "float16" if dtype == "float16" else "float32"  # bfloat16: float32 master weights


def request_amx():
    """Ask Linux for the AMX tile state for this process; UserError if it says no."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
        raise UserError("Linux refused AMX to this process (arch_prctl ARCH_REQ_XCOMP_PERM: "
                        f"{os.strerror(ctypes.get_errno())}; it needs Linux 5.16 or later); "
                        f"run bfloat16 without AMX (slower) with DNNL_MAX_CPU_ISA={BF16_ISA}, "
                        "or train with --dtype float32")


def _warn(message):
    print(f"warning: {message}", file=sys.stderr)


def set_up(spec):
    """Set this process up for a run spec's dtype and model: before its engine is built."""
    from train_cli.model.spec import uses_fused_op
    enable(spec.config.dtype, fused_swish=uses_fused_op(spec.config.model))


def enabled():
    """The dtype this process was set up for (None: not yet)."""
    return _enabled["dtype"]


def enable(dtype, fused_swish=False, environ=os.environ, flags=None):
    """Set this process up for dtype. bfloat16 is once per process: after it, or before it,
    another dtype is an error (float32 and float16 change nothing process-wide, so they may
    alternate). fused_swish: the model will use the fused Swish operators (their library loads
    first)."""
    if _enabled["dtype"] == dtype:
        return
    if "bfloat16" in (_enabled["dtype"], dtype) and _enabled["dtype"] is not None:
        raise UserError(f"this process already trains in {_enabled['dtype']}: bfloat16 is "
                        f"process-wide in MXNet, so a {dtype} run needs a process of its own")
    if dtype == "bfloat16":
        best = bfloat16_isa(cpu.flags() if flags is None else flags)
        cap = check(dtype, flags, environ)  # this CPU can; AMX granted if it will be used
        environ["DNNL_MAX_CPU_ISA"] = cap  # oneDNN reads it at its first primitive
        if cap == BF16_ISA:
            _warn("no AMX in use (this CPU has AVX512_BF16 only, or DNNL_MAX_CPU_ISA says so): "
                  "oneDNN's bfloat16 kernels without AMX ran at 0.74-0.81x float32 "
                  "(docs/PERFORMANCE.md)")
        elif cap != AMX_ISA:
            _warn(f"DNNL_MAX_CPU_ISA={cap!r} is set, so oneDNN uses at most what it names "
                  f"(exactly {AMX_ISA} for AMX, {BF16_ISA} for bfloat16 without it; lower "
                  f"makes bfloat16 slow); unset it to let swishtrain choose {best}")
        from mxnet.contrib import amp
        from mxnet.contrib.amp.lists import symbol_bf16

        from train_cli.model import swish_op
        if fused_swish:  # its library first: loading one after amp.init would undo amp
            swish_op.load()
        # the fused operators (if loaded) run in float32 between casts, as sigmoid does
        amp.init(target_dtype="bfloat16", fp32_ops=symbol_bf16.FP32_FUNCS + [
            op for op in swish_op.OPS if swish_op.loaded()])
    _enabled["dtype"] = dtype
