"""Several seeds of one configuration, run one after another into RUN_DIR/seed-<N>/.

One run is one sample: the 2018 comparison rested on a single run per activation. A study runs
the same options with several seeds so `swishtrain compare` can put an interval on the answer.
"""
import dataclasses
import statistics
from pathlib import Path

from train_cli import run as single
from train_cli.errors import UserError
from train_cli.progress import echo
from train_cli.rundir import CONFIG, SUMMARY, RunDir


def seed_dir(base, seed):
    return Path(base) / f"seed-{seed}"


def start_seeds(cfg, seeds, overwrite=False, progress_bar=None):
    """Train cfg once per seed; return the summaries."""
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds lists a seed twice ({','.join(map(str, seeds))})", exit_code=2)
    base = Path(cfg.run_dir or single.default_run_dir(cfg.model))
    RunDir.check_new(base, overwrite)
    summaries = []
    for i, seed in enumerate(seeds, 1):
        echo(f"=== seed {seed} ({i}/{len(seeds)}) -> {seed_dir(base, seed)}")
        summaries.append(single.start(
            dataclasses.replace(cfg, seed=seed, run_dir=str(seed_dir(base, seed))),
            overwrite=False, progress_bar=progress_bar))
    report(seeds, summaries, base)
    return summaries


def seed_runs(folder):
    """The seed-<N> run folders of a study folder, in seed order (empty if it is not one)."""
    folder = Path(folder)
    if (folder / CONFIG).is_file() or not folder.is_dir():
        return []
    runs = [p for p in folder.glob("seed-*") if (p / CONFIG).is_file()]
    return sorted(runs, key=lambda p: int(p.name.split("-", 1)[1]))


def is_finished(path):
    """True when a run folder has its summary for all the epochs it was asked for."""
    if not (path / SUMMARY).is_file():
        return False
    run = RunDir(path)
    return run.read_json(SUMMARY).get("epochs") == run.read_json(CONFIG)["config"]["epochs"]


def report(seeds, summaries, base):
    """Per-seed best accuracies and their mean; the last line states the study's result."""
    accs = [s["best_val_acc"] for s in summaries]
    for seed, s in zip(seeds, summaries):
        echo(f"seed {seed}: best validation accuracy {s['best_val_acc']:.4f} at epoch "
             f"{s['best_epoch']}")
    spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
    echo(f"Study folder: {base}  (compare it with: swishtrain compare {base} ...)")
    echo(f"Best validation accuracy: mean {statistics.mean(accs):.4f}{spread} over "
         f"{len(accs)} seed(s)")
