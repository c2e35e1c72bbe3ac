"""CIFAR-10 discovery, parsing, verification, download and safe extraction."""
import hashlib
import http.server
import pickle
import socket
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from train_cli.data import cifar10 as data
from train_cli.data import fetch
from train_cli.errors import UserError

from helpers import TINY, make_tar_gz, synthetic_split, write_bin_batch, write_cifar


def test_binary_batch_round_trip(tmp_path):
    images, labels = synthetic_split(7)
    write_bin_batch(tmp_path / "data_batch_1.bin", images, labels)
    split = data.read_batch("bin", tmp_path, "data_batch_1")
    assert split.images.dtype == np.uint8 and split.images.shape == (7, 3, 32, 32)
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)


def test_python_pickles_load_like_the_binary_release(tmp_path):
    write_cifar(tmp_path / "bin", fmt="bin")
    write_cifar(tmp_path / "py" / fetch.PY_DIR, fmt="py")
    a = data.load_cifar10(tmp_path / "bin", warn=lambda m: None)
    b = data.load_cifar10(tmp_path / "py", warn=lambda m: None)  # parent of cifar-10-batches-py
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.val.labels, b.val.labels)
    assert len(a.train) == 200 and a.val_is_test


class RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    folder = write_cifar(tmp_path / fetch.PY_DIR, fmt="py")
    evil = RunsCode()
    evil.target = str(tmp_path / "pwned")
    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": evil, "labels": []}))
    with pytest.raises(UserError, match="not a plain CIFAR-10 pickle"):
        data.load_cifar10(tmp_path, warn=lambda m: None)
    assert not (tmp_path / "pwned").exists()


def test_data_dir_may_be_the_folder_or_its_parent(tmp_path):
    write_cifar(tmp_path / fetch.BIN_DIR)
    assert fetch.locate(tmp_path) == ("bin", tmp_path / fetch.BIN_DIR)
    assert fetch.locate(tmp_path / fetch.BIN_DIR) == ("bin", tmp_path / fetch.BIN_DIR)


def test_any_number_of_records_per_batch(tmp_path):
    write_cifar(tmp_path, per_batch=3, test=1)
    d = data.load_cifar10(tmp_path, warn=lambda m: None)
    assert len(d.train) == 15 and len(d.val) == 1


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "data_batch_3.bin").unlink(), "data_batch_3.bin is missing"),
    (lambda f: (f / "data_batch_2.bin").write_bytes(b"\0" * 3075), "not a multiple of 3073"),
    (lambda f: write_bin_batch(f / "data_batch_4.bin", *(lambda im, lb: (im, lb + 10))(
        *synthetic_split(2))), "label 1[0-9]; CIFAR-10 labels are 0-9"),
    (lambda f: (f / "test_batch.bin").unlink(), "--val-split"),
])
def test_damaged_copies_are_reported(tmp_path, damage, message):
    folder = write_cifar(tmp_path)
    damage(folder)
    with pytest.raises(UserError, match=message):
        data.load_cifar10(folder, warn=lambda m: None)


def test_val_split_holds_out_the_same_training_images_every_time(tmp_path):
    write_cifar(tmp_path)
    a = data.load_cifar10(tmp_path, val_split=50, warn=lambda m: None)
    b = data.load_cifar10(tmp_path, val_split=50, warn=lambda m: None)
    assert len(a.train) == 150 and len(a.val) == 50 and not a.val_is_test
    assert len(a.test) == 30
    np.testing.assert_array_equal(a.val.images, b.val.images)
    # held-out images are not in the training set
    train_rows = {img.tobytes() for img in a.train.images}
    assert not any(img.tobytes() in train_rows for img in a.val.images)
    with pytest.raises(UserError, match="leaves no training images"):
        data.load_cifar10(tmp_path, val_split=200, warn=lambda m: None)


def test_test_split_is_carved_from_training_images_disjoint_from_validation(tmp_path):
    write_cifar(tmp_path, per_batch=40, test=30)
    rows = {img.tobytes() for img in data.load_cifar10(tmp_path, warn=lambda m: None).train.images}
    d = data.load_cifar10(tmp_path, val_split=40, test_split=30, warn=lambda m: None)
    assert (len(d.train), len(d.val), len(d.test)) == (130, 40, 30) and not d.val_is_test
    parts = [{img.tobytes() for img in s.images} for s in (d.train, d.val, d.test)]
    assert parts[0] | parts[1] | parts[2] == rows  # the 200 training images, each once ...
    assert sum(map(len, parts)) == 200  # ... in exactly one split; the test batch is not used
    assert "held-out training images" in d.source
    # the validation images do not move when a test split is carved as well
    only_val = data.load_cifar10(tmp_path, val_split=40, warn=lambda m: None)
    np.testing.assert_array_equal(only_val.val.images, d.val.images)
    # without --val-split the carved test split is what validation runs on (and says so)
    e = data.load_cifar10(tmp_path, test_split=30, warn=lambda m: None)
    assert e.val_is_test and e.val is e.test and len(e.train) == 170
    with pytest.raises(UserError, match="--val-split 100 with --test-split 100 leaves no"):
        data.load_cifar10(tmp_path, val_split=100, test_split=100, warn=lambda m: None)


def test_checksum_mismatch_is_a_warning(tmp_path):
    write_cifar(tmp_path)
    warnings = []
    data.load_cifar10(tmp_path, warn=warnings.append)
    assert len(warnings) == 1 and "differ from the official CIFAR-10 files" in warnings[0]


# -----------------------------------------------------------------------------
# Download: a server on 127.0.0.1 serves a synthetic archive
def cifar_archive(tmp_path):
    folder = write_cifar(tmp_path / "src", per_batch=4, test=2)
    return make_tar_gz({f"{fetch.BIN_DIR}/{p.name}": p.read_bytes()
                        for p in sorted(folder.iterdir())})


@pytest.fixture
def http_server():
    """Serve {path: bytes} on 127.0.0.1; yields (register, base_url)."""
    files = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield files, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_verifies_and_extracts(tmp_path, http_server):
    files, base = http_server
    archive = cifar_archive(tmp_path)
    files["/cifar-10-binary.tar.gz"] = archive
    root = tmp_path / "data"
    fmt, folder = fetch.prepare(root, url=base + "/cifar-10-binary.tar.gz",
                               md5=hashlib.md5(archive).hexdigest(), progress=False)
    assert (fmt, folder) == ("bin", root / fetch.BIN_DIR)
    assert (root / fetch.ARCHIVE_NAME).read_bytes() == archive
    assert not list(root.glob(".*.tmp")) and not list(root.glob(".extract-*"))  # no leftovers
    assert len(data.read_batch(fmt, folder, "test_batch")) == 2


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, http_server):
    files, base = http_server
    files["/a.tgz"] = cifar_archive(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(UserError, match="checksum is wrong"):
        fetch.prepare(root, url=base + "/a.tgz", md5=fetch.ARCHIVE_MD5, progress=False)
    assert not root.exists()  # no archive, no partial download, no lock, no folder made for it


def test_offline_error_says_where_to_put_the_archive(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=r"put cifar-10-binary.tar.gz .* in .*data"):
        fetch.prepare(tmp_path / "data", url=f"http://127.0.0.1:{port}/x.tgz", progress=False)


def test_archive_placed_by_hand_is_used(tmp_path):
    archive = cifar_archive(tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    (root / fetch.ARCHIVE_NAME).write_bytes(archive)
    assert fetch.prepare(root, md5=hashlib.md5(archive).hexdigest())[1] == root / fetch.BIN_DIR


def test_corrupt_archive_placed_by_hand_is_reported(tmp_path):
    archive = cifar_archive(tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    (root / fetch.ARCHIVE_NAME).write_bytes(archive[:-10])
    with pytest.raises(UserError, match="wrong checksum.*delete it"):
        fetch.prepare(root, md5=hashlib.md5(archive).hexdigest())


# -----------------------------------------------------------------------------
# Hostile archives
def _tar_with(tmp_path, add):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return path


def _file(tar, name, data_=b"x"):
    import io
    info = tarfile.TarInfo(name)
    info.size = len(data_)
    tar.addfile(info, io.BytesIO(data_))


def _link(tar, name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


def _device(tar, name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    tar.addfile(info)


@pytest.mark.parametrize("add, message", [
    (lambda t: _file(t, "/tmp/swishtrain-evil-abs"), "outside the data folder"),
    (lambda t: _file(t, "cifar-10-batches-bin/../../evil"), "outside the data folder"),
    (lambda t: _link(t, "cifar-10-batches-bin/data_batch_1.bin", "/etc/passwd"), "link or device"),
    (lambda t: _link(t, "cifar-10-batches-bin/hard", "/etc/passwd", tarfile.LNKTYPE),
     "link or device"),
    (lambda t: _device(t, "cifar-10-batches-bin/dev"), "link or device"),
])
def test_hostile_archive_members_are_refused(tmp_path, add, message):
    root = tmp_path / "root" / "data"
    root.mkdir(parents=True)
    archive = _tar_with(tmp_path, lambda t: (_file(t, "cifar-10-batches-bin/ok"), add(t)))
    before = set(tmp_path.rglob("*"))
    with pytest.raises(UserError, match=message):
        fetch.extract(archive, root)
    assert set(tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not Path("/tmp/swishtrain-evil-abs").exists()


def test_a_version_1_run_holds_out_the_images_it_held_out_then(tmp_path):
    """swishtrain 0.1 cut held-out splits from default_rng(2018)'s permutation; evaluating such a
    run must use those images, and a current run its own tagged stream."""
    write_cifar(tmp_path)
    full = data.load_cifar10(tmp_path, warn=lambda m: None).train
    old = data.load_cifar10(tmp_path, val_split=50, warn=lambda m: None, streams_version=1)
    legacy = np.sort(np.random.default_rng(2018).permutation(len(full))[-50:])
    np.testing.assert_array_equal(old.val.images, full.images[legacy])
    new = data.load_cifar10(tmp_path, val_split=50, warn=lambda m: None)
    assert not np.array_equal(new.val.images, old.val.images)


# -----------------------------------------------------------------------------
# Files that look like CIFAR-10 but are not: one UserError naming the file and the fix
def _pickled_batch(folder, **changes):
    """Rewrite folder's data_batch_2 pickle with some of its entries replaced."""
    path = folder / "data_batch_2"
    batch = pickle.loads(path.read_bytes())
    batch.update(changes)
    path.write_bytes(pickle.dumps(batch, protocol=2))


BAD_PICKLES = {
    "text labels": (dict(labels=[str(i % 10) for i in range(40)]), r"has label '0' \(a str\)"),
    "fractional labels": (dict(labels=[i % 10 + 0.5 for i in range(40)]),
                          r"has label 0.5 \(a float\)"),
    "boolean labels": (dict(labels=[True] * 40), r"has label True \(a bool\)"),
    "huge labels": (dict(labels=[2 ** 70] * 40), "has label 1180591620717411303424;"),
    "nested labels": (dict(labels=[[1, 2]] * 40), r"has label \[1, 2\] \(a list\)"),
    "labels a string": (dict(labels="0123456789" * 4), "labels that are a str, not a list"),
    "labels None": (dict(labels=None), "labels that are a NoneType"),
    "labels out of range": (dict(labels=[10] * 40), "has label 10; CIFAR-10 labels are"),
    "labels a 2-d array": (dict(labels=np.zeros((40, 1), np.int64)),
                           r"labels that are a ndarray of shape \(40, 1\)"),
    "too few labels": (dict(labels=[1] * 39), "holds 40 images but 39 labels"),
    "int64 pixels": (dict(data=np.zeros((40, 3072), np.int64)),
                     r"holds int64 data of shape \(40, 3072\); a CIFAR-10 batch holds uint8"),
    "flat pixels": (dict(data=np.zeros(40 * 3072, np.uint8)), r"uint8 data of shape \(122880,\)"),
    "pixels a list": (dict(data=[[0] * 3072] * 40), "holds data of type list"),
}


@pytest.mark.parametrize("case", BAD_PICKLES)
def test_pickled_batch_with_wrong_labels_or_pixels_is_reported(tmp_path, case):
    changes, message = BAD_PICKLES[case]
    folder = write_cifar(tmp_path / fetch.PY_DIR, fmt="py")
    _pickled_batch(folder, **changes)
    with pytest.raises(UserError, match=message) as error:
        data.load_cifar10(tmp_path, warn=lambda m: None)
    assert str(error.value).startswith(str(folder / "data_batch_2"))  # names the file
    assert f"delete {folder} so that swishtrain downloads CIFAR-10 again" in str(error.value)


def test_pickled_labels_may_be_numpy_integers(tmp_path):
    folder = write_cifar(tmp_path / fetch.PY_DIR, fmt="py")
    labels = np.arange(40) % 10
    _pickled_batch(folder, labels=labels.astype(np.uint8))  # an array
    np.testing.assert_array_equal(data.read_batch("py", folder, "data_batch_2").labels, labels)
    _pickled_batch(folder, labels=list(labels.astype(np.int64)))  # a list of numpy scalars
    np.testing.assert_array_equal(data.read_batch("py", folder, "data_batch_2").labels, labels)


@pytest.mark.parametrize("fmt, name", [("bin", "data_batch_3.bin"), ("py", "data_batch_3")])
def test_empty_batch_file_says_it_is_empty_and_how_to_get_it_again(tmp_path, fmt, name):
    folder = write_cifar(tmp_path / "cifar", fmt=fmt)
    (folder / name).write_bytes(b"")
    with pytest.raises(UserError) as error:
        data.load_cifar10(folder, warn=lambda m: None)
    assert str(error.value) == (
        f"{folder / name} is empty (0 bytes): a download or copy of it was cut short; replace it "
        f"with a good copy, or delete {folder} so that swishtrain downloads CIFAR-10 again")


@pytest.mark.parametrize("content", [b"\x80\x02}q\x00(X\x04\x00\x00\x00data", b"\x80",
                                     b"not a pickle at all"])
def test_truncated_or_garbage_pickle_is_reported(tmp_path, content):
    folder = write_cifar(tmp_path / fetch.PY_DIR, fmt="py")
    (folder / "data_batch_4").write_bytes(content)
    with pytest.raises(UserError, match="data_batch_4 is truncated or not a pickle .*downloads "
                                        "CIFAR-10 again"):
        data.load_cifar10(tmp_path, warn=lambda m: None)


def _one_line_error(result, code, message):
    assert result.exit_code == code, result.output
    assert message in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", ["text labels", "nested labels", "labels None", "empty"])
def test_bad_batch_files_are_one_line_errors_from_the_cli(run_cli, tmp_path, case):
    folder = write_cifar(tmp_path / "cifar" / fetch.PY_DIR, fmt="py")
    if case == "empty":
        (folder / "data_batch_2").write_bytes(b"")
    else:
        _pickled_batch(folder, **BAD_PICKLES[case][0])
    result = run_cli("--data-dir", tmp_path / "cifar", "--run-dir", tmp_path / "r", *TINY,
                     "--epochs", 1)
    _one_line_error(result, 1, f"{folder / 'data_batch_2'} ")
    assert not (tmp_path / "r").exists()


# -----------------------------------------------------------------------------
# A failed download leaves nothing behind, and its lock file never lets two fetches overlap
def test_failed_download_leaves_no_lock_and_no_folder_it_made(tmp_path, run_cli):
    root = tmp_path / "new" / "data"  # neither folder exists: swishtrain makes both
    with pytest.raises(UserError, match="cannot download CIFAR-10"):
        fetch.prepare(root, progress=False)  # $SWISHTRAIN_CIFAR10_URL: a closed port
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "mine"
    existing.mkdir()  # the user's folder stays, empty as it was
    with pytest.raises(UserError, match="cannot download CIFAR-10"):
        fetch.prepare(existing, progress=False)
    assert existing.is_dir() and list(existing.iterdir()) == []
    result = run_cli("--data-dir", root, "--run-dir", tmp_path / "r", *TINY)
    _one_line_error(result, 1, "cannot download CIFAR-10")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_deleting_the_lock_file_never_lets_two_fetches_run_at_once(tmp_path):
    root = tmp_path / "data"
    inside, overlaps = [], []

    def fetching(name, seconds):
        with fetch._fetch_lock(root):
            overlaps.extend((name, other) for other in inside)
            inside.append(name)
            time.sleep(seconds)
            inside.remove(name)

    a = threading.Thread(target=fetching, args=("a", 0.6))
    a.start()
    while not inside:
        assert a.is_alive(), "a could not take the lock"
        time.sleep(0.01)
    b = threading.Thread(target=fetching, args=("b", 0.6))
    b.start()
    time.sleep(0.3)  # b has opened a's .lock and waits on it
    a.join()  # a deleted that file on the way out
    fetching("c", 0.6)  # a newcomer locks a new .lock, while b holds the deleted one's lock
    b.join()
    assert overlaps == []
    assert list(root.iterdir()) == []  # the last one out deleted the lock file
