"""Devices: MXNet contexts for --gpus / --cpu-devices, and the memory check made before a model
exists (the GPU preflight and the CPU stand-in for GPUs: gpus.py).

Memory preflight (every device, the CPU included): parameters, gradients, optimiser state and
activations of the chosen model, width and batch, against the memory the device has; and no
tensor may exceed MXNet 1.9.1's 2^31-1 elements (the wheels are built without large tensors).
It fails with one line before any folder is made or memory allocated.
"""
import mxnet as mx

from train_cli.errors import UsageError, UserError
from train_cli.training.gpus import CudaProbe, StandInGpu, StandInProbe, preflight_gpus, standin

MAX_TENSOR_ELEMENTS = 2**31 - 1  # MXNet 1.9.1 wheels: no USE_INT64_TENSOR_SIZE
# Training keeps every layer's output for the backward pass and needs about as much again for
# the gradients flowing back: measured 1.45 GB peak RSS for vgg16_bn, batch 128 on the CPU,
# against 0.40 GB of parameters + gradients + momentum and 2 x 0.45 GB of layer outputs.
ACTIVATION_FACTOR = 2


def acts_as_gpu(ctx):
    """Whether a context is a GPU, or stands in for one: every GPU decision asks this."""
    return ctx.device_type == "gpu" or isinstance(ctx, StandInGpu)


def describe(contexts):
    """The devices as a run's header names them: "gpu(0), gpu(1)", "cpu(0)", or a stand-in's."""
    names = ", ".join(map(str, contexts))
    if isinstance(contexts[0], StandInGpu):
        return f"{names} (CPU stand-ins for GPUs {','.join(str(gpu_id(c)) for c in contexts)})"
    return names


def gpu_id(ctx):
    """The id the user gave for a GPU context (--gpus), also for a stand-in."""
    return ctx.gpu_id if isinstance(ctx, StandInGpu) else ctx.device_id


def on_host(array):
    """array as saved: in host memory. mx.nd.save records a GPU array's device, and mx.nd.load
    puts it back on that GPU whenever the machine has one (src/ndarray/ndarray.cc:1629-1631,
    1820-1831 at 1.9.1), so a file saved from GPU 1 would load onto GPU 1, or fail without it."""
    return array if array.context.device_type == "cpu" else array.copyto(mx.cpu())


def make_contexts(gpus=(), cpu_devices=1, probe=None, tf32=False):
    """MXNet contexts for --gpus (after the GPU preflight; the CPU stand-in's when it is on) or
    --cpu-devices."""
    if gpus:
        probe = probe or (StandInProbe() if standin() else CudaProbe())
        preflight_gpus(gpus, probe, tf32)
        return [probe.context(g) for g in gpus]
    return [mx.cpu(i) for i in range(cpu_devices)]


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
    probe = probe or (StandInProbe() if isinstance(contexts[0], StandInGpu) else CudaProbe())
    on_gpus, copies = acts_as_gpu(contexts[0]), len(contexts)

    def device_batch(batch):  # a GPU takes --batch-size; CPU contexts split it
        return batch if on_gpus else -(-batch // copies)
    # (option, its batch, a training step?): a training run also evaluates
    cases = [("--batch-size", cfg.batch_size, True)] if training else []
    cases.append(("--eval-batch-size", cfg.eval_batch_size, False))
    for option, batch, _ in cases:
        shape, elements = net.largest_tensor(device_batch(batch))
        if elements > MAX_TENSOR_ELEMENTS:
            raise UsageError(f"--width {cfg.width:g} makes a {'x'.join(map(str, shape))} tensor "
                             f"of {elements:,} elements; MXNet 1.9.1 holds at most 2^31-1 "
                             f"({MAX_TENSOR_ELEMENTS:,}) per tensor: use a smaller --width "
                             f"(or {option})")
    # the largest need names the option that makes it
    (state, activations), option, batch, training = max(
        ((memory_needs(net, device_batch(batch), cfg.dtype, training=step), option, batch, step)
         for option, batch, step in cases), key=lambda need: sum(need[0]))
    if on_gpus:  # each GPU holds the whole model and its share of the batch
        places = [(f"GPU {gpu_id(c)}", gpu_id(c)) for c in contexts]
    else:  # CPU contexts share the host's memory: every copy of the model, the whole batch
        state, activations, places = state * copies, activations * copies, [("this machine", 0)]
    for where, device_id in places:
        free = probe.free_bytes("gpu" if on_gpus else "cpu", device_id)
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
