"""Dynamic loss scaling for float16 training: small gradients survive, overflow steps are skipped.

float16 holds nothing below ~6e-8, so most of a network's gradients would round to zero; the
loss is multiplied by a large scale before backward and the update divides it out. When a
gradient overflows (inf/NaN) the step is skipped and the scale halved; after `growth_interval`
good steps in a row it doubles again. A real divergence is not an overflow: a loss that is not
finite still stops the run (Engine), and so does a scale that has fallen to `min_scale`, which
means the gradients overflow float16 however small the loss is made. all_finite() is the
overflow check.

The scale is MXNet amp's (python/mxnet/contrib/amp/loss_scaler.py at 1.9.1: start 2^16, at
most 2^24) for a mean loss. Our loss is the per-image sum (the update divides by the global
batch), so its gradients are a batch times larger: both bounds are divided by the global batch
rounded up to a power of two (a power of two keeps scaling and unscaling exact).
"""
import math
from dataclasses import asdict, dataclass

import mxnet as mx

AMP_START, AMP_MAX = 2.0 ** 16, 2.0 ** 24


@dataclass
class DynamicLossScale:
    """The scale and its update rule (state saved in the checkpoint, so a resume is exact)."""
    scale: float = 2.0 ** 16
    good_steps: int = 0
    growth_interval: int = 2000
    factor: float = 2.0
    min_scale: float = 2.0 ** -14
    max_scale: float = AMP_MAX
    active = True

    @classmethod
    def for_batch(cls, global_batch):
        """amp's bounds for a loss summed over global_batch images (see module doc)."""
        per_image = 2.0 ** math.ceil(math.log2(max(1, global_batch)))
        return cls(scale=AMP_START / per_image, max_scale=AMP_MAX / per_image)

    def update(self, overflow):
        """Record one step's outcome; True when its update should be applied."""
        if overflow:
            self.scale, self.good_steps = self.scale / self.factor, 0
            return False
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale, self.good_steps = min(self.scale * self.factor, self.max_scale), 0
        return True

    @property
    def exhausted(self):
        """The scale fell so low that the overflow is not a matter of scaling."""
        return self.scale < self.min_scale

    def state(self):
        """What a checkpoint keeps."""
        return asdict(self)

    def load(self, state):
        """Continue from a checkpoint's state."""
        for key, value in (state or {}).items():
            setattr(self, key, value)


class NoLossScale:
    """float32 training: no scaling, no overflow check."""

    scale = 1.0
    active = False

    def state(self):
        """Nothing to keep."""
        return {}

    def load(self, state):
        """Nothing to restore."""


# src/operator/contrib/all_finite-inl.h at 1.9.1: MultiAllFiniteParam's num_arrays is at most 200
MULTI_ALL_FINITE_MAX = 200


def all_finite(arrays):
    """Whether every element of arrays (all of one dtype and device) is finite."""
    return all(bool(mx.nd.multi_all_finite(*chunk, num_arrays=len(chunk),
                                           init_output=True).asscalar())
               for chunk in (arrays[i:i + MULTI_ALL_FINITE_MAX]
                             for i in range(0, len(arrays), MULTI_ALL_FINITE_MAX)))
