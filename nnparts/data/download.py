"""Finding and downloading dataset files: lookup order, mirrors, SHA-256, atomic writes.

Lookup order for a dataset's files (:func:`find_files`):

1. an explicit ``data_dir`` argument, else ``$NNPARTS_DATA``;
2. the user cache directory, ``$XDG_CACHE_HOME/nnparts/<name>`` or ``~/.cache/nnparts/<name>``;
3. system directories, e.g. ``/usr/share/datasets/fashion-mnist/`` (Debian's package
   ``dataset-fashion-mnist``) and ``/usr/share/datasets/mnist/``;
4. a download from the official mirrors, tried in turn, into the cache directory (or into
   ``data_dir`` when one was given).

A directory counts only when it holds all the files of the split. A download streams to a
temporary file in the target directory while hashing it, checks the SHA-256 against
:data:`SHA256`, and only then renames it into place with :func:`os.replace`; a mismatch, an
error or an interruption (Ctrl-C) removes the temporary file, so nothing half-written or
unverified is ever left where the loader looks.

:data:`MIRRORS` and :data:`SHA256` are plain module dictionaries, and every function takes
``mirrors=`` / ``hashes=`` overrides, so tests can serve small files from a ``file://`` URL or a
local HTTP server.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request

__all__ = [
    "FILES",
    "MIRRORS",
    "SHA256",
    "SYSTEM_DIRS",
    "DatasetNotFoundError",
    "cache_dir",
    "download_dataset",
    "download_file",
    "find_files",
    "search_dirs",
    "sha256_file",
]

#: The IDX files of each split, as ``(images, labels)``.
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: Base URLs tried in turn (the file name is appended).
MIRRORS = {
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
}

#: Accepted SHA-256 of each ``.gz`` file. Fashion-MNIST: the files on Zalando's mirror and
#: Debian's re-compressed copies in ``dataset-fashion-mnist`` (same IDX content, gzip header
#: without a file name, hence different bytes); MNIST: the files on the mirrors above.
SHA256 = {
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        ),
        "train-labels-idx1-ubyte.gz": (
            "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        ),
        "t10k-images-idx3-ubyte.gz": (
            "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        ),
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
}

#: System directories searched after the user's (``{name}`` is the dataset name).
SYSTEM_DIRS = ["/usr/share/datasets/{name}"]

#: How to install each dataset without internet (for the error message).
_INSTALL_HINT = {
    "fashion-mnist": "on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist",
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are nowhere on this machine and could not be downloaded."""


def cache_dir(name: str | None = None) -> str:
    """The user cache directory, ``$XDG_CACHE_HOME/nnparts`` or ``~/.cache/nnparts``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = os.path.join(base, "nnparts")
    return os.path.join(root, name) if name else root


def search_dirs(name: str, data_dir=None) -> list[str]:
    """The directories searched for dataset ``name``, in order (see the module docstring)."""
    dirs = []
    explicit = data_dir if data_dir is not None else os.environ.get("NNPARTS_DATA")
    if explicit:
        explicit = os.fspath(explicit)
        # accept both DIR (holding the files) and DIR/<name>/
        dirs += [explicit, os.path.join(explicit, name)]
    dirs.append(cache_dir(name))
    dirs += [d.format(name=name) for d in SYSTEM_DIRS]
    return dirs


def find_files(name: str, split: str, data_dir=None) -> tuple[str, str] | None:
    """Paths ``(images, labels)`` of the first directory holding both files, else ``None``."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    for d in search_dirs(name, data_dir):
        paths = tuple(os.path.join(d, f) for f in FILES[split])
        if all(os.path.isfile(p) for p in paths):
            return paths
    return None


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def _progress(total, desc, enabled):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return contextlib.nullcontext(None)
    return tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled
    )


def download_file(
    urls,
    dest: str,
    sha256=None,
    progress: bool = True,
    timeout: float = 60.0,
    chunk_size: int = 1 << 16,
) -> str:
    """Download the first of ``urls`` that answers and matches ``sha256`` to ``dest``, atomically.

    The bytes go to a temporary file beside ``dest`` while being hashed; only a file whose
    SHA-256 is in ``sha256`` (a hex string or a collection of them; ``None`` skips the check) is
    renamed to ``dest``. On a network error or a hash mismatch the next URL is tried; if all
    fail, ``OSError`` lists every URL and why. Nothing is left behind on failure or interrupt.
    """
    if isinstance(urls, str):
        urls = [urls]
    accepted = None
    if sha256 is not None:
        accepted = {sha256} if isinstance(sha256, str) else set(sha256)
        accepted = {h.lower() for h in accepted}
    directory = os.path.dirname(os.path.abspath(dest)) or "."
    os.makedirs(directory, exist_ok=True)
    failures = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(dest) + ".")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                total = r.headers.get("Content-Length")
                total = int(total) if total and total.isdigit() else None
                with _progress(total, os.path.basename(dest), progress) as bar:
                    for chunk in iter(lambda: r.read(chunk_size), b""):
                        out.write(chunk)
                        h.update(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
            digest = h.hexdigest()
            if accepted is not None and digest not in accepted:
                failures.append(
                    f"{url}: SHA-256 mismatch: got {digest}, expected "
                    + " or ".join(sorted(accepted))
                )
                os.remove(tmp)
                continue
            os.replace(tmp, dest)
            return dest
        except (OSError, urllib.error.URLError, ValueError) as err:
            failures.append(f"{url}: {err}")
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        except BaseException:  # KeyboardInterrupt and friends: clean up, then re-raise
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise
    raise OSError(
        f"could not download {os.path.basename(dest)}:\n  " + "\n  ".join(failures or ["no URL"])
    )


def download_dataset(
    name: str,
    splits=("train", "test"),
    data_dir=None,
    mirrors=None,
    hashes=None,
    progress: bool = True,
) -> str:
    """Download the IDX files of dataset ``name`` into ``data_dir`` (default: the user cache).

    Files already present with an accepted SHA-256 are kept. Returns the directory.
    ``mirrors`` (list of base URLs) and ``hashes`` (file name -> accepted hex digests) default
    to :data:`MIRRORS` [name] and :data:`SHA256` [name].
    """
    if name not in MIRRORS and mirrors is None:
        raise ValueError(
            f"no download mirrors for {name!r}; datasets with mirrors: {sorted(MIRRORS)}"
        )
    mirrors = MIRRORS[name] if mirrors is None else list(mirrors)
    hashes = SHA256.get(name, {}) if hashes is None else hashes
    if isinstance(splits, str):
        splits = (splits,)
    target = os.fspath(data_dir) if data_dir is not None else cache_dir(name)
    for split in splits:
        if split not in FILES:
            raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
        for fname in FILES[split]:
            dest = os.path.join(target, fname)
            expected = hashes.get(fname)
            if expected is None:
                raise ValueError(
                    f"no SHA-256 known for {fname} of {name!r}; pass hashes={{{fname!r}: ...}}"
                )
            if os.path.isfile(dest) and sha256_file(dest) in set(
                [expected] if isinstance(expected, str) else expected
            ):
                continue
            download_file(
                [m.rstrip("/") + "/" + fname for m in mirrors], dest, expected, progress=progress
            )
    return target


def not_found_message(name: str, split: str, data_dir=None, reason: str = "") -> str:
    """The error text for a dataset that is neither on disk nor downloadable."""
    files = ", ".join(FILES[split])
    dirs = "\n  ".join(search_dirs(name, data_dir))
    hint = _INSTALL_HINT.get(name)
    lines = [f"{name} ({split} split) not found. Looked for {files} in:\n  {dirs}"]
    if reason:
        lines.append(f"Download failed: {reason}")
    lines.append("To get the files, any of:")
    if hint:
        lines.append(f"  - {hint}")
    lines.append(
        f"  - put {', '.join(FILES['train'] + FILES['test'])} in {cache_dir(name)} "
        "(or in a directory named by $NNPARTS_DATA or data_dir=)"
    )
    if name in MIRRORS:
        lines.append(
            f"  - on a machine with internet: nnparts data download {name}  (from "
            + ", ".join(MIRRORS[name])
            + ")"
        )
    return "\n".join(lines)
