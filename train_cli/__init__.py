"""swishtrain: train VGG networks on CIFAR-10 with MXNet Gluon to compare ReLU and Swish.

Importing the package changes nothing in the process: the thread settings MXNet needs are
applied by the `swishtrain` entry point and the benchmarks (threads.configure; see threads.py).
"""
__version__ = "0.2.0"
