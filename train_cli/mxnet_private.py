"""Every use of MXNet 1.9.1's private attributes, in one small adapter.

Gluon's public API cannot read or restore a parameter's optimiser state, start the KVStore (and
finish its initial broadcast) before the first step, or name parameters structurally; exact
resume and distributed training need all three. amp cannot say whether it is on (bfloat16
needs to know, since loading an operator library would then undo it).
tests/test_mxnet_private.py fails loudly when an MXNet version moves any of these attributes.
"""
import mxnet as mx

# (object, attribute) pairs this module relies on; checked by the test
TRAINER_ATTRIBUTES = ("_params", "_updaters", "_contexts", "_optimizer", "_scale", "_kvstore",
                      "_init_kvstore", "_init_params")
UPDATER_ATTRIBUTES = ("states", "states_synced", "optimizer")
BLOCK_ATTRIBUTES = ("_collect_params_with_prefix",)
KVSTORE_ATTRIBUTES = ("_barrier",)
AMP_ATTRIBUTES = ("_amp_initialized",)


def structural_params(net):
    """{'features.0.weight': Parameter, ...}: names independent of how many blocks were built."""
    return net._collect_params_with_prefix()


def trainer_params(trainer):
    """The trainer's parameters, in the order of the optimiser's state indices."""
    return trainer._params


def optimizer_state(trainer, index):
    """The optimiser state of parameter `index` (SGD: its momentum), from the first device.

    With updates on the workers (update_on_kvstore=False, every kind of job but dist_async, which
    is never checkpointed for resume) every device holds the same state.
    """
    return trainer._updaters[0].states.get(index)


def set_optimizer_state(trainer, index, make_state):
    """Replace parameter `index`'s optimiser state on every device by make_state(optimizer, ctx)."""
    for updater, ctx in zip(trainer._updaters, trainer._contexts):
        updater.states[index] = make_state(updater.optimizer, ctx)
        updater.states_synced[index] = True


def start_kvstore(trainer, global_batch):
    """Create the trainer's KVStore and finish its initial broadcast now.

    Gluon does this lazily at the first step. Done then, the broadcast copies device 0's values
    over the others (BatchNorm statistics included, which after a resume would overwrite what
    the first batch computed), and on a distributed KVStore the first gradient push can overtake
    the initial weights.
    """
    # rescale_grad must be final first: with update_on_kvstore the optimiser is pickled to the
    # servers inside _init_kvstore, once
    trainer._optimizer.rescale_grad = trainer._scale / global_batch
    trainer._init_kvstore()
    trainer._init_params()
    # the init pushes are asynchronous engine operations: wait for all of them, or a fast
    # worker's first gradient reaches a server before that key exists
    mx.nd.waitall()


def kvstore_barrier(kv):
    """Wait until every worker of a distributed KVStore has reached this point."""
    kv._barrier()


def amp_initialized():
    """True once mx.contrib.amp.init() has run in this process (it cannot be undone)."""
    from mxnet.contrib.amp import amp
    return amp._amp_initialized
