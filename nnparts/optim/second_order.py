"""Full-batch methods that use curvature: Newton, nonlinear conjugate gradient, L-BFGS.

All three work on the parameters as one flat vector ``x`` and take ``step(closure)``: the
closure re-evaluates the model on the whole batch, calls ``zero_grad()`` and ``backward()``
itself and returns the loss (a Tensor or a number), as in PyTorch's ``LBFGS``. They keep
their state (directions, histories) across ``step`` calls and write the parameters in place.
Meant for small models in float64.
"""

from __future__ import annotations

import math

import numpy as np

from nnparts.optim.optimizer import Optimizer, check_nonnegative, check_positive
from nnparts.tensor import enable_grad

__all__ = ["LBFGS", "ConjugateGradient", "Newton"]


class _FlatClosureOptimizer(Optimizer):
    """Shared part: one param group seen as a flat vector; evaluate the closure at a point."""

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                f"{type(self).__name__} supports a single parameter group, got "
                f"{len(self.param_groups)}; pass a plain list of parameters"
            )
        self._params = self.param_groups[0]["params"]
        self._sizes = [p.size for p in self._params]

    def _check_group(self, group):
        super()._check_group(group)
        for name in ("tolerance_grad", "tolerance_change"):
            if name in group:
                check_nonnegative(name, group[name])

    @property
    def _global_state(self) -> dict:
        return self.state.setdefault(id(self._params[0]), {})

    def _flat_params(self) -> np.ndarray:
        return np.concatenate([p.data.ravel() for p in self._params])

    def _flat_grad(self) -> np.ndarray:
        return np.concatenate(
            [
                (p.grad if p.grad is not None else np.zeros_like(p.data)).ravel()
                for p in self._params
            ]
        )

    def _set_params(self, x: np.ndarray):
        offset = 0
        for p, n in zip(self._params, self._sizes):
            p.data[...] = x[offset : offset + n].reshape(p.shape)
            offset += n

    def _add_to_params(self, t: float, d: np.ndarray):
        offset = 0
        for p, n in zip(self._params, self._sizes):
            p.data += (t * d[offset : offset + n]).reshape(p.shape).astype(p.dtype, copy=False)
            offset += n

    @staticmethod
    def _call(closure) -> tuple:
        with enable_grad():
            loss = closure()
        return loss, float(np.asarray(getattr(loss, "data", loss)))

    def _evaluate(self, closure):
        """Loss value and flat gradient at the current parameters."""
        _, value = self._call(closure)
        return value, self._flat_grad()

    def _directional_evaluate(self, closure, x, t, d):
        """``f`` and ``grad f`` at ``x + t d``; the parameters are put back to ``x``."""
        self._add_to_params(t, d)
        value, grad = self._evaluate(closure)
        self._set_params(x)
        return value, grad

    def step(self, closure=None):
        if closure is None:
            raise ValueError(
                f"{type(self).__name__}.step needs a closure that re-evaluates the loss "
                "(zero_grad, forward, backward) and returns it"
            )
        return self._step(closure)

    def state_dict(self) -> dict:
        sd = super().state_dict()
        for s in sd["state"].values():
            for k, v in list(s.items()):
                if isinstance(v, list):  # histories -> stacked arrays (npz-friendly)
                    s[k] = (
                        np.array(v, dtype=np.float64).reshape(len(v), -1)
                        if v and isinstance(v[0], np.ndarray)
                        else np.array(v, dtype=np.float64)
                    )
                    s[k + ".is_list"] = True
        return sd

    def load_state_dict(self, state_dict: dict):
        super().load_state_dict(state_dict)
        for s in self.state.values():
            for k in [k for k in s if k.endswith(".is_list")]:
                name = k[: -len(".is_list")]
                v = s.pop(k)
                if v:
                    arr = s[name]
                    s[name] = (
                        [row.copy() for row in arr] if arr.ndim == 2 else [float(a) for a in arr]
                    )


# ---------------------------------------------------------------------------------------------
# line searches


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimizer of the cubic through (x1, f1, g1), (x2, f2, g2), clipped to ``bounds``
    (Nocedal & Wright, eq. 3.59)."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Line search for a step ``t`` satisfying the strong Wolfe conditions
    ``f(x + t d) <= f + c1 t g.d`` and ``|g(x + t d).d| <= c2 |g.d|`` (Nocedal & Wright,
    Algorithms 3.5/3.6: bracketing, then zoom with cubic interpolation; PyTorch's LBFGS port of
    minFunc). ``obj_func(x, t, d) -> (f, g)``. Returns ``(f_new, g_new, t, n_evaluations)``.
    """
    d_norm = float(np.max(np.abs(d)))
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(
            t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step)
        )
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]
        bracket_gtd = [gtd, gtd_new]

    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = (
                    max(bracket) - eps
                    if abs(t - max(bracket)) < abs(t - min(bracket))
                    else min(bracket) + eps
                )
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new
    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, ls_func_evals


def exact_line_search(obj_func, x, t, d, f, g, gtd, tolerance=1e-12, max_ls=25):
    """Minimize ``phi(t) = f(x + t d)`` by the secant method on ``phi'(t) = g(x + t d).d``.

    On a quadratic ``phi'`` is linear, so one secant step lands on the exact minimizer (the
    "exact line search" of linear conjugate gradients); elsewhere it iterates until
    ``|phi'| <= tolerance * |phi'(0)|``. Falls back to :func:`strong_wolfe` when ``phi`` is
    not convex along ``d``. Returns ``(f_new, g_new, t, n_evaluations)``.
    """
    t_prev, dphi_prev = 0.0, gtd
    evals = 0
    f_new, g_new = obj_func(x, t, d)
    evals += 1
    dphi = float(g_new @ d)
    for _ in range(max_ls):
        if abs(dphi) <= tolerance * abs(gtd):
            break
        curvature = (dphi - dphi_prev) / (t - t_prev)
        if not curvature > 0:
            f_w, g_w, t_w, n = strong_wolfe(obj_func, x, 1.0, d, f, g, gtd)
            return f_w, g_w, t_w, evals + n
        t_prev, dphi_prev = t, dphi
        t = t - dphi / curvature
        f_new, g_new = obj_func(x, t, d)
        evals += 1
        dphi = float(g_new @ d)
    return f_new, g_new, t, evals


# ---------------------------------------------------------------------------------------------


class LBFGS(_FlatClosureOptimizer):
    """Limited-memory BFGS (Liu & Nocedal, 1989; Nocedal & Wright, "Numerical Optimization",
    Algorithm 7.4), a port of ``torch.optim.LBFGS`` (itself a port of minFunc).

    BFGS approximates the inverse Hessian from the last ``history_size`` pairs
    ``s_k = x_{k+1} - x_k``, ``y_k = g_{k+1} - g_k``; the *two-loop recursion* applies it to the
    gradient without forming a matrix::

        q = -g
        for i = k-1 .. k-m:  a_i = rho_i s_i.q;  q -= a_i y_i          (rho_i = 1 / y_i.s_i)
        r = H0 q             (H0 = s.y / y.y, the scaling of the newest pair)
        for i = k-m .. k-1:  b_i = rho_i y_i.r;  r += (a_i - b_i) s_i
        d = r

    then ``x <- x + t d`` with ``t = lr`` (or from the strong-Wolfe line search). One
    ``step(closure)`` runs up to ``max_iter`` iterations; pairs with ``y.s <= 1e-10`` are
    skipped to keep the approximation positive definite.

    Args:
        lr: step size (1); max_iter: iterations per ``step`` (20); max_eval: closure calls per
        ``step`` (default ``max_iter * 5 // 4``); tolerance_grad: stop when ``max|g| <=`` this
        (1e-7); tolerance_change: stop when the step or the loss change is below it (1e-9);
        history_size: pairs kept (100); line_search_fn: None or ``"strong_wolfe"``.
    """

    def __init__(
        self,
        params,
        lr=1.0,
        max_iter=20,
        max_eval=None,
        tolerance_grad=1e-7,
        tolerance_change=1e-9,
        history_size=100,
        line_search_fn=None,
    ):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        for name in ("max_iter", "max_eval", "history_size"):
            v = group[name]
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"invalid {name}={v!r}: expected an integer >= 1")
        if group["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(
                f"invalid line_search_fn={group['line_search_fn']!r}: expected None or "
                "'strong_wolfe'"
            )

    def _step(self, closure):
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        history_size, line_search_fn = group["history_size"], group["line_search_fn"]
        state = self._global_state
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss, loss = self._call(closure)
        flat_grad = self._flat_grad()
        current_evals = 1
        state["func_evals"] += 1
        if np.max(np.abs(flat_grad)) <= tolerance_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        H_diag = state.get("H_diag")  # noqa: N806
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1.0  # noqa: N806
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / float(y @ y)  # noqa: N806
                num_old = len(old_dirs)
                al = [0.0] * num_old
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]

            prev_flat_grad = flat_grad.copy()
            prev_loss = loss
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(np.sum(np.abs(flat_grad)))) * lr
            else:
                t = lr
            gtd = float(flat_grad @ d)
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._flat_params()

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd
                )
                self._add_to_params(t, d)
                opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
            else:
                self._add_to_params(t, d)
                opt_cond = False
                if n_iter != max_iter:
                    _, loss = self._call(closure)
                    flat_grad = self._flat_grad()
                    opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if np.max(np.abs(d * t)) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(
            d=d,
            t=t,
            old_dirs=old_dirs,
            old_stps=old_stps,
            ro=ro,
            H_diag=H_diag,
            prev_flat_grad=prev_flat_grad,
            prev_loss=prev_loss,
        )
        return orig_loss


class ConjugateGradient(_FlatClosureOptimizer):
    """Nonlinear conjugate gradient, Polak-Ribiere+ with restarts (Nocedal & Wright, Sec. 5.2).

    Each new direction mixes the negative gradient with the previous direction::

        beta = max(0, g_k.(g_k - g_{k-1}) / g_{k-1}.g_{k-1})       (PR+, restarts when < 0)
        d_k  = -g_k + beta * d_{k-1}
        x   <- x + t d_k,  t from a line search

    Restarts (``d = -g``) every ``restart`` iterations (default: the number of parameters) and
    whenever ``d`` is not a descent direction. With ``line_search_fn="exact"`` (secant on the
    directional derivative, exact on quadratics) it is linear CG on a quadratic and reaches the
    minimizer of an n-dimensional quadratic in at most n iterations (Hestenes & Stiefel, 1952).
    One ``step(closure)`` runs up to ``max_iter`` iterations; the direction carries over to the
    next ``step``.

    Args:
        lr: initial trial step of the first line search (1.0); max_iter: iterations per step
        (20); tolerance_grad (1e-7), tolerance_change (1e-9): stopping rules as in LBFGS;
        restart: iterations between restarts (None = number of parameters);
        line_search_fn: ``"strong_wolfe"`` (c2 = 0.1, as CG needs) or ``"exact"``.
    """

    def __init__(
        self,
        params,
        lr=1.0,
        max_iter=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-9,
        restart=None,
        line_search_fn="strong_wolfe",
    ):
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            restart=restart,
            line_search_fn=line_search_fn,
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_positive("lr", group["lr"])
        if not isinstance(group["max_iter"], int) or group["max_iter"] < 1:
            raise ValueError(f"invalid max_iter={group['max_iter']!r}: expected an integer >= 1")
        if group["restart"] is not None and (
            not isinstance(group["restart"], int) or group["restart"] < 1
        ):
            raise ValueError(f"invalid restart={group['restart']!r}: expected None or int >= 1")
        if group["line_search_fn"] not in ("strong_wolfe", "exact"):
            raise ValueError(
                f"invalid line_search_fn={group['line_search_fn']!r}: expected 'strong_wolfe' "
                "or 'exact'"
            )

    def _step(self, closure):
        group = self.param_groups[0]
        restart = group["restart"] or int(sum(self._sizes))
        state = self._global_state
        state.setdefault("n_iter", 0)
        state.setdefault("func_evals", 0)
        orig_loss, loss = self._call(closure)
        flat_grad = self._flat_grad()
        state["func_evals"] += 1
        d, prev_grad = state.get("d"), state.get("prev_flat_grad")
        t = state.get("t")
        for _ in range(group["max_iter"]):
            if np.max(np.abs(flat_grad)) <= group["tolerance_grad"]:
                break
            if d is None or prev_grad is None or state["n_iter"] % restart == 0:
                d = -flat_grad
            else:
                beta = max(
                    0.0, float(flat_grad @ (flat_grad - prev_grad)) / float(prev_grad @ prev_grad)
                )
                d = -flat_grad + beta * d
                if float(flat_grad @ d) >= 0:  # not a descent direction: restart
                    d = -flat_grad
            gtd = float(flat_grad @ d)
            if gtd > -(group["tolerance_change"] ** 2):
                break
            if t is None:
                t = min(1.0, 1.0 / float(np.sum(np.abs(flat_grad)))) * group["lr"]
            else:  # Nocedal & Wright (3.60): keep the first-order change of the last step
                t = t * state["prev_gtd"] / gtd
            x = self._flat_params()

            def obj_func(x, t, d):
                return self._directional_evaluate(closure, x, t, d)

            if group["line_search_fn"] == "exact":
                new_loss, new_grad, t, evals = exact_line_search(
                    obj_func, x, t, d, loss, flat_grad, gtd
                )
            else:
                new_loss, new_grad, t, evals = strong_wolfe(
                    obj_func, x, t, d, loss, flat_grad, gtd, c2=0.1
                )
            self._add_to_params(t, d)
            state["func_evals"] += evals
            state["n_iter"] += 1
            state["prev_gtd"] = gtd
            prev_grad, flat_grad = flat_grad, new_grad
            change, loss = abs(new_loss - loss), new_loss
            if (
                np.max(np.abs(d * t)) <= group["tolerance_change"]
                or change < group["tolerance_change"]
            ):
                break
        state.update(d=d, t=t, prev_flat_grad=prev_grad)
        return orig_loss


class Newton(_FlatClosureOptimizer):
    """Newton's method with Hessian-vector products, conjugate gradients and a line search.

    The course's second-order update: from the quadratic model
    ``f(x + d) ~ f + g.d + d.H.d / 2``, step to its minimizer::

        solve  H d = -g;   x <- x + t d     (t = lr = 1: the exact Newton step)

    Code mapping:

    * ``H v`` by central differences of gradients, ``(g(x + e v) - g(x - e v)) / (2 e)`` (exact
      up to rounding on a quadratic, where the gradient is linear); two closure calls each.
    * ``hessian="cg"`` (default): solve ``H d = -g`` with linear conjugate gradients
      (Hessian-free / truncated Newton, Martens 2010) until ``||H d + g|| <= cg_tol ||g||``;
      when CG meets a direction of non-positive curvature (H not positive definite) it stops
      there, falling back to ``-g`` on the first CG iteration (Nocedal & Wright, Alg. 7.1).
    * ``hessian="dense"``: build ``H`` column by column (tiny models), and when its Cholesky
      factorisation fails add ``lambda I`` with growing ``lambda`` (Levenberg damping; 0 when
      H is positive definite).
    * ``damping`` adds a fixed ``lambda I`` to ``H`` (0 by default, so a convex quadratic gets
      the exact Newton step); a backtracking Armijo line search from ``t = lr`` halves the
      step until the loss decreases enough, so the method does not diverge on non-convex
      problems. One ``step(closure)`` is ``max_iter`` Newton iterations (1).

    Args:
        lr: first trial step (1.0); max_iter (1); hessian: "cg" or "dense"; damping (0);
        cg_max_iter: CG iterations (None = number of parameters); cg_tol (1e-10);
        tolerance_grad (1e-7); line_search: backtracking Armijo (True).
    """

    def __init__(
        self,
        params,
        lr=1.0,
        max_iter=1,
        hessian="cg",
        damping=0.0,
        cg_max_iter=None,
        cg_tol=1e-10,
        tolerance_grad=1e-7,
        line_search=True,
    ):
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            hessian=hessian,
            damping=damping,
            cg_max_iter=cg_max_iter,
            cg_tol=cg_tol,
            tolerance_grad=tolerance_grad,
            line_search=line_search,
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_positive("lr", group["lr"])
        check_nonnegative("damping", group["damping"])
        check_positive("cg_tol", group["cg_tol"])
        if group["hessian"] not in ("cg", "dense"):
            raise ValueError(f"invalid hessian={group['hessian']!r}: expected 'cg' or 'dense'")
        if not isinstance(group["max_iter"], int) or group["max_iter"] < 1:
            raise ValueError(f"invalid max_iter={group['max_iter']!r}: expected an integer >= 1")

    def _hvp(self, closure, x, v):
        """``H(x) v`` by central differences of the gradient."""
        v_norm = float(np.linalg.norm(v))
        if v_norm == 0:
            return np.zeros_like(v)
        eps = np.finfo(x.dtype).eps ** (1 / 3) * (1.0 + float(np.linalg.norm(x))) / v_norm
        _, g_plus = self._directional_evaluate(closure, x, eps, v)
        _, g_minus = self._directional_evaluate(closure, x, -eps, v)
        return (g_plus - g_minus) / (2 * eps)

    def _solve_cg(self, closure, x, g, damping, max_iter, tol):
        d = np.zeros_like(g)
        r = -g.copy()  # residual of H d = -g at d = 0
        p = r.copy()
        rr = float(r @ r)
        g_norm = math.sqrt(float(g @ g))
        for i in range(max_iter):
            hp = self._hvp(closure, x, p) + damping * p
            curvature = float(p @ hp)
            if curvature <= 0:
                return -g if i == 0 else d
            alpha = rr / curvature
            d += alpha * p
            r -= alpha * hp
            rr_new = float(r @ r)
            if math.sqrt(rr_new) <= tol * g_norm:
                break
            p = r + (rr_new / rr) * p
            rr = rr_new
        return d

    def _solve_dense(self, closure, x, g, damping):
        n = g.size
        H = np.empty((n, n), dtype=np.float64)  # noqa: N806
        eye = np.eye(n)
        for j in range(n):
            H[:, j] = self._hvp(closure, x, eye[j].astype(x.dtype))
        H = (H + H.T) / 2  # noqa: N806
        lam = damping
        scale = max(float(np.max(np.abs(np.diag(H)))), 1e-12)
        for _ in range(60):
            try:
                L = np.linalg.cholesky(H + lam * eye)  # noqa: N806
                break
            except np.linalg.LinAlgError:
                lam = max(2 * lam, 1e-3 * scale)
        else:
            return -g
        self._global_state["last_damping"] = lam
        z = np.linalg.solve(L, -g)
        return np.linalg.solve(L.T, z)

    def _step(self, closure):
        group = self.param_groups[0]
        state = self._global_state
        state.setdefault("n_iter", 0)
        orig_loss, loss = self._call(closure)
        g = self._flat_grad()
        n = g.size
        for _ in range(group["max_iter"]):
            if np.max(np.abs(g)) <= group["tolerance_grad"]:
                break
            x = self._flat_params()
            if group["hessian"] == "dense":
                d = self._solve_dense(closure, x, g, group["damping"])
            else:
                d = self._solve_cg(
                    closure, x, g, group["damping"], group["cg_max_iter"] or n, group["cg_tol"]
                )
            gtd = float(g @ d)
            if gtd >= 0:  # not a descent direction (should not happen): steepest descent
                d, gtd = -g, -float(g @ g)
            t = group["lr"]
            if group["line_search"]:
                for _ in range(40):
                    new_loss, new_g = self._directional_evaluate(closure, x, t, d)
                    if new_loss <= loss + 1e-4 * t * gtd:
                        break
                    t *= 0.5
            else:
                new_loss, new_g = self._directional_evaluate(closure, x, t, d)
            self._add_to_params(t, d)
            state["n_iter"] += 1
            loss, g = new_loss, new_g
        return orig_loss
