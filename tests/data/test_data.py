"""CIFAR-10 discovery, parsing, verification, download and safe extraction."""
import hashlib
import http.server
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from train_cli.data import cifar10 as data
from train_cli.errors import UserError

from helpers import make_tar_gz, synthetic_split, write_bin_batch, write_cifar


def test_binary_batch_round_trip(tmp_path):
    images, labels = synthetic_split(7)
    write_bin_batch(tmp_path / "data_batch_1.bin", images, labels)
    split = data.read_batch("bin", tmp_path, "data_batch_1")
    assert split.images.dtype == np.uint8 and split.images.shape == (7, 3, 32, 32)
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)


def test_python_pickles_load_like_the_binary_release(tmp_path):
    write_cifar(tmp_path / "bin", fmt="bin")
    write_cifar(tmp_path / "py" / data.PY_DIR, fmt="py")
    a = data.load_cifar10(tmp_path / "bin", warn=lambda m: None)
    b = data.load_cifar10(tmp_path / "py", warn=lambda m: None)  # parent of cifar-10-batches-py
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.val.labels, b.val.labels)
    assert len(a.train) == 200 and a.val_is_test


class RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    folder = write_cifar(tmp_path / data.PY_DIR, fmt="py")
    evil = RunsCode()
    evil.target = str(tmp_path / "pwned")
    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": evil, "labels": []}))
    with pytest.raises(UserError, match="not a plain CIFAR-10 pickle"):
        data.load_cifar10(tmp_path, warn=lambda m: None)
    assert not (tmp_path / "pwned").exists()


def test_data_dir_may_be_the_folder_or_its_parent(tmp_path):
    write_cifar(tmp_path / data.BIN_DIR)
    assert data.locate(tmp_path) == ("bin", tmp_path / data.BIN_DIR)
    assert data.locate(tmp_path / data.BIN_DIR) == ("bin", tmp_path / data.BIN_DIR)


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
    return make_tar_gz({f"{data.BIN_DIR}/{p.name}": p.read_bytes()
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
    fmt, folder = data.prepare(root, url=base + "/cifar-10-binary.tar.gz",
                               md5=hashlib.md5(archive).hexdigest(), progress=False)
    assert (fmt, folder) == ("bin", root / data.BIN_DIR)
    assert (root / data.ARCHIVE_NAME).read_bytes() == archive
    assert not list(root.glob(".*.tmp")) and not list(root.glob(".extract-*"))  # no leftovers
    assert len(data.read_batch(fmt, folder, "test_batch")) == 2


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, http_server):
    files, base = http_server
    files["/a.tgz"] = cifar_archive(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(UserError, match="checksum is wrong"):
        data.prepare(root, url=base + "/a.tgz", md5=data.ARCHIVE_MD5, progress=False)
    assert [p.name for p in root.iterdir()] == [".lock"]  # no archive, no partial download


def test_offline_error_says_where_to_put_the_archive(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=r"put cifar-10-binary.tar.gz .* in .*data"):
        data.prepare(tmp_path / "data", url=f"http://127.0.0.1:{port}/x.tgz", progress=False)


def test_archive_placed_by_hand_is_used(tmp_path):
    archive = cifar_archive(tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    (root / data.ARCHIVE_NAME).write_bytes(archive)
    assert data.prepare(root, md5=hashlib.md5(archive).hexdigest())[1] == root / data.BIN_DIR


def test_corrupt_archive_placed_by_hand_is_reported(tmp_path):
    archive = cifar_archive(tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    (root / data.ARCHIVE_NAME).write_bytes(archive[:-10])
    with pytest.raises(UserError, match="wrong checksum.*delete it"):
        data.prepare(root, md5=hashlib.md5(archive).hexdigest())


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
        data.extract(archive, root)
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
