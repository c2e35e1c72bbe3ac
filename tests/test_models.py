"""Model registry, architecture and activations."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from train_cli.errors import UsageError
from train_cli.model.activations import make_activation
from train_cli.model.vgg import (
    MODEL_NAMES,
    build_model,
    count_params,
    parse_name,
    trainable_param_count,
)


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
    assert trainable_param_count(net) == count_params(name, width=0.125)
    assert net(mx.nd.zeros((2, 3, 32, 32))).shape == (2, 10)


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
