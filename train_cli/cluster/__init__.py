"""Distribution: the process group (the one seam the training loop asks) and the launcher."""
import os


def launched_role():
    """'worker', 'server' or 'scheduler' inside a `swishtrain launch` job, else None.

    The only reader of DMLC_ROLE in the package (the launcher sets it); no mxnet import, so the
    command line can ask before MXNet's threads are configured.
    """
    return os.environ.get("DMLC_ROLE")


JOB_GPUS = "SWISHTRAIN_JOB_GPUS"  # set by the launcher when it splits --gpus over the workers


def launched_job_gpus():
    """The whole --gpus list a launcher split over the job's workers (this worker has its
    share), or None: what a resume must split again."""
    value = os.environ.get(JOB_GPUS)
    return tuple(int(g) for g in value.split(",")) if value else None
