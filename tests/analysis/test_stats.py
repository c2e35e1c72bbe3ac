"""analysis/stats.py: Student-t quantiles, power of a two-sample comparison, the bootstrap."""
import math
import subprocess
import sys

import numpy as np
import pytest

from train_cli.analysis import stats


@pytest.mark.parametrize("p, df, expected", [
    (0.975, 2, 4.302653), (0.975, 4, 2.776445), (0.8, 4, 0.940965), (0.975, 10, 2.228139),
    (0.975, 1000, 1.962339), (0.975, 1, 12.706205), (0.8, 1, 1.376382), (0.5, 7, 0.0),
])
def test_t_quantiles_match_the_tables(p, df, expected):
    assert stats.t_quantile(p, df) == pytest.approx(expected, abs=2e-6)


def test_t_quantile_is_symmetric_and_inverts_the_cdf():
    assert stats.t_quantile(0.025, 4) == pytest.approx(-2.776445, abs=2e-6)
    for p, df in [(0.9, 3), (0.99, 25), (0.6, 2.5)]:
        assert stats.t_cdf(stats.t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)
    assert stats.t_quantile(0.975, 1e6) == pytest.approx(1.959966, abs=1e-5)  # the normal's


@pytest.mark.parametrize("p, df", [(0, 3), (1, 3), (0.5, 0)])
def test_t_quantile_refuses_what_has_none(p, df):
    with pytest.raises(ValueError):
        stats.t_quantile(p, df)


def test_pooled_std_weights_by_degrees_of_freedom():
    # variances 4 (3 values) and 1 (2 values): (2 * 4 + 1 * 1) / 3 = 3
    assert stats.pooled_std([1.0, 3.0, 5.0], [0.0, math.sqrt(2)]) == pytest.approx(math.sqrt(3))
    with pytest.raises(ValueError):
        stats.pooled_std([1.0], [1.0, 2.0])


def test_detectable_difference_by_hand():
    # 3 + 3 runs, df 4: (2.776445 + 0.940965) * 1 * sqrt(2/3) = 3.035257
    assert stats.detectable_difference(1.0, 3, 3) == pytest.approx(3.035257, abs=1e-5)
    # 2 + 4 runs, df 4: the same t's, sqrt(1/2 + 1/4)
    assert stats.detectable_difference(0.5, 2, 4) == \
        pytest.approx((2.776445 + 0.940965) * 0.5 * math.sqrt(0.75), abs=1e-5)
    assert stats.detectable_difference(0.0, 3, 3) == 0.0  # no spread: no division by zero


def test_seeds_per_arm_is_the_smallest_n_that_reaches_the_difference():
    # 3.035257 is exactly what 3 seeds per arm detect with std 1
    assert stats.seeds_per_arm(3.04, 1.0) == 3 and stats.seeds_per_arm(3.03, 1.0) == 4
    # normal approximation 2 * (1.96 + 0.84)^2 = 15.7; the t's push it to 17
    n = stats.seeds_per_arm(1.0, 1.0)
    assert n == 17
    assert stats.detectable_difference(1.0, n, n) <= 1.0 < stats.detectable_difference(1.0, 16, 16)
    assert stats.seeds_per_arm(100.0, 1.0) == 2  # never fewer than 2 runs per arm
    assert stats.seeds_per_arm(0.5, 0.0) == 2  # no spread: no division by zero
    assert stats.seeds_per_arm(1e-6, 1.0) is None  # more than MAX_SEEDS
    assert stats.seeds_per_arm(1.0, 1.0, max_seeds=10) is None
    with pytest.raises(ValueError):
        stats.seeds_per_arm(0.0, 1.0)


def test_bootstrap_is_seeded_and_resamples():
    a, b = [0.901, 0.923, 0.947, 0.912, 0.905, 0.931], [0.933, 0.951, 0.922, 0.944]
    assert stats.bootstrap_diff(a, b) == stats.bootstrap_diff(a, b)  # default_rng(0)
    assert stats.bootstrap_diff(a, b, seed=1) != stats.bootstrap_diff(a, b)  # a real resampling
    diff, low, high = stats.bootstrap_diff(a, b)
    assert diff == pytest.approx(np.mean(b) - np.mean(a)) and low < diff < high
    assert stats.bootstrap_diff([0.9, 0.9], [0.95, 0.95]) == pytest.approx((0.05, 0.05, 0.05))


def test_the_settings_load_without_numpy():
    # the CLI's --help quotes CONFIDENCE and POWER: reading them must not cost numpy's import
    code = ("import sys; from train_cli.analysis.stats import CONFIDENCE, POWER; "
            "import train_cli.cli; assert 'numpy' not in sys.modules, 'numpy was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
