"""The `swishtrain` command: parses options, calls run.py, turns errors into one-line messages.

`train` is the default command, so `swishtrain --model vgg16_bn_swish` means
`swishtrain train --model vgg16_bn_swish`.
"""
import os
import signal
import sys
import traceback

import click
from click_default_group import DefaultGroup

from train_cli import __version__
from train_cli.config import FIELD_NAMES, HELP, PARSERS, TrainConfig, flag
from train_cli.errors import EXIT_USAGE, Stopped, UserError


class SwishtrainGroup(DefaultGroup):
    """A default-command group whose errors are one line on stderr with the right exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:  # bad flags: click's own parsing
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
            click.echo(f"Error: {e.format_message().rstrip('.')}{where}", err=True)
            rv = EXIT_USAGE
        except click.ClickException as e:
            click.echo(f"Error: {e.format_message()}", err=True)
            rv = e.exit_code
        except UserError as e:  # a domain problem: data, files, config values
            if isinstance(e, Stopped):  # a further Ctrl-C must not turn exit 130 into a crash
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            click.echo(f"{e.prefix}{e}", err=True)
            rv = e.exit_code
        except click.Abort:
            click.echo("Aborted.", err=True)
            rv = 130
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


class FieldType(click.ParamType):
    """A click type that parses a value exactly as the config file parser does."""

    def __init__(self, field):
        self.field = field
        self.name = field

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return PARSERS[self.field](value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


def _default_text(name):
    value = getattr(TrainConfig(), name)
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value) if value != "" else "see above"


def config_options(command):
    """Add one option per TrainConfig field, each defaulting to None ("not given")."""
    for name in reversed(FIELD_NAMES):
        if name == "hybridize":
            option = click.option("--hybridize/--no-hybridize", "hybridize", default=None,
                                  help=HELP[name] + " [default: hybridize]")
        else:
            option = click.option(flag(name), name, default=None, type=FieldType(name),
                                  help=f"{HELP[name]} [default: {_default_text(name)}]")
        command = option(command)
    return command


@click.group("swishtrain", cls=SwishtrainGroup, default="train", default_if_no_args=False)
@click.version_option(__version__, prog_name="swishtrain")
def cli():
    """Train VGG on CIFAR-10 with MXNet Gluon and compare activations (ReLU vs Swish).

    `train` is the default command: `swishtrain --model vgg16_bn_swish` is
    `swishtrain train --model vgg16_bn_swish`. Run `swishtrain train --help` for its options.

    \b
    Example (the 2018 blog experiment):
      swishtrain --model vgg16_bn_swish --lr-steps 10,20,30 --epochs 40 --gpus 0,1
    """


@cli.command()
@config_options
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file of options (see configs/); flags given here override it.")
@click.option("--resume", "resume_dir", metavar="RUN_DIR",
              help="Continue the run in RUN_DIR from its last completed epoch (same as "
                   "`swishtrain resume RUN_DIR`).")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing, non-empty --run-dir (otherwise it is refused).")
@click.option("--progress/--no-progress", default=None,
              help="Live progress bar per epoch [default: only when stdout is a terminal].")
def train(config_file, resume_dir, overwrite, progress, **values):
    """Train one model on CIFAR-10 and record the run in a run folder.

    The last line printed is `Best validation accuracy: A at epoch E` (1-based epoch). The run
    folder gets config.json, metrics.csv, best.params, last.ckpt and summary.json.

    \b
    Example:
      swishtrain train --model vgg16_bn_swish --epochs 40 --lr-steps 10,20,30
    """
    if resume_dir:
        if config_file:
            raise click.UsageError("--config cannot be combined with --resume: a resumed run "
                                   "keeps the options it started with")
        return _resume(resume_dir, values, progress)
    from train_cli import run
    from train_cli.config import build_config, warnings
    cfg = build_config(values, config_file)
    for warning in warnings(cfg):
        click.echo(f"warning: {warning}", err=True)
    run.start(cfg, overwrite=overwrite, progress_bar=progress)


@cli.command()
@click.argument("run_dir")
@click.option("--epochs", default=None, type=FieldType("epochs"),
              help="Train until this many epochs in total (extends a finished run).")
@click.option("--data-dir", default=None, type=FieldType("data_dir"),
              help="Where CIFAR-10 is now, if it moved since the run started.")
@click.option("--eval-batch-size", default=None, type=FieldType("eval_batch_size"),
              help="Images per evaluation batch.")
@click.option("--progress/--no-progress", default=None,
              help="Live progress bar per epoch [default: only when stdout is a terminal].")
def resume(run_dir, progress, **values):
    """Continue an interrupted run from its last completed epoch.

    The run keeps its options, data order and learning-rate schedule; only --epochs (to train
    longer), --data-dir and --eval-batch-size may change. metrics.csv gets the new epochs.

    \b
    Example:
      swishtrain resume runs/vgg16_bn_swish-20261129-101500 --epochs 60
    """
    _resume(run_dir, values, progress)


def _resume(run_dir, values, progress):
    from train_cli import run
    from train_cli.resume import load_for_resume
    cfg, folder, ckpt = load_for_resume(run_dir, values)
    run.resume(cfg, folder, ckpt, progress_bar=progress)


@cli.command()
@click.option("--width", default=1.0, type=FieldType("width"), show_default=True,
              help="Count parameters at this width.")
def models(width):
    """List the model names with their trainable parameter counts.

    \b
    Example:
      swishtrain models --width 0.25
    """
    from train_cli.models import MODEL_NAMES, check_width, count_params
    check_width(width)
    click.echo(f"{'model':<20} {'parameters':>12}")
    for name in MODEL_NAMES:
        click.echo(f"{name:<20} {count_params(name, width):>12,}")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("-n", "--workers", type=click.IntRange(min=1), required=True,
              help="Number of worker processes (each trains on its slice of every batch).")
@click.option("-s", "--servers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of parameter-server processes.")
@click.option("--hostfile", type=click.Path(exists=True, dir_okay=False),
              help="File with one host per line: servers and workers start there over ssh "
                   "(round-robin); needs --root-uri and the same checkout path on every host.")
@click.option("--root-uri", default="127.0.0.1", show_default=True,
              help="Address of this machine where the scheduler listens (with --hostfile).")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="Stop the whole job after this many seconds.")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def launch(workers, servers, hostfile, root_uri, timeout, train_args):
    """Train on several processes (or machines) with MXNet's parameter-server KVStore.

    Starts a scheduler, servers and workers with the DMLC_* environment (on 127.0.0.1 unless
    --hostfile is given), forwards their output, and stops them all if one fails. Options
    after `--` go to `swishtrain train` on every worker; --kvstore defaults to dist_sync.
    --batch-size stays per worker, so the global batch is workers x batch size.

    \b
    Example (2 workers, 1 server on this machine):
      swishtrain launch -n 2 -- --model vgg11_bn --width 0.25 --epochs 10
    """
    from train_cli.launch import run_job
    hosts = []
    if hostfile:
        with open(hostfile) as f:
            hosts = [line.split()[0] for line in f if line.strip() and not line.startswith("#")]
        if not hosts:
            raise click.UsageError(f"--hostfile {hostfile} lists no hosts")
    run_job(workers, servers, list(train_args), hosts=hosts, root_uri=root_uri,
            timeout=timeout, echo=lambda line: click.echo(line))


@cli.command(short_help="Compare runs grouped by configuration, with 95% CIs.")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print the comparison as JSON (accuracies as fractions) instead of a table.")
@click.option("--plot", "plot_file", metavar="FILE.png", type=click.Path(dir_okay=False),
              help="Also write learning curves (val accuracy, train loss per epoch; mean and "
                   "min-max band over seeds) to this PNG; needs matplotlib.")
def compare(run_dirs, as_json, plot_file):
    """Compare runs: group them by configuration and test the differences.

    Each RUN_DIR is a run folder or a folder searched for them. Runs that differ only in seed
    (or run/data folder, epochs, eval batch size, hybridize) form one group; a group's best
    validation accuracy is given as mean ± sample std over its runs. With 2+ groups of 2+ runs
    each, every pair gets a 95% bootstrap interval of the difference and a verdict. Unfinished
    runs are included with their epochs so far and marked.

    \b
    Example:
      swishtrain compare runs/relu runs/swish --plot curves.png
    """
    import json

    from train_cli.compare import compare as compare_runs
    result = compare_runs(run_dirs)
    if plot_file:
        from train_cli.plot import plot_comparison
        plot_comparison(result, plot_file)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(result.format_table())
    if plot_file:
        click.echo(f"curves written to {plot_file}", err=as_json)


@cli.command(short_help="Accuracy of a run's saved weights on a split.")
@click.argument("run_dir")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test",
              show_default=True,
              help="Images to evaluate on: test, val (the run's own validation split: the test "
                   "split, or the images held out by its --val-split), or train.")
@click.option("--data-dir", default=None, type=FieldType("data_dir"),
              help="Where CIFAR-10 is now, if it moved since the run [default: the run's].")
@click.option("--params", type=click.Choice(["best", "last"]), default="best",
              show_default=True,
              help="Weights to load: best (best.params, the best validation epoch) or last "
                   "(last.ckpt, the last completed epoch).")
def evaluate(run_dir, split, data_dir, params):
    """Evaluate a run's saved weights on a split, every image exactly once.

    The network and the data split are rebuilt from the run's config.json, so `--split val` is
    the very split the run validated on. Prints e.g. `test accuracy of best.params: 0.8123 on
    10,000 images (loss 0.6021)`.

    \b
    Example:
      swishtrain evaluate runs/vgg16_bn_swish-20261129-101500 --split test
    """
    from train_cli.evaluate import evaluate_run
    result = evaluate_run(run_dir, split=split, data_dir=data_dir, params=params,
                          warn=lambda m: click.echo(m, err=True))
    click.echo(result.line())


def main():
    if os.environ.get("DMLC_ROLE") != "worker":
        return cli()
    # A distributed worker that fails must exit at once: at a normal exit ps-lite waits at a
    # barrier for peers that will never come, and the job hangs.
    try:
        cli()
    except SystemExit as e:
        if e.code:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(e.code if isinstance(e.code, int) else 1)
        raise
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
