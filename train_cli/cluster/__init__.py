"""Distribution: the process group (the one seam the training loop asks) and the launcher.

This module is the one reader of the variables the launcher gives its workers (DMLC_ROLE,
DMLC_NUM_WORKER, DMLC_NUM_SERVER, SWISHTRAIN_JOB_GPUS); no mxnet import, so the command line can
ask before MXNet's threads are configured.
"""
import os

JOB_GPUS = "SWISHTRAIN_JOB_GPUS"  # set by the launcher when it splits --gpus over the workers


def launched_role(environ=os.environ):
    """'worker', 'server' or 'scheduler' inside a `swishtrain launch` job, else None."""
    return environ.get("DMLC_ROLE")


def launched_size(environ=os.environ):
    """(workers, servers) of the `swishtrain launch` job this process belongs to."""
    return int(environ.get("DMLC_NUM_WORKER", 1)), int(environ.get("DMLC_NUM_SERVER", 1))


def launched_job_gpus(environ=os.environ):
    """The whole --gpus list a launcher split over the job's workers (this worker has its
    share), or None: what a resume must split again."""
    value = environ.get(JOB_GPUS)
    return tuple(int(g) for g in value.split(",")) if value else None
