"""init.dirac: equal to torch.nn.init.dirac_ (groups, out > in, 1-3-D kernels); a conv with
dirac weights and same padding passes its input through."""

from __future__ import annotations

import numpy as np
import pytest

import nnparts.functional as F
from nnparts import Tensor, init, nn

SHAPES = [
    ((4, 4, 3, 3), 1),
    ((6, 3, 3, 3), 1),  # out > in: channels 3..5 stay zero
    ((3, 5, 5, 5), 1),  # out < in: input channels 3, 4 are dropped
    ((8, 2, 3, 3), 2),  # groups: 4 out per group, 2 in
    ((6, 4, 2, 4), 3),  # even kernel sizes: centre k // 2
    ((4, 4, 3), 2),  # 1-D kernel
    ((4, 2, 3, 3, 3), 4),  # 3-D kernel, more groups than in channels per group
]


@pytest.mark.parametrize("shape, groups", SHAPES, ids=[str(s) for s in SHAPES])
def test_equals_torch_dirac(torch, shape, groups):
    ref = torch.nn.init.dirac_(torch.empty(shape), groups=groups).numpy()
    ours = init.dirac(shape, groups=groups)
    assert ours.dtype == np.float32 and ours.shape == shape
    np.testing.assert_array_equal(ours, ref)


def test_conv_with_dirac_weights_is_the_identity(rng):
    x = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
    conv = nn.Conv2d(5, 5, 3, padding=1, bias=False, init="dirac")
    np.testing.assert_array_equal(conv(Tensor(x)).data, x)
    wider = nn.Conv2d(5, 8, 5, padding="same", bias=False, init=init.dirac)
    out = wider(Tensor(x)).data
    np.testing.assert_array_equal(out[:, :5], x)
    np.testing.assert_array_equal(out[:, 5:], 0)


def test_grouped_dirac_copies_each_group(rng):
    """groups=2, 4 outputs per group of 2 inputs: outputs 0, 1 copy inputs 0, 1 and outputs
    4, 5 copy inputs 2, 3; outputs 2, 3, 6, 7 are zero."""
    x = rng.standard_normal((1, 4, 5, 5))
    w = init.dirac((8, 2, 3, 3), groups=2, dtype=np.float64)
    out = F.conv2d(Tensor(x), Tensor(w), padding=1, groups=2).data
    np.testing.assert_array_equal(out[:, [0, 1, 4, 5]], x)
    np.testing.assert_array_equal(out[:, [2, 3, 6, 7]], 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="3, 4 or 5 dimensions"):
        init.dirac((4, 4))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        init.dirac((4, 4, 3, 3), groups=3)
    assert init.get("dirac") is init.dirac
