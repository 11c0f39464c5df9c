"""Training: Trainer, callbacks, metrics, checkpoints, configs and the models they describe."""

from nnparts.train.callbacks import (
    Callback,
    Checkpoint,
    DivergenceError,
    EarlyStopping,
)
from nnparts.train.checkpoint import CheckpointError
from nnparts.train.config import ConfigError
from nnparts.train.metrics import accuracy, confusion_matrix
from nnparts.train.models import build_model
from nnparts.train.trainer import Trainer
