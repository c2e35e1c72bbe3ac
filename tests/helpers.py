"""Test helpers: tiny synthetic CIFAR-10 copies in the real file formats."""
import io
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np

from train_cli.data.cifar10 import RECORD_BYTES, TEST_BATCH, TRAIN_BATCHES


def synthetic_split(n, seed=0, noise=40):
    """n learnable images: a fixed blocky prototype per class plus noise; (images, labels)."""
    rng = np.random.default_rng(seed)
    coarse = np.random.default_rng(1234).integers(0, 256, size=(10, 3, 4, 4))
    prototypes = coarse.repeat(8, axis=2).repeat(8, axis=3)  # smooth 8x8-pixel blocks
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = prototypes[labels] + rng.normal(0, noise, size=(n, 3, 32, 32))
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_bin_batch(path, images, labels):
    records = np.concatenate([labels.reshape(-1, 1), images.reshape(len(labels), -1)], axis=1)
    assert records.shape[1] == RECORD_BYTES
    records.astype(np.uint8).tofile(path)


def write_cifar(folder, per_batch=40, test=30, fmt="bin", seed=0):
    """A CIFAR-10 copy with 5 training batches of per_batch images and a test batch."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = TRAIN_BATCHES + ([TEST_BATCH] if test else [])
    for i, name in enumerate(names):
        images, labels = synthetic_split(test if name == TEST_BATCH else per_batch, seed=seed + i)
        if fmt == "bin":
            write_bin_batch(folder / f"{name}.bin", images, labels)
        else:
            batch = {"batch_label": name, "labels": labels.tolist(),
                     "data": images.reshape(len(labels), -1),
                     "filenames": [f"{j}.png" for j in range(len(labels))]}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def make_tar_gz(members):
    """bytes of a .tar.gz holding {name: bytes} regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def launched_pids(out):
    """Every pid of every job `swishtrain launch` started (from its "[launch] scheduler" lines)."""
    return [int(pid) for line in out.splitlines() if line.startswith("[launch] scheduler")
            for pids in re.findall(r"pids? ([\d, ]+)", line.replace(")", " "))
            for pid in pids.replace(",", " ").split()]


def assert_all_gone(pids):
    """Fail naming the first of pids that is still running."""
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} is still running")


REPO = Path(__file__).resolve().parent.parent  # the checkout: configs/, README.md

# Small, fast training arguments shared by the CLI tests.
TINY = ["--model", "vgg11_bn", "--width", "0.125", "--batch-size", "20", "--lr", "0.05",
        "--lr-steps", "1", "--eval-batch-size", "16"]
