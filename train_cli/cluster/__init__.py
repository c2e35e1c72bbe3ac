"""Distribution: the process group (the one seam the training loop asks) and the launcher."""
import os


def launched_role():
    """'worker', 'server' or 'scheduler' inside a `swishtrain launch` job, else None.

    The only reader of DMLC_ROLE in the package (the launcher sets it); no mxnet import, so the
    command line can ask before MXNet's threads are configured.
    """
    return os.environ.get("DMLC_ROLE")
