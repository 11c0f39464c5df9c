"""Module and Parameter: the containers that hold a model's weights.

A :class:`Module` registers every :class:`Parameter`, sub-module and buffer assigned to it as an
attribute (as DeZero's ``Layer.__setattr__`` and PyTorch's ``nn.Module`` do), so
``parameters()``, ``state_dict()`` and ``train()/eval()`` reach the whole tree.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from nnparts.tensor import RemovableHandle, Tensor


class Parameter(Tensor):
    """A tensor that is a learnable weight of a module (``requires_grad=True``)."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True, dtype=None, name=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, name=name)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class of layers and models. Subclasses define ``forward``."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_hooks", {})
        object.__setattr__(self, "_forward_pre_hooks", {})

    # -- registration ---------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before assigning "
                f"attribute {name!r}"
            )
        for store in (self._parameters, self._modules, self._buffers):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_modules", "_buffers"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for store in (self._parameters, self._modules, self._buffers):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array: np.ndarray | None):
        """A non-learnable state array (BatchNorm's running mean) that is saved in state_dict."""
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def register_parameter(self, name: str, param: Parameter | None):
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    # -- traversal ------------------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        return iter(m for m in self._modules.values() if m is not None)

    def named_parameters(self, prefix: str = ""):
        seen = set()
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = ""):
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def num_parameters(self) -> int:
        """Number of learnable scalars."""
        return int(sum(p.size for p in self.parameters()))

    # -- modes ----------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Training mode: dropout drops, BatchNorm uses batch statistics."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Evaluation mode: dropout is the identity, BatchNorm uses running statistics."""
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Copies of every parameter and buffer, keyed by dotted names (``"0.weight"``)."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = p.data.copy()
        for name, b in self.named_buffers():
            state[name] = np.array(b, copy=True)
        return state

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays from ``state`` into this module's parameters and buffers, in place.

        Raises KeyError for missing or unexpected keys (when ``strict``) and ValueError naming the
        key and both shapes where a shape differs.
        """
        own = OrderedDict(self.named_parameters())
        buffers = OrderedDict(self.named_buffers())
        expected = list(own) + list(buffers)
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in own and k not in buffers]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        for key in expected:
            if key not in state:
                continue
            value = np.asarray(state[key])
            target = own[key].data if key in own else buffers[key]
            if value.shape != np.shape(target):
                raise ValueError(
                    f"shape mismatch for {key!r}: checkpoint has {value.shape}, "
                    f"model has {np.shape(target)}"
                )
        for key in expected:
            if key not in state:
                continue
            value = np.asarray(state[key])
            if key in own:
                own[key].data[...] = value  # in place: optimizers may hold views of .data
            else:
                target = buffers[key]
                if isinstance(target, np.ndarray) and target.ndim:
                    target[...] = value
                else:
                    self._set_buffer(key, value.copy())
        return self

    def _set_buffer(self, dotted: str, value):
        *path, name = dotted.split(".")
        module = self
        for part in path:
            module = module._modules[part]
        module._buffers[name] = value

    # -- calling --------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        d = self.__dict__
        pre, post = d.get("_forward_pre_hooks"), d.get("_forward_hooks")
        if not pre and not post:
            return self.forward(*args, **kwargs)
        if pre:
            for hook in tuple(pre.values()):
                replaced = hook(self, args)
                if replaced is not None:
                    args = replaced if isinstance(replaced, tuple) else (replaced,)
        output = self.forward(*args, **kwargs)
        if post:
            for hook in tuple(post.values()):
                replaced = hook(self, args, output)
                if replaced is not None:
                    output = replaced
        return output

    # -- hooks ----------------------------------------------------------------------------------
    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every ``forward`` (as PyTorch).

        ``inputs`` is the tuple of positional arguments. A hook that returns a value replaces the
        output. To see the gradient flowing back into the output, register a tensor hook on it
        inside the forward hook: ``output.register_hook(lambda g: ...)``. Returns a handle whose
        ``.remove()`` detaches the hook.
        """
        return RemovableHandle(self.__dict__.setdefault("_forward_hooks", {}), hook)

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, inputs)`` before every ``forward``; a returned value (a tuple, or
        one input) replaces the inputs."""
        return RemovableHandle(self.__dict__.setdefault("_forward_pre_hooks", {}), hook)

    def register_output_grad_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, grad_output)`` with the gradient of the loss with respect to this
        module's output, each time backward passes through it (the course's per-layer gradient
        norms). ``grad_output`` is a NumPy array; returning an array replaces it. The output must
        require grad (the module has parameters or its input needs grad). One handle removes the
        forward hook that attaches the tensor hooks."""

        def attach(module, inputs, output):
            if isinstance(output, Tensor) and output.requires_grad:
                output.register_hook(lambda grad: hook(module, grad))

        return self.register_forward_hook(attach)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            lines[0] = lines[0].rstrip("(") + "(" if self.extra_repr() else lines[0]
            for name, m in self._modules.items():
                sub = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({name}): {sub}")
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"
