"""The networks: spec (the VGG table and names, no MXNet), vgg (the Gluon networks built from it),
activations (the activation blocks by name) and swish_op (the fused Swish operators).

This package itself imports nothing, so `train_cli.model.spec` stays free of MXNet.
"""
