"""Clustering a 1-D weighted histogram: exact k-means, Multi-Otsu, a Gaussian mixture.

Everything here works on ``(centers, weights)``: bin centres and voxel counts of a
histogram, so fitting costs milliseconds whatever the size of the volume.

In one dimension the k-means optimum is a partition of the sorted values into ``k``
contiguous runs, and it can be found exactly by dynamic programming (Wang & Song,
"Ckmeans.1d.dp", R Journal 2011) instead of Lloyd's iteration, which stops at a local
optimum. The optimal split points are monotone in the run end, so each DP layer is
solved by divide and conquer in ``O(n log n)``; here every level of that recursion is a
handful of vectorised NumPy operations.

Multi-Otsu maximises the between-class variance over threshold sets, which is the same
as minimising the within-class sum of squares over contiguous partitions: the same DP
gives it. The two methods differ only in where the decision thresholds lie (Otsu: the
partition boundaries on the histogram; k-means: midway between neighbouring centroids).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: The clustering methods of stage 1 (:class:`xctdask.PseudoLabeler`).
METHODS = ("kmeans", "otsu", "gmm")

__all__ = [
    "GaussianMixture1D",
    "decision_intervals",
    "gmm_1d",
    "kmeans_1d",
    "multiotsu_thresholds",
    "optimal_partition",
]


def _prefix(centers: np.ndarray, weights: np.ndarray):
    # centre and scale the values so the prefix sums stay well conditioned
    total = weights.sum()
    mean = float((weights * centers).sum() / total)
    scale = float(np.abs(centers - mean).max()) or 1.0
    x = (centers - mean) / scale
    zero = np.zeros(1)
    w = np.concatenate([zero, np.cumsum(weights)])
    s = np.concatenate([zero, np.cumsum(weights * x)])
    q = np.concatenate([zero, np.cumsum(weights * x * x)])
    return w, s, q, scale


def _segment_cost(w, s, q, a, b):
    """Within-run sum of squares of runs ``[a, b)`` (arrays of indices)."""
    n = w[b] - w[a]
    t = s[b] - s[a]
    with np.errstate(invalid="ignore", divide="ignore"):
        cost = q[b] - q[a] - np.where(n > 0, t * t / np.where(n > 0, n, 1), 0.0)
    return np.maximum(cost, 0.0)


def _dp_layer(prev: np.ndarray, j: int, n: int, w, s, q):
    """One DP layer: best cost of ``j`` runs over the first ``b`` points, every ``b``.

    ``prev[a]`` is the best cost of ``j - 1`` runs over the first ``a`` points. Returns
    the new costs and the argmin split ``a`` for each ``b`` (``-1`` where undefined).
    """
    cur = np.full(n + 1, np.inf)
    arg = np.full(n + 1, -1, dtype=np.int64)
    # tasks: solve b in [b_lo, b_hi] with split candidates a in [a_lo, a_hi]
    b_lo, b_hi = np.array([j]), np.array([n])
    a_lo, a_hi = np.array([j - 1]), np.array([n - 1])
    while b_lo.size:
        mid = (b_lo + b_hi) // 2
        top = np.minimum(a_hi, mid - 1)
        length = top - a_lo + 1
        offsets = np.concatenate([[0], np.cumsum(length)[:-1]])
        seg = np.repeat(np.arange(mid.size), length)
        a = a_lo[seg] + np.arange(seg.size) - offsets[seg]
        b = mid[seg]
        values = prev[a] + _segment_cost(w, s, q, a, b)
        best = np.minimum.reduceat(values, offsets)
        is_best = values == best[seg]
        # first (smallest) a reaching the minimum in each task
        first = np.full(mid.size, seg.size)
        np.minimum.at(first, seg[is_best], np.flatnonzero(is_best))
        opt = a[first]
        cur[mid] = best
        arg[mid] = opt
        left = b_lo <= mid - 1
        right = mid + 1 <= b_hi
        b_lo, b_hi, a_lo, a_hi = (
            np.concatenate([b_lo[left], mid[right] + 1]),
            np.concatenate([mid[left] - 1, b_hi[right]]),
            np.concatenate([a_lo[left], opt[right]]),
            np.concatenate([opt[left], a_hi[right]]),
        )
    return cur, arg


def optimal_partition(centers: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Exact minimum within-class sum of squares partition of a 1-D histogram.

    Parameters
    ----------
    centers : array of shape (n,)
        Increasing bin centres.
    weights : array of shape (n,)
        Non-negative counts; empty bins are allowed.
    k : int
        Number of runs (classes); at most the number of non-empty bins.

    Returns
    -------
    numpy.ndarray of shape (k - 1,)
        For each boundary, the index (into ``centers``) of the last non-empty bin of
        the lower class. Ties go to the smaller index.

    Examples
    --------
    >>> optimal_partition(np.arange(6.0), np.array([5, 5, 0, 0, 5, 5]), 2)
    array([1])
    """
    centers = np.asarray(centers, np.float64)
    weights = np.asarray(weights, np.float64)
    keep = np.flatnonzero(weights > 0)
    if keep.size < k:
        raise ValueError(
            f"the histogram has only {keep.size} non-empty bins; cannot split it into {k} classes"
        )
    n = keep.size
    w, s, q, _ = _prefix(centers[keep], weights[keep])
    prev = np.full(n + 1, np.inf)
    prev[1:] = _segment_cost(w, s, q, np.zeros(n, np.int64), np.arange(1, n + 1))
    args = []
    for j in range(2, k + 1):
        prev, arg = _dp_layer(prev, j, n, w, s, q)
        args.append(arg)
    # backtrack: arg[b] = number of points in the first j - 1 runs
    bounds, b = [], n
    for arg in reversed(args):
        b = int(arg[b])
        bounds.append(b)
    bounds = np.array(bounds[::-1], dtype=np.int64)
    return keep[bounds - 1]


def _class_moments(centers, weights, last_of_lower):
    edges = np.concatenate([[0], np.asarray(last_of_lower) + 1, [centers.size]])
    n, mean, var = [], [], []
    for lo, hi in itertools.pairwise(edges):
        c, w = centers[lo:hi], weights[lo:hi]
        total = w.sum()
        m = (w * c).sum() / total
        n.append(total)
        mean.append(m)
        var.append((w * (c - m) ** 2).sum() / total)
    return np.array(n), np.array(mean), np.array(var)


def kmeans_1d(centers: np.ndarray, weights: np.ndarray, k: int):
    """Globally optimal weighted k-means of a 1-D histogram.

    Returns
    -------
    centroids : numpy.ndarray of shape (k,)
        Increasing.
    thresholds : numpy.ndarray of shape (k - 1,)
        Midpoints between neighbouring centroids (nearest-centroid decision).
    inertia : float
        Weighted within-class sum of squares of the bin centres.

    Examples
    --------
    >>> c, t, inertia = kmeans_1d(np.array([0.0, 1, 10, 11]), np.ones(4), 2)
    >>> c.tolist(), t.tolist(), float(inertia)
    ([0.5, 10.5], [5.5], 1.0)
    """
    centers = np.asarray(centers, np.float64)
    weights = np.asarray(weights, np.float64)
    last = optimal_partition(centers, weights, k)
    n, mean, var = _class_moments(centers, weights, last)
    return mean, (mean[1:] + mean[:-1]) / 2, float((n * var).sum())


def multiotsu_thresholds(centers: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Multi-Otsu thresholds of a histogram, as scikit-image reports them.

    The threshold between two classes is the centre of the last bin of the lower
    class (``skimage.filters.threshold_multiotsu`` with ``hist=(weights, centers)``
    gives the same values). A value equal to a threshold belongs to the lower class,
    as in the partition the thresholds optimise.

    Examples
    --------
    >>> multiotsu_thresholds(np.arange(6.0), np.array([5, 5, 0, 0, 5, 5]), 2)
    array([1.])
    """
    centers = np.asarray(centers, np.float64)
    return centers[optimal_partition(centers, weights, k)]


@dataclass(frozen=True)
class GaussianMixture1D:
    """A fitted 1-D Gaussian mixture, components ordered by increasing mean."""

    means: np.ndarray
    variances: np.ndarray
    weights: np.ndarray
    log_likelihood: float
    n_iter: int
    converged: bool

    def log_joint(self, x: np.ndarray) -> np.ndarray:
        """``log(weight_k · N(x | mean_k, var_k))`` for each value and component."""
        x = np.asarray(x, np.float64)[:, None]
        return (
            np.log(self.weights)
            - 0.5 * np.log(2 * np.pi * self.variances)
            - 0.5 * (x - self.means) ** 2 / self.variances
        )

    def bic(self, n: float) -> float:
        """Bayesian information criterion for ``n`` samples: ``-2 log L + p log n``."""
        p = 3 * self.means.size - 1
        return -2.0 * self.log_likelihood + p * np.log(n)


def _em_step(x, w, mean, var, pi, min_variance):
    """One EM iteration on weighted points; arrays are (component, bin) for speed."""
    joint = (np.log(pi) - 0.5 * np.log(2 * np.pi * var))[:, None] - 0.5 * (
        x[None, :] - mean[:, None]
    ) ** 2 / var[:, None]
    top = joint.max(axis=0)
    norm = top + np.log(np.exp(joint - top).sum(axis=0))
    log_likelihood = float(w @ norm)
    resp = np.exp(joint - norm) * w
    nk = resp.sum(axis=1) + 1e-300
    mean = resp @ x / nk
    var = np.maximum((resp * (x[None, :] - mean[:, None]) ** 2).sum(axis=1) / nk, min_variance)
    return mean, var, nk / w.sum(), log_likelihood


def gmm_1d(
    centers: np.ndarray,
    weights: np.ndarray,
    k: int,
    *,
    max_iter: int = 500,
    tol: float = 1e-7,
    min_variance: float | None = None,
) -> GaussianMixture1D:
    """Weighted EM for a 1-D Gaussian mixture on a histogram, one variance per class.

    Started from the exact k-means partition (its class fractions, means and
    variances). ``min_variance`` defaults to the variance of a uniform bin
    (``bin_width² / 12``), the resolution the histogram has. ``tol`` is on the mean
    log-likelihood per voxel.
    """
    centers = np.asarray(centers, np.float64)
    weights = np.asarray(weights, np.float64)
    keep = weights > 0
    x, w = centers[keep], weights[keep]
    total = w.sum()
    if min_variance is None:
        width = float(np.median(np.diff(centers))) if centers.size > 1 else 1.0
        min_variance = max(width * width / 12.0, 1e-12 * float(np.var(x)) or 1e-300)
    n, mean, var = _class_moments(x, w, optimal_partition(x, w, k))
    pi, var = n / total, np.maximum(var, min_variance)
    previous, n_iter = -np.inf, 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        mean, var, pi, ll = _em_step(x, w, mean, var, pi, min_variance)
        if ll - previous < tol * total:
            break
        previous = ll
    model = GaussianMixture1D(mean, var, pi, -np.inf, n_iter, n_iter < max_iter)
    ll = float(w @ _logsumexp(model.log_joint(x)))
    order = np.argsort(mean, kind="stable")
    return GaussianMixture1D(mean[order], var[order], pi[order], ll, n_iter, n_iter < max_iter)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    top = a.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(a - top).sum(axis=1, keepdims=True)))[:, 0]


def decision_intervals(model: GaussianMixture1D) -> tuple[np.ndarray, np.ndarray]:
    """Where the most probable component changes, found exactly.

    Two weighted Gaussians are equal where a quadratic vanishes, so every change of
    the most probable component lies on one of at most ``k(k-1)`` roots. With unequal
    variances a class can own two separate intervals (the widest wins both tails).

    Returns
    -------
    breakpoints : numpy.ndarray of shape (m - 1,)
        Increasing; a value equal to a breakpoint belongs to the lower interval.
    labels : numpy.ndarray of shape (m,)
        The class of each interval.
    """
    mu, var, pi = model.means, model.variances, model.weights
    roots = []
    for i in range(mu.size):
        for j in range(i + 1, mu.size):
            a = 0.5 / var[j] - 0.5 / var[i]
            b = mu[i] / var[i] - mu[j] / var[j]
            c = (
                0.5 * mu[j] ** 2 / var[j]
                - 0.5 * mu[i] ** 2 / var[i]
                + np.log(pi[i] / pi[j])
                - 0.5 * np.log(var[i] / var[j])
            )
            roots.extend(np.roots([a, b, c]) if abs(a) > 1e-300 else ([-c / b] if b else []))
    roots = np.unique([r.real for r in np.atleast_1d(roots) if abs(np.imag(r)) < 1e-12])
    if roots.size == 0:
        return np.empty(0), np.array([int(np.argmax(pi))])
    span = max(float(np.sqrt(var.max())), float(np.ptp(roots)), 1e-12)
    probes = np.concatenate([[roots[0] - span], (roots[1:] + roots[:-1]) / 2, [roots[-1] + span]])
    labels = model.log_joint(probes).argmax(axis=1)
    change = np.flatnonzero(labels[1:] != labels[:-1])
    return roots[change], labels[np.concatenate([[0], change + 1])]
