"""A Gaussian process that keeps its kernel between rounds: the prior's and the cost model's.

Why: fitting the kernel's hyperparameters (L-BFGS over the marginal likelihood) is most of a
round's overhead once a study has a few hundred trials (52 ms of a 60 ms ranking at 200 trials,
evals/bench_core.py), and they hardly move from one trial to the next. So they are refitted
while the study is small and then each time the points have grown by :data:`REFIT`; between
refits the GP conditions on the new points with the kernel it has (one Cholesky, ~2 ms at 300).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from asap.agent.prior.surrogate import unit
from asap.tools.hpo.space import CategoricalParam, Space

ALWAYS_BELOW = 20  # points: refit every time below this many
REFIT = 1.2  # then refit once the points have grown by this factor since the last fit


class GP:
    """Matern 5/2 plus noise on standardized targets, hyperparameters reused between refits."""

    def __init__(self) -> None:
        self._kernel: Any = None
        self._fitted_at = 0
        self._dims = -1
        self._ahead = False  # fitted ahead: good for the next real round's one more point

    def fit_ahead(self, x: Sequence[Sequence[float]], y: Sequence[float]) -> None:
        """Fit the hyperparameters on ``x, y`` now (while a trial trains), so that the next
        real round, on these points and the trial's result, only conditions on them: the
        kernel lags one result behind, as prefetched proposals do, off the critical path."""
        import numpy as np

        xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self._fit(xa, ya, hyper=True)
        self._ahead = True

    def predict(self, x: Sequence[Sequence[float]], y: Sequence[float],
                queries: Sequence[Sequence[float]], refit: bool = True
                ) -> tuple[list[float], list[float]]:
        """The posterior mean and standard deviation at ``queries``, in ``y``'s units.

        ``refit=False`` never fits the hyperparameters (a speculative branch's hypothetical
        points must not decide the kernel the real rounds use) unless there is no kernel yet.
        """
        import numpy as np

        xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        n, dims = len(ya), xa.shape[1]
        ahead = self._ahead and self._fitted_at <= n <= self._fitted_at + 1 and dims == self._dims
        if refit:
            self._ahead = False
        hyper = (self._kernel is None or dims != self._dims
                 or (refit and not ahead and (n < ALWAYS_BELOW or n >= self._fitted_at * REFIT)))
        gp, center, scale = self._fit(xa, ya, hyper=hyper)
        mean, sd = gp.predict(np.asarray(queries, dtype=float), return_std=True)
        return ([center + scale * float(m) for m in mean],
                [scale * max(float(s), 1e-9) for s in sd])

    def _fit(self, xa: Any, ya: Any, *, hyper: bool) -> tuple[Any, float, float]:
        """The regressor on standardized targets, its hyperparameters fitted (``hyper``, kept
        for later rounds) or the kept ones; with the standardization's centre and scale."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        center, scale = float(ya.mean()), float(ya.std()) or 1.0
        if hyper:
            gp = GaussianProcessRegressor(ConstantKernel() * Matern(nu=2.5) + WhiteKernel(),
                                          n_restarts_optimizer=0)
        else:
            gp = GaussianProcessRegressor(self._kernel, optimizer=None)
        with warnings.catch_warnings():  # hyperparameters at their bounds: expected on few points
            warnings.simplefilter("ignore")
            gp.fit(xa, (ya - center) / scale)
        if hyper:
            self._kernel, self._fitted_at, self._dims = gp.kernel_, len(ya), xa.shape[1]
        return gp, center, scale


def encode(space: Space, config: dict[str, Any]) -> list[float]:
    """A config as a point of the unit cube: numbers scaled (log ones on a log scale),
    categoricals one-hot, an inactive number at the centre, an inactive categorical all zeros."""
    out: list[float] = []
    for p in space.params:
        if isinstance(p, CategoricalParam):
            out += [1.0 if p.name in config and config[p.name] == c else 0.0
                    for c in p.choices]
        else:
            out.append(unit(p, config[p.name]) if p.name in config else 0.5)
    return out


def off_centre(space: Space, config: dict[str, Any]) -> float:
    """Squared distance of ``config`` from the centre of the unit cube, over its active numbers
    (every choice of a categorical is as central as another)."""
    return sum((unit(p, config[p.name]) - 0.5) ** 2 for p in space.params
               if not isinstance(p, CategoricalParam) and p.name in config)
