"""Model registry, architecture, FLOPs and activations."""
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from train_cli.errors import UsageError
from train_cli.model.activations import BLOCKS, make_activation
from train_cli.model.spec import ACTIVATIONS, MODEL_NAMES, parse_name
from train_cli.model.vgg import build_model, count_params, trainable_param_count


def initialised(net):
    net.initialize()
    net(mx.nd.zeros((2, 3, 32, 32)))
    return net


def test_vgg16_bn_matches_the_model_zoo_parameter_count():
    zoo = initialised(mx.gluon.model_zoo.vision.vgg16_bn(classes=10))
    ours = initialised(build_model("vgg16_bn"))
    assert trainable_param_count(ours) == trainable_param_count(zoo) == 33_646_666
    assert count_params("vgg16_bn") == 33_646_666
    # same layers, shapes and order as the zoo
    zoo_shapes = [p.shape for p in zoo.collect_params().values()]
    assert [p.shape for p in ours.collect_params().values()] == zoo_shapes


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_counted_parameters_match_the_built_network(name):
    net = initialised(build_model(name, width=0.125))
    arrays = sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")
    assert trainable_param_count(net) == count_params(name, width=0.125) == arrays
    assert net(mx.nd.zeros((2, 3, 32, 32))).shape == (2, 10)


def test_counting_needs_known_shapes_and_leaves_names_and_swish_alone():
    with pytest.raises(ValueError, match="unknown"):
        trainable_param_count(mx.gluon.model_zoo.vision.vgg11(classes=10))  # deferred shapes
    before = build_model("vgg11_swish")
    count_params("vgg11_swish")
    after = build_model("vgg11_swish")
    assert int(after.prefix[3:-1]) == int(before.prefix[3:-1]) + 1  # vgg<N>_: no gap
    assert count_params("vgg16_bn_swishbeta") == 33_646_666 + 15  # one beta per activation


def test_spec_and_config_validation_do_not_import_mxnet():
    code = ("import sys, train_cli.model.spec, train_cli.config; "
            "assert 'mxnet' not in sys.modules, 'mxnet imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_activation_blocks_are_the_spec_names():
    assert tuple(BLOCKS) == ACTIVATIONS


def test_forward_flops_of_vgg16_bn():
    # 2 FLOPs per multiply-add; 9 * cin * cout * side^2 per conv, stage by stage:
    # 9 * (3*64*32^2 + 64*64*32^2 + 64*128*16^2 + 128*128*16^2 + 128*256*8^2 + 2*256*256*8^2
    #      + 256*512*4^2 + 2*512*512*4^2 + 3*512*512*2^2) = 9 * 34,799,616 = 313,196,544;
    # dense: 512*4096 + 4096*4096 + 4096*10 = 18,915,328; 2 * 332,111,872 = 664,223,744
    # (the figure bench computed from the old layer plan)
    assert build_model("vgg16_bn").forward_flops() == 664_223_744
    assert build_model("vgg16").forward_flops() == 664_223_744  # BN and activations: no FLOPs


def test_forward_flops_at_width_one_eighth():
    # channels 8, 16, 32, 64, 64, dense 512: 9 * (3*8*32^2 + 8*8*32^2 + 8*16*16^2 + 16*16*16^2
    # + 16*32*8^2 + 2*32*32*8^2 + 32*64*4^2 + 2*64*64*4^2 + 3*64*64*2^2) = 9 * 565,248
    # = 5,087,232; dense 64*512 + 512*512 + 512*10 = 300,032; 2 * 5,387,264 = 10,774,528
    assert build_model("vgg16_bn_swish", width=0.125).forward_flops() == 10_774_528


def test_registry_has_every_depth_bn_and_activation():
    assert len(MODEL_NAMES) == 4 * 2 * 6
    assert parse_name("vgg16_bn_swish") == (16, True, "swish")
    assert parse_name("vgg19") == (19, False, "relu")


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(UsageError) as e:
        parse_name("vgg16_bn_swsh")
    assert "did you mean vgg16_bn_swish" in str(e.value)
    assert all(name in str(e.value) for name in MODEL_NAMES)


def test_width_scales_channels_and_dense_units():
    net = initialised(build_model("vgg11", width=0.25))
    shapes = [p.shape for p in net.collect_params().values()]
    assert shapes[0] == (16, 3, 3, 3)  # 64 * 0.25
    assert (1024, 128) in shapes  # Dense(4096 * 0.25) after 512 * 0.25 features


def test_swish_is_x_sigmoid_x_with_the_right_gradient():
    x = mx.nd.array(np.linspace(-6, 6, 101))
    x.attach_grad()
    with autograd.record():
        y = make_activation("swish")(x)
    y.backward()
    xs = x.asnumpy()
    s = 1 / (1 + np.exp(-xs))
    np.testing.assert_allclose(y.asnumpy(), xs * s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad.asnumpy(), s + xs * s * (1 - s), rtol=1e-5, atol=1e-6)


def test_swishbeta_learns_beta_starting_from_one():
    act = make_activation("swishbeta")
    act.initialize()
    x = mx.nd.array(np.linspace(-3, 3, 31))
    with autograd.record():
        y = act(x)
    y.backward()
    beta = list(act.collect_params().values())[0]
    assert beta.data().asscalar() == 1.0 and beta.grad_req == "write"
    xs = x.asnumpy()
    s = 1 / (1 + np.exp(-xs))
    np.testing.assert_allclose(y.asnumpy(), xs * s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(beta.grad().asscalar(), np.sum(xs * xs * s * (1 - s)), rtol=1e-4)


@pytest.mark.parametrize("name, expected", [
    ("relu", lambda x: np.maximum(x, 0)),
    ("elu", lambda x: np.where(x > 0, x, np.expm1(x))),
    ("selu", lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x))),
])
def test_other_activations_compute_their_formula(name, expected):
    x = np.linspace(-3, 3, 13)
    out = make_activation(name)(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(out, expected(x), rtol=1e-5, atol=1e-6)
