"""Fixtures of the analysis tests."""
import pytest
from run_folders import curve, make_run


@pytest.fixture
def two_groups(tmp_path):
    """relu: best 0.90/0.92/0.94 at epochs 3/5/4; swish: best 0.95/0.96/0.97 (clearly better)."""
    for seed, (best, epoch, final, secs) in enumerate([(0.90, 3, 0.89, 10.0), (0.92, 5, 0.91, 12.0),
                                                       (0.94, 4, 0.93, 14.0)]):
        make_run(tmp_path / "relu" / f"seed-{seed}", curve(best, epoch, final, 6), seed=seed,
                 seconds=secs, model="vgg16_bn")
    for seed, best in enumerate([0.95, 0.96, 0.97]):
        make_run(tmp_path / "swish" / f"seed-{seed}", curve(best, 6, best, 6), seed=seed,
                 seconds=20.0, model="vgg16_bn_swish")
    return tmp_path
