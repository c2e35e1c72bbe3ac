"""`swishtrain evaluate`: a real tiny run's saved weights reproduce the accuracies it recorded."""
import json
import re
import shutil

import pytest

from train_cli.runfolder import read_metrics

from helpers import TINY


def train(run_cli, cifar_dir, run_dir, *extra):
    result = run_cli("--epochs", 2, "--data-dir", cifar_dir, "--run-dir", run_dir, *TINY, *extra)
    assert result.exit_code == 0, result.output
    return json.loads((run_dir / "summary.json").read_text()), read_metrics(run_dir / "metrics.csv")


def evaluate(run_cli, run_dir, *args):
    result = run_cli("evaluate", run_dir, *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_evaluate_reproduces_the_recorded_validation_accuracy(run_cli, cifar_dir, tmp_path):
    run_dir = tmp_path / "run"
    summary, rows = train(run_cli, cifar_dir, run_dir)
    best = rows[summary["best_epoch"] - 1]
    assert summary["val_is_test"] and summary["val_images"] == 30

    line = evaluate(run_cli, run_dir)  # default: best.params on the test split
    head, loss, tail = re.fullmatch(r"(.*) \(loss (\S+); float32 on cpu\(0\)\)(.*)", line).groups()
    assert head == f"test accuracy of best.params: {summary['best_val_acc']:.4f} on 30 images"
    assert float(loss) == pytest.approx(best["val_loss"], abs=1e-4)
    assert tail == " (the run validated on the test split)"

    from train_cli.analysis.evaluate import evaluate_run
    result = evaluate_run(run_dir, split="test")
    assert result.accuracy == summary["best_val_acc"] and result.images == 30
    assert result.loss == pytest.approx(best["val_loss"], rel=1e-5)  # csv keeps 6 digits
    last = evaluate_run(run_dir, split="val", params="last")
    assert last.params_file == "last.ckpt" and last.images == 30
    assert last.accuracy == summary["final_val_acc"]
    assert evaluate_run(run_dir, split="train").images == 200  # every image once, no drops


def test_evaluate_uses_the_runs_held_out_split(run_cli, cifar_dir, tmp_path):
    run_dir = tmp_path / "run"
    summary, _ = train(run_cli, cifar_dir, run_dir, "--val-split", 40)
    assert evaluate(run_cli, run_dir, "--split", "val").startswith(
        f"val accuracy of best.params: {summary['best_val_acc']:.4f} on 40 images")
    assert evaluate(run_cli, run_dir, "--split", "test").startswith(
        f"test accuracy of best.params: {summary['test_acc']:.4f} on 30 images")
    assert " 160 images " in evaluate(run_cli, run_dir, "--split", "train")

    # the data folder moved: the run's own data_dir fails, --data-dir finds it
    moved = tmp_path / "moved"
    shutil.move(cifar_dir, moved)
    result = run_cli("evaluate", run_dir)
    assert result.exit_code == 1 and "cannot download CIFAR-10" in result.stderr
    assert "on 30 images" in evaluate(run_cli, run_dir, "--data-dir", moved)

    # a damaged weights file is a one-line error, not a traceback
    (run_dir / "best.params").write_bytes(b"not parameters")
    result = run_cli("evaluate", run_dir, "--data-dir", moved)
    assert result.exit_code == 1, result.output
    assert "best.params cannot be loaded into this run's vgg11_bn network (Check failed" \
        in result.stderr
    assert_one_line_error(result)


@pytest.mark.parametrize("setup, args, code, message", [
    (lambda d: None, [], 1, "does not exist"),
    (lambda d: d.mkdir(), [], 1, "is not a swishtrain run folder (no config.json)"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"config": {"model": "vgg11"}}')),
     [], 1, "best.params is missing (no epoch has completed yet)"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"config": {"model": "vgg11"}}')),
     ["--params", "last"], 1, "last.ckpt is missing (try --params best)"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"config": {"epochs": "x"}}')),
     [], 1, "is not a valid swishtrain config"),
    (lambda d: None, ["--split", "holdout"], 2, "'holdout' is not one of 'test', 'val', 'train'"),
])
def test_evaluate_errors(run_cli, tmp_path, setup, args, code, message):
    run_dir = tmp_path / "run"
    setup(run_dir)
    result = run_cli("evaluate", run_dir, *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert_one_line_error(result)


def assert_one_line_error(result):
    # the synthetic data differs from the official files, so loading it warns first
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr


def test_evaluate_help(run_cli):
    result = run_cli("evaluate", "--help")
    assert result.exit_code == 0
    for option in ("--split", "--data-dir", "--params", "Example:"):
        assert option in result.output


def test_any_run_evaluates_anywhere_float16_weights_in_float32_on_the_cpu(
        run_cli, cifar_dir, tmp_path):
    """A run trained on GPUs in float16 under `launch` (its config.json says so; its weights are
    float16): evaluate rebuilds it on one CPU device in float32, with a local KVStore."""
    import mxnet as mx

    from train_cli.analysis.evaluate import evaluate_run
    run_dir = tmp_path / "run"
    summary, _ = train(run_cli, cifar_dir, run_dir)
    reference = evaluate_run(run_dir, split="test")
    best = mx.nd.load(str(run_dir / "best.params"))
    mx.nd.save(str(run_dir / "best.params"), {k: v.astype("float16") for k, v in best.items()})
    saved = json.loads((run_dir / "config.json").read_text())
    saved["config"].update(gpus=[0, 1], dtype="float16", kvstore="dist_sync")
    (run_dir / "config.json").write_text(json.dumps(saved))
    moved = evaluate_run(run_dir, split="test")
    assert moved.dtype == "float32" and moved.device == "cpu(0)" and moved.images == 30
    # float16 rounding of the weights may move a prediction, not more
    assert abs(moved.accuracy - reference.accuracy) <= 1 / 30 + 1e-9
    line = evaluate(run_cli, run_dir, "--cpu-devices", 2)
    assert "float32 on cpu(0) and 1 more" in line
    result = run_cli("evaluate", run_dir, "--gpus", "0")  # this machine has no GPU
    assert result.exit_code == 2 and "--gpus needs an MXNet build with CUDA" in result.stderr


def test_a_bfloat16_run_evaluates_in_float32_on_any_devices(run_cli, cifar_dir, tmp_path):
    """bfloat16 runs keep float32 weights, and bfloat16 itself needs a CPU that has it: evaluate
    runs them in float32 on the CPU, and with --gpus gets as far as the GPU check (this machine
    has no GPU), not a refusal of the dtype."""
    from train_cli.analysis.evaluate import evaluate_run
    run_dir = tmp_path / "run"
    train(run_cli, cifar_dir, run_dir)
    reference = evaluate_run(run_dir, split="test")
    saved = json.loads((run_dir / "config.json").read_text())
    saved["config"].update(dtype="bfloat16")
    (run_dir / "config.json").write_text(json.dumps(saved))
    moved = evaluate_run(run_dir, split="test")
    assert moved.dtype == "float32" and (moved.accuracy, moved.loss) == (reference.accuracy,
                                                                         reference.loss)
    result = run_cli("evaluate", run_dir, "--gpus", "0")
    assert result.exit_code == 2 and "--gpus needs an MXNet build with CUDA" in result.stderr
