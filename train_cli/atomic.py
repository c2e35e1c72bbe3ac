"""The one atomic write of the package: a file appears whole or not at all.

Every file that matters (run-folder files, the downloaded archive, the compiled Swish library)
is written to a temporary name in the same folder, fsynced, then os.replace()d over the target,
and the folder is fsynced, so a crash at any instant leaves either the old file or the new one.
"""
import errno
import json
import os
import shutil
from pathlib import Path

from train_cli.errors import UserError, last_line


def atomic_write(path, write, then="resume the run"):
    """Create `path` through write(tmp_path); I/O errors become a UserError, tmp is removed.

    write() may raise anything; a UserError it raises passes through unchanged (after the
    temporary file is removed), so a caller can say what went wrong in its own words. `then`
    is what the user does once the disk has room again.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # e.g. the file system turned read-only: say what failed first
            pass
        # mx.nd.save reports a failed write as MXNetError; anything else is a bug, not I/O
        if not isinstance(e, OSError) and type(e).__name__ != "MXNetError":
            raise
        if isinstance(e, OSError) and e.errno == errno.ENOSPC or _disk_full(path.parent):
            raise UserError(f"no space left on the device while writing {path}; earlier files "
                            f"there are intact: free some space, then {then}") from None
        raise UserError(f"cannot write {path} ({_reason(e)}); earlier files there are "
                        "intact") from None


def atomic_write_bytes(path, data):
    """Atomically replace path's content with data."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path, obj):
    """Atomically write obj as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return last_line(error)


def fsync_dir(folder):
    """Make a folder's entries (a rename into it) durable; best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_full(folder):
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False
