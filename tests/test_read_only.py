"""A read-only file system (a bind mount made read-only in a private mount namespace): every
command that would write there stops in one line, before any slow work, and changes nothing."""
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from helpers import REPO, TINY, write_cifar


def read_only(folder, *args):
    """Run `swishtrain ARGS` with folder mounted read-only (the rest of the disk as it is)."""
    command = " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "train_cli", *args])
    script = (f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder} "
              f"&& exec {command}")
    return subprocess.run(["unshare", "--mount", "--", "sh", "-c", script], capture_output=True,
                          text=True, cwd=REPO, timeout=300, env=dict(os.environ,
                                                                      OMP_NUM_THREADS="1"))


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    """A data folder, and a folder (to be mounted read-only) holding a finished run."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1) here to mount a folder read-only")
    root = tmp_path_factory.mktemp("ro")
    data = write_cifar(root / "cifar", per_batch=40, test=30)
    run = root / "ro" / "done"
    done = subprocess.run([sys.executable, "-m", "train_cli", "--data-dir", str(data),
                           "--run-dir", str(run), *TINY, "--epochs", "2"], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    probe = subprocess.run(["unshare", "--mount", "--", "sh", "-c", f"mount --bind {root} {root}"],
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot make a private mount here: {probe.stderr.strip()}")
    (root / "ro" / "empty").mkdir()
    return root, data, run


def snapshot(folder):
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["new run", "empty run folder", "resume of a finished run",
                                  "extension", "compare --plot"])
def test_a_read_only_file_system_is_one_line_and_changes_nothing(disk, case):
    root, data, run = disk
    ro = root / "ro"
    args = {"new run": ["--data-dir", data, "--run-dir", ro / "new", *TINY],
            "empty run folder": ["--data-dir", data, "--run-dir", ro / "empty", *TINY],
            "resume of a finished run": ["resume", run, "--data-dir", data],
            "extension": ["resume", run, "--data-dir", data, "--epochs", 3],
            "compare --plot": ["compare", run, "--plot", ro / "curves.png"]}[case]
    before = snapshot(ro)
    done = read_only(ro, *args)
    errors = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert done.returncode == 1 and len(errors) == 1 and "Traceback" not in done.stderr, \
        done.stderr
    assert "Read-only file system" in errors[0] or "read-only file system" in errors[0]
    assert "epoch " not in done.stdout  # stopped before training
    assert snapshot(ro) == before


def test_a_file_system_that_turns_read_only_mid_write_reports_the_write(tmp_path):
    """The atomic write's cleanup (removing its temporary file) failed too, and its error hid
    the real one; now the write that failed is what is said."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1) here to mount a folder read-only")
    folder = tmp_path / "d"
    folder.mkdir()
    code = (
        "import subprocess, sys\n"
        "from train_cli.atomic import atomic_write\n"
        "from train_cli.errors import UserError\n"
        f"folder = {str(folder)!r}\n"
        "def write(tmp):\n"
        "    tmp.write_bytes(b'new')\n"
        "    subprocess.run(['mount', '-o', 'remount,ro,bind', folder, folder], check=True)\n"
        "try:\n"
        "    atomic_write(folder + '/f', write)\n"
        "except UserError as e:\n"
        "    print(e)\n")
    done = subprocess.run(["unshare", "--mount", "--", "sh", "-c",
                           f"mount --bind {folder} {folder} && exec {sys.executable} -c "
                           f"{shlex.quote(code)}"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.startswith(f"cannot write {folder / 'f'} (Read-only file system)"), \
        done.stdout
