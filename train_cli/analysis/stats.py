"""The statistics of `compare`: a bootstrap interval of a difference of means, Student-t
quantiles, and the power of a two-sample comparison (what a difference needs in seeds).

Pure and small: math and numpy only (no scipy, which the package does not depend on). numpy is
imported by the two functions that use it, so that the CLI's --help, which quotes CONFIDENCE
and POWER, stays instant.
"""
import math

RESAMPLES = 10_000
CONFIDENCE = 0.95  # two-sided
POWER = 0.80
MAX_SEEDS = 10_000  # seeds_per_arm stops looking here and answers "more than"


def bootstrap_diff(a, b, resamples=RESAMPLES, seed=0, confidence=CONFIDENCE):
    """Percentile interval of mean(b) - mean(a), resampling the runs of each group on its own."""
    import numpy as np
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
    means_b = b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means_b - means_a, [tail, 100 - tail])
    return float(b.mean() - a.mean()), float(low), float(high)


# -----------------------------------------------------------------------------
# Student's t distribution
def _betacf(a, b, x):
    """Continued fraction of the regularised incomplete beta (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a, b, x):
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    # the continued fraction converges fast only below the mean; use the symmetry above it
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p, df):
    """The t with P(T <= t) = p for Student's t with df degrees of freedom (0 < p < 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2.0 * high
    for _ in range(200):  # bisection: the cdf is monotone, so this cannot miss
        mid = 0.5 * (low + high)
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


# -----------------------------------------------------------------------------
# Power of a two-sample, two-sided t test
def pooled_std(a, b):
    """Pooled sample standard deviation of two groups (each needs 2 or more values)."""
    import numpy as np
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a pooled std needs 2 or more values in each group")
    ss = (len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)
    return float(math.sqrt(ss / (len(a) + len(b) - 2)))


def _t_factor(df, confidence=CONFIDENCE, power=POWER):
    """t_{1-alpha/2,df} + t_{power,df}: the difference in standard errors a test needs."""
    return t_quantile(1.0 - (1.0 - confidence) / 2.0, df) + t_quantile(power, df)


def detectable_difference(std, n1, n2, confidence=CONFIDENCE, power=POWER):
    """Smallest true difference of means that n1 and n2 runs detect (two-sided test, given power).

    (t_{1-(1-confidence)/2,df} + t_{power,df}) * std * sqrt(1/n1 + 1/n2), df = n1 + n2 - 2;
    same units as std.
    """
    if n1 < 2 or n2 < 2:
        raise ValueError("power needs 2 or more runs in each group")
    return _t_factor(n1 + n2 - 2, confidence, power) * std * math.sqrt(1.0 / n1 + 1.0 / n2)


def seeds_per_arm(difference, std, confidence=CONFIDENCE, power=POWER, max_seeds=MAX_SEEDS):
    """Fewest runs per group (>= 2) that detect `difference` given the seed-to-seed `std`.

    None when even max_seeds would not do. difference and std share units.
    """
    if difference <= 0:
        raise ValueError(f"the difference to detect must be positive, got {difference}")

    def enough(n):
        return detectable_difference(std, n, n, confidence, power) <= difference

    if not enough(max_seeds):
        return None
    low, high = 1, max_seeds  # enough(high) holds; low is below the minimum of 2 runs
    while high - low > 1:  # the detectable difference falls as n grows: bisect on n
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid
    return high
