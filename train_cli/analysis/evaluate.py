"""Re-evaluate a run's saved weights on a CIFAR-10 split, every image exactly once.

The network is rebuilt from the run's config.json; the data is split exactly as the run split it
(the held-out validation images depend only on --val-split, not on --seed), so `val` here is the
run's validation split.
"""
import dataclasses
from dataclasses import dataclass

from train_cli.config import validate
from train_cli.data.cifar10 import default_data_dir, load_cifar10
from train_cli.errors import UserError, last_line
from train_cli.runfolder import BEST_PARAMS, CHECKPOINT, CONFIG, METRICS, RunFolder
from train_cli.runspec import rules

SPLITS = ("test", "val", "train")
PARAMS = {"best": BEST_PARAMS, "last": CHECKPOINT}


@dataclass
class Evaluation:
    split: str
    params_file: str  # best.params or last.ckpt
    loss: float
    accuracy: float
    images: int
    val_is_test: bool
    device: str = "cpu(0)"
    devices: int = 1
    dtype: str = "float32"

    def line(self):
        """The sentence the evaluate command prints."""
        same = " (the run validated on the test split)" if self.val_is_test and \
            self.split in ("val", "test") else ""
        on = self.device + (f" and {self.devices - 1} more" if self.devices > 1 else "")
        return (f"{self.split} accuracy of {self.params_file}: {self.accuracy:.4f} on "
                f"{self.images:,} images (loss {self.loss:.4f}; {self.dtype} on {on}){same}")


def pick_split(data, split):
    """The Split object for 'test', 'val' or 'train' of a loaded Cifar10."""
    if split == "test":
        if data.test is None:
            raise UserError(f"{data.source} has no test batch; restore test_batch there or "
                            "use --split val")
        return data.test
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}", exit_code=2)
    return data.val if split == "val" else data.train


def evaluate_run(run_dir, split="test", data_dir=None, params="best", gpus=(), cpu_devices=1,
                 eval_batch_size=None, warn=print):
    """Load a run's weights (best.params or last.ckpt) and evaluate them on a split.

    Any run evaluates anywhere: on the devices given here (the CPU by default), whatever it was
    trained on; a float16 run evaluates in float32 on the CPU (its weights are cast on load),
    and a bfloat16 run in float32 (its weights are float32; any CPU can run that).
    """
    run = RunFolder.existing(run_dir)
    trained = run.config()
    cfg = dataclasses.replace(trained, gpus=tuple(gpus), cpu_devices=cpu_devices,
                              dtype=rules.evaluation_dtype(trained.dtype, gpus),
                              tf32=trained.tf32 and bool(gpus),  # TF32 is a GPU's arithmetic
                              eval_batch_size=trained.eval_batch_size if eval_batch_size is None
                              else eval_batch_size)
    validate(cfg)
    rules.check_options(cfg)  # before the data is read
    weights = run.file(PARAMS[params])
    if not weights.is_file():
        try:
            done = len(run.metrics()) if run.has(METRICS) else 0
        except (OSError, ValueError):
            done = 0
        hint = ("no epoch has completed yet" if params == "best" and not done else
                f"though {done} epoch(s) completed: it was deleted; evaluate the last epoch "
                "with --params last" if params == "best" else "try --params best")
        raise UserError(f"{weights} is missing ({hint}); nothing to evaluate")
    data = load_cifar10(data_dir or cfg.data_dir or default_data_dir(), cfg.val_split,
                        cfg.test_split, warn=warn,
                        streams_version=run.read_json(CONFIG).get("random_streams", 1))
    images = pick_split(data, split)

    # the network (and with it the fused Swish library) only now, after the cheap checks
    from train_cli.analysis.harness import build_engine
    from train_cli.model.vgg import shape_model
    from train_cli.training import checkpoint
    from train_cli.training.devices import make_contexts, preflight_memory
    contexts = make_contexts(cfg.gpus, cfg.cpu_devices, tf32=cfg.tf32)
    preflight_memory(shape_model(cfg.model, cfg.width), cfg, contexts, training=False)
    engine = build_engine(cfg, contexts)
    if params == "best":
        _load_params(engine, weights, cfg.model)
    else:
        checkpoint.restore_params(checkpoint.load(weights), engine.net, weights)
    loss, accuracy, n = engine.evaluate(images)
    return Evaluation(split, weights.name, loss, accuracy, n, data.val_is_test, str(contexts[0]),
                      len(contexts), cfg.dtype)


def _load_params(engine, path, model):
    import mxnet as mx
    try:
        engine.load_params(path)
    except (mx.base.MXNetError, AssertionError, ValueError) as e:
        raise UserError(f"{path} cannot be loaded into this run's {model} network "
                        f"({last_line(e)}); the file is corrupt or from another model") from None
