"""Numerics of the random-intercept logistic model: lme4's Laplace / adaptive Gauss–Hermite
deviance for one scalar random effect, its analytic gradient, and the optimiser.

Notation follows lme4 (Bates et al. 2015, *J. Stat. Softw.* 67(1)): the linear predictor is
``eta = X beta + theta * u[group]`` with spherical random effects ``u ~ N(0, 1)``, so ``theta``
is the random-intercept standard deviation on the log-odds scale. For group ``j`` let

``g_j(u) = sum_i devres_i(eta_i(u)) + u**2``

(binomial deviance residuals with prior weights ``m_i``). PIRLS gives the conditional mode
``u0_j`` (``g_j'(u0_j) = 0``) and ``L_j**2 = 1 + theta**2 * sum_i m_i mu_i (1 - mu_i)``, the
diagonal of lme4's sparse Cholesky factor; ``sd_j = 1 / L_j``. With Gauss–Hermite nodes
``z_k`` and weights ``w_k`` for the standard normal (lme4's ``GHrule``), lme4's ``glmerAGQ``
deviance is

``F = sum_j [ g_j(u0_j) + log L_j**2 - 2 log sum_k w_k exp(-(g_j(u0_j + sd_j z_k) - g_j(u0_j))/2 + z_k**2/2) ]``

and ``nagq = 1`` (one node at 0, weight 1) is the Laplace approximation. Everything is
vectorised over groups with segment sums on rows sorted by group; no Python loop runs per group.

The gradient below is exact for this ``F`` (the conditional modes and ``sd_j`` move with the
parameters: implicit differentiation of ``g_j'(u0_j) = 0``). The deviance is even in ``theta``,
so ``dF/dtheta = 0`` at ``theta = 0`` and the boundary is handled by the bound ``theta >= 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import linalg, optimize
from scipy.special import expit

MAX_NAGQ = 25


def gh_rule(nagq: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Hermite nodes and weights for the standard normal density (lme4's ``GHrule``).

    Returns ``z`` and ``w`` with ``sum(w) == 1`` and ``sum(w * f(z)) ~ E f(Z)``, ``Z ~ N(0, 1)``.
    The middle node of an odd rule is set to exactly 0, as lme4 special-cases it.
    """
    z, w = hermegauss(nagq)
    w = w / np.sqrt(2.0 * np.pi)
    z = np.where(np.abs(z) < 1e-12, 0.0, z)
    return z, w / w.sum()


@dataclass
class Evaluation:
    """The deviance and its gradient at one parameter point, with the per-group quantities."""

    deviance: float  # F without the saturated-model constant (see AghqProblem.deviance_constants)
    grad: np.ndarray  # dF / d(theta, beta)
    u0: np.ndarray  # conditional modes of the spherical random effects, per group
    sd: np.ndarray  # 1 / L_j, per group
    eta_mode: np.ndarray  # linear predictor at the modes, per row (rows sorted by group)


class AghqProblem:
    """The data of one fit (rows sorted by group) and the deviance function over (theta, beta).

    Parameters
    ----------
    X : ndarray (n, p)
        Fixed-effect design, rows sorted by group.
    y : ndarray (n,)
        Observed proportion of successes per row (0/1 for binary rows).
    m : ndarray (n,)
        Prior weights: number of trials times any case weight.
    starts : ndarray (J,)
        First row of each group (groups contiguous, none empty).
    nagq : int
        Number of quadrature nodes; 1 is the Laplace approximation.
    """

    def __init__(self, X, y, m, starts, nagq: int):
        self.X = np.ascontiguousarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.m = np.asarray(m, dtype=float)
        self.starts = np.asarray(starts, dtype=np.intp)
        self.n, self.p = self.X.shape
        self.J = len(self.starts)
        sizes = np.diff(np.append(self.starts, self.n))
        self.gid = np.repeat(np.arange(self.J), sizes)
        self.msum = self._seg(self.m)
        self.my = self.m * self.y
        self.m2col = 2.0 * self.m[:, None]
        self.my2col = 2.0 * self.my[:, None]
        self.MY = self._seg(self.my)  # successes per group
        self.nagq = int(nagq)
        self.z, self.w = gh_rule(self.nagq)
        self._u = np.zeros(self.J)
        self.n_eval = 0

    def _seg(self, a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(a, self.starts, axis=0)

    def _devres(self, eta: np.ndarray) -> np.ndarray:
        # deviance residual minus its saturated-model constant: 2 m (log(1 + e^eta) - y eta)
        m = self.m if eta.ndim == 1 else self.m[:, None]
        my = self.my if eta.ndim == 1 else self.my[:, None]
        return 2.0 * (m * np.logaddexp(0.0, eta) - my * eta)

    def modes(self, eta0: np.ndarray, theta: float, u: np.ndarray | None = None,
              tol: float = 1e-11, max_iter: int = 200) -> np.ndarray:
        """Conditional modes ``u0`` given the fixed part ``eta0``: Newton on each group's convex
        ``g_j``, safeguarded by bisection inside a bracket that always holds the root."""
        if theta == 0.0:
            return np.zeros(self.J)
        u = np.zeros(self.J) if u is None else u.copy()
        bound = abs(theta) * self.msum + 1.0  # |g_j'(u)| roots lie within theta * sum m
        lo, hi = -bound, bound.copy()
        u = np.clip(u, lo, hi)
        for _ in range(max_iter):
            mu = expit(eta0 + theta * np.take(u, self.gid))
            r = self._seg(self.my - self.m * mu)
            v = self._seg(self.m * mu * (1.0 - mu))
            gu = -2.0 * theta * r + 2.0 * u
            guu = 2.0 * theta * theta * v + 2.0
            pos = gu > 0
            hi = np.where(pos, u, hi)
            lo = np.where(pos, lo, u)
            step = gu / guu
            new = u - step
            out = (new < lo) | (new > hi)  # landing on a bracket end by rounding is fine
            if out.any():
                new = np.where(out, 0.5 * (lo + hi), new)
            done = np.max(np.abs(new - u) / (1.0 + np.abs(u))) < tol
            u = new
            if done:
                return u
        return u

    def evaluate(self, theta: float, beta: np.ndarray, grad: bool = True) -> Evaluation:
        """The deviance ``F(theta, beta)`` (saturated constant omitted) and its gradient."""
        self.n_eval += 1
        X, gid, z, w = self.X, self.gid, self.z, self.w
        eta0 = X @ beta
        u0 = self.modes(eta0, theta, self._u)
        self._u = u0
        eta_m = eta0 + theta * np.take(u0, gid)
        mu_m = expit(eta_m)
        v = self.m * mu_m * (1.0 - mu_m)
        V = self._seg(v)
        L2 = 1.0 + theta * theta * V
        sd = 1.0 / np.sqrt(L2)
        g0 = self._seg(self._devres(eta_m)) + u0 * u0
        if self.nagq == 1:
            U = u0[:, None]
            eta = eta_m[:, None]
            G = g0[:, None]
            mu = mu_m[:, None]
        else:
            U = u0[:, None] + sd[:, None] * z[None, :]
            eta = eta0[:, None] + theta * np.take(U, gid, axis=0)
            # exp(eta) is 5-10x cheaper than logaddexp/expit and exact enough here: log1p(E) keeps
            # relative precision for huge and tiny E; logits beyond 700 are clipped (mu = 1 anyway).
            E = np.exp(np.minimum(eta, 700.0))
            mu = E / (1.0 + E)
            G = self._seg(self.m2col * np.log1p(E) - self.my2col * eta) + U * U
        expo = -0.5 * (G - g0[:, None]) + 0.5 * z * z
        emax = expo.max(axis=1, keepdims=True)
        a = w * np.exp(expo - emax)
        A = a.sum(axis=1)
        F = float(np.sum(g0 + np.log(L2) - 2.0 * (np.log(A) + emax[:, 0])))
        if not grad:
            return Evaluation(F, np.empty(0), u0, sd, eta_m)

        pi = a / A[:, None]  # (J, K) normalised node contributions
        D = self._seg(self.m2col * mu) - 2.0 * self.MY[:, None]  # (J, K): sum of dev'(eta)
        Gu = theta * D + 2.0 * U
        B = (pi * Gu).sum(axis=1)
        C = (pi * Gu * z).sum(axis=1)
        mubar = np.einsum("ik,ik->i", np.take(pi, gid, axis=0), mu)
        vp = v * (1.0 - 2.0 * mu_m)
        Vp = self._seg(vp)
        sd2, sd3 = sd * sd, sd * sd * sd
        E = C - 2.0 / sd  # coefficient of dsd/dp
        # beta: dF/dbeta = X' c with c per row
        c = (-2.0 * (self.my - self.m * mubar)
             - np.take(B * theta * sd2, gid) * v
             - np.take(E * 0.5 * sd3 * theta * theta, gid) * (vp - np.take(theta * theta * sd2 * Vp, gid) * v))
        g_beta = X.T @ c
        # theta
        D0 = -2.0 * self._seg(self.my - self.m * mu_m)
        du0 = -sd2 * (0.5 * D0 + theta * u0 * V)
        dsd = -0.5 * sd3 * (2.0 * theta * V + theta * theta * Vp * (u0 + theta * du0))
        g_theta = float(np.sum((pi * U * D).sum(axis=1) + B * du0 + E * dsd))
        return Evaluation(F, np.concatenate(([g_theta], g_beta)), u0, sd, eta_m)

    def fisher_beta(self, theta: float, ev: Evaluation) -> np.ndarray:
        """Expected-information matrix of beta at fixed theta (lme4's ``RX'RX`` doubled: the
        GLM information minus what the random intercepts absorb), at the modes of ``ev``."""
        mu = expit(ev.eta_mode)
        v = self.m * mu * (1.0 - mu)
        S = self._seg(self.X * v[:, None])  # (J, p)
        shrink = theta * theta * ev.sd * ev.sd  # theta^2 / L_j^2
        return 2.0 * (self.X.T @ (self.X * v[:, None]) - S.T @ (S * shrink[:, None]))

    def deviance_constants(self, lchoose: np.ndarray) -> tuple[float, float]:
        """Constants that put the internal deviance on lme4's scales.

        Returns ``(saturated, choose)``: adding ``saturated`` gives the sum-of-deviance-residuals
        scale of lme4's AGQ deviance; ``-2 * loglik = F - choose`` with ``choose = 2 * sum
        lchoose`` (the binomial coefficients, as lme4's Laplace deviance via ``aic()``).
        """
        y, m = self.y, self.m
        with np.errstate(divide="ignore", invalid="ignore"):
            xl = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
            xl1 = np.where(y < 1, (1 - y) * np.log(np.where(y < 1, 1 - y, 1.0)), 0.0)
        return float(np.sum(2.0 * m * (xl + xl1))), float(2.0 * np.sum(lchoose))


@dataclass
class FitOutput:
    theta: float
    beta: np.ndarray
    deviance: float
    grad: np.ndarray
    hessian: np.ndarray  # of F over (theta, beta)
    u0: np.ndarray
    sd: np.ndarray
    eta_mode: np.ndarray
    converged: bool
    message: str
    newton_decrement: float
    n_iter: int
    n_eval: int


def glm_start(X, y, m, max_iter: int = 50) -> np.ndarray:
    """Logistic-regression estimates ignoring the groups (IRLS on the normal equations), the
    optimiser's start; capped so that separated data still give a finite start."""
    n, p = X.shape
    beta = np.zeros(p)
    eta = np.zeros(n)
    ridge = 1e-10 * max(1.0, float(np.sum(m)))
    for _ in range(max_iter):
        mu = expit(eta)
        wt = m * mu * (1 - mu)
        info = X.T @ (X * wt[:, None]) + ridge * np.eye(p)
        score = X.T @ (m * (y - mu))
        try:
            step = linalg.solve(info, score, assume_a="pos")
        except (linalg.LinAlgError, ValueError):
            step = np.linalg.lstsq(info, score, rcond=None)[0]
        new = np.clip(beta + step, -30, 30)
        if np.max(np.abs(new - beta)) < 1e-8:
            return new
        beta = new
        eta = X @ beta
    return beta


def _hessian(fun_grad, x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central finite differences of an analytic gradient; symmetrised."""
    k = len(x)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = steps[i]
        H[:, i] = (fun_grad(x + e) - fun_grad(x - e)) / (2.0 * steps[i])
    return 0.5 * (H + H.T)


def fit(problem: AghqProblem, beta0: np.ndarray, theta0: float = 1.0,
        gtol: float = 1e-8, max_iter: int = 1000) -> FitOutput:
    """Minimise lme4's deviance jointly over ``(theta, beta)`` (lme4's second stage).

    Quasi-Newton (L-BFGS-B, ``theta >= 0``) in coordinates whitened by the starting GLM's
    information, then Newton steps on a finite-difference Hessian of the analytic gradient
    until the Newton decrement ``g' H^-1 g`` (deviance units) is below ``gtol``. That Hessian
    (of the deviance over theta and beta jointly) is also what lme4's default ``vcov`` inverts.
    """
    X, y, m = problem.X, problem.y, problem.m
    mu = expit(X @ beta0)
    info = X.T @ (X * (2.0 * m * mu * (1.0 - mu))[:, None])
    info += np.eye(problem.p) * 1e-8 * max(1.0, np.trace(info) / problem.p)
    R = linalg.cholesky(info, lower=False)  # beta = R^-1 gamma makes the beta block ~ identity
    Rinv = linalg.solve_triangular(R, np.eye(problem.p), lower=False)

    # theta's scale: curvature of the deviance in theta at the start
    def f_theta(t):
        return problem.evaluate(t, beta0).grad[0]

    h = 1e-3
    curv = abs(f_theta(theta0 + h) - f_theta(max(theta0 - h, 0.0))) / (theta0 + h - max(theta0 - h, 0.0))
    s_theta = float(np.sqrt(max(curv, 1.0)))
    scale = np.concatenate(([1.0 / s_theta], np.ones(problem.p)))  # x = (theta*s, gamma)

    def to_par(x):
        return x[0] / s_theta, Rinv @ x[1:]

    def fg(x):
        th, b = to_par(x)
        ev = problem.evaluate(th, b)
        gx = np.concatenate(([ev.grad[0] / s_theta], Rinv.T @ ev.grad[1:]))
        return ev.deviance, gx

    x0 = np.concatenate(([theta0 * s_theta], R @ beta0))
    bounds = [(0.0, None)] + [(None, None)] * problem.p
    res = optimize.minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-9, "maxcor": 20})
    x = res.x.copy()
    n_iter = int(res.nit)
    if x[0] / s_theta < 1e-4:
        # The deviance is even in theta, so theta = 0 is always a stationary point: a step that
        # lands on the bound can stop there even when 0 is a maximum along theta (seen on
        # synthetic data: SD 0 where lme4 finds 0.34 and a log-likelihood 16 higher). Probe a
        # few SDs with beta held and restart from the best one that lowers the deviance.
        f_at = float(res.fun)
        best = None
        for t in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
            xt = x.copy()
            xt[0] = t * s_theta
            ft = fg(xt)[0]
            if ft < f_at - 1e-9 * max(1.0, abs(f_at)) and (best is None or ft < best[0]):
                best = (ft, xt)
        if best is not None:
            res2 = optimize.minimize(fg, best[1], jac=True, method="L-BFGS-B", bounds=bounds,
                                     options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-9, "maxcor": 20})
            n_iter += int(res2.nit)
            if res2.fun < res.fun:
                res = res2
                x = res.x.copy()

    def grad_only(xx):
        xx = xx.copy()
        # the deviance is even in theta, so evaluating at -theta is legitimate
        return fg(xx)[1]

    steps = np.full(len(x), 1e-4)
    H = _hessian(grad_only, x, steps)
    H_at = x.copy()
    f, g = fg(x)
    decrement = np.inf
    message = str(res.message)
    def newton(x, g, H):
        """Newton step (theta held at 0 when the boundary is active) and its decrement."""
        free = np.ones(len(x), bool)
        # theta = 0 is a stationary point of the (even) deviance. L-BFGS-B may stop a hair above
        # it (theta ~ 1e-10) where the theta row of the finite-difference Hessian is ~0: treat
        # that as the boundary too, or Cholesky fails and a GLM-identical fit is called unconverged.
        if (x[0] <= 0.0 and g[0] >= 0.0) or (x[0] / s_theta < 1e-7 and abs(g[0]) < 1e-6):
            free[0] = False
        Hf = H[np.ix_(free, free)]
        try:
            dx = -linalg.cho_solve(linalg.cho_factor(Hf), g[free])
        except linalg.LinAlgError:
            return np.zeros(len(x)), np.inf, False
        step = np.zeros(len(x))
        step[free] = dx
        return step, float(-g[free] @ dx), True

    pd_ok = True
    for _ in range(max(0, min(20, max_iter - n_iter))):
        step, decrement, pd_ok = newton(x, g, H)
        if not pd_ok or decrement < gtol:
            break
        t = 1.0
        while True:
            xn = x + t * step
            xn[0] = max(xn[0], 0.0)
            fn, gn = fg(xn)
            if fn <= f + 1e-12 * abs(f) or np.linalg.norm(gn) < np.linalg.norm(g) or t < 1e-4:
                break
            t *= 0.5
        x, f, g = xn, fn, gn
        n_iter += 1
        if moved_far(x, H_at):
            H = _hessian(grad_only, x, steps)
            H_at = x.copy()
    if moved_far(x, H_at, 1e-6):
        H = _hessian(grad_only, x, steps)
    _, decrement, pd_ok = newton(x, g, H)
    if not pd_ok:
        message = "the Hessian of the deviance is not positive definite where the optimiser stopped"
    th, b = to_par(x)
    ev = problem.evaluate(th, b)
    # back to (theta, beta) coordinates: H_par = T' H_x T with x = T^-1-free linear map
    T = np.zeros((len(x), len(x)))
    T[0, 0] = s_theta
    T[1:, 1:] = R
    H_par = T.T @ H @ T
    converged = bool(pd_ok and decrement < gtol)
    if converged:
        message = "converged: Newton decrement below tolerance"
    return FitOutput(theta=float(th), beta=b, deviance=ev.deviance, grad=ev.grad, hessian=H_par,
                     u0=ev.u0, sd=ev.sd, eta_mode=ev.eta_mode, converged=converged, message=message,
                     newton_decrement=float(decrement), n_iter=n_iter, n_eval=problem.n_eval)


def moved_far(x, x_ref, tol: float = 1e-3) -> bool:
    return bool(np.max(np.abs(np.asarray(x) - np.asarray(x_ref))) > tol)


def profile_deviance(problem: AghqProblem, theta: float, beta: np.ndarray,
                     tol: float = 1e-10, max_iter: int = 50) -> tuple[float, np.ndarray]:
    """``min_beta F(theta, beta)`` at fixed ``theta``: Fisher scoring on beta (expected
    information at the current modes) with step halving. Returns the profiled deviance and
    the minimising beta."""
    ev = problem.evaluate(theta, beta)
    for _ in range(max_iter):
        g = ev.grad[1:]
        try:
            step = -linalg.cho_solve(linalg.cho_factor(problem.fisher_beta(theta, ev)), g)
        except linalg.LinAlgError:
            step = -np.linalg.lstsq(problem.fisher_beta(theta, ev), g, rcond=None)[0]
        if -g @ step < tol:
            break
        t = 1.0
        while True:
            cand = problem.evaluate(theta, beta + t * step)
            if cand.deviance <= ev.deviance:
                break
            t *= 0.5
            if t < 1e-3:  # no decrease left to find: at the rounding floor of the deviance
                return ev.deviance, beta
        beta, ev = beta + t * step, cand
    return ev.deviance, beta


def profile_interval(problem: AghqProblem, theta_hat: float, beta_hat: np.ndarray, dev_hat: float,
                     H: np.ndarray, level: float) -> tuple[float, float]:
    """Profile-likelihood interval of theta: where ``min_beta F(theta, .) - F_hat`` reaches the
    ``level`` quantile of chi-square(1). The lower limit is 0 when the boundary is inside."""
    from scipy.stats import chi2

    crit = float(chi2.ppf(level, 1))
    cache: dict[float, np.ndarray] = {}

    def f(theta: float) -> float:
        near = min(cache, key=lambda t: abs(t - theta)) if cache else None
        start = beta_hat if near is None else cache[near]
        dev, b = profile_deviance(problem, theta, start)
        cache[theta] = b
        return dev - dev_hat - crit

    if theta_hat <= 0.0:
        lo = 0.0
    else:
        lo = 0.0 if f(0.0) <= 0 else optimize.brentq(f, 0.0, theta_hat, xtol=1e-8)
    hi_b = max(2.0 * theta_hat, 0.1)
    hi = float("inf")
    for _ in range(12):
        if f(hi_b) > 0:
            hi = optimize.brentq(f, theta_hat, hi_b, xtol=1e-8)
            break
        hi_b *= 2.0
    return float(lo), float(hi)
