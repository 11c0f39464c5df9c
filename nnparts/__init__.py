"""nnparts: the parts of a good neural network, written by hand on NumPy and checked."""

__version__ = "0.1.0"

from nnparts.tensor import Function, Tensor, enable_grad, is_grad_enabled, no_grad, tensor  # noqa: I001
from nnparts.gradcheck import GradcheckError, gradcheck
from nnparts.memory import tune_malloc
from nnparts.random import default_rng, manual_seed
from nnparts import threads
from nnparts.threads import get_num_threads, set_num_threads
from nnparts import data, functional, init, nn, optim, train

tune_malloc()  # keep freed arrays' memory for reuse (nnparts/memory.py; NNPARTS_TUNE_MALLOC=0)
threads.pin_blas()  # the pool policy: BLAS at one thread from the first op (bit-identical runs)
