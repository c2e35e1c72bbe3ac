"""Learning-rate schedule: a pure function of how many epochs are done.

`steps=(10, 20, 30)` multiplies the rate by `factor` once 10, 20 and 30 epochs have completed, so
epochs 1-10 (1-based) use lr, 11-20 lr*factor, and so on. (The 2018 script applied each step one
epoch late, at the end of the epoch after.)
"""


def lr_at(epochs_done, base_lr, steps, factor):
    """Rate used during the epoch that follows `epochs_done` completed epochs."""
    return base_lr * factor ** sum(1 for s in steps if epochs_done >= s)
