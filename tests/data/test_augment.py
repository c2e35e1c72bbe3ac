"""Whole-batch augmentation: each output image is a legal transform of its input."""
import numpy as np

from train_cli.data.augment import (
    AUGMENTATIONS,
    CIFAR10_MEAN,
    CIFAR10_STD,
    normalise,
    random_crop,
    random_flip,
)


def images(n=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def test_random_crop_is_a_window_of_the_zero_padded_image():
    x = images()
    out = random_crop(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == np.uint8
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    offsets = set()
    for i in range(len(x)):  # the reference: a per-image search over all 81 windows
        matches = [(dy, dx) for dy in range(9) for dx in range(9)
                   if np.array_equal(padded[i, :, dy:dy + 32, dx:dx + 32], out[i])]
        assert matches, f"image {i} is not a crop of its padded input"
        offsets.update(matches)
    assert len(offsets) > 20  # offsets vary across the batch


def test_random_flip_mirrors_about_half_and_keeps_the_rest():
    x = images(400)
    out = random_flip(x, np.random.default_rng(2))
    same = np.array([np.array_equal(a, b) for a, b in zip(out, x)])
    mirrored = np.array([np.array_equal(a, b[:, :, ::-1]) for a, b in zip(out, x)])
    assert np.all(same | mirrored)
    assert 150 < mirrored.sum() < 250
    assert np.array_equal(x, images(400))  # input untouched


def test_augmentation_is_a_function_of_the_generator():
    x = images()
    for name, fn in AUGMENTATIONS.items():
        a, b = fn(x, np.random.default_rng(5)), fn(x, np.random.default_rng(5))
        assert np.array_equal(a, b), name
    assert not np.array_equal(AUGMENTATIONS["crop-flip"](x, np.random.default_rng(5)),
                              AUGMENTATIONS["crop-flip"](x, np.random.default_rng(6)))


def test_normalise_uses_cifar_mean_and_std():
    x = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    x[:, :, 0, 0] = 255
    out = normalise(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 1, 1], -CIFAR10_MEAN / CIFAR10_STD, rtol=1e-6)
    np.testing.assert_allclose(out[0, :, 0, 0], (1 - CIFAR10_MEAN) / CIFAR10_STD, rtol=1e-6)
