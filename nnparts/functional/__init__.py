"""Differentiable operations (``import nnparts.functional as F``)."""

from nnparts.functional.activations import *
from nnparts.functional.conv import *
from nnparts.functional.dropout import *
from nnparts.functional.layers import linear
from nnparts.functional.layout import channels_last, contiguous, is_channels_last
from nnparts.functional.losses import *
from nnparts.functional.math import (
    abs,
    add,
    clamp,
    clip,
    concat,
    div,
    exp,
    flatten,
    getitem,
    log,
    matmul,
    max,
    maximum,
    mean,
    minimum,
    mul,
    neg,
    pow,
    reshape,
    sqrt,
    stack,
    sub,
    sum,
    transpose,
    where,
)
from nnparts.functional.normalization import *
from nnparts.functional.pooling import *
