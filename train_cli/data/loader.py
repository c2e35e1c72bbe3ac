"""Arrays -> batches, prepared ahead of the training step by a background thread.

A training epoch's order and augmentation depend only on (seed, epoch), never on what ran before,
so a resumed run sees exactly the batches an uninterrupted one would have seen.
"""
import queue
import threading

import numpy as np

from train_cli import streams
from train_cli.data.augment import AUGMENTATIONS, INPUTS


def train_batches(split, batch_size, seed, epoch, augment, rank=0, num_workers=1, shuffle=True,
                  inputs="mean-std"):
    """Yield (images float32 NCHW, labels float32) of one shuffled, augmented epoch.

    shuffle=False keeps the images in the order of the files (the 2018 script's iterator did not
    shuffle); inputs picks the input scaling (augment.INPUTS).

    With several workers, every worker walks the same permutation in global batches of
    batch_size * num_workers and takes its own slice of each, so one step of the job covers
    exactly one global batch. The last incomplete global batch is dropped, as in most CIFAR
    recipes (a tiny batch gives a noisy step and BatchNorm statistics of a few images).
    """
    order = (streams.generator(streams.SHUFFLE, seed, epoch).permutation(len(split)) if shuffle
             else np.arange(len(split)))
    transform, scale = AUGMENTATIONS[augment], INPUTS[inputs]
    step = batch_size * num_workers
    for start in range(0, len(order) - step + 1, step):
        offset = start + rank * batch_size
        idx = order[offset:offset + batch_size]
        # augmentation draws depend on the slice's place in the epoch, not on batches before it
        rng = streams.generator(streams.AUGMENT, seed, epoch, offset)
        yield scale(transform(split.images[idx], rng)), split.labels[idx].astype(np.float32)


def eval_batches(split, batch_size, inputs="mean-std"):
    """Yield (images, labels, valid) covering every image exactly once, in order.

    The last batch is padded to full size (so the compiled graph keeps one shape) and `valid`
    says how many of its rows are real.
    """
    n = len(split)
    for start in range(0, n, batch_size):
        images = split.images[start:start + batch_size]
        labels = split.labels[start:start + batch_size]
        valid = len(labels)
        if valid < batch_size:
            images = np.concatenate([images, np.zeros((batch_size - valid,) + images.shape[1:],
                                                      dtype=images.dtype)])
            labels = np.concatenate([labels, np.zeros(batch_size - valid, dtype=labels.dtype)])
        yield INPUTS[inputs](images), labels.astype(np.float32), valid


class Prefetcher:
    """Run a batch generator in a background thread, `depth` batches ahead of the consumer.

    numpy releases the GIL while it copies and converts, so the next batches are prepared while
    MXNet computes the current step. Use as a context manager so the thread stops with the loop,
    also when the loop is left early (interrupt, divergence).
    """

    _DONE = object()

    def __init__(self, generator, depth=3):
        self._gen = generator
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, daemon=True, name="prefetch")

    def _produce(self):
        try:
            for item in self._gen:
                if not self._put(item):
                    return
        except BaseException as e:  # handed to the consumer, re-raised there
            self._put(e)
            return
        self._put(self._DONE)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def __enter__(self):
        self._thread.start()
        return self

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False
