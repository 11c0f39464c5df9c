"""Adam and its relatives: AdamW, NAdam, RAdam (AMSGrad as an option of Adam and AdamW).

They share one skeleton, :class:`_AdamBase` ``._moments``: weight decay (coupled or decoupled),
the first and second moment estimates and the step count. Each optimizer only says how the
moments become a step.
"""

from __future__ import annotations

import math

import numpy as np

from nnparts import threads
from nnparts.optim.optimizer import (
    Optimizer,
    bias_correction,
    check_betas,
    check_nonnegative,
    check_positive,
    coupled_weight_decay,
    decoupled_weight_decay_,
    ema_,
    ema_square_,
)

__all__ = ["Adam", "AdamW", "NAdam", "RAdam"]


def _as_pair(betas):
    """Lists (e.g. from JSON configs) become tuples; anything else is validated as is."""
    return tuple(betas) if isinstance(betas, list) else betas


class _AdamBase(Optimizer):
    """Shared part: ``t += 1``, weight decay, ``m <- EMA(g)``, ``v <- EMA(g^2)``."""

    def _check_group(self, group):
        super()._check_group(group)
        check_betas(group["betas"])
        check_positive("eps", group["eps"])
        check_nonnegative("weight_decay", group["weight_decay"])

    def _moments(self, param, grad, state, group):
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if group.get("amsgrad"):
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        g = grad
        if group.get("decoupled_weight_decay"):
            decoupled_weight_decay_(param, group["lr"], group["weight_decay"])
        else:
            g = coupled_weight_decay(grad, param, group["weight_decay"], self._scratch(param, 0))
        tmp = self._scratch(param, 1)
        ema_(state["exp_avg"], g, beta1, tmp)
        ema_square_(state["exp_avg_sq"], g, beta2, tmp)
        return g, state["exp_avg"], state["exp_avg_sq"], state["step"], tmp


class Adam(_AdamBase):
    """Adam (Kingma & Ba, 2015, "Adam: a method for stochastic optimization"); AMSGrad (Reddi,
    Kale & Kumar, 2018, "On the convergence of Adam and beyond").

    The course's rule (momentum + RMSprop + bias correction)::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1^t)          v_hat = v / (1 - beta2^t)
        W <- W - lr * m_hat / (sqrt(v_hat) + eps)

    Code mapping: ``weight_decay`` adds ``wd * W`` to ``g`` first (coupled L2; see AdamW for the
    decoupled form); ``amsgrad`` replaces ``v`` in the denominator by its running maximum. The
    step is computed as ``(lr * sqrt(bc2) / bc1) * m / (sqrt(v) + eps * sqrt(bc2))`` -- the same
    number as PyTorch's ``(lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)`` with one pass less.

    Args:
        lr: >= 0; betas: (beta1, beta2) in [0, 1); eps: > 0; weight_decay: >= 0; amsgrad: bool.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        maximize=False,
    ):
        defaults = dict(
            lr=lr,
            betas=_as_pair(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        defaults.update(self._extra_defaults())
        super().__init__(params, defaults)

    def _extra_defaults(self):
        return {"decoupled_weight_decay": False}

    def _update(self, param, grad, state, group):
        if (
            type(self) is Adam
            and not group["amsgrad"]
            and not group["weight_decay"]
            and "step" in state
            and param.flags.c_contiguous
            and grad.flags.c_contiguous
            and grad.dtype == param.dtype
        ):
            return self._update_threaded(param, grad, state, group)
        _, m, v, t, tmp = self._moments(param, grad, state, group)
        beta1, beta2 = group["betas"]
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        sqrt_bc2 = math.sqrt(bias_correction(beta2, t))
        step_size = group["lr"] * sqrt_bc2 / bias_correction(beta1, t)
        np.sqrt(v, out=tmp)
        tmp += group["eps"] * sqrt_bc2
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        param -= tmp

    def _update_threaded(self, param, grad, state, group):
        """The same arithmetic as the general path, in the same order (so the same bits), done
        on chunks of the flattened arrays by the threads of :mod:`nnparts.threads`."""
        state["step"] += 1
        t = state["step"]
        beta1, beta2 = group["betas"]
        sqrt_bc2 = math.sqrt(bias_correction(beta2, t))
        step_size = group["lr"] * sqrt_bc2 / bias_correction(beta1, t)
        eps = group["eps"] * sqrt_bc2
        p, g = param.reshape(-1), grad.reshape(-1)
        m, v = state["exp_avg"].reshape(-1), state["exp_avg_sq"].reshape(-1)
        tmp_all = self._scratch(param, 1).reshape(-1)

        def chunk(s, e):
            mm, vv, gg, tmp = m[s:e], v[s:e], g[s:e], tmp_all[s:e]
            np.subtract(gg, mm, out=tmp)  # m <- beta1 m + (1 - beta1) g
            tmp *= 1.0 - beta1
            mm += tmp
            np.multiply(gg, gg, out=tmp)  # v <- beta2 v + (1 - beta2) g^2
            tmp *= 1.0 - beta2
            vv *= beta2
            vv += tmp
            np.sqrt(vv, out=tmp)
            tmp += eps
            np.divide(mm, tmp, out=tmp)
            tmp *= step_size
            p[s:e] -= tmp

        threads.parallel_for(p.size, 8 * p.size, chunk)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019, "Decoupled weight decay regularization").

    Adam whose weight decay shrinks the weights directly instead of entering the gradient (and
    so the adaptive denominator)::

        W <- W * (1 - lr * weight_decay)        then the Adam step on the raw gradient

    PyTorch's default ``weight_decay=0.01``. ``amsgrad`` as in :class:`Adam`.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )

    def _extra_defaults(self):
        return {"decoupled_weight_decay": True}


class NAdam(_AdamBase):
    """NAdam: Adam with Nesterov momentum (Dozat, 2016, "Incorporating Nesterov momentum into
    Adam"), with PyTorch's momentum schedule.

    The paper's idea: use the look-ahead first moment, a mix of the *next* momentum applied to
    ``m`` and the current gradient. With the warming-up momentum schedule
    ``mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))`` and ``prod_t = mu_1 ... mu_t``::

        m, v as in Adam;  denom = sqrt(v / (1 - beta2^t)) + eps
        W <- W - lr * (1 - mu_t) / (1 - prod_t) * g / denom
               - lr * mu_{t+1} / (1 - prod_t * mu_{t+1}) * m / denom

    This is exactly ``torch.optim.NAdam`` (state ``mu_product`` = prod_t). ``weight_decay`` is
    coupled unless ``decoupled_weight_decay=True`` (then AdamW-style).

    Args:
        lr: default 2e-3; betas; eps; weight_decay; momentum_decay: default 4e-3.
    """

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        momentum_decay=4e-3,
        decoupled_weight_decay=False,
        *,
        maximize=False,
    ):
        defaults = dict(
            lr=lr,
            betas=_as_pair(betas),
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_nonnegative("momentum_decay", group["momentum_decay"])

    def _update(self, param, grad, state, group):
        if not state:
            state["mu_product"] = 1.0
        g, m, v, t, tmp = self._moments(param, grad, state, group)
        beta1, beta2 = group["betas"]
        psi = group["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        state["mu_product"] *= mu
        prod = state["mu_product"]
        lr = group["lr"]
        sqrt_bc2 = math.sqrt(bias_correction(beta2, t))
        # denom = sqrt(v / bc2) + eps = (sqrt(v) + eps * sqrt(bc2)) / sqrt(bc2)
        denom = tmp
        np.sqrt(v, out=denom)
        denom += group["eps"] * sqrt_bc2
        update = self._scratch(param, 2)
        np.multiply(g, lr * sqrt_bc2 * (1.0 - mu) / (1.0 - prod), out=update)
        momentum_term = self._scratch(param, 3)
        np.multiply(m, lr * sqrt_bc2 * mu_next / (1.0 - prod * mu_next), out=momentum_term)
        update += momentum_term
        update /= denom
        param -= update


class RAdam(_AdamBase):
    """RAdam: Adam with the variance of the adaptive lr rectified (Liu et al., 2020, "On the
    variance of the adaptive learning rate and beyond").

    Early on, ``v`` is estimated from few gradients and its inverse square root has a huge
    variance. With ``rho_inf = 2 / (1 - beta2) - 1`` and
    ``rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)`` (the length of the approximated SMA)::

        m_hat = m / (1 - beta1^t)
        if rho_t > rho_threshold:   (PyTorch: 5; the paper: 4)
            r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            W <- W - lr * r_t * m_hat * sqrt(1 - beta2^t) / (sqrt(v) + eps)
        else:                       (un-adapted momentum SGD)
            W <- W - lr * m_hat

    The paper writes the adaptive term ``1 / sqrt(v_hat)`` = ``sqrt(1 - beta2^t) / sqrt(v)``
    with no eps; PyTorch (and this code) add ``eps`` to ``sqrt(v)`` *before* the bias correction,
    as above. ``weight_decay`` is coupled unless ``decoupled_weight_decay=True``.

    Args:
        lr: 1e-3; betas; eps; weight_decay; rho_threshold: 5.0 (as PyTorch).
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        decoupled_weight_decay=False,
        rho_threshold=5.0,
        *,
        maximize=False,
    ):
        defaults = dict(
            lr=lr,
            betas=_as_pair(betas),
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            rho_threshold=rho_threshold,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        if not group["rho_threshold"] >= 4:
            raise ValueError(
                f"invalid rho_threshold={group['rho_threshold']!r}: expected a number >= 4 "
                "(the rectification term needs rho_t > 4; PyTorch uses 5)"
            )

    def _update(self, param, grad, state, group):
        _, m, v, t, tmp = self._moments(param, grad, state, group)
        beta1, beta2 = group["betas"]
        bc1, bc2 = bias_correction(beta1, t), bias_correction(beta2, t)
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho_t = rho_inf - 2.0 * t * beta2**t / bc2
        lr = group["lr"]
        if rho_t > group["rho_threshold"]:
            rect = math.sqrt(
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            )
            np.sqrt(v, out=tmp)
            tmp += group["eps"]
            np.divide(m, tmp, out=tmp)
            tmp *= lr * rect * math.sqrt(bc2) / bc1
        else:
            np.multiply(m, lr / bc1, out=tmp)
        param -= tmp
