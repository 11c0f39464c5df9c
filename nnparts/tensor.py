"""Tensor and reverse-mode automatic differentiation.

A :class:`Tensor` wraps a NumPy array (``.data``) and, when it takes part in a computation that
needs gradients, remembers the :class:`Function` that produced it. ``loss.backward()`` walks that
graph in reverse topological order and calls each function's hand-written ``backward``.

Every op is a subclass of :class:`Function` with two static methods written side by side:

* ``forward(ctx, *arrays, **kwargs) -> ndarray`` computes the value and saves on ``ctx`` whatever
  the backward needs;
* ``backward(ctx, grad) -> grad or tuple of grads`` returns the gradient of the loss with respect
  to each tensor input (``None`` where an input needs none).

dtypes: Python numbers and lists become float32; NumPy arrays keep their floating dtype
(float64 stays float64); integer arrays stay integer and never require a gradient. Mixed inputs
follow NumPy's promotion rules.
"""

from __future__ import annotations

import contextlib
import sys
import threading

import numpy as np

DEFAULT_DTYPE = np.float32

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Context manager: operations inside record no graph (evaluation, optimizer updates)."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


@contextlib.contextmanager
def enable_grad():
    previous = is_grad_enabled()
    _state.grad_enabled = True
    try:
        yield
    finally:
        _state.grad_enabled = previous


def _as_array(data, dtype=None) -> np.ndarray:
    """Convert ``data`` to an ndarray following the library's dtype rules."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, np.generic):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if arr.dtype == np.float64:  # Python floats and lists: float32 by default
            arr = arr.astype(DEFAULT_DTYPE)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    elif arr.dtype == np.float16 or arr.dtype == object:
        arr = arr.astype(DEFAULT_DTYPE)
    return arr


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


class Context:
    """What a Function's forward leaves for its backward."""

    __slots__ = ("saved", "needs_grad", "__dict__")

    def __init__(self):
        self.saved = ()
        self.needs_grad = ()

    def save(self, *arrays):
        self.saved = arrays


_RELEASED = (None, None, ())  # _ctx of a node whose backward ran and whose saved arrays are freed


class Function:
    """Base class of differentiable operations. Subclasses define ``forward`` and ``backward``."""

    @staticmethod
    def forward(ctx, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **kwargs):
        """Run forward on the inputs' arrays; record the graph if any input needs a gradient.

        Inputs that are not tensors are constants. Python numbers are "weak": they take the
        dtype of the first tensor operand (``2 - x`` stays float32), as NumPy does for Python
        scalars. This is the hot path of every op, so it avoids needless work.
        """
        arrays, tensors, needs = [], [], []
        ref = None
        for x in inputs:
            if isinstance(x, Tensor):
                ref = x.data.dtype
                break
        for x in inputs:
            if isinstance(x, Tensor):
                arrays.append(x.data)
                node = x._node  # a computed input: its graph node, which does not hold its data
                tensors.append(x if node is None else node)
                needs.append(x._requires_grad)
            else:
                if ref is not None and ref.kind == "f" and type(x) in (int, float):
                    arrays.append(np.asarray(x, dtype=ref))
                else:
                    arrays.append(_as_array(x))
                tensors.append(_CONSTANT)
                needs.append(False)
        ctx = Context()
        ctx.needs_grad = needs = tuple(needs)
        out = cls.forward(ctx, *arrays, **kwargs)
        if type(out) is not np.ndarray:
            out = np.asarray(out)
        result = Tensor.__new__(Tensor)
        result.data = out
        result.grad = None
        result.name = None
        result._hooks = None
        if True in needs and is_grad_enabled() and out.dtype.kind in "fc":
            result._requires_grad = True
            result._node = _Node((cls, ctx, tensors), out.shape, out.dtype)
        else:
            result._requires_grad = False
            result._node = None
        return result


class _Node:
    """A computed tensor's place in the graph: its op record ``(Function, ctx, inputs)``, its
    shape and dtype, and its gradient hooks, but not its array.

    The ops that consume a tensor keep its node, not the tensor: an intermediate array that no op
    saved for its backward (a BatchNorm output that only feeds a ReLU, which saves its own
    output) is freed as soon as the caller drops it, as in PyTorch, instead of living until the
    backward. Inputs that are leaves (parameters, data) are kept as tensors: their ``.grad`` is
    where the gradient goes."""

    __slots__ = ("_ctx", "_requires_grad", "_hooks", "shape", "dtype")

    def __init__(self, record, shape, dtype):
        self._ctx = record
        self._requires_grad = True
        self._hooks = None
        self.shape = shape
        self.dtype = dtype


def _topological_order(start):
    """Graph nodes (computed tensors' :class:`_Node` and leaf tensors) from ``start`` to the
    leaves, each after every node that uses it (iterative depth-first search, so deep graphs do
    not hit Python's recursion limit)."""
    order, seen = [], set()
    stack = [(start, False)]
    push, pop, mark = stack.append, stack.pop, seen.add
    while stack:
        node, processed = pop()
        if processed:
            order.append(node)
            continue
        key = id(node)
        if key in seen:
            continue
        mark(key)
        push((node, True))
        record = node._ctx
        if record is not None:
            for parent in record[2]:
                if parent._requires_grad and id(parent) not in seen:
                    push((parent, False))
    order.reverse()
    return order


class RemovableHandle:
    """What ``register_hook`` / ``register_forward_hook`` return: ``.remove()`` detaches the
    hook (also usable as a context manager, detaching on exit)."""

    _next_id = 0

    def __init__(self, hooks: dict, hook):
        RemovableHandle._next_id += 1
        self.id = RemovableHandle._next_id
        self._hooks = hooks
        hooks[self.id] = hook

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _owned(g: np.ndarray, data: np.ndarray) -> bool:
    """Whether a leaf can keep the gradient array ``g`` as its ``.grad`` instead of a copy: ``g``
    owns its memory (not a view of a buffer someone reuses), is writeable, has ``data``'s dtype
    and C order, and nothing but ``backward``'s loop refers to it (no graph node, no op's
    saved state, no caller) — the test PyTorch's AccumulateGrad makes before it steals a
    gradient. The copy it saves was 5% of an MLP's training step (2.7 MB a step)."""
    return (
        type(g) is np.ndarray
        and g.flags.owndata
        and g.flags.writeable
        and g.flags.c_contiguous
        and g.dtype == data.dtype
        and g.shape == data.shape
        and sys.getrefcount(g) <= _LOOP_REFS
    )


def _loop_refs() -> int:
    """What ``sys.getrefcount`` reports inside :func:`_owned` for an array that only the
    calling loop's variable holds (3 on CPython 3.11: that variable, ``_owned``'s parameter and
    ``getrefcount``'s argument). Measured rather than assumed, since interpreters that borrow
    references count fewer; any other holder adds one."""
    g = np.empty(1)
    return _refcount_in_call(g)


def _refcount_in_call(g) -> int:
    return sys.getrefcount(g)


_LOOP_REFS = _loop_refs()


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    Args:
        data: array-like. Python numbers and lists become float32; NumPy arrays keep their dtype.
        requires_grad: whether ``backward`` should compute ``.grad`` for this tensor. Only floating
            tensors can require a gradient.
        dtype: optional dtype to convert to.
    """

    __slots__ = ("data", "grad", "_requires_grad", "_node", "name", "_hooks", "__weakref__")
    __array_priority__ = 1000  # make ndarray + Tensor call Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None, name: str | None = None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self._node = None
        self.name = name
        self._hooks = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    # -- gradient bookkeeping ---------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool):
        if value and self.data.dtype.kind not in "fc":
            raise ValueError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}; "
                "convert with .astype(np.float32) first"
            )
        self._requires_grad = bool(value)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def _ctx(self):
        """The op record ``(Function, ctx, inputs)`` that computed this tensor (None for a leaf;
        ``(None, None, ())`` once a backward has freed it)."""
        node = self._node
        return None if node is None else node._ctx

    def detach(self) -> Tensor:
        """A tensor sharing the same data, cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self):
        self.grad = None

    def register_hook(self, hook) -> RemovableHandle:
        """Call ``hook(grad)`` when the gradient with respect to this tensor is computed.

        ``grad`` is a NumPy array of this tensor's shape; a hook may return a replacement array
        (as PyTorch's ``Tensor.register_hook``) or None to leave it unchanged. Hooks run in the
        order they were registered, before the gradient flows on to this tensor's inputs (or
        into ``.grad`` for a leaf). Returns a handle whose ``.remove()`` detaches the hook.
        """
        if not self._requires_grad:
            raise RuntimeError(
                "cannot register a hook on a tensor that does not require grad; create it with "
                "requires_grad=True or register on an output of a computation that needs grad"
            )
        owner = self if self._node is None else self._node  # a computed tensor's hooks live on
        if owner._hooks is None:  # its graph node, which backward reaches without the tensor
            owner._hooks = {}
        return RemovableHandle(owner._hooks, hook)

    def backward(self, grad=None, retain_graph: bool = False):
        """Reverse-mode differentiation from this tensor.

        ``grad`` defaults to 1 for a scalar. Gradients are accumulated (+=) into the ``.grad`` of
        every leaf tensor that requires one, so a tensor used twice receives both contributions.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() without a gradient needs a scalar output, got shape {self.shape};"
                    " pass grad= of the same shape"
                )
            grad = np.ones_like(self.data)
        else:
            grad = _as_array(grad, self.data.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(
                    f"grad shape {grad.shape} does not match tensor shape {self.data.shape}"
                )

        start = self if self._node is None else self._node
        order = _topological_order(start)
        grads = {id(start): grad}
        pop = grads.pop
        for node in order:
            g = pop(id(node), None)
            if g is None:
                continue
            if node._hooks:
                for hook in tuple(node._hooks.values()):
                    replaced = hook(g)
                    if replaced is not None:
                        g = _as_array(replaced, node.dtype)
            record = node._ctx
            if record is None:  # a leaf (only leaves that require grad are in the order)
                data = node.data
                if g.shape != data.shape:
                    g = unbroadcast(g, data.shape)
                if node.grad is None:
                    node.grad = g if _owned(g, data) else np.array(g, dtype=data.dtype, copy=True)
                else:
                    node.grad += g
                continue
            fn, ctx, inputs = record
            if fn is None:
                raise RuntimeError(
                    "backward through part of a graph a second time: its saved arrays were freed "
                    "by the first backward(); pass backward(retain_graph=True) the first time"
                )
            in_grads = fn.backward(ctx, g)
            if type(in_grads) is not tuple:
                in_grads = (in_grads,)
            for inp, ig in zip(inputs, in_grads):
                if ig is None or not inp._requires_grad:
                    continue
                if ig.shape != inp.shape:
                    ig = unbroadcast(ig, inp.shape)
                key = id(inp)
                if key in grads:
                    grads[key] = grads[key] + ig
                else:
                    grads[key] = ig
            in_grads = ig = None  # no reference left here to the gradients handed on (_owned)
            if not retain_graph:
                node._ctx = _RELEASED  # free the saved arrays as soon as they are used

    # -- array-like attributes ----------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self):
        return len(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self):
        return self.data.item()

    def astype(self, dtype) -> Tensor:
        return _ops.Cast.apply(self, dtype=np.dtype(dtype))

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}{extra})"

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    # -- operators (the ops live in nnparts.functional.math, next to their backward) ----------
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __pow__(self, exponent):
        return _ops.pow(self, exponent)

    def __rpow__(self, base):
        return _ops.pow(base, self)

    def __neg__(self):
        return _ops.neg(self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    # comparisons give plain boolean arrays wrapped in (non-differentiable) tensors
    def __lt__(self, other):
        return Tensor(self.data < _as_array(other))

    def __le__(self, other):
        return Tensor(self.data <= _as_array(other))

    def __gt__(self, other):
        return Tensor(self.data > _as_array(other))

    def __ge__(self, other):
        return Tensor(self.data >= _as_array(other))

    __hash__ = object.__hash__

    # -- methods --------------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return _ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return _ops.max(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _ops.transpose(self, axes or None)

    @property
    def T(self):
        return _ops.transpose(self, None)

    def flatten(self, start_dim: int = 1):
        return _ops.flatten(self, start_dim)

    def exp(self):
        return _ops.exp(self)

    def log(self):
        return _ops.log(self)

    def sqrt(self):
        return _ops.sqrt(self)

    def abs(self):
        return _ops.abs(self)

    def clip(self, min=None, max=None):
        return _ops.clip(self, min, max)


_CONSTANT = Tensor(np.zeros(()))  # stands in the graph for every non-tensor input


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Create a :class:`Tensor` (same rules as the constructor)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


from nnparts.functional import math as _ops  # noqa: E402  (it imports Tensor from here)
