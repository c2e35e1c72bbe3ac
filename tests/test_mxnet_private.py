"""The MXNet private attributes swishtrain relies on still exist (fails loudly on an upgrade)."""
import mxnet as mx
from mxnet import gluon

from train_cli import mxnet_private
from train_cli.model.vgg import build_model


def test_every_private_attribute_the_adapter_uses_exists():
    net = build_model("vgg11_bn", width=0.125)
    net.initialize(ctx=[mx.cpu(0), mx.cpu(1)])  # two devices: Gluon makes a KVStore
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                            kvstore="device", update_on_kvstore=False)
    mxnet_private.start_kvstore(trainer, 8)
    missing = [f"Trainer.{a}" for a in mxnet_private.TRAINER_ATTRIBUTES if not hasattr(trainer, a)]
    missing += [f"Updater.{a}" for a in mxnet_private.UPDATER_ATTRIBUTES
                if not hasattr(trainer._updaters[0], a)]
    missing += [f"Block.{a}" for a in mxnet_private.BLOCK_ATTRIBUTES if not hasattr(net, a)]
    missing += [f"KVStore.{a}" for a in mxnet_private.KVSTORE_ATTRIBUTES
                if not hasattr(mx.kv.KVStore, a)]
    from mxnet.contrib.amp import amp
    missing += [f"amp.{a}" for a in mxnet_private.AMP_ATTRIBUTES if not hasattr(amp, a)]
    assert not missing, f"MXNet {mx.__version__} moved {missing}: update train_cli/mxnet_private.py"
    assert trainer._kvstore is not None and trainer._kvstore.type == "device"  # made now


def test_optimizer_state_round_trips_through_the_adapter():
    net = build_model("vgg11", width=0.125)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                            update_on_kvstore=False)
    mxnet_private.start_kvstore(trainer, 2)
    with mx.autograd.record():
        loss = net(mx.nd.ones((2, 3, 32, 32))).sum()
    loss.backward()
    trainer.step(2)
    params = mxnet_private.trainer_params(trainer)
    momentum = mxnet_private.optimizer_state(trainer, 0)
    assert momentum.shape == params[0].shape and float(momentum.abs().sum().asscalar()) > 0
    mxnet_private.set_optimizer_state(trainer, 0, lambda opt, ctx: mx.nd.full(momentum.shape, 3,
                                                                              ctx=ctx))
    assert float(mxnet_private.optimizer_state(trainer, 0).mean().asscalar()) == 3.0
    names = list(mxnet_private.structural_params(net))
    assert names[0] == "features.0.weight"
