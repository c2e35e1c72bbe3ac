"""CIFAR-10 on disk -> uint8 arrays in memory.

Finds an existing copy (the binary release, or the pickled Python release torchvision downloads),
or downloads and verifies the official archive. Everything that reads a file checks it: record
size, label range, checksums; nothing is unpickled beyond plain arrays and lists.
"""
import contextlib
import fcntl
import functools
import hashlib
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from train_cli import streams
from train_cli.atomic import atomic_write, fsync_dir
from train_cli.errors import UserError

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE_NAME = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
ARCHIVE_BYTES = 170_052_171
BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
RECORD_BYTES = 1 + 3 * 32 * 32  # label byte + CHW pixels
NUM_CLASSES = 10
# SHA-1 of the official binary batches (the values MXNet's CIFAR10 dataset checks)
BATCH_SHA1 = {
    "data_batch_1.bin": "aadd24acce27caa71bf4b10992e9e7b2d74c2540",
    "data_batch_2.bin": "c0ba65cce70568cd57b4e03e9ac8d2a5367c1795",
    "data_batch_3.bin": "1dd00a74ab1d17a6e7d73e185b69dbf31242f295",
    "data_batch_4.bin": "aab85764eb3584312d3c7f65fd2fd016e36a258e",
    "data_batch_5.bin": "26e2849e66a845b7f1e4614ae70f4889ae604628",
    "test_batch.bin": "67eb016db431130d61cd03c7ad570b013799c88c",
}


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
# Finding or fetching a copy
def locate(root):
    """('bin'|'py', folder) of a CIFAR-10 copy in root or one level below it, or None."""
    root = Path(root)
    for fmt, folder, probe in (("bin", root, "data_batch_1.bin"),
                               ("bin", root / BIN_DIR, "data_batch_1.bin"),
                               ("py", root, "data_batch_1"), ("py", root / PY_DIR, "data_batch_1")):
        if (folder / probe).is_file():
            return fmt, folder
    return None


def prepare(root, url=None, md5=ARCHIVE_MD5, progress=True):
    """Return (format, folder) of a usable copy under root, downloading the archive if needed."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise UserError(f"--data-dir {root} is a file; point it at a folder")
    found = locate(root)
    if found:
        return found
    with _fetch_lock(root):  # another run may be fetching into the same folder
        return locate(root) or _fetch(root, url, md5, progress)


@contextlib.contextmanager
def _fetch_lock(root):
    """Hold root/.lock (making root if needed) while fetching; leave nothing this call made.

    The lock file is deleted on the way out while still locked, and the folders this call
    created are removed if the fetch failed and they are empty. A process that was waiting on
    the deleted file finds on waking that .lock is no longer the file it locked, and locks the
    current one instead (making root again if it was removed), so two processes never fetch at
    once.
    """
    path, made = root / ".lock", []
    while True:
        made += [p for p in (root, *root.parents) if not p.exists()]  # deepest first
        try:
            root.mkdir(parents=True, exist_ok=True)
            lock = open(path, "w")
        except FileNotFoundError:  # another process removed the folder it had made: again
            continue
        except OSError as e:
            _remove_empty(made)
            raise UserError(f"cannot create the data folder {root} to download CIFAR-10 into "
                            f"({e.strerror}); choose a writable --data-dir") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held = os.fstat(lock.fileno())
            current = os.stat(path)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                break
        except FileNotFoundError:  # deleted by the process that held it
            pass
        except BaseException:
            lock.close()
            raise
        lock.close()
    failed = True
    try:
        yield
        failed = False
    finally:
        path.unlink(missing_ok=True)  # while still locked: see above
        lock.close()
        if failed:
            _remove_empty(made)


def _remove_empty(folders):
    """Remove these folders, deepest first, as long as they are empty."""
    for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            return


def _fetch(root, url, md5, progress):
    archive = root / ARCHIVE_NAME
    if not archive.is_file():
        url = url or os.environ.get("SWISHTRAIN_CIFAR10_URL") or ARCHIVE_URL
        download(url, archive, md5, progress=progress)
    elif (found_md5 := _digest(archive, "md5")) != md5:
        raise UserError(f"{archive} has the wrong checksum (md5 {found_md5}, expected {md5}); "
                        "it is corrupt or not the CIFAR-10 binary archive: delete it and run again")
    extract(archive, root)
    found = locate(root)
    if not found:
        raise UserError(f"{archive} holds no {BIN_DIR}/ folder; it is not the CIFAR-10 binary "
                        f"archive: delete it and run again")
    return found


def download(url, dest, md5, progress=True):
    """Stream url to dest; dest appears (atomically) only once the md5 matches."""
    dest = Path(dest)
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot download CIFAR-10 from {url} ({reason}); if this machine is "
                        f"offline, download {ARCHIVE_URL} elsewhere and put {ARCHIVE_NAME} (or its "
                        f"extracted {BIN_DIR}/ folder) in {dest.parent}") from None

    def stream(tmp):
        from tqdm import tqdm
        total = int(response.headers.get("Content-Length") or 0) or None
        digest = hashlib.md5()
        with response, open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True,
                                                   desc=f"download {dest.name}", file=sys.stderr,
                                                   disable=not progress) as bar:
            while True:
                try:
                    chunk = response.read(1 << 20)
                except OSError as e:  # the network, not the disk: say so, not "cannot write"
                    raise UserError(f"download of {url} failed ({e}); run again to retry") \
                        from None
                if not chunk:
                    break
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise UserError(f"downloaded {url} but its checksum is wrong (md5 "
                            f"{digest.hexdigest()}, expected {md5}); the file was deleted; run "
                            "again, or download it by hand")

    atomic_write(dest, stream, then="run again")


def extract(archive, root):
    """Unpack a .tar.gz into root, refusing anything but plain files and folders inside root."""
    root = Path(root)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                path = PurePosixPath(m.name)
                if path.is_absolute() or ".." in path.parts:
                    raise UserError(f"refusing to extract {archive}: member {m.name!r} points "
                                    "outside the data folder")
                if not (m.isfile() or m.isdir()):
                    raise UserError(f"refusing to extract {archive}: member {m.name!r} is a link "
                                    "or device, which CIFAR-10 never contains")
            tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
            try:
                tar.extractall(tmp, members=members, filter="data")
                for extracted in tmp.rglob("*"):  # on disk before they get their final names
                    if extracted.is_file():
                        with open(extracted, "rb") as f:
                            os.fsync(f.fileno())
                for item in tmp.iterdir():
                    target = root / item.name
                    if not target.exists():
                        os.replace(item, target)
                fsync_dir(root)  # the renames themselves, durable before the data is read
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UserError(f"cannot extract {archive} ({e}); delete it and run again") from None


def _digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def checksum_mismatches(folder):
    """Names of binary batches in folder whose SHA-1 differs from the official release."""
    return [name for name, sha in BATCH_SHA1.items()
            if (Path(folder) / name).is_file() and _digest(Path(folder) / name, "sha1") != sha]


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
