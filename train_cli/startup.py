"""What every entry point does before MXNet is first imported: the one place that says so.

MXNet reads its thread settings once, at import (threads.py), and a CUDA build of MXNet can only
be imported after NVIDIA's wheel libraries are loaded (cuda_libs.py). So every process that
imports mxnet calls before_mxnet() first: the `swishtrain` command (cli.main), `make gpu-check`
(gpu_check.main), the test suite (tests/conftest.py), every script in benchmarks/, and the two
commands below. tests/test_install.py checks each of them.

    python -m train_cli.startup              a launched job's scheduler or server: importing
                                             mxnet runs the role DMLC_ROLE names (ps-lite)
    python -m train_cli.startup build-swish  compile the fused Swish operators (make install)
"""
import sys

from train_cli import cuda_libs, threads
from train_cli.errors import UserError


def before_mxnet():
    """Thread settings, then NVIDIA's libraries for a CUDA build (nothing for the CPU build)."""
    threads.configure()
    cuda_libs.preload()


def main(argv):
    """The two commands of the module doc; returns an exit code."""
    try:
        before_mxnet()
    except (cuda_libs.LoadError, UserError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    if argv == ["build-swish"]:
        from train_cli.model import swish_op
        print(swish_op.status())
    elif argv:
        print(f"usage: python -m train_cli.startup [build-swish] (got {' '.join(argv)})",
              file=sys.stderr)
        return 2
    else:
        import mxnet  # noqa: F401  (with DMLC_ROLE=scheduler or server, this is the role)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
