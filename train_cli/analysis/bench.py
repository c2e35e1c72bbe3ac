"""`swishtrain bench`: how fast training runs here, and how close to the machine's ceiling.

Measures, in one process and after warm-up, each several times (median, min, max):
- train img/s: the optimiser step alone, on a batch already on the device (the harness's
  TrainStep, as every script in benchmarks/ times it);
- epoch img/s: the real training loop (data pipeline, augmentation, per-batch bookkeeping);
- eval img/s: exact evaluation at --eval-batch-size;
- data img/s: the shuffling + augmentation + normalisation pipeline alone (one thread);
- GEMM GFLOP/s, the practical compute ceiling of the devices trained on (harness.gemm_ceiling):
  on the CPU oneDNN's inner product (MXNet's FullyConnected) on square float32 matrices, the
  library the convolutions run on, with MXNet's dot (OpenBLAS) and numpy's matmul beside it; on
  GPUs the best of MXNet's dot and FullyConnected on the first GPU in the training dtype
  (float16: float16 in and out with float32 accumulation), times the number of GPUs. Under
  --dtype bfloat16 the FullyConnected one runs in bfloat16 (amp casts it, as it casts the
  network's dense layers), so the ceiling is the bfloat16 one (AMX's where the CPU has it);
- on the CPU, its arithmetic peak (cores x clock x flop per cycle, train_cli.cpu). A ceiling or
  a model above the peak, or a model above the ceiling, is said so in words, not as a ratio.
FLOPs per image: see train_cli/analysis/harness.py.
"""
import resource
import statistics

from train_cli.analysis.harness import (
    LR,
    TrainStep,
    gemm_ceiling,
    judge,
    machine_peak,
    spread,
    synthetic_split,
    timed,
)
from train_cli.data.loader import Prefetcher, train_batches
from train_cli.model import swish_op
from train_cli.model.spec import uses_fused_op
from train_cli.model.vgg import count_params
from train_cli.runspec import rules


def run_bench(cfg, steps=10, repeats=3, warmup=2, sgemm_size=2048):
    """Measure one configuration; returns a JSON-ready dict."""
    rules.check_options(cfg)  # before the devices' preflight, as a run does
    train_step = TrainStep(cfg)
    engine, contexts, batch = train_step.engine, train_step.contexts, train_step.batch
    split = synthetic_split(batch * steps)

    def epoch_batches():  # the training loop's batches of one epoch
        return train_batches(split, batch, cfg.seed, 0, cfg.augment, shuffle=cfg.shuffle,
                             inputs=cfg.input_norm)

    def train_epoch():
        with Prefetcher(epoch_batches()) as batches:
            engine.train_epoch(batches, LR, cfg.seed, 0)

    def data_pipeline():
        for _ in epoch_batches():
            pass

    eval_split = synthetic_split(engine.eval_batch_size * 4, seed=1)
    images = batch * steps
    train = train_step.rates(steps, repeats, warmup)
    epoch = [images / t for t in timed(train_epoch, repeats, 1)]
    evaluation = [len(eval_split) / t
                  for t in timed(lambda: engine.evaluate(eval_split), repeats, 1)]
    data = [images / t for t in timed(data_pipeline, repeats, 1)]
    ceiling, backend, by_backend = gemm_ceiling(contexts, cfg.dtype, sgemm_size)
    peak = machine_peak(contexts, cfg.dtype)
    peak_gflops = peak and peak["gflops"]
    gflop_per_img = train_step.gflop_per_img()
    train_img_per_s = statistics.median(train)
    achieved = gflop_per_img * train_img_per_s
    return {
        "model": cfg.model, "width": cfg.width, "parameters": count_params(cfg.model, cfg.width),
        "batch_size": batch, "eval_batch_size": engine.eval_batch_size, "dtype": cfg.dtype,
        "devices": [str(c) for c in contexts], "augment": cfg.augment,
        "swish": (swish_op.status() if uses_fused_op(cfg.model)
                  else "n/a"),
        "train_img_per_s": train_img_per_s, "epoch_img_per_s": statistics.median(epoch),
        "eval_img_per_s": statistics.median(evaluation),
        "data_img_per_s": statistics.median(data),
        "spread": {"train_img_per_s": spread(train), "epoch_img_per_s": spread(epoch),
                   "eval_img_per_s": spread(evaluation), "data_img_per_s": spread(data)},
        "gflop_per_img": gflop_per_img, "achieved_gflops": achieved,
        "sgemm_gflops": ceiling, "sgemm_backend": backend, "sgemm_by_backend": by_backend,
        "peak": peak, "peak_gflops": peak_gflops, **judge(achieved, ceiling, peak_gflops),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": steps, "repeats": repeats, "sgemm_size": sgemm_size,
    }


def format_report(r):
    """The table `swishtrain bench` prints."""
    lines = [f"{r['model']} (width {r['width']:g}, {r['parameters']:,} parameters), batch "
             f"{r['batch_size']} on {', '.join(r['devices'])}, {r.get('dtype', 'float32')}; "
             f"swish: {r['swish']}",
             f"{'':28}{'median':>10}{'min':>10}{'max':>10}"]
    labels = {"train_img_per_s": "train step img/s", "epoch_img_per_s": "epoch img/s (with data)",
              "eval_img_per_s": "eval img/s", "data_img_per_s": "data pipeline img/s"}
    for key, label in labels.items():
        s = r["spread"][key]
        lines.append(f"{label:28}{s['median']:10.1f}{s['min']:10.1f}{s['max']:10.1f}")
    measured = {k: f"{k} {v:.0f}" for k, v in r["sgemm_by_backend"].items()}
    if r["peak"]:  # the CPU: the ceiling is oneDNN's, the others are measured beside it
        how = "oneDNN's inner product; also measured: " + ", ".join(
            text for k, text in measured.items() if k != r["sgemm_backend"])
    else:
        how = "best of " + ", ".join(measured.values())
    lines += [
        f"{'GFLOP per image (train)':28}{r['gflop_per_img']:10.3f}",
        f"{'achieved GFLOP/s':28}{r['achieved_gflops']:10.1f}",
        f"{'GEMM ceiling GFLOP/s':28}{r['sgemm_gflops']:10.1f}   ({how})",
    ]
    if r["peak"]:
        p = r["peak"]
        lines.append(f"{'CPU peak GFLOP/s':28}" + (
            f"{p['gflops']:10.1f}   ({p['cores']} cores x {p['ghz']:.2f} GHz x "
            f"{p['flop_per_cycle']} flop/cycle, {p['how']}; clock from {p['clock_source']})"
            if p["gflops"] else f"{'n/a':>10}   ({p['how']}; clock from {p['clock_source']})"))
    for label, key in (("fraction of ceiling", "fraction_of_ceiling"),
                       ("fraction of peak", "fraction_of_peak")):
        if key == "fraction_of_peak" and not r["peak_gflops"]:
            continue  # no peak known (GPUs, or no clock): nothing to divide by
        lines.append(f"{label:28}" + (f"{r[key]:10.2f}" if r[key] is not None
                                       else f"{'n/a':>10}   (no bound: see the note below)"))
    lines += [
        f"{'epoch / train step':28}{r['epoch_img_per_s'] / r['train_img_per_s']:10.2f}",
        f"{'eval / train step':28}{r['eval_img_per_s'] / r['train_img_per_s']:10.2f}",
        f"{'peak RSS MB':28}{r['peak_rss_mb']:10.0f}",
    ]
    lines += [f"note: {note}" for note in r["notes"]]
    return "\n".join(lines)
