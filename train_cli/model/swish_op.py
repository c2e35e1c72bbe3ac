"""Fused Swish operators (csrc/swish_lib.cc), compiled once per machine and loaded into MXNet.

`x * sigmoid(x)` in Gluon is three memory-bound passes forward and more backward; the fused op
is one pass each way (VGG16-BN: nn.Swish 0.72x, fused 0.88x of ReLU's training speed, see
docs/PERFORMANCE.md).
MXNet 1.9.1 loads such operators with mx.library.load; the library is built with the system
C++ compiler into a per-user cache, keyed by the sources, flags, MXNet version and CPU, and
`make install` builds it ahead of time. Without a compiler (or with SWISHTRAIN_FUSED_SWISH=0)
the activations fall back to pure Gluon, with the same values.
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mxnet as mx

from train_cli import cpu
from train_cli.atomic import atomic_write
from train_cli.mxnet_private import amp_initialized

SOURCES = [Path(__file__).parent / "csrc" / name for name in ("swish_lib.cc", "swish_kernels.h")]
FLAGS = ["-shared", "-fPIC", "-std=c++11", "-O3", "-fno-trapping-math", "-fopenmp",
         "-march=native"]  # vectorised exp needs -fno-trapping-math; never -ffast-math
OPS = ("fused_swish", "fused_swish_beta")

_state = {"loaded": None, "reason": ""}


def enabled_by_env():
    """False when SWISHTRAIN_FUSED_SWISH=0 asks for the pure-Gluon Swish."""
    return os.environ.get("SWISHTRAIN_FUSED_SWISH", "1") != "0"


def cache_dir():
    """Where compiled libraries are cached ($SWISHTRAIN_CACHE or ~/.cache/swishtrain, /ops)."""
    root = os.environ.get("SWISHTRAIN_CACHE") or Path.home() / ".cache" / "swishtrain"
    return Path(root) / "ops"


def library_path():
    """Where the library for this source, compiler flags, MXNet and CPU lives."""
    h = hashlib.sha1()
    for source in SOURCES:
        h.update(source.read_bytes())
    h.update(" ".join(FLAGS).encode() + mx.__version__.encode()
             + " ".join(sorted(cpu.flags())).encode())  # -march=native: the CPU's own code
    return cache_dir() / f"swish-{mx.__version__}-{h.hexdigest()[:12]}" / "libswish.so"


def build(path=None):
    """Compile the library into path (atomically, under a lock); return the path."""
    path = Path(path or library_path())
    compiler = os.environ.get("CXX", "g++")
    if not shutil.which(compiler):
        raise RuntimeError(f"no C++ compiler ({compiler}) on PATH")
    mxnet_root = Path(mx.__file__).parent
    api = mxnet_root / "src" / "lib_api.cc"
    if not api.is_file():
        raise RuntimeError(f"{api} is missing from this MXNet install")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same library
        if not path.is_file():  # else another process built it while this one waited
            # atomic: never cache a library a crash or a failed compile left half-written
            atomic_write(path, lambda tmp: _compile(compiler, api, mxnet_root, tmp))
    return path


def _compile(compiler, api, mxnet_root, out):
    """Run the compiler, writing the library to out; RuntimeError with its last line if it fails."""
    cmd = [compiler, *FLAGS, str(SOURCES[0]), str(api), "-o", str(out),
           "-I", str(mxnet_root / "include"), "-I", str(SOURCES[0].parent)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"compiling the fused Swish library failed: "
                           f"{done.stderr.strip().splitlines()[-1:]}")


def loaded():
    """True if the fused ops are registered in this process (without trying to load them)."""
    return all(hasattr(mx.nd, op) for op in OPS)


def load():
    """True once the fused ops are registered in this process; False means use the fallback."""
    if _state["loaded"] is not None:
        return _state["loaded"]
    if loaded():  # loaded already (loading twice is an error)
        _state["loaded"] = True
        return True
    if not enabled_by_env():
        _state.update(loaded=False, reason="disabled by SWISHTRAIN_FUSED_SWISH=0")
        return False
    if amp_initialized():  # loading re-creates mx.nd/mx.sym and would silently undo amp
        _state.update(loaded=False, reason="bfloat16 was set up in this process before the "
                      "library was loaded (training/precision.py loads it first)")
        print(f"warning: fused Swish unavailable ({_state['reason']}); using the slower "
              "pure-Gluon Swish", file=sys.stderr)
        return False
    try:
        path = library_path()
        if not path.is_file():
            build(path)
        mx.library.load(str(path), verbose=False)
        _state["loaded"] = loaded()
    except Exception as e:  # no compiler, failed build, unloadable library: fall back
        _state.update(loaded=False, reason=str(e))
        print(f"warning: fused Swish unavailable ({e}); using the slower pure-Gluon Swish",
              file=sys.stderr)
    return _state["loaded"]


def status():
    """One line saying which Swish implementation this process uses, and why."""
    if load():
        return f"fused Swish operators loaded from {library_path()}"
    return f"pure-Gluon Swish ({_state['reason']})"

