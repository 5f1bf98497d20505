"""Statistics over seeds: Student-t intervals, and the sentence the demo and the notebooks conclude with.

NumPy and SciPy only (SciPy comes with scikit-learn, in the `demo` and
`notebooks` extras): no Keras, so the demo's summary needs no backend.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

Values = Union[Sequence[float], np.ndarray]
"""Numbers, one per seed (a sequence or a one-dimensional array), as the statistics below take them."""


def mean_interval(values: Values, confidence: float = 0.95) -> Tuple[float, float]:
    """The mean and the half-width of its Student-t confidence interval (nan for one value).

    Needs scipy, which comes with scikit-learn (the `demo` and `notebooks` extras).
    """
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return float(array.mean()), float("nan")
    from scipy import stats

    half_width = stats.t.ppf(0.5 + confidence / 2, len(array) - 1) * array.std(ddof=1) / np.sqrt(len(array))
    return float(array.mean()), float(half_width)


MAX_SEEDS = 100  # the most seeds `seeds_to_separate` considers


def seeds_to_separate(differences: Values, confidence: float = 0.95) -> Optional[int]:
    """How many paired seeds would put 0 outside the interval, were their mean and spread these.

    The smallest `n` with `t(n - 1) * std / sqrt(n) < |mean|`, or None when
    no `n` up to `MAX_SEEDS` does (a mean of 0 never separates).
    """
    array = np.asarray(differences, dtype=float)
    mean, std = abs(float(array.mean())), float(array.std(ddof=1))
    from scipy import stats

    for n in range(2, MAX_SEEDS + 1):
        if stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n) < mean:
            return n
    return None


def describe_difference(
    differences: Values, name: str = "stochastic depth", baseline: str = "plain", confidence: float = 0.95
) -> str:
    """One sentence, computed from paired differences (`name` − `baseline`, one per seed).

    When the confidence interval of the mean difference excludes 0 the
    verdict is "higher" or "lower by more than the spread of the seeds".
    When it contains 0 the seeds cannot separate the two, and the sentence
    says how much that means: the range of true differences the seeds fit
    (two seeds' interval can span tens of points) and about how many paired
    seeds at this spread would separate a difference of the size seen. One
    seed gets no verdict.

    Args:
        differences: per-seed differences of a metric (e.g. test accuracy).
        name: what the first term is.
        baseline: what is subtracted.
        confidence: the level of the Student-t interval.

    Returns:
        A sentence such as "stochastic depth − plain: -0.0593 ± 0.3765 (95%
        interval over 2 paired seeds): 2 seeds cannot tell a 0.0593
        difference from seed-to-seed noise (true differences from -0.4358 to
        +0.3172 fit them); about 12 paired seeds at this spread would".
    """
    array = np.asarray(differences, dtype=float)
    if array.ndim != 1 or len(array) < 1:
        raise ValueError(
            "Invalid value received for argument `differences`. Expected a non-empty "
            f"1-D sequence of numbers. Received: differences={differences!r}"
        )
    mean, half_width = mean_interval(array, confidence)
    if len(array) == 1:
        return (
            f"{name} − {baseline}: {mean:+.4f} on one seed; one seed cannot tell a difference from seed-to-seed noise"
        )
    if abs(mean) <= half_width:
        verdict = (
            f"{len(array)} seeds cannot tell a {abs(mean):.4f} difference from seed-to-seed noise "
            f"(true differences from {mean - half_width:+.4f} to {mean + half_width:+.4f} fit them)"
        )
        needed = seeds_to_separate(array, confidence)
        verdict += (
            f"; about {needed} paired seeds at this spread would"
            if needed is not None
            else f"; no number of seeds up to {MAX_SEEDS} at this spread would"
        )
    else:
        verdict = f"{name} {'higher' if mean > 0 else 'lower'} by more than the spread of the seeds"
    return (
        f"{name} − {baseline}: {mean:+.4f} ± {half_width:.4f} ({confidence:.0%} interval over "
        f"{len(array)} paired seeds): {verdict}"
    )
