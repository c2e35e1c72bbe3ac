"""The commands of studies: sweep (a grid of models x seeds) and run-cell (one cell, which the
executors start)."""
import click

from train_cli.cli.options import SEEDS, config_options, progress_option

SWEPT = ("model", "seed", "run_dir")  # given per cell, not as training options


def _models(ctx, param, value):
    if value is None:
        return None
    models = tuple(m.strip() for m in value.split(",") if m.strip())
    if not models or len(set(models)) != len(models):
        raise click.BadParameter(f"give distinct model names separated by commas (got "
                                 f"{value!r}), e.g. vgg16_bn,vgg16_bn_swish")
    from train_cli.model.spec import parse_name
    for model in models:
        parse_name(model)  # UsageError listing the valid names
    return models


@click.command()
@click.option("--models", callback=_models, metavar="M1,M2,...",
              help="Models of the grid, e.g. vgg16_bn,vgg16_bn_swish (list: swishtrain models).")
@click.option("--seeds", type=SEEDS, metavar="N,N-M,...",
              help="Seeds of the grid: a list and ranges, e.g. 1-10 or 1,2,5-7.")
@click.option("--run-dir", "run_dir", metavar="STUDY",
              help="The study folder: every cell is a run in STUDY/<model>/seed-<N>/.")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Cells at once: 1 (the default here) runs them in this process, one after "
                   "another; N splits this machine's cores (or --gpus) between N processes; with "
                   "--executor slurm, at most N array tasks at once (default: as Slurm allows).")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local",
              show_default=True,
              help="Where cells run: local (this machine) or slurm (one sbatch job array, one task "
                   "per cell; needs sbatch).")
@click.option("--partition", help="Slurm: the partition (sbatch --partition).")
@click.option("--time", "time_limit", metavar="D-HH:MM:SS",
              help="Slurm: each task's time limit (sbatch --time).")
@click.option("--cpus-per-task", type=click.IntRange(min=1),
              help="Slurm: CPU cores of each task (its OpenMP threads follow).")
@click.option("--gres", help="Slurm: generic resources of each task, e.g. gpu:1.")
@click.option("--sbatch-arg", "sbatch_args", multiple=True, metavar="ARG",
              help="Slurm: one more sbatch argument, as given (repeatable), e.g. --account=lab.")
@click.option("--status", "status_of", metavar="STUDY",
              help="Show each cell of STUDY (done / running / queued / stopped / failed, "
                   "epoch, best accuracy, time left) and start nothing.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing study folder (only what swishtrain wrote in it).")
@config_options(without=SWEPT)
@progress_option
def sweep(models, seeds, run_dir, jobs, executor, partition, time_limit, cpus_per_task, gres,
          sbatch_args, status_of, overwrite, progress, **values):
    """Train every (model, seed) cell of a grid, each into its own run folder of a study.

    Running the same command again continues the study: finished cells are left alone,
    interrupted ones resume exactly, missing ones start; more seeds or models add cells. Other
    training options are refused (a study is one experiment); --epochs extends every cell.
    `swishtrain compare STUDY` then gives the verdict for each pair of models.

    \b
    Examples:
      swishtrain sweep --models vgg16_bn,vgg16_bn_swish --seeds 1-10 --run-dir studies/s \\
          --width 0.25 --epochs 15 --val-split 5000 --test-split 5000 --jobs 2
      swishtrain sweep --status studies/s
    """
    if status_of:
        from train_cli.studies.status import show
        return show(status_of, echo=click.echo)
    missing = [f for f, v in (("--models", models), ("--seeds", seeds), ("--run-dir", run_dir))
               if v is None]
    if missing:
        raise click.UsageError(f"sweep needs {', '.join(missing)} (or --status STUDY)")
    from train_cli import runspec
    from train_cli.config import build_config
    from train_cli.runspec.rules import warnings
    from train_cli.studies import sweep as sweeps
    cfg = build_config(dict(values, model=models[0], run_dir=run_dir))
    spec = runspec.new_run(cfg, seeds)  # every rule, once, for the options every cell shares
    for warning in warnings(cfg):
        click.echo(f"warning: {warning}", err=True)
    slurm = dict(partition=partition, time=time_limit, cpus_per_task=cpus_per_task, gres=gres,
                 extra=tuple(sbatch_args))
    sweeps.start(spec, models, jobs=jobs, executor=executor, overwrite=overwrite,
                 progress_bar=progress, slurm=slurm,
                 given={k for k, v in values.items() if v is not None})


@click.command("run-cell", hidden=True)
@click.argument("study")
@click.argument("index", type=click.IntRange(min=0))
@click.option("--cpus", metavar="0,1,...", help="Run on these CPU cores only (affinity).")
@config_options(only=("epochs", "data_dir", "eval_batch_size", "gpus"),
                default_text="the study's")
def run_cell(study, index, cpus, **overrides):
    """Run cell INDEX of STUDY in this process (what the local pool and Slurm tasks start)."""
    import os
    if cpus:  # before anything imports mxnet: its OpenMP threads inherit the affinity
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    from train_cli.errors import Stopped
    from train_cli.runfolder import epochs_recorded
    from train_cli.studies import manifest as manifests
    from train_cli.studies import slurm
    from train_cli.studies.cells import run_cell as run
    from train_cli.studies.cells import slurm_task
    from train_cli.training.interrupt import EXIT_CODES, TIME_LIMIT
    found = manifests.load(study)
    if index >= len(found.cells):
        raise click.BadParameter(f"{study} has {len(found.cells)} cells (0-"
                                 f"{len(found.cells) - 1})", param_hint="INDEX")
    if overrides.get("epochs") not in (None, found.config.epochs):
        found = found.with_epochs(overrides["epochs"])
    cell = found.cells[index]
    epochs_before = epochs_recorded(found.path / cell.dir) or 0
    try:
        run(found, cell, overrides, progress_bar=False)
    except Stopped as e:
        if e.exit_code == EXIT_CODES[TIME_LIMIT] and slurm_task():
            raise slurm.after_time_limit(found, cell, epochs_before, e) from None
        raise
