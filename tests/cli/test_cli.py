"""The swishtrain command end to end: options, run folders, messages and exit codes."""
import json

import pytest

from train_cli.model.spec import MODEL_NAMES
from train_cli.runfolder import read_metrics

from helpers import REPO, TINY, write_cifar


def test_group_help_explains_the_default_command(run_cli):
    result = run_cli("--help")
    assert result.exit_code == 0
    assert "`train` is the default command" in result.output
    for command in ("train", "resume", "models"):
        assert command in result.output


def test_train_help_documents_every_option(run_cli):
    from train_cli.config import FIELD_NAMES, flag
    result = run_cli("train", "--help")
    assert result.exit_code == 0
    for name in FIELD_NAMES:
        assert flag(name) in result.output
    assert "COMPLETED" in result.output  # --lr-steps semantics are spelled out


def test_a_short_run_prints_the_best_epoch_and_fills_the_run_folder(run_cli, cifar_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("--epochs", 2, "--data-dir", cifar_dir, "--run-dir", run_dir, *TINY)
    assert result.exit_code == 0, result.output
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.005])  # --lr-steps 1
    best = max(rows, key=lambda r: r["val_acc"])
    assert result.stdout.strip().splitlines()[-1] == \
        f"Best validation accuracy: {best['val_acc']:.4f} at epoch {best['epoch']}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_epoch"] == best["epoch"] and summary["val_images"] == 30
    assert summary["epochs"] == 2 and summary["test_acc"] is None
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["model"] == "vgg11_bn" and config["config"]["width"] == 0.125
    assert config["versions"]["mxnet"] == "1.9.1" and config["devices"] == ["cpu(0)"]
    assert (run_dir / "best.params").is_file() and (run_dir / "last.ckpt").is_file()
    assert "epoch   2/2" in result.stdout  # one plain line per epoch when not on a terminal


def test_training_learns_an_easy_synthetic_task(run_cli, tmp_path):
    # 300 images; seeds 0-3 reached 0.77-1.0 validation accuracy with these settings
    folder = write_cifar(tmp_path / "cifar", per_batch=60, test=100)
    result = run_cli("--epochs", 8, "--data-dir", folder, "--run-dir", tmp_path / "r",
                     "--model", "vgg11_bn", "--width", "0.125", "--batch-size", "20",
                     "--lr", "0.05", "--lr-steps", "5", "--augment", "none")
    assert result.exit_code == 0, result.output
    rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 1
    assert max(r["val_acc"] for r in rows) >= 0.6  # chance is 0.1


def test_val_split_reports_test_accuracy_of_the_best_epoch(run_cli, cifar_dir, tmp_path):
    result = run_cli("--epochs", 2, "--data-dir", cifar_dir, "--run-dir", tmp_path / "r",
                     "--val-split", 40, *TINY)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["val_images"] == 40 and summary["test_images"] == 30
    assert 0 <= summary["test_acc"] <= 1
    assert f"Test accuracy of the best epoch ({summary['best_epoch']}): " \
           f"{summary['test_acc']:.4f} on 30 images" in result.stdout


def test_config_file_with_flag_override(run_cli, cifar_dir, tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text('model = "vgg11"\nwidth = 0.125\nepochs = 3\nbatch-size = 20\n'
                      'lr-steps = [1, 2]\naugment = "flip"\n')
    result = run_cli("--config", config, "--epochs", 1, "--data-dir", cifar_dir,
                     "--run-dir", tmp_path / "r")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert saved["model"] == "vgg11" and saved["epochs"] == 1 and saved["lr_steps"] == [1, 2]
    assert saved["augment"] == "flip" and saved["lr"] == 0.1  # default kept
    assert "--lr-steps 1,2 >= --epochs 1" in result.stderr  # warned, not refused


def test_shipped_configs_are_valid():

    from train_cli.config import build_config
    configs = sorted(REPO.glob("configs/*.toml"))
    assert len(configs) >= 3
    for path in configs:
        assert build_config({}, path).model in MODEL_NAMES


@pytest.mark.parametrize("model", ["vgg16_bn", "vgg16_bn_swish"])
def test_blog_configs_reproduce_the_2018_script(model):
    """docs/REPRODUCING.md: the script's update_learning_rate set lr * 0.1**sum(steps < e) at
    the start of 0-based epoch e (steps 10,20,30), fed raw pixels, mirrored only, no shuffle."""

    from train_cli.config import build_config
    from train_cli.training.schedule import lr_at
    cfg = build_config({}, REPO / "configs" / f"blog-{model}.toml")
    script = [0.1 * 0.1 ** sum(1 for s in (10, 20, 30) if s < e) for e in range(40)]
    ours = [lr_at(e, cfg.lr, cfg.lr_steps, cfg.lr_factor) for e in range(cfg.epochs)]
    assert ours == pytest.approx(script, rel=1e-12)
    assert ours[10] == pytest.approx(0.1) and ours[11] == pytest.approx(0.01)  # epochs 11, 12
    assert (cfg.model, cfg.batch_size, cfg.gpus, cfg.momentum, cfg.wd) == \
        (model, 128, (), 0.9, 1e-4)
    assert (cfg.augment, cfg.shuffle, cfg.input_norm, cfg.val_split) == \
        ("flip", False, "none", 0)


def test_models_lists_names_with_parameter_counts(run_cli):
    result = run_cli("models")
    assert result.exit_code == 0
    lines = result.output.splitlines()[1:]
    assert [line.split()[0] for line in lines] == MODEL_NAMES
    counts = dict(line.split() for line in lines)
    assert counts["vgg16_bn"] == "33,646,666"


# -----------------------------------------------------------------------------
# Bad input: one line on stderr, exit code, no traceback, nothing written
BAD = [
    (["--model", "vgg17"], 2, "unknown model 'vgg17'"),
    (["--lr-steps", "10,x"], 2, "'x' is not an integer"),
    (["--lr-steps", "20,10"], 2, "strictly increasing"),
    (["--lr-steps", "0"], 2, "--lr-steps values must be at least 1"),
    (["--epochs", "0"], 2, "--epochs must be at least 1"),
    (["--epochs", "-3"], 2, "--epochs must be at least 1"),
    (["--epochs", "ten"], 2, "expected an integer"),
    (["--batch-size", "1", "--cpu-devices", "2"], 2, "smaller than --cpu-devices 2"),
    (["--gpus", "0,0"], 2, "lists a GPU twice"),
    (["--gpus", "0"], 2, "mxnet-cu"),
    (["--cpu-devices", "0"], 2, "--cpu-devices must be at least 1"),
    (["--width", "0"], 2, "--width must be positive"),
    (["--width", "0.001"], 2, "leaves the first layer without channels"),
    (["--lr", "0"], 2, "--lr must be positive"),
    (["--lr", "-0.1"], 2, "--lr must be positive"),
    (["--augment", "mixup"], 2, "not one of crop-flip, flip, none"),
    (["--seeds", "1,x"], 2,
     "Invalid value for '--seeds': 'x' is neither a seed nor a range like 1-10"),
    (["--no-such-option"], 2, "No such option '--no-such-option' (see 'swishtrain train --help')"),
]


def assert_one_line_error(result, code, message):
    assert result.exit_code == code, result.output
    assert message in result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, code, message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_options(run_cli, cifar_dir, tmp_path, args, code, message):
    result = run_cli("--data-dir", cifar_dir, "--run-dir", tmp_path / "r", "--width", "0.125",
                     *args)
    assert_one_line_error(result, code, message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("model = [unclosed", "is not valid TOML"),
    ('modle = "vgg11"', "unknown key 'modle' (did you mean 'model'?)"),
    ("epochs = \"ten\"", "key 'epochs': expected an integer"),
    ("lr-steps = 10", "expected comma-separated integers"),
])
def test_bad_config_files(run_cli, tmp_path, content, message):
    path = tmp_path / "exp.toml"
    if content is not None:
        path.write_text(content + "\n")
    assert_one_line_error(run_cli("--config", path), 2, message)


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "data_batch_5.bin").unlink(), "data_batch_5.bin is missing"),
    (lambda f: (f / "data_batch_1.bin").write_bytes(b"\1" * 100), "not a multiple of 3073"),
    (lambda f: (f / "test_batch.bin").write_bytes(bytes([12]) + b"\0" * 3072),
     "label 12; CIFAR-10 labels are 0-9"),
])
def test_bad_data(run_cli, tmp_path, damage, message):
    folder = write_cifar(tmp_path / "cifar")
    damage(folder)
    result = run_cli("--data-dir", folder, "--run-dir", tmp_path / "r", *TINY)
    assert_one_line_error(result, 1, message)
    assert not (tmp_path / "r").exists()


def test_offline_without_data_says_where_to_put_it(run_cli, tmp_path):
    result = run_cli("--data-dir", tmp_path / "empty", "--run-dir", tmp_path / "r", *TINY)
    assert_one_line_error(result, 1, "cannot download CIFAR-10")
    assert f"in {tmp_path / 'empty'}" in result.stderr


def test_non_empty_run_dir_is_refused_and_left_alone(run_cli, cifar_dir, tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("precious")
    result = run_cli("--data-dir", cifar_dir, "--run-dir", run_dir, *TINY)
    assert_one_line_error(result, 1, "is not empty")
    assert "--overwrite" in result.stderr
    result = run_cli("--data-dir", cifar_dir, "--run-dir", run_dir, "--overwrite", *TINY)
    assert_one_line_error(result, 1, "is not a folder swishtrain made")
    assert (run_dir / "notes.txt").read_text() == "precious"


def test_overwrite_replaces_an_earlier_run(run_cli, cifar_dir, tmp_path):
    args = ["--data-dir", cifar_dir, "--run-dir", tmp_path / "r", "--epochs", 1, *TINY]
    assert run_cli(*args).exit_code == 0
    assert run_cli(*args).exit_code == 1
    assert run_cli(*args, "--overwrite").exit_code == 0
    assert len(read_metrics(tmp_path / "r" / "metrics.csv")) == 1


def test_readme_documents_every_option_and_command():

    from train_cli.cli import cli
    from train_cli.config import FIELD_NAMES, flag
    readme = (REPO / "README.md").read_text()
    for name in FIELD_NAMES:
        assert f"`{flag(name)}" in readme, name
    for command in cli.commands:
        assert f"`{command}" in readme, command
