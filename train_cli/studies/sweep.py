"""A study: a grid of cells (model x seed), each a run in a fixed folder; executors only decide
where a cell runs.

    start    make or continue STUDY from a grid: a new study gets its manifest before any cell
             runs; the same command again continues it (finished cells left alone), a grid with
             more seeds or models adds cells, other options are refused
    resume   continue STUDY as its manifest says (`swishtrain resume STUDY`), --epochs extends
    run      hand the unfinished cells to an executor: this process, one after another (--jobs
             1, the default: progress bars, Ctrl-C stops at a batch), a local pool (--jobs N), or
             a Slurm job array (--executor slurm)
`train --seeds` is a sweep of one model (folders seed-<N>/, as studies always had).
"""
from dataclasses import replace

from train_cli.errors import UsageError
from train_cli.runfolder import STUDY, SUMMARY, RunFolder
from train_cli.studies import cells as cell_runs
from train_cli.studies import manifest as manifests
from train_cli.training import run as single
from train_cli.training.progress import echo
from train_cli.training.recorder import check_new, create_study, write_study


def start(spec, models, jobs=1, executor="local", overwrite=False, progress_bar=None,
          one_model_layout=False, slurm=None, may_continue=True):
    """Make (or, if may_continue, continue) the study spec describes: models x spec.seeds with
    spec's other options; run its unfinished cells; return the summaries of a run in order
    (None from a pool). `train --seeds` may not continue: like any train, it starts anew."""
    cfg = spec.config
    wanted = manifests.grid(spec.run_dir, cfg, models, spec.seeds, one_model_layout)
    if may_continue and (spec.run_dir / STUDY).is_file() and not overwrite:
        saved = manifests.load(spec.run_dir)
        added = manifests.changes(saved, wanted)
        study = manifests.extended(saved, added)
        if added:
            echo(f"adding to {spec.run_dir}: {', '.join(c.name for c in added)}")
        if cfg.epochs != saved.config.epochs:
            study = study.with_epochs(cfg.epochs)
        if study != saved:
            write_study(study.path, study.to_json())
    else:
        check_new(spec.run_dir, overwrite)  # at once, changing nothing
        # every check before an earlier study is replaced (--overwrite) or a folder is made
        first = wanted.cell_config(wanted.cells[0])
        single.preflight(replace(spec, config=first))
        create_study(spec.run_dir, wanted.to_json(), overwrite)
        study = wanted
    return run(study, {}, jobs, executor, progress_bar, slurm)


def resume(path, overrides, progress_bar=None, jobs=1):
    """Continue every cell of a study: resume those begun, start those that were not."""
    study = manifests.load(path)
    epochs = overrides.get("epochs")
    if epochs is not None and epochs != study.config.epochs:
        # one experiment: every cell ends at the same epoch, even if this extension is stopped
        study = study.with_epochs(epochs)
        write_study(study.path, study.to_json())
    return run(study, overrides, jobs, "local", progress_bar)


def run(study, overrides, jobs, executor, progress_bar=None, slurm=None):
    """Run the study's unfinished cells on the executor."""
    if executor == "slurm":
        from train_cli.studies.slurm import submit
        return submit(study, overrides, jobs, slurm or {})
    if jobs == 1:
        return cell_runs.run_in_order(study, overrides, progress_bar)
    from train_cli.studies.local import run_pool
    run_pool(study, jobs, overrides)
    cell_runs.report(study, [RunFolder(study.path / c.dir).read_json(SUMMARY)
                             for c in study.cells])
    return None


def check_jobs(jobs, executor):
    """Raise UsageError for a --jobs that means nothing."""
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (got {jobs})")
    if executor not in ("local", "slurm"):
        raise UsageError(f"--executor {executor!r} is not one of local, slurm")
