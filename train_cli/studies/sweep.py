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

# options a continued study takes from the command line (where its data are, how it evaluates,
# which GPUs): they change no cell's result
PER_SESSION = ("data_dir", "eval_batch_size", "gpus")


def start(spec, models, jobs=None, executor="local", overwrite=False, progress_bar=None,
          one_model_layout=False, slurm=None, may_continue=True, given=()):
    """Make (or, if may_continue, continue) the study spec describes: models x spec.seeds with
    spec's other options; run its unfinished cells; return the summaries of a run in order
    (None from a pool or Slurm). `train --seeds` may not continue: like any train, it starts
    anew. given: the options the user gave (a continued study keeps its own epochs unless
    --epochs is given)."""
    cfg = spec.config
    wanted = manifests.grid(spec.run_dir, cfg, models, spec.seeds, one_model_layout)
    overrides = {}
    if may_continue and (spec.run_dir / STUDY).is_file() and not overwrite:
        saved = manifests.load(spec.run_dir)
        added = manifests.changes(saved, wanted)
        study = manifests.extended(saved, added)
        if added:
            echo(f"adding to {spec.run_dir}: {', '.join(c.name for c in added)}")
        if "epochs" in given and cfg.epochs != saved.config.epochs:
            if cfg.epochs < saved.config.epochs:
                raise UsageError(f"--epochs {cfg.epochs} is fewer than the {saved.config.epochs} "
                                 f"of {spec.run_dir}: a study only grows; give --epochs "
                                 f"{saved.config.epochs} or more")
            study = study.with_epochs(cfg.epochs)
        if study != saved:
            write_study(study.path, study.to_json())
        overrides = {name: getattr(cfg, name) for name in PER_SESSION if name in given}
    else:
        check_new(spec.run_dir, overwrite)  # at once, changing nothing
        if executor == "local":  # (on a cluster's login node the devices and data may differ)
            # every check before an earlier study is replaced (--overwrite) or a folder is made
            single.preflight(replace(spec, config=wanted.cell_config(wanted.cells[0])))
        create_study(spec.run_dir, wanted.to_json(), overwrite)
        study = wanted
    return run(study, overrides, jobs, executor, progress_bar, slurm)


def resume(path, overrides, progress_bar=None):
    """Continue every cell of a study: resume those begun, start those that were not."""
    study = manifests.load(path)
    epochs = overrides.get("epochs")
    if epochs is not None and epochs != study.config.epochs:
        # one experiment: every cell ends at the same epoch, even if this extension is stopped
        study = study.with_epochs(epochs)
        write_study(study.path, study.to_json())
    return run(study, overrides, 1, "local", progress_bar)


def run(study, overrides, jobs, executor, progress_bar=None, slurm=None):
    """Run the study's unfinished cells on the executor (jobs None: Slurm's own limit, or one
    at a time here)."""
    if executor == "slurm":
        from train_cli.studies.slurm import submit
        return submit(study, overrides, jobs, slurm or {})
    if (jobs or 1) == 1:
        return cell_runs.run_in_order(study, overrides, progress_bar)
    from train_cli.studies.local import run_pool
    run_pool(study, jobs, overrides)
    cell_runs.report(study, [RunFolder(study.path / c.dir).read_json(SUMMARY)
                             for c in study.cells])
    return None
