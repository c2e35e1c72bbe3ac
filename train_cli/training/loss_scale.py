"""Dynamic loss scaling for float16 training: small gradients survive, overflow steps are skipped.

float16 holds nothing below ~6e-8, so most of a network's gradients would round to zero; the
loss is multiplied by a large scale before backward and the update divides it out. When a
gradient overflows (inf/NaN) the step is skipped and the scale halved; after `growth_interval`
good steps in a row it doubles again. A real divergence is not an overflow: a loss that is not
finite still stops the run (Engine), and so does a scale that has fallen to `min_scale`, which
means the gradients overflow float16 however small the loss is made.
"""
from dataclasses import asdict, dataclass


@dataclass
class DynamicLossScale:
    """The scale and its update rule (state saved in the checkpoint, so a resume is exact)."""
    scale: float = 2.0 ** 16
    good_steps: int = 0
    growth_interval: int = 2000
    factor: float = 2.0
    min_scale: float = 2.0 ** -14
    active = True

    def update(self, overflow):
        """Record one step's outcome; True when its update should be applied."""
        if overflow:
            self.scale, self.good_steps = self.scale / self.factor, 0
            return False
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale, self.good_steps = self.scale * self.factor, 0
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
