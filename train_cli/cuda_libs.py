"""NVIDIA's CUDA libraries from PyPI wheels, loaded before mxnet so that its CUDA build finds them.

mxnet-cu117 bundles no CUDA library: its libmxnet.so needs libcudart.so.11.0, libcublas.so.11,
libcufft.so.10, libcusolver.so.11, libcurand.so.10, libcusparse.so.11, libnvrtc.so.11.2,
libnvToolsExt.so.1, libcudnn.so.8 and libnccl.so.2 (and the driver's libcuda.so.1); cuDNN 8
opens its parts (libcudnn_cnn_infer.so.8, ...) by name when first used, and cuBLAS needs
cuBLASLt. The nvidia-*-cu11 wheels of the `cu117` extra put them in site-packages/nvidia/*/lib,
which the dynamic loader does not search. Loading those libraries here with RTLD_GLOBAL, before
`import mxnet`, satisfies every lookup by soname (as PyTorch does for its own nvidia wheels), so
`swishtrain --gpus 0` works with no LD_LIBRARY_PATH.

Only the libraries MXNet uses are loaded (NEEDED): the wheels also ship libnvblas (which exports
the BLAS symbols sgemm_... and would take them over from the CPU BLAS), libOpenCL and libcufftw.
A needed library that cannot load is an error naming it and what it lacks (cuDNN's convolution
part needs the system's libz.so.1), not a failure at the first convolution.
"""
import ctypes
import importlib.util
import re
from pathlib import Path

# file names (before .so) of what MXNet 1.9.1's CUDA build uses, directly or through cuDNN/cuBLAS
NEEDED = re.compile(r"lib(cudart|cublas|cublasLt|cufft|curand|cusolver|cusparse|nvrtc|"
                    r"nvrtc-builtins|nvToolsExt|cudnn|cudnn_[a-z_]+|nccl)\.so(\.[\d.]+)?$")
FIXES = {"libz.so": "the system's zlib (Debian/Ubuntu: apt-get install zlib1g)"}


class LoadError(OSError):
    """A library that MXNet's CUDA build needs cannot be loaded."""


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


def needed_libraries(root):
    """The libraries under root/*/lib that MXNet's CUDA build uses, sorted."""
    return sorted(p for p in Path(root).glob("*/lib/lib*.so*") if p.is_file() and
                  NEEDED.match(p.name))


def preload(root=None):
    """Load the needed libraries under root/*/lib with RTLD_GLOBAL; return the paths loaded.

    root=None: the nvidia wheels' folder, and only when the installed MXNet is a CUDA build.
    The libraries need each other (cuDNN's parts, cuSOLVER on cuBLAS): whatever fails to load
    is tried again once others have loaded, until a round loads nothing new; what is still left
    raises LoadError.
    """
    if root is None:
        root = nvidia_root() if cuda_build_installed() else None
    if root is None or not Path(root).is_dir():
        return []
    pending, loaded, errors = needed_libraries(root), [], {}
    while pending:
        progress = []
        for path in pending:
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                errors[path] = str(e)
            else:
                progress.append(path)
        loaded += progress
        pending = [p for p in pending if p not in progress]
        if not progress:
            break
    if pending:
        path, why = pending[0], errors[pending[0]]
        fix = next((f for lib, f in FIXES.items() if lib in why), None)
        raise LoadError(f"NVIDIA's {path.name} cannot be loaded ({why.removeprefix(f'{path}: ')}); "
                        + (f"install {fix}" if fix else "reinstall with `make install "
                           "CUDA=11.7`, or use the CPU build: `make install CUDA=cpu`"))
    return loaded
