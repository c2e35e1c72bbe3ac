"""Devices: MXNet contexts for --gpus / --cpu-devices, and the checks made before a model exists.

GPU preflight (`--gpus`): the installed MXNet is a CUDA build; the NVIDIA driver loads; each
requested GPU exists; its compute capability is one the wheel has machine code for; a tiny
operation really runs. MXNet's CUDA wheels (mxnet-cu112 ... cu117 1.9.1) hold SASS for sm_50,
sm_60, sm_70, sm_80 and sm_86 and no PTX (config/distribution/linux_cu11*.cmake at 1.9.1:
MXNET_CUDA_ARCH "5.0;6.0;7.0;8.0;8.6"). SASS runs on GPUs of the same major version with an
equal or higher minor, so compute capability 5.0 to 8.9 works, and 9.0 (H100, H200) and newer
fail at the first kernel ("no kernel image is available for execution on the device").

Memory preflight (every device, the CPU included): parameters, gradients, optimiser state and
activations of the chosen model, width and batch, against the memory the device has; and no
tensor may exceed MXNet 1.9.1's 2^31-1 elements (the wheels are built without large tensors).
Both checks fail with one line before any folder is made or memory allocated.
"""
import ctypes
import math
import os
import sys

from train_cli.errors import UsageError, UserError, last_line

WHEEL_ARCHES = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))  # SASS in mxnet-cu11x 1.9.1 wheels
NVRTC_NEWEST = (8, 6)  # nvidia-cuda-nvrtc-cu11 11.7 compiles for compute_86 at most
WHEEL_COVERS = "compute capability 5.0-8.9 (sm_50/60/70/80/86 machine code, no PTX)"
WAYS_OUT = ("use a GPU of compute capability 5.0-8.9 (V100, T4, A10, A100, L4, RTX 30xx/40xx), "
            "NVIDIA's NGC MXNet container (a 1.9.1 built for CUDA 12), or the CPU (drop --gpus)")
MAX_TENSOR_ELEMENTS = 2**31 - 1  # MXNet 1.9.1 wheels: no USE_INT64_TENSOR_SIZE
# Training keeps every layer's output for the backward pass and needs about as much again for
# the gradients flowing back: measured 1.45 GB peak RSS for vgg16_bn, batch 128 on the CPU,
# against 0.40 GB of parameters + gradients + momentum and 2 x 0.45 GB of layer outputs.
ACTIVATION_FACTOR = 2
CUDA_SUCCESS = 0


def covered(capability):
    """Whether the wheel's machine code runs on a GPU of this (major, minor) capability."""
    major, minor = capability
    return any(major == m and minor >= n for m, n in WHEEL_ARCHES)


class CudaProbe:
    """What the preflight asks of the machine; tests substitute a fake with the same methods."""

    def cuda_build(self):
        """Whether the installed MXNet was built with CUDA."""
        import mxnet as mx
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

    def gpu_count(self):
        """How many GPUs CUDA sees."""
        import mxnet as mx
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

    def tiny_op_error(self, gpu):
        """Why a tiny operation fails on the GPU, or None when it runs."""
        import mxnet as mx
        try:
            (mx.nd.ones((2, 2), ctx=mx.gpu(gpu)) * 2).sum().asscalar()
        except mx.base.MXNetError as e:
            return last_line(e)
        return None

    def free_bytes(self, device_type, device_id):
        """Free memory of a device: a GPU's, or the host's available memory for the CPU."""
        if device_type == "gpu":
            import mxnet as mx
            return mx.context.gpu_memory_info(device_id)[0]
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


def preflight_gpus(gpus, probe=None):
    """Raise a one-line UserError unless every GPU in `gpus` can run this MXNet's kernels."""
    probe = probe or CudaProbe()
    if not probe.cuda_build():
        raise UsageError("--gpus needs an MXNet build with CUDA, and this one has none: install "
                         "it with `make install CUDA=11.7` (mxnet-cu117==1.9.1 and NVIDIA's "
                         "libraries), or drop --gpus to train on the CPU")
    why = probe.driver_error()
    if why:
        raise UserError(f"--gpus: the NVIDIA driver cannot be used ({why}); install the driver "
                        "(it provides libcuda.so.1), or drop --gpus to train on the CPU")
    available = probe.gpu_count()
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
        if (major, minor) > NVRTC_NEWEST and os.environ.get("MXNET_USE_FUSION") is None:
            # MXNet fuses elementwise operators at run time with NVRTC, compiling for the
            # GPU's own compute_XY; the NVRTC of CUDA 11.7 knows nothing newer than 8.6
            os.environ["MXNET_USE_FUSION"] = "0"
            print(f"note: GPU {gpu} ({name}) has compute capability {major}.{minor}, newer than "
                  "CUDA 11.7's run-time compiler knows: MXNet's operator fusion is off "
                  "(MXNET_USE_FUSION=0)", file=sys.stderr)
        failed = probe.tiny_op_error(gpu)
        if failed:
            raise UserError(f"GPU {gpu} ({name}, compute capability {major}.{minor}) cannot run "
                            f"a test operation ({failed}); check the driver and cuDNN, or "
                            f"{WAYS_OUT}")
    # cuDNN's autotuning times candidate algorithms and keeps the fastest, which can differ from
    # run to run (and between a run and its resume); its heuristics choose the same ones always
    os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")


def make_contexts(gpus=(), cpu_devices=1, probe=None):
    """MXNet contexts for --gpus / --cpu-devices, after the GPU preflight."""
    import mxnet as mx
    if gpus:
        preflight_gpus(gpus, probe)
        return [mx.gpu(g) for g in gpus]
    return [mx.cpu(i) for i in range(cpu_devices)]


def process_batch_size(per_device, contexts):
    """Images per step in this process: per device on GPUs (as the 2018 script); split over
    CPU contexts."""
    if contexts[0].device_type == "gpu":
        return per_device * len(contexts)
    return per_device


def memory_needs(net, batch, dtype, training=True):
    """(bytes for the weights and their training state, bytes for activations) of `batch`
    images through `net`, from the built network's shapes."""
    weights = net.parameter_elements()  # trainable ones, plus BatchNorm statistics
    width = 2 if dtype == "float16" else 4
    if training:  # weights + gradients in dtype; SGD momentum (and float16's master) in float32
        state = weights * (2 * width + 4 + (4 if dtype == "float16" else 0))
        activations = net.activation_elements() * ACTIVATION_FACTOR
    else:  # inference frees a layer's input once its output exists: two outputs at a time
        state, activations = weights * width, 2 * net.largest_output_elements()
    return state, activations * batch * width


def preflight_memory(net, cfg, contexts, training=True, probe=None):
    """Raise a one-line UserError when the model cannot fit on its devices (see module doc).

    training=True checks a training run (its steps and its evaluations); False, evaluation.
    """
    probe = probe or CudaProbe()
    device_type, copies = contexts[0].device_type, len(contexts)

    def device_batch(batch):  # a GPU takes --batch-size; CPU contexts split it
        return batch if device_type == "gpu" else -(-batch // copies)
    option = "--batch-size" if training else "--eval-batch-size"
    batch = cfg.batch_size if training else cfg.eval_batch_size
    shape, elements = net.largest_tensor(device_batch(batch))
    if elements > MAX_TENSOR_ELEMENTS:
        raise UsageError(f"--width {cfg.width:g} makes a {'x'.join(map(str, shape))} tensor of "
                         f"{elements:,} elements; MXNet 1.9.1 holds at most 2^31-1 "
                         f"({MAX_TENSOR_ELEMENTS:,}) per tensor: use a smaller --width "
                         f"(or {option})")
    needs = [memory_needs(net, device_batch(cfg.eval_batch_size), cfg.dtype, training=False)]
    if training:
        needs.append(memory_needs(net, device_batch(cfg.batch_size), cfg.dtype))
    state, activations = max(needs, key=sum)
    if device_type == "gpu":  # each GPU holds the whole model and its share of the batch
        places = [(f"GPU {c.device_id}", c.device_id) for c in contexts]
    else:  # CPU contexts share the host's memory: every copy of the model, the whole batch
        state, activations, places = state * copies, activations * copies, [("this machine", 0)]
    for where, device_id in places:
        free = probe.free_bytes(device_type, device_id)
        if free is not None and state + activations > free:
            raise UserError(
                f"{cfg.model} at --width {cfg.width:g} with {option} {batch} needs about "
                f"{_gib(state + activations)} on {where} ({_gib(state)} of weights"
                f"{', gradients and optimiser state' if training else ''}, {_gib(activations)} "
                f"of activations) but {_gib(free)} is free: lower --width or {option}"
                if training else
                f"evaluating {cfg.model} at --width {cfg.width:g} with {option} {batch} needs "
                f"about {_gib(state + activations)} on {where} but {_gib(free)} is free: lower "
                f"{option}")


def _gib(n):
    return f"{n / 2**30:.1f} GiB"
