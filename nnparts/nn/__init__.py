"""Layers and models: Module, Parameter, containers, layers, activations, normalization, blocks."""

from nnparts.nn.activation import *
from nnparts.nn.blocks import *
from nnparts.nn.containers import ModuleList, Sequential
from nnparts.nn.conv import *
from nnparts.nn.dropout import *
from nnparts.nn.linear import Flatten, Linear
from nnparts.nn.module import Module, Parameter
from nnparts.nn.normalization import *
from nnparts.nn.whitening import PatchWhitening
