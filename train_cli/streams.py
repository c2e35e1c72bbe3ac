"""Every random stream of a run, each derived from (--seed, its own tag, its keys).

Nothing in a run draws from a global generator's history: the initial weights, an epoch's
shuffle, a batch's augmentation and an epoch's dropout masks are each a function of the seed and
where they are used, so a resumed run replays exactly what an uninterrupted one would have drawn.

Each stream has its own tag in the second position. numpy's SeedSequence treats [s, e] and
[s, e, 0] alike (trailing zeros are ignored), so without tags an epoch's shuffle ([seed, epoch])
and the first batch's augmentation ([seed, epoch, 0]) were the very same stream. With distinct
tags no key list is a zero-padded prefix of another's; tests/test_streams.py checks it.
"""
import numpy as np

INIT, SHUFFLE, AUGMENT, DROPOUT, HELD_OUT = 1, 2, 3, 4, 5  # never renumber: runs replay them
# Runs record which version of these streams drew them (config.json "random_streams"): a run of
# another version cannot be resumed exactly, and its held-out images are drawn its own way.
# Version 1 (swishtrain 0.1) had no tags.
VERSION = 2
# The held-out validation and test images depend on no --seed: every seed of a study, and every
# run of a comparison, validates and tests on the same images.
SPLIT_SEED = 2018


def generator(tag, seed, *keys):
    """A numpy Generator for one stream: (tag, seed, keys) -> always the same draws."""
    return np.random.default_rng(_entropy(tag, seed, keys))


def mxnet_seed(tag, seed, *keys):
    """A 31-bit seed for MXNet's global generator (mx.random.seed) for one stream."""
    return int(np.random.SeedSequence(_entropy(tag, seed, keys)).generate_state(1)[0] >> 1)


def held_out_order(n, version=VERSION):
    """The fixed permutation of n training images whose end the held-out splits are cut from,
    as the given version of these streams drew it (so old runs evaluate on their own images)."""
    if version < 2:
        return np.random.default_rng(SPLIT_SEED).permutation(n)
    return generator(HELD_OUT, SPLIT_SEED).permutation(n)


def _entropy(tag, seed, keys):
    return [int(seed), tag, *(int(k) for k in keys)]
