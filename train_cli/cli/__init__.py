"""The `swishtrain` command: parses options, calls training/, turns errors into one-line messages.

`train` is the default command, so `swishtrain --model vgg16_bn_swish` means
`swishtrain train --model vgg16_bn_swish`.
"""
import os
import signal
import sys
import traceback

import click
from click_default_group import DefaultGroup

from train_cli import __version__, cuda_libs
from train_cli.cli.options import SEEDS, FieldType, config_options, progress_option
from train_cli.cli.studies import run_cell, sweep
from train_cli.cli.tools import bench, compare, evaluate, launch
from train_cli.cluster import launched_role
from train_cli.config import OPTIONS
from train_cli.errors import EXIT_USAGE, Stopped, UserError
from train_cli.runspec.rules import RESUMABLE_OVERRIDES
from train_cli.startup import before_mxnet


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
        except ModuleNotFoundError as e:  # MXNet is an extra: one of two wheels must be chosen
            if e.name != "mxnet":
                raise
            click.echo("Error: MXNet is not installed: `make install` (or pip install "
                       "'swishtrain[cpu]'), or for NVIDIA GPUs `make install CUDA=11.7` (pip "
                       "install 'swishtrain[cu117]')", err=True)
            rv = 1
        except OSError as e:  # a CUDA build of mxnet without a library it links
            if ".so" not in str(e):
                raise
            if "libcuda.so" in str(e):
                fix = ("this is MXNet's CUDA build and the machine has no NVIDIA driver (it "
                       "provides libcuda.so.1): install the driver, or the CPU build with "
                       "`make install CUDA=cpu`")
            else:
                fix = ("install MXNet with `make install CUDA=11.7`, which brings NVIDIA's "
                       "libraries, or the CPU build with `make install CUDA=cpu`")
            click.echo(f"Error: MXNet cannot load ({e}); {fix}", err=True)
            rv = 1
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


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
@click.option("--seeds", type=SEEDS, metavar="N,N-M,...",
              help="Train once per seed (a list, ranges like 1-10), one after another, into "
                   "RUN_DIR/seed-<N>/: a sweep of one model (compare the study with "
                   "`swishtrain compare RUN_DIR ...`; more models or cells at once: `swishtrain "
                   "sweep`).")
@progress_option
def train(config_file, resume_dir, overwrite, seeds, progress, **values):
    """Train one model on CIFAR-10 and record the run in a run folder.

    The last line printed is `Best validation accuracy: A at epoch E` (1-based epoch). The run
    folder gets config.json, metrics.csv, best.params, last.ckpt and summary.json.

    \b
    Example:
      swishtrain train --model vgg16_bn_swish --epochs 40 --lr-steps 10,20,30
    """
    if seeds is not None and values.get("seed") is not None:
        raise click.UsageError("--seed cannot be combined with --seeds, which gives every seed "
                               "of the study; drop --seed")
    if resume_dir:
        if config_file or seeds is not None:
            raise click.UsageError("--config and --seeds cannot be combined with --resume: a "
                                   "resumed run keeps the options it started with")
        return resume_run_or_study(resume_dir, values, progress)
    from train_cli import runspec
    from train_cli.config import build_config
    from train_cli.runspec.rules import warnings
    cfg = build_config(values, config_file)
    spec = runspec.new_run(cfg, seeds)  # every decision about the run, made once, here
    for warning in warnings(cfg):
        click.echo(f"warning: {warning}", err=True)
    if seeds is not None:
        from train_cli.studies import sweep
        sweep.start(spec, (cfg.model,), overwrite=overwrite, progress_bar=progress,
                    one_model_layout=True, may_continue=False)
    else:
        from train_cli.training.run import train as train_run
        train_run(spec, overwrite=overwrite, progress_bar=progress)


@cli.command()
@click.argument("run_dir")
@config_options(only=RESUMABLE_OVERRIDES, default_text="the run's")
@progress_option
def resume(run_dir, progress, **values):
    """Continue an interrupted run from its last completed epoch.

    The run keeps its options, data order and learning-rate schedule; only --epochs (to train
    longer), --data-dir, --eval-batch-size and --gpus (as many) may change. metrics.csv gets
    the new epochs.
    RUN_DIR may also be a study folder (--seeds): every seed is resumed, or started if it never
    began. A distributed run resumes under `swishtrain launch -n N -- --resume RUN_DIR`.

    \b
    Example:
      swishtrain resume runs/vgg16_bn_swish-20261129-101500 --epochs 60
    """
    resume_run_or_study(run_dir, values, progress)


def resume_run_or_study(path, overrides, progress):
    """Continue a run, or every seed of a study (train --resume and resume)."""
    from train_cli.runfolder import is_study
    if is_study(path):
        from train_cli.studies import sweep
        return sweep.resume(path, overrides, progress)
    from train_cli.studies.cells import unfinished_seeds
    from train_cli.training.run import resume
    summary = resume(path, overrides, progress)
    study = unfinished_seeds(path)
    if study and study[1]:  # this cell is done; its study is not
        click.echo(f"note: {path} is one seed of the study {study[0]}, whose {study[1]} are "
                   f"not finished: continue the whole study with `swishtrain resume {study[0]}`")
    return summary


@cli.command()
@click.option("--width", default=OPTIONS["width"].default, type=FieldType("width"),
              show_default=True, help="Count parameters at this width.")
def models(width):
    """List the model names with their trainable parameter counts.

    \b
    Example:
      swishtrain models --width 0.25
    """
    from train_cli.model.spec import MODEL_NAMES, check_width
    from train_cli.model.vgg import count_params
    check_width(width)
    click.echo(f"{'model':<20} {'parameters':>12}")
    for name in MODEL_NAMES:
        click.echo(f"{name:<20} {count_params(name, width):>12,}")


for command in (launch, compare, evaluate, bench, sweep, run_cell):
    cli.add_command(command)


def main():
    """The `swishtrain` entry point: what must happen before mxnet is imported (startup.py)."""
    try:
        before_mxnet()
    except cuda_libs.LoadError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    except UserError as e:  # a thread setting that is not a number
        click.echo(f"{e.prefix}{e}", err=True)
        sys.exit(e.exit_code)
    if launched_role() != "worker":
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
