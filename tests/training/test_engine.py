"""The training step on one or several devices, and exact evaluation."""
import dataclasses

import mxnet as mx
import numpy as np
import pytest

from train_cli.analysis.harness import build_engine
from train_cli.config import TrainConfig
from train_cli.data.cifar10 import Split
from train_cli.data.loader import train_batches
from train_cli.errors import UsageError
from train_cli.mxnet_private import structural_params
from train_cli.training.devices import make_contexts
from train_cli.training.engine import Diverged

from helpers import synthetic_split

# No BatchNorm and no dropout: the only configuration where a split batch must give exactly the
# same update as the whole batch (BN normalises per device; dropout draws per device).
PLAIN = TrainConfig(model="vgg11", width=0.125, dropout=0.0, batch_size=8, lr=0.05, seed=7)


def split(n, seed=0):
    images, labels = synthetic_split(n, seed=seed)
    return Split(images, labels.astype(np.int32))


def params_after_one_epoch(cfg, data):
    engine = build_engine(cfg, make_contexts(cfg.gpus, cfg.cpu_devices))
    engine.train_epoch(train_batches(data, engine.batch_size, cfg.seed, 0, "none"), cfg.lr,
                       cfg.seed, 0)
    return {name: p.data(mx.cpu(0)).asnumpy()
            for name, p in structural_params(engine.net).items()}


def test_two_cpu_contexts_give_the_same_updates_as_one():
    data = split(32)
    one = params_after_one_epoch(PLAIN, data)
    two = params_after_one_epoch(dataclasses.replace(PLAIN, cpu_devices=2), data)
    assert one.keys() == two.keys()
    initial = structural_params(build_engine(PLAIN, [mx.cpu()]).net)
    moved = 0
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-6, err_msg=name)
        moved += not np.allclose(one[name], initial[name].data().asnumpy())
    assert moved == len(one)  # four SGD steps changed every parameter


def test_batch_is_split_over_cpu_devices_but_multiplied_over_gpus():
    engine = build_engine(dataclasses.replace(PLAIN, cpu_devices=2), make_contexts((), 2))
    assert engine.batch_size == 8 and len(engine.contexts) == 2


def test_evaluation_counts_every_image_exactly_once():
    cfg = dataclasses.replace(PLAIN, eval_batch_size=10)
    engine = build_engine(cfg, [mx.cpu()])
    data = split(23, seed=3)
    loss, acc, n = engine.evaluate(data)
    assert n == 23
    from train_cli.data.augment import normalise
    logits = engine.net(mx.nd.array(normalise(data.images))).asnumpy()
    expected = np.mean(logits.argmax(axis=1) == data.labels)
    assert acc == pytest.approx(expected, abs=1e-9)
    shifted = logits - logits.max(axis=1, keepdims=True)
    nll = -(shifted[np.arange(23), data.labels] - np.log(np.exp(shifted).sum(axis=1)))
    assert loss == pytest.approx(nll.mean(), rel=1e-4)


def test_divergence_names_the_epoch_and_batch():
    cfg = dataclasses.replace(PLAIN, lr=1e30)
    engine = build_engine(cfg, [mx.cpu()])
    with pytest.raises(Diverged, match=r"NaN/inf at epoch 3, batch \d+.*lower --lr"):
        engine.train_epoch(train_batches(split(64), 8, 0, 2, "none"), cfg.lr, 0, 2)


def test_gpus_on_a_cpu_only_build_is_a_usage_error():
    if mx.context.num_gpus():
        pytest.skip("this MXNet has CUDA")
    with pytest.raises(UsageError) as e:
        make_contexts(gpus=(0,))
    assert "make install CUDA=11.7" in str(e.value) and "mxnet-cu117" in str(e.value)


def test_batch_size_is_per_gpu_but_per_process_on_cpus():
    from train_cli.runspec import devices_of, one_process
    assert devices_of(TrainConfig(gpus=(0, 1))).process_batch(128) == 256
    assert devices_of(TrainConfig(cpu_devices=2)).process_batch(128) == 128
    study = one_process(TrainConfig(gpus=(2, 3), batch_size=64, eval_batch_size=100))
    assert (study.process_batch, study.global_batch, study.eval_batch) == (128, 128, 200)


def test_batchnorm_statistics_agree_across_devices_after_an_epoch():
    cfg = dataclasses.replace(PLAIN, model="vgg11_bn", cpu_devices=2)
    engine = build_engine(cfg, make_contexts((), 2))
    engine.train_epoch(train_batches(split(32), 8, 0, 0, "crop-flip"), cfg.lr, 0, 0)
    stats = [p for p in engine.net.collect_params().values() if p.grad_req == "null"]
    differ = [p.name for p in stats
              if not np.array_equal(*(d.asnumpy() for d in p.list_data()))]
    assert differ  # each device saw other images ...
    engine.sync_batchnorm_stats()
    for p in stats:  # ... and after averaging they hold the same statistics
        a, b = (d.asnumpy() for d in p.list_data())
        np.testing.assert_array_equal(a, b, err_msg=p.name)
