"""The one seam for distribution: which process this is, and what the job does together.

Every question about distribution is answered here, once, when the process joins its job
(as nanoGPT decides `master_process` once): rank, number of workers, whether this process
writes the run folder, the global batch, how evaluation is sharded and summed, whether the
learning rate is applied on the workers or on the servers. The training loop asks; it never
branches on the kind of job.

Three kinds of job:
- LocalGroup: one process (any number of devices in it).
- SyncGroup (dist_sync, dist_device_sync): workers apply the updates themselves; the servers
  only sum gradients (update_on_kvstore=False), so Trainer.set_learning_rate acts where it is
  called (with updates on the servers it never reaches them: apache/mxnet#15919).
- AsyncGroup (dist_async): the servers run the optimiser, and with it the learning-rate
  schedule; replicas differ, so each worker evaluates its own network and there are no
  collectives.
Facts measured with mxnet 1.9.1 on 127.0.0.1; see README "More than one machine".
"""
import mxnet as mx
import numpy as np

from train_cli.mxnet_private import kvstore_barrier

_SUM_KEYS = 1_000_000  # KVStore keys from here down serve `sum` (parameters use 0..n-1)


class LocalGroup:
    """A job of one process."""

    rank = 0
    num_workers = 1
    distributed = False  # a member of a `swishtrain launch` job (even a job of one worker)
    updates_on_servers = False

    @property
    def is_primary(self):
        """Only rank 0 writes the run folder (every rank prints its own lines)."""
        return self.rank == 0

    @property
    def prefix(self):
        """What this process's printed lines start with."""
        return ""

    def describe(self):
        """What the run header says about the job after the devices."""
        return ""

    def trainer_kvstore(self, kvstore):
        """What the Trainer is given for the spec's KVStore: its name alone."""
        return kvstore

    @property
    def train_slice(self):
        """(rank, workers): this process takes slice `rank` of `workers` of every global batch."""
        return self.rank, self.num_workers

    def barrier(self):
        """Wait for every worker (nothing to wait for alone)."""

    def eval_shard(self, split):
        """The part of an evaluation split this process evaluates."""
        return split

    def eval_total(self, sums):
        """Job-wide evaluation sums from this process's (loss sum, correct, images)."""
        return np.asarray(sums, dtype=np.float64)

    def train_total(self, sums):
        """Job-wide training sums from this process's (loss sum, correct, images)."""
        return np.asarray(sums, dtype=np.float64)

    def mean_over_workers(self, flat):
        """The mean of a float vector over the workers (BatchNorm statistics)."""
        return flat


class SyncGroup(LocalGroup):
    """A worker of a synchronous parameter-server job: it evaluates its shard, sums collect."""

    distributed = True

    def __init__(self, kv):
        self.kvstore = kv
        self.rank, self.num_workers = kv.rank, kv.num_workers
        self._sum_keys = {}  # vector length -> KVStore key

    @property
    def prefix(self):
        return f"[rank {self.rank}] "

    def describe(self):
        return f" x {self.num_workers} workers"

    def trainer_kvstore(self, kvstore):
        return self.kvstore  # the one created when the job was joined

    def barrier(self):
        kvstore_barrier(self.kvstore)

    def sum(self, values):
        """Element-wise sum of a small float vector over all workers (a collective)."""
        values = np.asarray(values, dtype=np.float64)
        # float32 on the wire: exact for counts up to 2**24, ample for CIFAR's 60,000 images
        local = mx.nd.array(values, dtype="float32")
        if local.size not in self._sum_keys:  # every worker inits the same keys in turn
            self._sum_keys[local.size] = _SUM_KEYS - len(self._sum_keys)
            self.kvstore.init(self._sum_keys[local.size], mx.nd.zeros(local.shape))
        out = mx.nd.zeros(local.shape)
        self.kvstore.pushpull(self._sum_keys[local.size], local, out=out)
        return out.asnumpy().astype(np.float64)

    def eval_shard(self, split):
        return split.shard(self.rank, self.num_workers)

    def eval_total(self, sums):
        return self.sum(sums)

    def train_total(self, sums):
        return self.sum(sums)

    def mean_over_workers(self, flat):
        return self.sum(flat) / self.num_workers


class AsyncGroup(SyncGroup):
    """A worker of a dist_async job: updates and the schedule live on the servers."""

    updates_on_servers = True

    def eval_shard(self, split):  # replicas differ: each evaluates its own on everything
        return split

    def eval_total(self, sums):
        return np.asarray(sums, dtype=np.float64)

    def train_total(self, sums):
        # no collectives: this worker's figures, with the image count scaled to the job so
        # that img/s is the job's
        return np.asarray(sums, dtype=np.float64) * self.num_workers

    def mean_over_workers(self, flat):
        return flat


def join(job):
    """The group this process belongs to in job (the spec's JobShape; runspec.rules has decided
    that the KVStore fits the process)."""
    if not job.distributed:
        return LocalGroup()
    kv = mx.kv.create(job.kvstore)  # blocks until every worker and server has registered
    group = AsyncGroup(kv) if job.updates_on_servers else SyncGroup(kv)
    if group.num_workers != job.workers:  # the launcher's DMLC_NUM_WORKER is what ps-lite read
        raise RuntimeError(f"the KVStore has {group.num_workers} workers, the job {job.workers}")
    return group
