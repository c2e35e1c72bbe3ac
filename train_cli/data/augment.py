"""Augmentation as pure functions over whole uint8 NCHW batches (vectorised, no per-image loop).

Each random function takes a numpy Generator, so a batch is a function of (images, rng) alone:
that is what makes shuffling and augmentation reproducible across resumes.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Statistics of the 50,000 CIFAR-10 training images, per RGB channel, in [0, 1] units.
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)

# normalise() as one multiply-add: x * scale + shift, in pixel units
_SCALE = (1.0 / (255.0 * CIFAR10_STD)).reshape(1, 3, 1, 1)
_SHIFT = (-CIFAR10_MEAN / CIFAR10_STD).reshape(1, 3, 1, 1)


def random_crop(images, rng, pad=4):
    """Zero-pad each side by `pad`, then cut a random window of the original size per image."""
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (n, c, 2p+1, 2p+1, h, w), a view
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    return windows[np.arange(n), :, dy, dx]


def random_flip(images, rng):
    """Mirror a random half of the images left-right."""
    flip = rng.random(len(images)) < 0.5
    out = images.copy()
    out[flip] = images[flip, :, :, ::-1]
    return out


def normalise(images):
    """uint8 pixels -> float32, standardised per channel with the CIFAR-10 mean/std."""
    out = images.astype(np.float32)
    out *= _SCALE
    out += _SHIFT
    return out


AUGMENTATIONS = {
    "crop-flip": lambda x, rng: random_flip(random_crop(x, rng), rng),
    "flip": random_flip,
    "none": lambda x, rng: x,
}


def raw_pixels(images):
    """uint8 pixels -> float32 0-255, unscaled: what the 2018 script's iterator fed the network."""
    return images.astype(np.float32)


# --input-norm: how uint8 pixels become the network's float input
INPUTS = {"mean-std": normalise, "none": raw_pixels}
