"""Network + optimiser on one or more devices: the training step and exact evaluation.

Data parallelism: each global batch is split over the contexts, every context runs forward and
backward on its slice, the KVStore sums the gradients, and one SGD update (scaled by 1/global
batch) is applied. The engine is given the run's RunSpec (runspec/: batches, KVStore, dtype) and
its process group (cluster/process_group.py), which answers the rest about the job.
"""
import hashlib
import math
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from train_cli import streams
from train_cli.cluster.process_group import LocalGroup
from train_cli.data.loader import eval_batches
from train_cli.errors import UserError
from train_cli.model.activations import fused_allowed
from train_cli.model.vgg import build_model
from train_cli.mxnet_private import start_kvstore, structural_params
from train_cli.training import precision
from train_cli.training.devices import acts_as_gpu, on_host
from train_cli.training.loss_scale import DynamicLossScale, NoLossScale, all_finite


@dataclass
class BatchResult:
    """One batch's figures in this process, as a progress bar shows them."""
    index: int  # 0-based batch number within the epoch
    loss_sum: float
    correct: int
    count: int
    skipped: bool = False  # float16: the update overflowed and was not applied


@dataclass
class EpochRecord:
    """An epoch's training figures, summed over its batches and over the job."""
    loss_sum: float = 0.0
    correct: float = 0
    images: float = 0
    skipped_steps: int = 0  # float16: updates that overflowed and were not applied
    stopped: bool = False  # a stop was asked before the epoch's end (then no sums are made)


class Engine:
    """A network, its trainer and the contexts it runs on, in one process of a job."""

    def __init__(self, spec, contexts, group=None, loss_scale=None, server_schedule=None):
        """spec: the resolved RunSpec; server_schedule: the schedule a dist_async job's servers
        run (training/schedule.py), which needs the size of the training split."""
        cfg = spec.config
        if precision.enabled() != cfg.dtype:  # bfloat16 must be on before anything is built
            raise RuntimeError(f"call precision.set_up(spec) before building a {cfg.dtype} "
                               f"engine (this process is set up for {precision.enabled()})")
        self.group = group or LocalGroup()
        self.contexts = contexts
        self.dtype = precision.storage_dtype(cfg.dtype)  # of parameters and input images
        self.batch_size = spec.process_batch  # this process's share of one optimiser step
        self.global_batch = spec.global_batch
        self.loss_scale = loss_scale or (DynamicLossScale.for_batch(self.global_batch)
                                         if cfg.dtype == "float16" else NoLossScale())
        self.eval_batch_size = spec.eval_batch
        self.input_norm = cfg.input_norm
        # fused Swish operators only where they have kernels (CPU; not on a GPU's stand-in)
        device_type = "gpu" if acts_as_gpu(contexts[0]) else contexts[0].device_type
        self.net = build_model(cfg.model, cfg.width, cfg.dropout,
                               fused=fused_allowed(device_type, cfg.dtype))
        mx.random.seed(streams.mxnet_seed(streams.INIT, cfg.seed))  # weights: --seed alone
        self.net.initialize(ctx=contexts)
        if self.dtype != "float32":
            self.net.cast(self.dtype)
        if cfg.hybridize:
            # static_alloc/static_shape: memory planned once per shape, no per-step re-planning
            self.net.hybridize(static_alloc=True, static_shape=True)
        optimizer = {"learning_rate": cfg.lr, "momentum": cfg.momentum, "wd": cfg.wd,
                     "multi_precision": cfg.dtype == "float16"}
        if spec.job.updates_on_servers:  # the servers run the optimiser, and its schedule
            optimizer["lr_scheduler"] = server_schedule
        self.trainer = gluon.Trainer(
            self.net.collect_params(), "sgd", optimizer,
            kvstore=self.group.trainer_kvstore(spec.job.kvstore),
            update_on_kvstore=spec.job.updates_on_servers)
        # the KVStore's initial broadcast now, not lazily at the first step (see start_kvstore)
        start_kvstore(self.trainer, self.global_batch)
        self.group.barrier()
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def load(self, array, cast=True):
        """Split a numpy batch over the devices (images in the training dtype)."""
        data = gluon.utils.split_and_load(array, self.contexts, even_split=False)
        if cast and self.dtype != "float32":
            data = [d.astype(self.dtype) for d in data]
        return data

    def train_epoch(self, batches, lr, seed, epoch, should_stop=lambda: False,
                    on_batch=lambda result: None):
        """Train on `batches`; return the EpochRecord, summed over the job (unless stopped).

        Raises Diverged when the loss stops being finite, naming the batch.
        """
        if not self.group.updates_on_servers:  # there the ServerSchedule sets the rate
            self.trainer.set_learning_rate(lr)
        self._seed_dropout(seed, epoch)  # replays on resume
        results, pending = [], None
        for index, (images, labels) in enumerate(batches):
            if should_stop():  # a stop after the last batch keeps the finished epoch
                mx.nd.waitall()
                return EpochRecord(stopped=True)
            stats = self.step(self.load(images), self.load(labels, cast=False), (epoch, index))
            # Reading a value is a sync point: read the previous batch's, so the device always
            # has this batch queued while Python waits.
            if pending is not None:
                results.append(self._collect(pending, epoch, on_batch))
            pending = (index, stats, len(images))
        if pending is not None:
            results.append(self._collect(pending, epoch, on_batch))
        # the last update is still queued: wait for it, so the epoch's time is the whole epoch
        mx.nd.waitall()
        loss_sum, correct, images = self.group.train_total(
            [sum(r.loss_sum for r in results), sum(r.correct for r in results),
             sum(r.count for r in results)])
        return EpochRecord(loss_sum, correct, images, sum(r.skipped for r in results))

    def _seed_dropout(self, seed, epoch):
        """Dropout's masks from (seed, epoch), the same on resume.

        On GPUs also from each device's place in the job, not its id: mx.random.seed(s) seeds a
        device's generator from s and the device id (src/resource.cc:336-341 at 1.9.1), and a
        GPU run may resume on other GPUs; seeding each context itself leaves the id out
        (resource.cc:187-199). The CPU keeps the stream it has always had.
        """
        if not acts_as_gpu(self.contexts[0]):
            mx.random.seed(streams.mxnet_seed(streams.DROPOUT, seed, epoch))
            return
        for place, ctx in enumerate(self.contexts):
            mx.random.seed(streams.mxnet_seed(streams.DROPOUT, seed, epoch, self.group.rank,
                                              place), ctx=ctx)

    def step(self, xs, ys, where=(None, None)):
        """One optimiser step on per-device slices; returns [loss sum, correct] and, with loss
        scaling, [..., skipped] (an NDArray, not synced). where: (epoch, batch), for errors."""
        scale = self.loss_scale.scale
        with autograd.record():
            outputs = [self.net(x) for x in xs]
            losses = [self.loss_fn(out.astype("float32", copy=False), y)
                      for out, y in zip(outputs, ys)]
            scaled = [loss * scale for loss in losses] if self.loss_scale.active else losses
        autograd.backward(scaled)
        skipped = 0
        if not self.loss_scale.active:
            self.trainer.step(self.global_batch)
        else:
            # sum the gradients first: every device and worker then sees the same ones, and so
            # makes the same decision without another collective
            self.trainer.allreduce_grads()
            if self.loss_scale.update(overflow=not self._gradients_finite()):
                self.trainer.update(self.global_batch * scale)  # divides the scale out
            else:
                skipped = 1
                if self.loss_scale.exhausted:
                    raise Diverged(*where, f"float16 gradients overflowed even at loss scale "
                                   f"{scale:g}", fix="a lower --lr or --dtype float32")
        return self._batch_stats(outputs, ys, losses, skipped)

    def _gradients_finite(self):
        """Whether every gradient on the first device is finite (they are summed already).

        One multi_all_finite per dtype and per MULTI_ALL_FINITE_MAX arrays: in float16
        BatchNorm's and Swish-beta's parameters stay float32, and the operator takes arrays of
        one dtype, at most 200 of them. Reading the answer is a sync point each step, which
        float16's skip decision needs before the update.
        """
        by_dtype = {}
        for p in self.net.collect_params().values():
            if p.grad_req != "null":
                grad = p.grad(self.contexts[0])
                by_dtype.setdefault(grad.dtype, []).append(grad)
        return all(all_finite(grads) for grads in by_dtype.values())

    def _batch_stats(self, outputs, ys, losses, skipped):
        ctx = self.contexts[0]
        parts = [mx.nd.concat(loss.sum(), _correct(out, y), dim=0).as_in_context(ctx)
                 for out, y, loss in zip(outputs, ys, losses)]
        total = mx.nd.add_n(*parts) if len(parts) > 1 else parts[0]
        if not self.loss_scale.active:  # float32: nothing is ever skipped; no extra array
            return total
        return mx.nd.concat(total, mx.nd.array([skipped], ctx=ctx), dim=0)

    @staticmethod
    def _collect(pending, epoch, on_batch):
        """Read a finished batch's figures (a sync point) and check the loss is finite."""
        index, stats, count = pending
        loss_sum, correct, *skipped = (float(v) for v in stats.asnumpy())
        if not math.isfinite(loss_sum):
            raise Diverged(epoch, index)
        result = BatchResult(index, loss_sum, int(round(correct)), count, any(skipped))
        on_batch(result)
        return result

    def evaluate(self, split):
        """(mean loss, accuracy, images) over every image of split exactly once, job-wide."""
        loss_sum, correct, n = self.group.eval_total(
            self.evaluate_sums(self.group.eval_shard(split)))
        return loss_sum / max(n, 1), correct / max(n, 1), int(round(n))

    def evaluate_sums(self, split):
        """(summed loss, correct predictions, images) over split, in this process."""
        ctx = self.contexts[0]
        loss_total = mx.nd.zeros((1,), ctx=ctx)
        correct_total = mx.nd.zeros((1,), ctx=ctx)
        for images, labels, valid in eval_batches(split, self.eval_batch_size, self.input_norm):
            xs = self.load(images)
            outputs = [self.net(x).astype("float32").as_in_context(ctx) for x in xs]
            out = mx.nd.concat(*outputs, dim=0)[:valid]
            y = mx.nd.array(labels[:valid], ctx=ctx)
            loss_total += self.loss_fn(out, y).sum()
            correct_total += _correct(out, y)
        return float(loss_total.asscalar()), float(correct_total.asscalar()), len(split)

    def sync_batchnorm_stats(self):
        """Make BatchNorm running statistics the mean over all devices (and, in synchronous
        jobs, workers: a dist_async worker keeps its own).

        Each device updates its own copy from its slice of every batch, so the copies differ
        (and only in them). Averaging before evaluation and checkpointing makes every device and
        worker evaluate the same network, and what is saved is what was evaluated.
        """
        stats = [p for p in self.net.collect_params().values() if p.grad_req == "null"]
        if not stats or (len(self.contexts) == 1 and not self.group.distributed):
            return
        flat = np.concatenate([np.mean([d.asnumpy() for d in p.list_data()], axis=0).ravel()
                               for p in stats])
        mean, offset = self.group.mean_over_workers(flat).astype(np.float32), 0
        for p in stats:
            size = int(np.prod(p.shape))
            value = mean[offset:offset + size].reshape(p.shape)
            for copy in p.list_data():  # not set_data(), which resets a dist_async KVStore
                copy[:] = value  # a host-to-device copy onto each device
            offset += size

    def save_params(self, path):
        """The first device's weights, in the standard Gluon format (load_parameters reads them).

        Not net.save_parameters: it saves the mean of the devices' copies, which with 3, 5, 6 or
        7 devices is not bit-equal to any of them (x*3/3 rounds), so the saved network would
        not be the one that was evaluated.
        """
        mx.nd.save(str(path), {name: on_host(p.data(self.contexts[0]))
                               for name, p in structural_params(self.net).items()})

    def check_finite(self, epoch, val_loss):
        """Raise Diverged unless the validation loss and every parameter are finite.

        A blow-up in an epoch's last update shows in no training loss of that epoch; checked
        before the epoch is recorded, so the last good checkpoint stays.
        """
        bad = [name for name, p in structural_params(self.net).items()
               if not np.isfinite(p.data(self.contexts[0]).asnumpy()).all()]
        if bad or not math.isfinite(val_loss):
            what = f"parameter {bad[0]}" if bad else "the validation loss"
            raise Diverged(epoch, None, f"{what} became NaN/inf")

    def load_params(self, path):
        """Load weights saved by save_params into every device's copy, cast to this engine's
        dtype (float16 weights evaluate in float32 on the CPU); ValueError if they do not fit.

        Copied in place, not net.load_parameters: its set_data resets a distributed KVStore,
        which raises under dist_async (gluon/parameter.py:509-511, trainer.py:166-167 at 1.9.1).
        """
        loaded, params = mx.nd.load(str(path)), structural_params(self.net)
        if not isinstance(loaded, dict) or set(loaded) != set(params):
            raise ValueError("its parameter names are not this network's")
        for name, p in params.items():
            if loaded[name].shape != p.shape:
                raise ValueError(f"{name} has shape {loaded[name].shape}, the network {p.shape}")
            for copy in p.list_data():
                copy[:] = loaded[name].astype(copy.dtype, copy=False)

    def params_digest(self):
        """SHA-1 over every parameter's bytes, in name order: equal replicas, equal digests."""
        h = hashlib.sha1()
        for name, p in sorted(structural_params(self.net).items()):
            h.update(name.encode())
            h.update(p.data(self.contexts[0]).asnumpy().tobytes())
        return h.hexdigest()


def _correct(outputs, labels):
    """How many rows' highest score is at their label (a 1-element float32 NDArray)."""
    return (outputs.argmax(axis=1).astype("float32", copy=False) == labels).sum()


class Diverged(UserError):
    """The training loss (or, at the end of an epoch, a weight) became NaN or infinite."""

    def __init__(self, epoch, batch, what="the training loss became NaN/inf", fix="a lower --lr"):
        if epoch is None:  # a step run outside an epoch's loop
            where = "a training step"
        elif batch is None:
            where = f"the end of epoch {epoch + 1}"
        else:
            where = f"epoch {epoch + 1}, batch {batch + 1}"
        super().__init__(f"{what} at {where}: the learning rate is probably too high for this "
                         f"model; start a new run with {fix} (this run's last good checkpoint is "
                         "kept, but resuming it would diverge again)")
        self.epoch, self.batch = epoch, batch
