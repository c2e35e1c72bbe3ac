"""Thread settings that MXNet reads once, when it is imported.

Measured on this project's 2-core machine (vgg16_bn, batch 128, hybridised): 102 img/s with
MXNet's defaults, 188-197 img/s with OMP_NUM_THREADS=<cores> and MXNET_CPU_WORKER_NTHREADS=1
(one engine thread driving one OpenMP team as wide as the machine).

The one place these settings are decided. configure() is called, before anything imports
mxnet, by the `swishtrain` entry point (cli.main), by the benchmarks and by the test suite's
conftest; importing train_cli itself changes no environment variable. A user's own values win.
`swishtrain launch` gives each worker its share of the cores instead (share(), asked by
cluster/placement.py here and by cluster/remote.py on another host).
"""
import os
import sys


def share(processes):
    """OpenMP threads of each of `processes` processes that share this machine's cores."""
    return max(1, available_cores() // max(1, processes))


def available_cores():
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


KEYS = ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")
_chosen = {}  # what the user had set before configure() filled in defaults (None: nothing)


def configure(environ=os.environ):
    """Set fast thread defaults unless the user already chose; return what is in effect.

    A user's value that is not a whole number of threads raises UsageError: MXNet would abort
    in C++ at import (OMP_NUM_THREADS=abc: exit 134, no message of its own).
    """
    for key in KEYS:
        value = environ.get(key)
        if value is not None and not (value.strip().isdigit() and int(value) >= 1):
            from train_cli.errors import UsageError
            raise UsageError(f"{key}={value!r} is not a number of threads; set it to a whole "
                             f"number of 1 or more (e.g. {available_cores()}), or unset it")
    for key in KEYS:
        _chosen.setdefault(key, environ.get(key))  # the first call sees the user's own values
    if "mxnet" in sys.modules and "OMP_NUM_THREADS" not in environ:
        print("warning: mxnet was imported before train_cli.threads.configure(), so MXNet runs "
              "with its default threads (about 2x slower here); call it first, or export "
              "OMP_NUM_THREADS and MXNET_CPU_WORKER_NTHREADS=1", file=sys.stderr)
    environ.setdefault("OMP_NUM_THREADS", str(available_cores()))
    environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
    return {k: environ[k] for k in KEYS}


def user_choice(key, environ=os.environ):
    """The user's own value of a thread setting, or None when configure() supplied it (a
    launcher gives each worker its share of the cores unless the user chose)."""
    return _chosen[key] if key in _chosen else environ.get(key)


def current(environ=os.environ):
    """The thread settings in effect (as configure() left them)."""
    return {k: environ.get(k) for k in KEYS}
