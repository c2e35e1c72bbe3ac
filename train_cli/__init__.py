"""swishtrain: train VGG networks on CIFAR-10 with MXNet Gluon to compare ReLU and Swish.

Importing the package fixes MXNet's thread settings (see ``threads.py``) before any submodule
imports mxnet: MXNet reads them once, at its own import, and the defaults halve CPU throughput.
"""
from train_cli import threads as _threads

__version__ = "0.1.0"

_threads.configure()
