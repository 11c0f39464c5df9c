"""Where a study lives: an embedded SQLite file in the output folder, or a PostgreSQL server.

Embedded default: SQLite through Optuna's ``RDBStorage`` (``DIR/study.db``). Optuna's other
server-less choice, ``JournalStorage`` with a file backend, takes several processes too, but in
Optuna 5.1 it does not implement heartbeats (it is not a ``BaseHeartbeat``): a worker killed with
SIGKILL would leave its trial RUNNING for ever. ``RDBStorage`` on SQLite has heartbeats, and
SQLite's file locking (with a generous busy timeout) serializes the few writes per trial of
several local workers.

PostgreSQL (``postgresql+psycopg://user:pass@host:port/db``; ``postgresql://`` and
``postgres://`` are rewritten to the psycopg 3 driver): any number of processes on any number of
machines. Optuna creates its tables and enum types on first use, and two workers that do that at
the same instant race (one dies on ``CREATE TYPE studydirection``). So storage creation runs
under a PostgreSQL advisory lock (:func:`open_storage`); the second worker waits, then finds the
schema in place.

Both storages record a heartbeat per running trial; a trial whose heartbeat is older than the
grace period is marked FAIL by the next worker that looks (``fail_stale_trials``) and re-queued
with the same parameters by ``RetryFailedTrialCallback``.

The search's own critical section (count the trials, then ask for a new one) also runs under a
lock: an advisory lock on PostgreSQL, ``flock`` on a file beside the SQLite database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
import zlib

from nnparts.train.config import ConfigError

SCHEMA_LOCK = 0x6E6E7061  # "nnpa": advisory lock key around Optuna's schema creation


def normalize_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` -> ``postgresql+psycopg://`` (psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: drop everything before '@'
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return url


def embedded_url(out_dir: str) -> str:
    return "sqlite:///" + os.path.abspath(os.path.join(out_dir, "study.db"))


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def _one_line(error: Exception, url: str) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    text = text[0] if text else type(error).__name__
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text


def _engine(url: str):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": 10} if is_postgres(url) else {"timeout": 60}
    return sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)


def check_reachable(url: str):
    """Connect once; raise RuntimeError naming the URL (without its password) when it fails."""
    import sqlalchemy

    if url.startswith("sqlite:///"):
        folder = os.path.dirname(url[len("sqlite:///") :])
        if folder and not os.path.isdir(folder):
            raise RuntimeError(f"storage {url}: the folder {folder} does not exist")
    try:
        engine = _engine(url)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except ModuleNotFoundError as e:
        raise RuntimeError(
            f"storage {mask_url(url)} needs the Python package {e.name!r}: "
            "pip install 'nnparts[tune]' (psycopg[binary] for PostgreSQL)"
        ) from None
    except sqlalchemy.exc.ArgumentError as e:
        raise ConfigError(f"--storage {mask_url(url)!r} is not a database URL: {e}") from None
    except Exception as e:
        raise RuntimeError(
            f"cannot reach storage {mask_url(url)}: {_one_line(e, url)} "
            "(is the server running, and are the host, port, user and database right?)"
        ) from None


@contextlib.contextmanager
def advisory_lock(url: str, key: int, engine=None):
    """Hold a PostgreSQL session-level advisory lock for the ``with`` block (on a connection of
    ``engine`` when given, else on a new connection)."""
    import sqlalchemy

    own = engine is None
    engine = _engine(url) if own else engine
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        if own:
            engine.dispose()


@contextlib.contextmanager
def file_lock(path: str):
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class StudyLock:
    """A lock shared by every worker of a storage (advisory lock or flock), reusable."""

    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self.key = zlib.crc32(f"nnparts-tune:{name}".encode())
        self._engine = None  # one pooled connection for the lock, reused by every trial

    def __call__(self):
        if is_postgres(self.url):
            if self._engine is None:
                import sqlalchemy

                self._engine = sqlalchemy.create_engine(
                    self.url, pool_size=1, pool_pre_ping=True,
                    connect_args={"connect_timeout": 10},
                )  # fmt: skip
            return advisory_lock(self.url, self.key, self._engine)
        if self.url.startswith("sqlite:///"):
            return file_lock(self.url[len("sqlite:///") :] + ".lock")
        return contextlib.nullcontext()


def retry_callback(max_retry):
    """Optuna's retry of a stale (killed) trial: ``RetryHeartbeatStaleTrialCallback`` (Optuna
    >= 4.9), formerly ``RetryFailedTrialCallback``; re-queues the trial's parameters."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if cls is None:  # pragma: no cover - older Optuna
        cls = optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=max_retry)


def open_storage(url: str, heartbeat_interval: int = 10, grace_period: int = 30, max_retry=3):
    """An Optuna ``RDBStorage`` with heartbeats and retry of stale trials.

    Raises RuntimeError (URL named without its password) when the database cannot be reached.
    """
    import optuna

    check_reachable(url)
    engine_kwargs = (
        {
            # a pooled connection is checked before use and replaced after 5 minutes
            "pool_pre_ping": True,
            "pool_recycle": 300,
            # the commit of a trial's small writes does not wait for the server's disk flush
            # (a server crash may lose the last fraction of a second, never corrupts)
            "connect_args": {"connect_timeout": 10, "options": "-c synchronous_commit=off"},
        }
        if is_postgres(url)
        else {"connect_args": {"timeout": 60}}
    )

    def create():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=retry_callback(max_retry),
            )

    if is_postgres(url):
        with advisory_lock(url, SCHEMA_LOCK):  # first start: one worker creates the schema
            return create()
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        with file_lock(path + ".lock"):
            _sqlite_wal(path)
            storage = create()
        _sqlite_fast_commits(storage)
        return storage
    return create()


def _sqlite_wal(path: str):
    """Write-ahead logging: readers never block the writer, and commits need no fsync of the
    whole database (the mode is stored in the file, so every worker gets it)."""
    import sqlite3

    conn = sqlite3.connect(path, timeout=60)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _sqlite_fast_commits(storage):
    """``synchronous=NORMAL`` on every connection of the storage: in WAL mode a commit no longer
    waits for the disk (a power cut may lose the last commits, never corrupts the file)."""
    import sqlalchemy

    def on_connect(dbapi_conn, _record):
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections opened before the listener: closed, reopened with it
