"""Finding a CIFAR-10 copy on disk, or fetching it: download (checksummed), extract (only plain
files inside the data folder), under a lock that two runs fetching into one folder share and
that nothing is left of when a fetch fails.
"""
import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from train_cli.atomic import atomic_write, fsync_dir
from train_cli.errors import UserError

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE_NAME = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
ARCHIVE_BYTES = 170_052_171
BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"
# SHA-1 of the official binary batches (the values MXNet's CIFAR10 dataset checks)
BATCH_SHA1 = {
    "data_batch_1.bin": "aadd24acce27caa71bf4b10992e9e7b2d74c2540",
    "data_batch_2.bin": "c0ba65cce70568cd57b4e03e9ac8d2a5367c1795",
    "data_batch_3.bin": "1dd00a74ab1d17a6e7d73e185b69dbf31242f295",
    "data_batch_4.bin": "aab85764eb3584312d3c7f65fd2fd016e36a258e",
    "data_batch_5.bin": "26e2849e66a845b7f1e4614ae70f4889ae604628",
    "test_batch.bin": "67eb016db431130d61cd03c7ad570b013799c88c",
}


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
