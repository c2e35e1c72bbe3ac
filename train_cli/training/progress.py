"""What a run prints: a live bar per epoch on a terminal, one plain line per epoch always."""
import sys
import time

import click

from train_cli import __version__
from train_cli.model.vgg import count_params
from train_cli.training.devices import describe


def epoch_line(row, epochs):
    """The line printed after each epoch (also what a log file gets)."""
    return (f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4g}  "
            f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  "
            f"{row['epoch_seconds']:.1f}s  {row['train_img_per_s']:.1f} img/s")


class EpochProgress:
    """A tqdm bar with running loss, accuracy, lr and img/s, shown only when stdout is a TTY.

    Redrawing a bar into a log file would fill it with carriage returns; there the caller's
    per-epoch line is the whole record.
    """

    def __init__(self, epoch, epochs, total_batches, lr, enabled=None):
        self.lr = lr
        self.loss = self.correct = self.count = 0
        self.start = time.perf_counter()
        if enabled is None:
            enabled = sys.stdout.isatty()
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total_batches, desc=f"epoch {epoch + 1}/{epochs}",
                            file=sys.stdout, leave=False, dynamic_ncols=True, unit="batch")

    def update(self, result):
        self.loss += result.loss_sum
        self.correct += result.correct
        self.count += result.count
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{self.loss / self.count:.4f}",
                                 acc=f"{self.correct / self.count:.4f}", lr=f"{self.lr:.4g}",
                                 img_s=f"{self.count / (time.perf_counter() - self.start):.1f}",
                                 refresh=False)
            self.bar.update(1)

    def close(self):
        """Remove the bar (the caller prints the epoch's line)."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


_prefix = ""  # "[rank N] " in a distributed job


def set_prefix(prefix):
    global _prefix
    _prefix = prefix


def echo(message="", err=False):
    """Print a message (each of its lines prefixed by this process's rank, if distributed)."""
    for line in str(message).splitlines() or [""]:
        click.echo(_prefix + line, err=err)


def _tf32(cfg):
    """What a GPU run's float32 is (config.py's --tf32)."""
    if not cfg.gpus:
        return ""
    return " (TF32 allowed on Ampere and newer)" if cfg.tf32 else " (TF32 off)"


def print_header(spec, path, engine, data, state):
    """The lines a run starts with: model, devices, data, where results go."""
    cfg = spec.config
    val = "test split" if data.val_is_test else "held out from train"
    on = describe(engine.contexts) + engine.group.describe()
    echo(f"swishtrain {__version__}: {cfg.model} (width {cfg.width:g}, "
         f"{count_params(cfg.model, cfg.width):,} parameters) on {on}, "
         f"batch {spec.global_batch}, {cfg.dtype}{_tf32(cfg)}")
    echo(f"data: {len(data.train):,} train / {len(data.val):,} validation ({val}) images "
         f"from {data.source}")
    if state.epochs_done >= cfg.epochs:
        echo(f"all {cfg.epochs} epochs are done; pass --epochs N to train longer")
    elif state.epochs_done:
        echo(f"resuming after epoch {state.epochs_done} (best so far "
             f"{state.best_val_acc:.4f} at epoch {state.best_epoch})")
    echo(f"run folder: {path}")
