"""GPUs: whether this MXNet can use them (the preflight), and the CPU stand-in that plays them.

GPU preflight (`--gpus`): the installed MXNet is a CUDA build; the NVIDIA driver loads and is
new enough; each requested GPU exists; its compute capability is one the wheel has machine code
for; cuDNN, cuBLAS and NVRTC each run a test operation with an exact answer. MXNet's CUDA wheels
(mxnet-cu112 ... cu117 1.9.1) hold SASS for sm_50, sm_60, sm_70, sm_80 and sm_86 and no PTX
(config/distribution/linux_cu11*.cmake at 1.9.1: MXNET_CUDA_ARCH "5.0;6.0;7.0;8.0;8.6"). SASS
runs on GPUs of the same major version with an equal or higher minor, so compute capability 5.0
to 8.9 works, and 9.0 (H100, H200) and newer fail at the first kernel ("no kernel image is
available for execution on the device"). It fails with one line before any folder is made.

The CPU stand-in for GPUs (SWISHTRAIN_GPU_STANDIN=1, used by the tests): `--gpus 0,1` runs on
the CPU contexts cpu(1), cpu(2), none of which is MXNet's default context (cpu(0)), exactly as
GPUs never are; the preflight runs with a probe that answers for the CPU, and every decision
`--gpus` makes (batch per device, no CPU-only operator, memory per device, TF32) is made. Only
the kernels are the CPU's. docs/GPU.md says what this can and cannot prove.
"""
import ctypes
import math
import os
import sys

import mxnet as mx

from train_cli.errors import UsageError, UserError, last_line

WHEEL_ARCHES = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))  # SASS in mxnet-cu11x 1.9.1 wheels
NVRTC_NEWEST = (8, 6)  # nvidia-cuda-nvrtc-cu11 11.7 compiles for compute_86 at most
WHEEL_COVERS = "compute capability 5.0-8.9 (sm_50/60/70/80/86 machine code, no PTX)"
WAYS_OUT = ("use a GPU of compute capability 5.0-8.9 (V100, T4, A10, A100, L4, RTX 30xx/40xx), "
            "NVIDIA's NGC MXNet container (a 1.9.1 built for CUDA 12), or the CPU (drop --gpus)")
CUDA_SUCCESS = 0
GPU_POOL_RESERVE = 0.05
CUDA_11_0, CUDA_11_7 = 11000, 11070  # cuDriverGetVersion's encoding (1000 * major + 10 * minor)
STANDIN_ENV = "SWISHTRAIN_GPU_STANDIN"
# Off unless --tf32: NVIDIA's switch that keeps cuDNN and cuBLAS float32 math in float32 on
# Ampere and newer (MXNet 1.9.1 lets both use TF32 tensor cores there by default)
TF32_ENV = "NVIDIA_TF32_OVERRIDE"


class StandInGpu(mx.Context):
    """GPU `gpu_id` played by the CPU context cpu(gpu_id + 1): never MXNet's default context."""

    def __init__(self, gpu_id):
        super().__init__("cpu", gpu_id + 1)
        self.gpu_id = gpu_id

    # str() stays MXNet's "cpu(N)": hybridised graphs pass contexts to C++ as that string


def standin():
    """Whether --gpus runs on the CPU stand-in (SWISHTRAIN_GPU_STANDIN=1; see module doc)."""
    return os.environ.get(STANDIN_ENV) == "1"


def tiny_ops(ctx):
    """Run one small operation of each GPU library training uses, on ctx; return the result.

    A convolution (cuDNN), a dense layer (cuBLAS) and a hybridised chain of elementwise
    operators (which MXNet fuses on a GPU and compiles with NVRTC). Each value is exact in
    float32 and TF32, so a wrong one means a broken library, not rounding.
    """
    from mxnet.gluon import nn
    x = mx.nd.ones((2, 3, 8, 8), ctx=ctx)
    conv = mx.nd.Convolution(x, mx.nd.ones((4, 3, 3, 3), ctx=ctx), kernel=(3, 3),
                             num_filter=4, no_bias=True)  # 27 everywhere, 2x4x6x6
    dense = mx.nd.FullyConnected(conv, mx.nd.ones((5, 144), ctx=ctx), num_hidden=5,
                                 no_bias=True)  # 27 * 144 = 3888 everywhere, 2x5
    chain = nn.HybridLambda(lambda F, v: F.relu(v * 2 - 3888) + 1)
    chain.hybridize()
    return float(chain(dense).sum().asscalar())  # 10 x (3888 + 1) = 38890


def covered(capability):
    """Whether the wheel's machine code runs on a GPU of this (major, minor) capability."""
    major, minor = capability
    return any(major == m and minor >= n for m, n in WHEEL_ARCHES)


class CudaProbe:
    """What the preflight asks of the machine; tests substitute a fake with the same methods."""

    def cuda_build(self):
        """Whether the installed MXNet was built with CUDA."""
        return mx.runtime.Features().is_enabled("CUDA")

    def _driver(self):
        # libcuda.so.1, the driver's own name: the unversioned libcuda.so that
        # mx.util.get_cuda_compute_capability asks for exists only with the CUDA toolkit
        cuda = ctypes.CDLL("libcuda.so.1")
        if cuda.cuInit(0) != CUDA_SUCCESS:
            raise OSError("cuInit failed (is the NVIDIA kernel module loaded?)")
        return cuda

    def driver_error(self):
        """Why the NVIDIA driver cannot be used, or None."""
        try:
            self._driver()
        except OSError as e:
            return str(e)
        return None

    def driver_version(self):
        """The CUDA version the driver supports, as cuDriverGetVersion encodes it (11070)."""
        version = ctypes.c_int()
        self._driver().cuDriverGetVersion(ctypes.byref(version))
        return version.value

    def gpu_count(self):
        """How many GPUs CUDA sees (an MXNetError when CUDA cannot count them)."""
        return mx.context.num_gpus()

    def name(self, gpu):
        """The GPU's marketing name, e.g. 'NVIDIA A100-SXM4-40GB'."""
        cuda, buf = self._driver(), ctypes.create_string_buffer(256)
        device = ctypes.c_int()
        cuda.cuDeviceGet(ctypes.byref(device), gpu)
        cuda.cuDeviceGetName(buf, 256, device)
        return buf.value.decode(errors="replace")

    def capability(self, gpu):
        """(major, minor) compute capability."""
        cuda, major, minor, device = self._driver(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        cuda.cuDeviceGet(ctypes.byref(device), gpu)
        cuda.cuDeviceComputeCapability(ctypes.byref(major), ctypes.byref(minor), device)
        return major.value, minor.value

    def context(self, gpu):
        """The MXNet context of GPU `gpu`."""
        return mx.gpu(gpu)

    def tiny_op_error(self, gpu):
        """Why cuDNN, cuBLAS or NVRTC fails on the GPU (tiny_ops), or None when all three run."""
        try:
            result = tiny_ops(self.context(gpu))
        except mx.base.MXNetError as e:
            return last_line(e)
        return None if result == 38890 else f"a test computation gave {result:g}, not 38890"

    def free_bytes(self, device_type, device_id):
        """Free memory of a device: a GPU's, or the host's available memory for the CPU."""
        if device_type == "gpu":
            free, total = mx.context.gpu_memory_info(device_id)
            # MXNet's memory pool never uses the last 5% of a GPU's memory
            # (src/storage/pooled_storage_manager.h:60,150 at 1.9.1, MXNET_GPU_MEM_POOL_RESERVE)
            return max(0, free - total * GPU_POOL_RESERVE)
        return _host_available_bytes()


class StandInProbe(CudaProbe):
    """The preflight's questions answered for the CPU stand-in: a CUDA build with a current
    driver and 8 GPUs of compute capability 8.0, whose tiny operations run on the CPU."""

    def cuda_build(self):
        return True

    def driver_error(self):
        return None

    def driver_version(self):
        return CUDA_11_7

    def gpu_count(self):
        return 8

    def name(self, gpu):
        return f"CPU stand-in for GPU {gpu}"

    def capability(self, gpu):
        return (8, 0)

    def context(self, gpu):
        return StandInGpu(gpu)

    def free_bytes(self, device_type, device_id):
        return _host_available_bytes()


def _host_available_bytes():
    """MemAvailable of /proc/meminfo, capped by a cgroup memory limit if one is set."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            available = min(available or math.inf, int(limit))
    except (OSError, ValueError):
        pass
    return available if available is not None else os.sysconf("SC_PAGE_SIZE") * \
        os.sysconf("SC_AVPHYS_PAGES")


def preflight_gpus(gpus, probe=None, tf32=False):
    """Raise a one-line UserError unless every GPU in `gpus` can run this MXNet's kernels;
    set the process's GPU settings (TF32 as asked, no autotuning) before any GPU work."""
    probe = probe or CudaProbe()
    if not probe.cuda_build():
        raise UsageError("--gpus needs an MXNet build with CUDA, and this one has none: install "
                         "it with `make install CUDA=11.7` (mxnet-cu117==1.9.1 and NVIDIA's "
                         "libraries), or drop --gpus to train on the CPU")
    why = probe.driver_error()
    if why:
        raise UserError(f"--gpus: the NVIDIA driver cannot be used ({why}); install the driver "
                        "(it provides libcuda.so.1), or drop --gpus to train on the CPU")
    version = probe.driver_version()
    if version < CUDA_11_0:
        raise UserError(f"--gpus: the NVIDIA driver supports CUDA {_cuda(version)}, and MXNet's "
                        "CUDA 11.7 build needs a driver for CUDA 11.0 or newer (450.80+); update "
                        "the driver, or drop --gpus to train on the CPU")
    if tf32 and os.environ.get(TF32_ENV) == "0":
        raise UsageError(f"--tf32: {TF32_ENV}=0 in the environment forbids TF32; unset it, or "
                         "drop --tf32")
    if not tf32:  # before cuDNN or cuBLAS is first used
        os.environ[TF32_ENV] = "0"
    try:
        available = probe.gpu_count()
    except mx.base.MXNetError as e:
        raise UserError(f"--gpus: CUDA cannot count the GPUs ({last_line(e)}); check the driver "
                        "with nvidia-smi, or drop --gpus to train on the CPU") from None
    missing = [g for g in gpus if g >= available]
    if missing:
        ids = f" (ids 0-{available - 1})" if available else ""
        raise UsageError(f"--gpus {','.join(map(str, missing))}: no such GPU; this machine has "
                         f"{available}{ids}")
    for gpu in gpus:
        name, (major, minor) = probe.name(gpu), probe.capability(gpu)
        if not covered((major, minor)):
            raise UserError(f"GPU {gpu} ({name}) has compute capability {major}.{minor}; "
                            f"MXNet 1.9.1's CUDA wheels cover {WHEEL_COVERS}, so none of its "
                            f"kernels can run there: {WAYS_OUT}")
        # MXNet fuses elementwise operators at run time with NVRTC, compiling PTX for the
        # GPU's own compute_XY: CUDA 11.7's NVRTC knows nothing newer than 8.6, and its PTX
        # loads only on a driver for CUDA 11.7 or newer (515+)
        why_not = (f"GPU {gpu} ({name}) has compute capability {major}.{minor}, newer than "
                   "CUDA 11.7's run-time compiler knows" if (major, minor) > NVRTC_NEWEST else
                   f"the driver supports CUDA {_cuda(version)}, older than the 11.7 that the "
                   "run-time compiler's code needs" if version < CUDA_11_7 else None)
        if why_not and os.environ.get("MXNET_USE_FUSION") is None:
            os.environ["MXNET_USE_FUSION"] = "0"
            print(f"note: {why_not}: MXNet's operator fusion is off (MXNET_USE_FUSION=0)",
                  file=sys.stderr)
        failed = probe.tiny_op_error(gpu)
        if failed:
            raise UserError(f"GPU {gpu} ({name}, compute capability {major}.{minor}) cannot run "
                            f"a test operation ({failed}); check the driver and cuDNN, or "
                            f"{WAYS_OUT}")
    # cuDNN's autotuning times candidate algorithms and keeps the fastest, which can differ from
    # run to run (and between a run and its resume); its heuristics choose the same ones always
    os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")


def _cuda(version):
    return f"{version // 1000}.{version % 1000 // 10}"


