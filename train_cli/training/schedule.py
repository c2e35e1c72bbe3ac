"""The learning-rate schedule: a pure function of how many epochs are done.

`steps=(10, 20, 30)` multiplies the rate by `factor` once 10, 20 and 30 epochs have completed, so
epochs 1-10 (1-based) use lr, 11-20 lr*factor, and so on. (The 2018 script applied each step one
epoch late, at the end of the epoch after.) Workers set the rate of each epoch from lr_at; in
dist_async the servers run the optimiser, so they get the same rule as a ServerSchedule.
"""


def lr_at(epochs_done, base_lr, steps, factor):
    """Rate used during the epoch that follows `epochs_done` completed epochs."""
    return base_lr * factor ** sum(1 for s in steps if epochs_done >= s)


class ServerSchedule:
    """lr_at counted in optimiser updates, for a dist_async job's servers.

    Every worker's push is one update there, so an epoch is batches x workers updates; MXNet
    numbers updates from 1. (dist_async runs start from epoch 0: they cannot be resumed.)
    MXNet's optimiser needs only `base_lr` and a call with the update count. The servers
    unpickle this class while mxnet is still being imported, so this module imports nothing.
    """

    def __init__(self, base_lr, steps, factor, updates_per_epoch):
        self.base_lr = base_lr
        self.steps, self.factor = tuple(steps), factor
        self.updates_per_epoch = max(1, updates_per_epoch)

    def __call__(self, num_update):
        done = (max(num_update, 1) - 1) // self.updates_per_epoch
        return lr_at(done, self.base_lr, self.steps, self.factor)
