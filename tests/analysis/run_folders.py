"""Run folders written by hand with known numbers, as training leaves them (for compare's tests)."""
import json

from train_cli.config import TrainConfig, to_dict
from train_cli.runfolder import format_metrics, selected_on


def curve(best, best_epoch, final, epochs):
    """Validation accuracies rising to `best` at `best_epoch` (1-based), then `final` after."""
    accs = [round(best - 0.05 * (best_epoch - e), 6) for e in range(1, best_epoch + 1)]
    return accs + [final] * (epochs - best_epoch)


def make_run(folder, val_accs, finished=True, seconds=10.0, test_acc=None, workers=1,
             legacy=False, **options):
    """A run folder as run.py leaves it, with the given per-epoch validation accuracies.

    test_acc given: validation is a held-out split (--val-split 5000 unless said) and the run
    has a test split. legacy: config.json and summary.json as older versions wrote them.
    """
    folder.mkdir(parents=True)
    options.setdefault("epochs", len(val_accs))
    options.setdefault("lr_steps", (2,))
    if test_acc is not None:
        options.setdefault("val_split", 5000)
    cfg = to_dict(TrainConfig(run_dir=str(folder), **options))
    val_is_test = cfg["val_split"] == 0
    val_images = 10000 if val_is_test else cfg["val_split"]
    info = {"swishtrain": "0.1.0", "config": cfg, "devices": ["cpu(0)"], "sessions": []}
    if not legacy:
        info.update(workers=workers,
                    global_batch_size=cfg["batch_size"] * max(1, len(cfg["gpus"])) * workers,
                    data=dict(source="/data", train_images=50000 - cfg["val_split"],
                              val_images=val_images, val_is_test=val_is_test,
                              test_images=10000 if test_acc is not None or val_is_test else None))
    (folder / "config.json").write_text(json.dumps(info))
    rows = [dict(epoch=e, lr=0.1, train_loss=2.0 / e, train_acc=acc, val_loss=1.0 - acc,
                 val_acc=acc, epoch_seconds=seconds, train_img_per_s=100.0)
            for e, acc in enumerate(val_accs, start=1)]
    (folder / "metrics.csv").write_text(format_metrics(rows))
    if finished:
        best = max(range(len(val_accs)), key=lambda i: val_accs[i])
        summary = dict(
            model=cfg["model"], best_val_acc=val_accs[best], best_epoch=best + 1,
            final_val_acc=val_accs[-1], val_images=val_images, val_is_test=val_is_test,
            test_acc=test_acc, test_images=None if test_acc is None else 10000,
            epochs=len(val_accs), total_seconds=seconds * len(val_accs))
        if not legacy:
            summary.update(workers=workers, peak_rss_mb=100.0,
                           selected_on=selected_on(val_is_test))
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def held_out_groups(tmp_path, relu_tests, swish_tests, **options):
    """Runs with a held-out validation split and a test split (test accs given per seed)."""
    for arm, tests, model in [("relu", relu_tests, "vgg16_bn"),
                              ("swish", swish_tests, "vgg16_bn_swish")]:
        for seed, test in enumerate(tests):
            make_run(tmp_path / arm / str(seed), [0.7, 0.8 + 0.01 * seed, 0.75], seed=seed,
                     test_acc=test, model=model, **options)


def table_row(table, label):
    """The cells after `label` in the table row of that group, split on spaces."""
    (line,) = [line for line in table.splitlines() if line.split("  ")[0].strip() == label]
    return line[len(label):].split()


def labels_and_sizes(result):
    """(label, number of runs) of each group of a Comparison."""
    return [(g.label, len(g.runs)) for g in result.groups]
