"""The commands around training: launch (distributed), compare, evaluate, bench."""
import click

from train_cli.analysis.stats import CONFIDENCE, POWER  # no numpy at import: --help stays instant
from train_cli.cli.options import INT_LIST, config_options
from train_cli.cluster.jobspec import STALL_SECONDS  # no mxnet: --help stays instant


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("-n", "--workers", type=click.IntRange(min=1), required=True,
              help="Number of worker processes (each trains on its slice of every batch).")
@click.option("-s", "--servers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of parameter-server processes.")
@click.option("--hostfile", type=click.Path(exists=True, dir_okay=False),
              help="File with one host per line ('#' comments): servers, then workers, start "
                   "there over ssh, round-robin; needs --root-uri, password-less ssh and this "
                   "checkout and venv at the same path on every host.")
@click.option("--root-uri", default="127.0.0.1", show_default=True,
              help="Address of this machine where the scheduler listens (with --hostfile): the "
                   "one the hosts reach it at; not 0.0.0.0, which would be every interface.")
@click.option("--max-restarts", type=click.IntRange(min=0), default=0, show_default=True,
              help="When a process of the job is lost (killed by a signal, hung, or cut off "
                   "with its host), stop the rest and start the whole job again from the run's "
                   "last completed epoch, up to this many times. A process that exits with an "
                   "error is not restarted: the same steps would fail the same way.")
@click.option("--stall-timeout", metavar="SECONDS", type=click.FloatRange(min=0),
              default=STALL_SECONDS, show_default=True,
              help="End the job as hung (a failure, restarted by --max-restarts) when no worker "
                   "has used CPU or printed anything for this long; 0: never.")
@click.option("--timeout", metavar="SECONDS", type=click.FloatRange(min=1), default=None,
              help="Stop the whole job, restarts included, after this many seconds.")
@click.option("--worker-gpus", metavar="IDS", multiple=True, type=INT_LIST,
              help="This worker's GPUs, once per worker in order (e.g. --worker-gpus 0,1 "
                   "--worker-gpus 2,3), instead of splitting --gpus.")
@click.option("--dry-run", is_flag=True,
              help="Print each process's host, environment and command; start nothing.")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def launch(workers, servers, hostfile, root_uri, max_restarts, stall_timeout, timeout,
           worker_gpus, dry_run, train_args):
    """Train on several processes (or machines) with MXNet's parameter-server KVStore.

    Starts a scheduler, servers and workers with the DMLC_* environment (on 127.0.0.1 unless
    --hostfile is given), forwards their output, and stops them all if one fails. Options
    after `--` go to `swishtrain train` on every worker; --kvstore defaults to dist_sync.
    --batch-size stays per worker, so the global batch is workers x batch size.

    GPUs: `--gpus` after `--` is split evenly over the workers of each host, in order, so that
    none is shared: `-n 2 -- --gpus 0,1,2,3` gives worker 0 GPUs 0,1 and worker 1 GPUs 2,3
    (with a hostfile, per host). A list that does not divide evenly is refused; --worker-gpus
    gives each worker its own list instead.

    Over ssh: each host is reached with `ssh -T -o BatchMode=yes HOST`; set SWISHTRAIN_SSH to
    the ssh command with your options, e.g. SWISHTRAIN_SSH="ssh -i ~/.ssh/cluster -p 2222".
    Failures: see --max-restarts and --stall-timeout; README "More than one machine".

    No authentication: MXNet's parameter server (ps-lite) accepts whoever reaches a port of the
    job, who can then join it, push gradients into the model, stop it or run code on its
    servers; nothing is encrypted. Each process listens on one TCP port (a free one the kernel
    picks; the scheduler's is printed at start) on one address: 127.0.0.1
    without --hostfile (open to every user of this machine, no other machine); with --hostfile,
    the scheduler on --root-uri and each server and worker on its host's address, open to
    whatever can route there. Use --hostfile on a trusted network only; README "Ports and who
    can reach them".

    \b
    Examples:
      swishtrain launch -n 2 -- --model vgg11_bn --width 0.25 --epochs 10
      swishtrain launch -n 2 -s 1 --hostfile hosts.txt --root-uri 10.0.0.5 \\
          --max-restarts 3 -- --model vgg16_bn --run-dir /shared/runs/vgg16
    """
    from train_cli.cluster import jobspec
    from train_cli.cluster.launch import run_job
    from train_cli.runfolder import run_stamp
    spec = jobspec.parse(  # every option, parsed and checked once
        workers, servers, train_args, _train_params(train_args), run_stamp(),
        hosts=jobspec.read_hostfile(hostfile) if hostfile else (), hostfile=hostfile,
        root_uri=root_uri, max_restarts=max_restarts, stall_timeout=stall_timeout,
        timeout=timeout, worker_gpus=tuple(worker_gpus))
    run_job(spec, echo=lambda line: click.echo(line), dry_run=dry_run)


def _train_params(train_args):
    """The workers' options parsed as `swishtrain train` parses them (errors show here)."""
    from train_cli.cli import train
    return train.make_context("swishtrain train", list(train_args)).params


def _positive_points(ctx, param, value):
    """--detect's check: a positive, finite number of accuracy points."""
    if not 0 < value < float("inf"):  # nan and inf too: no number of seeds answers them
        raise click.BadParameter(f"must be a positive number of accuracy points (got {value:g}), "
                                 "e.g. 0.5")
    return value


@click.command(short_help=f"Compare runs grouped by experiment, with {CONFIDENCE:.0%} CIs and "
                          "power.")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print the comparison as JSON (accuracies and differences as fractions) "
                   "instead of a table.")
@click.option("--plot", "plot_file", metavar="FILE.png", type=click.Path(dir_okay=False),
              help="Also write learning curves (val accuracy, train loss per epoch; mean and "
                   "min-max band over seeds) to this PNG; needs matplotlib.")
@click.option("--detect", metavar="POINTS", type=float, default=0.5, show_default=True,
              callback=_positive_points,
              help="A difference in accuracy points (0.5 = 0.5 percentage points): every pair "
                   f"of groups says how many seeds per arm would detect it at {CONFIDENCE:.0%} "
                   f"confidence and {POWER:.0%} power, given the seed-to-seed spread seen so "
                   "far.")
def compare(run_dirs, as_json, plot_file, detect):
    """Compare runs: group them by experiment and test the differences.

    Each RUN_DIR is a run folder or a folder searched for them. Runs of the same experiment form
    a group: they may differ in seed, run/data folder, GPU ids, eval batch size or hybridize,
    not in anything that changes training (epochs, global batch, number of GPUs and workers,
    dtype, augmentation, input scaling, validation split, ...). Accuracies are mean ± sample
    std over a group's runs, with the validation and test split sizes.

    The verdict uses one unbiased figure, named in the output: the test accuracy at the best
    validation epoch when every run holds out a validation split (--val-split) and has a test
    split, otherwise the last epoch's validation accuracy. The best validation accuracy is shown
    beside it, marked when it was selected on the test split (--val-split 0). With 2+ groups of
    2+ runs each, every pair gets a {confidence} bootstrap interval of the difference, the
    smallest difference its seeds can detect, and the seeds per arm that --detect points would
    need. Unfinished runs are included with their epochs so far and marked.

    \b
    Example:
      swishtrain compare runs/relu runs/swish --plot curves.png --detect 0.5
    """
    import json

    from train_cli.analysis import report
    from train_cli.analysis.compare import compare as compare_runs
    result = compare_runs(run_dirs, detect=detect / 100)  # points -> fraction, as accuracies
    if plot_file:
        from train_cli.analysis.plot import plot_comparison
        plot_comparison(result, plot_file)
    if as_json:
        click.echo(json.dumps(report.as_json(result), indent=2))
    else:
        click.echo(report.text(result))
    if plot_file:
        click.echo(f"curves written to {plot_file}", err=as_json)


# the docstring is click's help text: it quotes stats' confidence rather than a copy of it
compare.help = compare.help.format(confidence=f"{CONFIDENCE:.0%}")


@click.command(short_help="Accuracy of a run's saved weights on a split.")
@click.argument("run_dir")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test",
              show_default=True,
              help="Images to evaluate on: test, val (the run's own validation split: the test "
                   "split, or the images held out by its --val-split), or train.")
@config_options(only=["data_dir", "eval_batch_size"], default_text="the run's")
@config_options(only=["gpus", "cpu_devices"], default_text="one CPU device, whatever the run used")
@click.option("--params", type=click.Choice(["best", "last"]), default="best",
              show_default=True,
              help="Weights to load: best (best.params, the best validation epoch) or last "
                   "(last.ckpt, the last completed epoch).")
def evaluate(run_dir, split, data_dir, eval_batch_size, params, gpus, cpu_devices):
    """Evaluate a run's saved weights on a split, every image exactly once.

    The network and the data split are rebuilt from the run's config.json, so `--split val` is
    the very split the run validated on. Any run evaluates anywhere: on one CPU device unless
    --gpus or --cpu-devices say otherwise, whatever it was trained on; float16 weights are cast
    to float32 on the CPU, and a bfloat16 run is evaluated in float32 (its weights are float32;
    any CPU can), so its accuracy may differ from the run's own by a few images. Prints e.g.
    `test accuracy of best.params: 0.8123 on 10,000 images (loss 0.6021; float32 on cpu(0))`.

    \b
    Example:
      swishtrain evaluate runs/vgg16_bn_swish-20261129-101500 --split test
    """
    from train_cli.analysis.evaluate import evaluate_run
    result = evaluate_run(run_dir, split=split, data_dir=data_dir, params=params,
                          gpus=gpus or (), cpu_devices=cpu_devices or 1,
                          eval_batch_size=eval_batch_size,
                          warn=lambda m: click.echo(m, err=True))
    click.echo(result.line())


BENCH_OPTIONS = ["model", "width", "batch_size", "eval_batch_size", "gpus", "cpu_devices",
                 "dtype", "tf32", "augment", "hybridize"]


@click.command(short_help="Measure training, evaluation and data-pipeline throughput.")
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True,
              help="Training steps per measurement.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Measurements of each figure (median, min and max are reported).")
@click.option("--sgemm-size", type=click.IntRange(min=16), default=2048, show_default=True,
              help="Side of the square matrices of the GEMM ceiling measurement.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def bench(steps, repeats, sgemm_size, as_json, **values):
    """Measure throughput and compute efficiency for a model on this machine.

    Reports train-step, whole-epoch (with data pipeline), evaluation and data-pipeline images
    per second, FLOPs per training image, achieved GFLOP/s, a GEMM ceiling measured in the same
    process (on the CPU oneDNN's, the convolutions' library) and the CPU's arithmetic peak; a
    figure above its bound is said in words, not as a ratio. Uses synthetic images: no dataset
    is needed.

    \b
    Example:
      swishtrain bench --model vgg16_bn_swish --batch-size 128 --json
    """
    import json

    from train_cli.analysis.bench import format_report, run_bench
    from train_cli.config import build_config
    result = run_bench(build_config(values), steps=steps, repeats=repeats,
                       sgemm_size=sgemm_size)
    click.echo(json.dumps(result, indent=2) if as_json else format_report(result))


bench = config_options(bench, only=BENCH_OPTIONS)
