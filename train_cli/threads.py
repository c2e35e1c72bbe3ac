"""Thread settings that MXNet reads once, when it is imported.

Measured on a 2-core machine (vgg16_bn, batch 128, hybridised): ~19 img/s with MXNet's defaults,
~37 img/s with OMP_NUM_THREADS=<cores> and MXNET_CPU_WORKER_NTHREADS=1. MXNet's default runs
several engine workers that each spawn an OpenMP team, and the teams fight over the same cores.
"""
import os
import sys


def available_cores():
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def configure(environ=os.environ):
    """Set fast thread defaults unless the user already chose; return what is in effect."""
    if "mxnet" in sys.modules and "OMP_NUM_THREADS" not in environ:
        print("warning: mxnet was imported before train_cli, so MXNet runs with its default "
              "threads (about 2x slower here); import train_cli first, or export "
              "OMP_NUM_THREADS and MXNET_CPU_WORKER_NTHREADS=1", file=sys.stderr)
    environ.setdefault("OMP_NUM_THREADS", str(available_cores()))
    environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
    return {k: environ[k] for k in ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")}
