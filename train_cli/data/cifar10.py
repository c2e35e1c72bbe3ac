"""CIFAR-10 on disk -> uint8 arrays in memory.

Reads an existing copy (the binary release, or the pickled Python release torchvision downloads),
which fetch.py finds or downloads. Everything that reads a file checks it: record size, label
range, checksums; nothing is unpickled beyond plain arrays and lists.
"""
import functools
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train_cli import streams
from train_cli.data.fetch import ARCHIVE_MD5, checksum_mismatches, prepare
from train_cli.errors import UserError

TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
RECORD_BYTES = 1 + 3 * 32 * 32  # label byte + CHW pixels
NUM_CLASSES = 10


@dataclass
class Split:
    """Images as uint8 (N, 3, 32, 32) and labels as int32 (N,)."""
    images: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    def shard(self, rank, parts):
        """Every parts-th image from rank on: the parts' shards cover the split exactly once."""
        return Split(self.images[rank::parts], self.labels[rank::parts])


@dataclass
class Cifar10:
    """The splits a run uses: train, val (test split or held-out train images), test if any."""
    train: Split
    val: Split
    test: Split | None
    source: str  # folder the data came from
    val_is_test: bool

    @functools.cached_property
    def fingerprint(self):
        """{split: {"images": n, "sha256": hex}} for train, val and test (if any): what a resumed
        run checks its data against. Computed once, on first use (~0.1 s for 50,000 images)."""
        digests = {}  # by identity: validation on the test split is hashed once
        out = {}
        for name in ("train", "val", "test"):
            split = getattr(self, name)
            if split is not None:
                if id(split) not in digests:
                    digests[id(split)] = split_digest(split)
                out[name] = dict(images=len(split), sha256=digests[id(split)])
        return out


def split_digest(split):
    """sha256 of a split's pixels (uint8, N x 3 x 32 x 32) followed by its labels (int32, little
    endian): the same for the same images in the same order, whichever file format held them."""
    h = hashlib.sha256(memoryview(np.ascontiguousarray(split.images)).cast("B"))
    h.update(np.ascontiguousarray(split.labels, dtype="<i4").tobytes())
    return h.hexdigest()


def default_data_dir():
    """$SWISHTRAIN_DATA, else ~/.swishtrain/datasets/cifar10."""
    return os.environ.get("SWISHTRAIN_DATA") or str(Path.home() / ".swishtrain/datasets/cifar10")


# -----------------------------------------------------------------------------
# Reading batches
def read_batch(fmt, folder, name):
    """One batch file as a Split; bad sizes, shapes, types or labels raise UserError."""
    path = Path(folder) / (name + ".bin" if fmt == "bin" else name)
    if not path.is_file():
        raise UserError(f"{path} is missing: the CIFAR-10 copy in {folder} is incomplete; restore "
                        "it, or point --data-dir at a complete copy")
    fix = _refetch(folder)
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty (0 bytes): a download or copy of it was cut short; "
                        f"{fix}")
    if fmt == "bin":
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as e:
            raise UserError(f"cannot read {path} ({e.strerror or e}); {fix}") from None
        if raw.size == 0 or raw.size % RECORD_BYTES:
            raise UserError(f"{path} has {raw.size} bytes, not a multiple of {RECORD_BYTES} (one "
                            "label byte + 3072 pixels): the file is truncated or not CIFAR-10; "
                            f"{fix}")
        records = raw.reshape(-1, RECORD_BYTES)
        labels, pixels = records[:, 0].astype(np.int32), records[:, 1:]
    else:
        labels, pixels = _read_pickle(path, fix)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = int(labels[(labels < 0) | (labels >= NUM_CLASSES)][0])
        raise UserError(f"{path} has label {bad}; CIFAR-10 labels are 0-9: the file is corrupt "
                        f"or another dataset; {fix}")
    return Split(np.ascontiguousarray(pixels.reshape(-1, 3, 32, 32)), labels)


def _refetch(folder):
    """What to do about a damaged batch file in folder."""
    return (f"replace it with a good copy, or delete {folder} so that swishtrain downloads "
            "CIFAR-10 again")


class _Refused(pickle.UnpicklingError):
    """A pickle that asks for something other than plain arrays and lists."""


class _ArraysOnly(pickle.Unpickler):
    """Unpickler that admits only what CIFAR-10's pickles contain: dicts, lists, numpy arrays."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy.core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"refusing to load {module}.{name}")


def _read_pickle(path, fix):
    """(labels int32 (N,), pixels uint8 (N, 3072)) of a pickled batch; anything else: UserError."""
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(f, encoding="latin1").load()
    except _Refused as e:
        raise UserError(f"{path} is not a plain CIFAR-10 pickle ({e}); it was not loaded; "
                        f"{fix}") from None
    except (pickle.UnpicklingError, EOFError) as e:
        raise UserError(f"{path} is truncated or not a pickle ({e or type(e).__name__}); "
                        f"{fix}") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror or e}); {fix}") from None
    except Exception as e:  # garbage files raise many types
        raise UserError(f"{path} cannot be read as a CIFAR-10 pickle ({type(e).__name__}: {e}); "
                        f"{fix}") from None
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise UserError(f"{path} does not hold a CIFAR-10 batch (a dict with data and labels); "
                        f"{fix}")
    pixels = batch["data"]
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 \
            or pixels.shape[1] != 3072:
        what = (f"{pixels.dtype} data of shape {pixels.shape}" if isinstance(pixels, np.ndarray)
                else f"data of type {type(pixels).__name__}")
        raise UserError(f"{path} holds {what}; a CIFAR-10 batch holds uint8 pixels of shape "
                        f"(N, 3072): the file is corrupt or not CIFAR-10; {fix}")
    labels = _pickled_labels(path, batch["labels"], fix)
    if len(labels) != len(pixels):
        raise UserError(f"{path} holds {len(pixels)} images but {len(labels)} labels: the file "
                        f"is corrupt or not CIFAR-10; {fix}")
    if not len(pixels):
        raise UserError(f"{path} holds no images: the file is truncated or not CIFAR-10; {fix}")
    return labels, pixels


def _pickled_labels(path, value, fix):
    """A pickle's labels as int32, if they are a flat list (or array) of integers 0-9."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()  # numpy scalars -> int, float, str...: checked below
    if not isinstance(value, list):
        shape = f" of shape {value.shape}" if isinstance(value, np.ndarray) else ""
        raise UserError(f"{path} holds labels that are a {type(value).__name__}{shape}, not a "
                        f"list of integers 0-9: the file is corrupt or not CIFAR-10; {fix}")
    for label in value:
        integer = isinstance(label, (int, np.integer)) and not isinstance(label, bool)
        if not integer or not 0 <= label < NUM_CLASSES:
            shown = repr(label) if len(repr(label)) <= 40 else repr(label)[:37] + "..."
            kind = "" if integer else f" (a {type(label).__name__})"
            raise UserError(f"{path} has label {shown}{kind}; CIFAR-10 labels are integers 0-9: "
                            f"the file is corrupt or another dataset; {fix}")
    return np.array(value, dtype=np.int32)


# -----------------------------------------------------------------------------
def load_cifar10(root, val_split=0, test_split=0, url=None, md5=ARCHIVE_MD5, progress=True,
                 warn=print, streams_version=streams.VERSION):
    """Find/download CIFAR-10 under root and return its splits as in-memory arrays.

    val_split / test_split hold out that many training images, chosen by a permutation that
    depends on no --seed (streams.held_out_order; a run evaluates with its own version):
    validation the last val_split of it, test the test_split before them (so a run's validation
    images do not change when a test split is carved too).
    """
    fmt, folder = prepare(root, url=url, md5=md5, progress=progress)
    parts = [read_batch(fmt, folder, name) for name in TRAIN_BATCHES]
    train = Split(np.concatenate([p.images for p in parts]),
                  np.concatenate([p.labels for p in parts]))
    test_path = Path(folder) / (TEST_BATCH + ".bin" if fmt == "bin" else TEST_BATCH)
    test = read_batch(fmt, folder, TEST_BATCH) if test_path.is_file() and not test_split else None
    if fmt == "bin":
        bad = checksum_mismatches(folder)
        if bad:
            warn(f"warning: {', '.join(bad)} in {folder} differ from the official CIFAR-10 files "
                 "(SHA-1); results may not be comparable with published ones")
    if val_split + test_split >= len(train):
        asked = f"--val-split {val_split}" + (f" with --test-split {test_split}" * bool(test_split))
        raise UserError(f"{asked} leaves no training images (the copy in {folder} has "
                        f"{len(train)}); use a smaller number")
    order = streams.held_out_order(len(train), streams_version) if val_split or test_split \
        else None

    def held(start, stop):
        idx = np.sort(order[len(order) - stop:len(order) - start])
        return Split(train.images[idx], train.labels[idx])
    if test_split:
        test = held(val_split, val_split + test_split)
    source = str(folder) + (f" (test: {test_split:,} held-out training images)"
                            if test_split else "")
    if not val_split:
        if test is None:
            raise UserError(f"{test_path} is missing, so there is no test split to validate on; "
                            "restore it, or hold out training images with --val-split 5000 "
                            "(and --test-split 5000 for a test split)")
        return Cifar10(held(val_split + test_split, len(train)) if test_split else train, test,
                       test, source, val_is_test=True)
    return Cifar10(held(val_split + test_split, len(train)), held(0, val_split), test, source,
                   val_is_test=False)
