"""The fused Swish operators: same values and gradients as the formula, and a safe fallback."""
import os
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from train_cli.model import swish_op
from train_cli.model.activations import Swish, SwishBeta

needs_compiler = pytest.mark.skipif(not shutil.which(os.environ.get("CXX", "g++")),
                                    reason="no C++ compiler")


def inputs(shape=(4, 8, 6, 6), seed=0):
    x = np.random.default_rng(seed).normal(0, 4, size=shape).astype(np.float32)
    x.flat[:6] = [-100, -30, -0.0, 0.0, 30, 100]  # saturation and the sign of zero
    return x


def reference(x, beta, dy):
    """float64 y, dx, dbeta of x * sigmoid(beta * x)."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    s = 1 / (1 + np.exp(-beta * x))
    return x * s, dy * (s + beta * x * s * (1 - s)), np.sum(dy * x * x * s * (1 - s))


def run(block, x, dy, hybridize, beta=None):
    block.initialize()
    if beta is not None:
        block.beta.set_data(mx.nd.array([beta]))
    if hybridize:
        block.hybridize(static_alloc=True, static_shape=True)
    xs = mx.nd.array(x)
    xs.attach_grad()
    for _ in range(2):  # the second pass runs the cached graph
        with autograd.record():
            y = block(xs)
        y.backward(mx.nd.array(dy))
    params = list(block.collect_params().values())
    return y.asnumpy(), xs.grad.asnumpy(), params[0].grad().asnumpy()[0] if params else None


@needs_compiler
def test_fused_library_builds_and_loads():
    assert swish_op.load(), swish_op.status()
    assert hasattr(mx.nd, "fused_swish") and hasattr(mx.nd, "fused_swish_beta")


@needs_compiler
@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_swish_matches_the_formula(fused, hybridize):
    x = inputs()
    dy = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    y, dx, _ = run(Swish(fused=fused), x, dy, hybridize)
    y_ref, dx_ref, _ = reference(x, 1.0, dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=2e-6)


@needs_compiler
@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("beta", [0.5, 1.7])
def test_swish_beta_matches_the_formula_including_the_beta_gradient(fused, hybridize, beta):
    x = inputs(seed=2)
    dy = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    y, dx, dbeta = run(SwishBeta(fused=fused), x, dy, hybridize, beta)
    y_ref, dx_ref, dbeta_ref = reference(x, beta, dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=2e-6)
    assert dbeta == pytest.approx(dbeta_ref, rel=1e-4)


@needs_compiler
def test_beta_gradient_is_bit_identical_across_thread_counts(tmp_path):
    """Exact resume needs reproducible gradients: the beta reduction must not depend on threads."""
    script = ("import numpy as np, mxnet as mx; from mxnet import autograd; "
              "from train_cli.model.activations import SwishBeta; b = SwishBeta(); b.initialize(); "
              "x = mx.nd.array(np.random.default_rng(0).normal(size=(64, 64, 32, 32))); "
              "x.attach_grad()\nwith autograd.record(): y = b(x)\ny.backward(); "
              "print(repr(float(b.beta.grad().asnumpy()[0])))")
    outs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS=str(n)), check=True).stdout
            for n in (1, 2)}
    assert len(outs) == 1, outs


def test_without_a_compiler_swish_falls_back_to_gluon(tmp_path):
    env = dict(os.environ, CXX=str(tmp_path / "no-such-compiler"),
               SWISHTRAIN_CACHE=str(tmp_path / "cache"))
    script = ("from train_cli.model.activations import Swish; import mxnet as mx; s = Swish(); "
              "print('fused' if s.fused else 'gluon', s(mx.nd.array([2.0])).asscalar())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    kind, value = done.stdout.split()
    assert kind == "gluon" and float(value) == pytest.approx(2 / (1 + np.exp(-2)), rel=1e-6)
    assert "fused Swish unavailable" in done.stderr and "no C++ compiler" in done.stderr
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.so"))


@needs_compiler
def test_build_writes_the_library_atomically_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SWISHTRAIN_CACHE", str(tmp_path))
    path = swish_op.build()
    assert path.is_file() and path.parent.parent == tmp_path / "ops"
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_compile_raises_and_leaves_nothing_behind(tmp_path, monkeypatch):
    # a "compiler" that writes half a library, then fails as a real one would
    fake = tmp_path / "fake-cxx"
    fake.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && echo half > "$2"; shift; '
                    'done\necho "error: boom" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    path = tmp_path / "lib" / "libswish.so"
    with pytest.raises(RuntimeError, match="boom"):
        swish_op.build(path)
    assert [p.name for p in path.parent.iterdir()] == [".lock"]
