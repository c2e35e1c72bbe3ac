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

INIT, SHUFFLE, AUGMENT, DROPOUT = 1, 2, 3, 4  # never renumber: runs replay them
# Runs record which version of these streams drew them (config.json "random_streams"); a run of
# another version cannot be resumed exactly. Version 1 had no tags.
VERSION = 2
# The held-out validation and test images depend on no --seed: every seed of a study, and every
# run of a comparison, validates and tests on the same images. This permutation is drawn as it
# always was (default_rng(2018)), so the held-out images of runs of every version agree; its
# entropy [2018] has one entry, so no tagged stream ([seed, tag, ...], tag > 0) repeats it.
SPLIT_SEED = 2018


def held_out_order(n):
    """The fixed permutation of the n training images from whose end held-out splits come."""
    return np.random.default_rng(SPLIT_SEED).permutation(n)


def generator(tag, seed, *keys):
    """A numpy Generator for one stream: (tag, seed, keys) -> always the same draws."""
    return np.random.default_rng(_entropy(tag, seed, keys))


def mxnet_seed(tag, seed, *keys):
    """A 31-bit seed for MXNet's global generator (mx.random.seed) for one stream."""
    return int(np.random.SeedSequence(_entropy(tag, seed, keys)).generate_state(1)[0] >> 1)


def _entropy(tag, seed, keys):
    return [int(seed), tag, *(int(k) for k in keys)]
