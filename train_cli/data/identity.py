"""Whether a resumed run reads the data it was trained on: each split's size and sha256 as the
run's config.json recorded them (Cifar10.fingerprint), against the data loaded now.
"""
import shlex

from train_cli.errors import UsageError, UserError
from train_cli.runfolder import CONFIG

SPLIT_NAMES = ("train", "val", "test")


def check_same_data(folder, saved, data, warn=print):
    """Refuse to continue a run on other data than its own: each split's size and digest as
    config.json records them (runs begun before digests were recorded: sizes only, and a note).
    """
    recorded = saved.get("data") if isinstance(saved.get("data"), dict) else {}
    splits = recorded.get("splits")
    if splits is None:  # an older run: the sizes it recorded, no digests
        splits = {}
        for name in SPLIT_NAMES:
            if f"{name}_images" in recorded:  # None: the run had no such split
                count = recorded[f"{name}_images"]
                splits[name] = None if count is None else {"images": count}
        digests = False
    else:
        if not isinstance(splits, dict) or \
                not all(isinstance(v, dict) for v in splits.values()):
            raise UserError(f"{folder.file(CONFIG)} is corrupt (its data splits are not a table); "
                            "the data the run was trained on cannot be checked")
        splits = {name: splits.get(name) for name in SPLIT_NAMES}
        digests = True
    current = data.fingerprint
    names = {"train": "training", "val": "validation", "test": "test"}
    if data.val_is_test:  # one split, checked once
        names.pop("test")
        names["val"] = "validation (test)"
    differences = []
    for name, label in names.items():
        if name not in splits:  # not recorded
            continue
        was, now = splits[name], current.get(name)
        was_n, now_n = (was or {}).get("images"), (now or {}).get("images")
        if was_n != now_n:
            differences.append(f"its {label} split has {_images(now_n)} where the run's had "
                               f"{_images(was_n)}")
        elif was and was.get("sha256") and was["sha256"] != now["sha256"]:
            differences.append(f"its {label} split has as many images ({now_n:,}) but other ones")
    was_folder, now_folder = _data_folder(recorded.get("source")), _data_folder(data.source)
    if differences:
        where = f"{now_folder} is not the data {folder} was trained on: {'; '.join(differences)}"
        if was_folder and was_folder != now_folder:
            raise UsageError(f"{where}; resume it with the data it was trained on: "
                             f"--data-dir {shlex.quote(was_folder)}")
        raise UserError(f"{where}; the data changed since the run was trained: restore the "
                        "files it was trained on, or start a new run")
    if not digests:
        warn(f"note: {folder} was begun before swishtrain recorded a digest of its data, so the "
             f"images in {now_folder} could not be checked to be the ones it was trained on "
             "(only their numbers)")


def _images(count):
    return "no images" if count is None else \
        f"{count:,} images" if isinstance(count, int) else f"{count!r} images"


def _data_folder(source):
    """The folder of a data source as load_cifar10 describes it ("folder (test: ...)")."""
    return str(source).split(" (test: ")[0] if source else ""
