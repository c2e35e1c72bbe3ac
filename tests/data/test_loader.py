"""Batches: seeded order, exact evaluation coverage, background prefetching."""
import threading

import numpy as np
import pytest

from train_cli.data.cifar10 import Split
from train_cli.data.loader import Prefetcher, eval_batches, train_batches

from helpers import synthetic_split


def numbered_split(n):
    """Images whose first pixel encodes their index (so batches can be traced back)."""
    images = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 1, 0, 0] = np.arange(n) // 256
    return Split(images, (np.arange(n) % 10).astype(np.int32))


def ids(batch_images):
    """Recover image indices from normalised, unaugmented batches."""
    from train_cli.data.augment import CIFAR10_MEAN, CIFAR10_STD
    px = batch_images[:, :2, 0, 0] * (255 * CIFAR10_STD[:2]) + 255 * CIFAR10_MEAN[:2]
    px = np.rint(px).astype(int)
    return px[:, 0] + 256 * px[:, 1]


def test_train_epoch_is_a_seeded_permutation_without_the_last_partial_batch():
    split = numbered_split(105)
    batches = list(train_batches(split, 10, seed=3, epoch=0, augment="none"))
    assert len(batches) == 10 and all(x.shape == (10, 3, 32, 32) for x, _ in batches)
    seen = np.concatenate([ids(x) for x, _ in batches])
    assert len(set(seen)) == 100  # no image twice
    labels = np.concatenate([y for _, y in batches])
    np.testing.assert_array_equal(labels, seen % 10)  # labels travel with their images
    again = np.concatenate([ids(x) for x, _ in train_batches(split, 10, 3, 0, "none")])
    other_epoch = np.concatenate([ids(x) for x, _ in train_batches(split, 10, 3, 1, "none")])
    np.testing.assert_array_equal(seen, again)
    assert not np.array_equal(seen, other_epoch)


def test_eval_batches_cover_every_image_exactly_once():
    split = numbered_split(23)
    batches = list(eval_batches(split, 10))
    assert [valid for _, _, valid in batches] == [10, 10, 3]
    assert all(x.shape == (10, 3, 32, 32) for x, _, _ in batches)  # padded to one shape
    seen = np.concatenate([ids(x)[:valid] for x, _, valid in batches])
    np.testing.assert_array_equal(seen, np.arange(23))


def test_prefetcher_yields_everything_in_order():
    with Prefetcher(iter(range(50)), depth=2) as items:
        assert list(items) == list(range(50))


def test_prefetcher_reraises_producer_errors():
    def broken():
        yield 1
        raise ValueError("bad batch")
    with Prefetcher(broken()) as items:
        with pytest.raises(ValueError, match="bad batch"):
            list(items)


def test_prefetcher_stops_its_thread_when_left_early():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1
    with Prefetcher(endless(), depth=2) as items:
        for item in items:
            if item == 3:
                break
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 2  # never ran more than the queue depth ahead


def test_raw_inputs_and_the_files_order_as_the_2018_script():
    images, labels = synthetic_split(30)
    split = Split(images, labels.astype(np.int32))
    (x, y), *_ = train_batches(split, 10, seed=3, epoch=0, augment="none", shuffle=False,
                               inputs="none")
    np.testing.assert_array_equal(x, images[:10].astype(np.float32))  # 0-255, first 10 in order
    for epoch in (1, 2):  # the same order every epoch
        (x2, _), *_ = train_batches(split, 10, seed=3, epoch=epoch, augment="none",
                                    shuffle=False, inputs="none")
        np.testing.assert_array_equal(x2, x)
    (xe, _, _), *_ = eval_batches(split, 10, inputs="none")
    assert xe.max() > 200 and xe.min() >= 0
