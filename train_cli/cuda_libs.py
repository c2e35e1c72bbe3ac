"""NVIDIA's CUDA libraries from PyPI wheels, loaded before mxnet so that its CUDA build finds them.

mxnet-cu117 bundles no CUDA library: its libmxnet.so needs libcudart.so.11.0, libcublas.so.11,
libcufft.so.10, libcusolver.so.11, libcurand.so.10, libcusparse.so.11, libnvrtc.so.11.2,
libnvToolsExt.so.1, libcudnn.so.8 and libnccl.so.2 (and the driver's libcuda.so.1). The
nvidia-*-cu11 wheels of the `cu117` extra put them in site-packages/nvidia/*/lib, which the
dynamic loader does not search. Loading each one here with RTLD_GLOBAL, before `import mxnet`,
satisfies libmxnet.so's needs by soname (as PyTorch does for its own nvidia wheels), so
`swishtrain --gpus 0` works with no LD_LIBRARY_PATH. Without those wheels this does nothing.
"""
import ctypes
import importlib.util
from pathlib import Path


def cuda_build_installed():
    """Whether the installed MXNet is a CUDA build (mxnet-cu*), read from package metadata."""
    from importlib.metadata import distributions
    return any((d.metadata["Name"] or "").lower().startswith("mxnet-cu") for d in distributions())


def nvidia_root():
    """site-packages/nvidia (a namespace package of the nvidia-* wheels), or None."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def preload(root=None):
    """Load every lib*.so* under root/*/lib with RTLD_GLOBAL; return the paths loaded.

    The libraries need each other (cuDNN's parts, cuSOLVER on cuBLAS): whatever fails to load
    is tried again once others have loaded, until a round loads nothing new.
    """
    root = Path(root) if root else nvidia_root()
    if root is None or not root.is_dir():
        return []
    pending = sorted(p for p in root.glob("*/lib/lib*.so*") if p.is_file())
    loaded, errors = [], {}
    while pending:
        progress = []
        for path in pending:
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                errors[path] = e
            else:
                progress.append(path)
        if not progress:
            break  # what is left needs something missing; mxnet's import will name it
        loaded += progress
        pending = [p for p in pending if p not in progress]
    return loaded
