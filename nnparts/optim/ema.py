"""WeightEMA: an exponential moving average of a model's weights (Polyak averaging)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict

import numpy as np

from nnparts.optim.optimizer import check_unit_interval, ema_

__all__ = ["WeightEMA"]


class WeightEMA:
    """An exponential moving average of a model's weights, kept beside the model.

    After every optimizer step, ``update()`` folds the current weights ``w_t`` into the
    average (Polyak & Juditsky 1992; the "EMA of weights" of Tarvainen & Valpola 2017)::

        avg_1 = w_1                                  (the first update copies)
        avg_t = decay * avg_{t-1} + (1 - decay) * w_t

    Evaluating with ``avg`` instead of ``w`` averages out the noise of the last SGD steps.
    The numbers equal ``torch.optim.swa_utils.AveragedModel(model,
    multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=use_buffers)`` with
    ``update_parameters(model)``; the averages are plain NumPy arrays of the weights' dtypes,
    updated in place (``avg += (1 - decay) * (w - avg)``, PyTorch's ``lerp_``).

    Buffers (BatchNorm's running statistics):

    * ``use_buffers=True``: they are averaged like the weights, as PyTorch does. Integer
      buffers (``num_batches_tracked``) get PyTorch's ``int(decay * avg + (1 - decay) * b)``
      (truncated toward zero).
    * ``use_buffers=False``: only the weights are averaged; :meth:`copy_to` leaves the
      target model's own buffers as they are, so the averaged weights run with the model's
      current running statistics. (PyTorch's AveragedModel copies the model's buffers into its
      copy at every ``update_parameters``, which is the same thing when ``copy_to`` follows an
      ``update()``; recompute them for the averaged weights with a pass over the training data
      in train mode, PyTorch's ``update_bn``, if they matter.)

    Args:
        model: the :class:`~nnparts.nn.Module` whose weights are averaged (``update()`` reads
            it; the averages start as copies of its current weights, ``n_averaged = 0``).
        decay: in [0, 1]; the average's memory is about ``1 / (1 - decay)`` updates.
        use_buffers: average the buffers too.

    Example:
        >>> ema = WeightEMA(model, decay=0.999)                       # doctest: +SKIP
        >>> for x, y in loader:                                       # doctest: +SKIP
        ...     loss = F.cross_entropy(model(x), y); opt.zero_grad(); loss.backward()
        ...     opt.step(); ema.update()
        >>> with ema.applied(model):                                  # doctest: +SKIP
        ...     accuracy = evaluate(model)        # the EMA weights; the originals come back
    """

    def __init__(self, model, decay: float = 0.999, use_buffers: bool = True):
        if not hasattr(model, "named_parameters") or not hasattr(model, "named_buffers"):
            raise ValueError(f"WeightEMA needs an nnparts Module, got {type(model).__name__}")
        check_unit_interval("decay", decay, closed_right=True)
        self.model = model
        self.decay = float(decay)
        self.use_buffers = bool(use_buffers)
        self.n_averaged = 0
        self.averages: OrderedDict[str, np.ndarray] = OrderedDict(
            (name, np.array(value, copy=True)) for name, value in self._tracked(model)
        )
        self._scratch: dict = {}

    def _tracked(self, model):
        """``(name, array)`` of what is averaged: the weights, then the buffers if asked."""
        for name, p in model.named_parameters():
            yield name, p.data
        if self.use_buffers:
            yield from model.named_buffers()

    def _matching(self, model):
        arrays = OrderedDict(self._tracked(model))
        if list(arrays) != list(self.averages):
            raise ValueError(
                f"model does not match the averaged one: it has {list(arrays)}, the average "
                f"holds {list(self.averages)}"
            )
        return arrays

    def update(self, model=None):
        """Fold ``model``'s (default: the tracked model's) current weights into the average."""
        current = self._matching(self.model if model is None else model)
        for name, avg in self.averages.items():
            value = np.asarray(current[name])
            if self.n_averaged == 0:
                avg[...] = value
            elif avg.dtype.kind in "fc":
                tmp = self._scratch.get(name)
                if tmp is None:
                    tmp = self._scratch[name] = np.empty_like(avg)
                ema_(avg, value, self.decay, tmp)
            else:  # integer buffers, as PyTorch: the float average truncated toward zero
                avg[...] = avg * self.decay + value * (1.0 - self.decay)
        self.n_averaged += 1

    def copy_to(self, model=None):
        """Write the averaged weights (and buffers, with ``use_buffers``) into ``model``
        (default: the tracked model), in place."""
        target = self.model if model is None else model
        self._matching(target)
        target.load_state_dict(self.averages, strict=False)
        return target

    @contextlib.contextmanager
    def applied(self, model=None):
        """``with ema.applied(model):`` the model holds the averaged weights inside the block;
        its own weights and buffers are restored on exit (also after an exception)."""
        target = self.model if model is None else model
        saved = target.state_dict()
        self.copy_to(target)
        try:
            yield target
        finally:
            target.load_state_dict(saved)

    def state_dict(self) -> dict:
        """``{"decay", "use_buffers", "n_averaged", "averages": {name: ndarray}}`` (copies; plain
        numbers and arrays, so it can go to ``.npz`` + JSON like the optimizers' state)."""
        return {
            "decay": self.decay,
            "use_buffers": self.use_buffers,
            "n_averaged": int(self.n_averaged),
            "averages": {k: v.copy() for k, v in self.averages.items()},
        }

    def load_state_dict(self, state_dict: dict):
        """Restore a :meth:`state_dict` (names and shapes must match this model's)."""
        averages = state_dict["averages"]
        if bool(state_dict["use_buffers"]) != self.use_buffers or set(averages) != set(
            self.averages
        ):
            raise ValueError(
                f"WeightEMA state_dict does not match: it holds {sorted(averages)} "
                f"(use_buffers={state_dict['use_buffers']}), this one {sorted(self.averages)} "
                f"(use_buffers={self.use_buffers})"
            )
        for name, avg in self.averages.items():
            value = np.asarray(averages[name])
            if value.shape != avg.shape:
                raise ValueError(
                    f"WeightEMA state for {name!r} has shape {value.shape}, expected {avg.shape}"
                )
        for name, avg in self.averages.items():
            avg[...] = averages[name]
        self.decay = float(state_dict["decay"])
        self.n_averaged = int(state_dict["n_averaged"])

    def __repr__(self):
        return (
            f"WeightEMA(decay={self.decay}, use_buffers={self.use_buffers}, "
            f"n_averaged={self.n_averaged}, tensors={len(self.averages)})"
        )
