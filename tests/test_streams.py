"""Every random stream of a run is its own: no two (tag, seed, keys) give the same draws."""
import itertools

import numpy as np

from train_cli import streams


def test_no_two_streams_of_a_run_coincide():
    keyed = []
    for seed in (0, 1, 2):
        keyed.append((streams.INIT, seed, ()))
        for epoch in range(4):
            keyed += [(streams.SHUFFLE, seed, (epoch,)), (streams.DROPOUT, seed, (epoch,))]
            keyed += [(streams.AUGMENT, seed, (epoch, offset)) for offset in (0, 1, 128, 256)]
    keyed.append((streams.HELD_OUT, streams.SPLIT_SEED, ()))
    firsts = {}
    for tag, seed, keys in keyed:
        draw = tuple(streams.generator(tag, seed, *keys).integers(0, 2**63, size=4))
        assert draw not in firsts, f"{(tag, seed, keys)} repeats the stream of {firsts[draw]}"
        firsts[draw] = (tag, seed, keys)
    seeds = [streams.mxnet_seed(tag, seed, *keys) for tag, seed, keys in keyed]
    assert len(set(seeds)) == len(seeds)
    # a version-1 run (swishtrain 0.1) evaluates on the images it held out then
    np.testing.assert_array_equal(streams.held_out_order(1000, version=1),
                                  np.random.default_rng(2018).permutation(1000))
    assert not np.array_equal(streams.held_out_order(1000), streams.held_out_order(1000, 1))


def test_the_old_trailing_zero_collision_is_gone():
    """SeedSequence ignores trailing zeros: [s, e] and [s, e, 0] were one stream (the epoch's
    shuffle and its first batch's augmentation)."""
    old_shuffle, old_augment = np.random.default_rng([3, 1]), np.random.default_rng([3, 1, 0])
    assert old_shuffle.integers(0, 2**63) == old_augment.integers(0, 2**63)  # the old bug
    shuffle = streams.generator(streams.SHUFFLE, 3, 1)
    augment = streams.generator(streams.AUGMENT, 3, 1, 0)
    assert shuffle.integers(0, 2**63) != augment.integers(0, 2**63)


def test_a_stream_replays():
    for tag, keys in itertools.product((streams.SHUFFLE, streams.AUGMENT), ((1,), (1, 40))):
        a = streams.generator(tag, 7, *keys).random(5)
        np.testing.assert_array_equal(a, streams.generator(tag, 7, *keys).random(5))
