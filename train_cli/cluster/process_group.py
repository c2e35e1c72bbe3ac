"""Several training processes on MXNet's parameter-server KVStore (ps-lite), as one run.

Each worker trains on its slice of every global batch; the servers sum the gradients. Facts that
shape this module (measured with mxnet 1.9.1 on 127.0.0.1; see README "More than one machine"):
- With update_on_kvstore=True the optimizer runs on the servers, and Trainer.set_learning_rate
  never reaches them (apache/mxnet#15919). In sync modes we update on the workers instead
  (update_on_kvstore=False): the servers only sum gradients, and the schedule acts where it is set.
- The first gradient push can overtake the initial weight broadcast and overwrite the weights;
  `prime_trainer` completes the broadcast and waits at a barrier before the first step.
- A worker that dies leaves the others waiting forever; the launcher tears the job down.
- dist_async forces updates on the servers, so its schedule is a server-side MultiFactorScheduler
  counted in pushes (every worker's push is one update there).
"""
import os
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np

from train_cli.errors import UsageError

_SUM_KEYS = 1_000_000  # keys from here down serve `Cluster.sum` (parameters use 0..n-1)


@dataclass
class Cluster:
    """Where this process stands: rank, number of workers, and the KVStore (None locally)."""
    kv: object = None
    rank: int = 0
    num_workers: int = 1
    kind: str = "local"
    sum_keys: dict = field(default_factory=dict)  # vector length -> KVStore key for sum()

    @property
    def distributed(self):
        return self.kv is not None

    @property
    def sync(self):
        """Workers apply the updates (all modes but dist_async)."""
        return "async" not in self.kind

    @property
    def writer(self):
        """Only rank 0 writes the run folder."""
        return self.rank == 0

    def barrier(self):
        if self.distributed:
            self.kv._barrier()

    def sum(self, values):
        """Element-wise sum of a small float vector over all workers (sync modes only)."""
        values = np.asarray(values, dtype=np.float64)
        if not self.distributed:
            return values
        # float32 on the wire: exact for counts up to 2**24, ample for CIFAR's 60,000 images
        local = mx.nd.array(values, dtype="float32")
        if local.size not in self.sum_keys:  # a collective: every worker inits the same keys
            self.sum_keys[local.size] = _SUM_KEYS - len(self.sum_keys)
            self.kv.init(self.sum_keys[local.size], mx.nd.zeros(local.shape))
        out = mx.nd.zeros(local.shape)
        self.kv.pushpull(self.sum_keys[local.size], local, out=out)
        return out.asnumpy().astype(np.float64)

    def prefix(self):
        return f"[rank {self.rank}] " if self.distributed else ""


def connect(kvstore):
    """Join the job described by the DMLC_* environment, or return the local Cluster."""
    if not kvstore.startswith("dist"):
        if os.environ.get("DMLC_ROLE") == "worker":  # N local writers would race on one folder
            raise UsageError(f"--kvstore {kvstore} is not distributed, but this process is a "
                             "worker of `swishtrain launch`; use dist_sync (the default there)")
        return Cluster()
    if os.environ.get("DMLC_ROLE") != "worker":
        raise UsageError(f"--kvstore {kvstore} needs the scheduler, servers and workers of a "
                         "distributed job; start it with `swishtrain launch -n 2 -- <train "
                         "options>`")
    kv = mx.kv.create(kvstore)  # blocks until every worker and server has registered
    return Cluster(kv=kv, rank=kv.rank, num_workers=kv.num_workers, kind=kvstore)


def prime_trainer(trainer, global_batch):
    """Create the trainer's KVStore and finish its initial broadcast before the first step.

    On a distributed KVStore this also makes every worker wait until all have done so.
    """
    # rescale_grad must be final first: with update_on_kvstore the optimizer is pickled to the
    # servers inside _init_kvstore, once.
    trainer._optimizer.rescale_grad = trainer._scale / global_batch
    trainer._init_kvstore()
    trainer._init_params()
    # The init pushes are asynchronous engine operations: wait for all of them (not only the
    # pulled weights) or a fast worker's first gradient reaches a server before that key exists.
    mx.nd.waitall()
    if trainer._kvstore is not None and "dist" in trainer._kvstore.type:
        trainer._kvstore._barrier()


def async_scheduler(cfg, pushes_per_epoch):
    """Server-side learning-rate schedule for dist_async, counted in server updates.

    Every worker's push is one update on the servers, so an epoch is batches x workers of them.
    (dist_async runs start from epoch 0: they cannot be resumed.)
    """
    if not cfg.lr_steps:
        return None
    return mx.lr_scheduler.MultiFactorScheduler(
        step=[s * pushes_per_epoch for s in cfg.lr_steps], factor=cfg.lr_factor, base_lr=cfg.lr)
