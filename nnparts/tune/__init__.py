"""Hyperparameter search on Optuna: ``nnparts tune``.

A training config plus a ``search:`` section is a search; Optuna is the engine and its storage
the coordination between workers (an embedded SQLite file by default, PostgreSQL for many
machines). See :mod:`nnparts.tune.run` for the flow and :mod:`nnparts.tune.space` for the
search-space format. Optuna is imported only when a search runs.
"""

from nnparts.tune.cv import stratified_kfold
from nnparts.tune.space import SearchSpace, narrow

__all__ = ["SearchSpace", "narrow", "stratified_kfold", "tune"]


def tune(*args, **kwargs):
    """Run a search (see :func:`nnparts.tune.run.tune`)."""
    from nnparts.tune.run import tune as _tune

    return _tune(*args, **kwargs)
