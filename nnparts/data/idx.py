"""The IDX file format (LeCun's MNIST files, Fashion-MNIST), read and written with NumPy.

An IDX file is a header and then the raw array, big-endian, C order::

    bytes 0-1   0x00 0x00                 (magic: two zero bytes)
    byte  2     dtype code                0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                          0x0D float32, 0x0E float64
    byte  3     ndim                      number of dimensions
    4 * ndim    sizes, big-endian uint32  e.g. 60000, 28, 28
    rest        prod(sizes) items of the dtype, big-endian

Files may be gzipped (``.gz``, detected from the gzip magic ``1f 8b``, not the file name).
:func:`read_idx` checks every field of the header and the byte count against the sizes, so a
truncated or corrupt file raises a :class:`ValueError` that names the file and what is wrong,
never a reshape error from deep inside NumPy. Decoding is one ``np.frombuffer`` (no Python
loop over images); decoded arrays are cached per process, keyed by path, size and mtime.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib

import numpy as np

__all__ = ["read_idx", "write_idx", "IDX_DTYPES", "DataFileError"]


class DataFileError(ValueError):
    """A data file that is corrupt, truncated or not what it should be; the message names the
    file and what is wrong (:func:`nnparts.data.load` adds how to get a good copy)."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


#: IDX dtype code -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=").kind + str(dt.itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise DataFileError(f"{path}: corrupt or truncated gzip data ({err})", path) from None
    return raw


def _decode(path: str, raw: bytes) -> np.ndarray:
    if len(raw) < 4:
        raise DataFileError(
            f"{path}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte IDX header"
        )
    if raw[0] != 0 or raw[1] != 0:
        raise DataFileError(
            f"{path}: not an IDX file: magic number starts with bytes "
            f"0x{raw[0]:02x} 0x{raw[1]:02x}, expected 0x00 0x00"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataFileError(f"{path}: unknown IDX dtype code 0x{code:02X}, expected one of {valid}")
    if ndim == 0:
        raise DataFileError(f"{path}: IDX header says 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header} header bytes, "
            f"the file has {len(raw)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise DataFileError(
            f"{path}: IDX data {what}: header says shape {shape} of {dtype.newbyteorder('=')} "
            f"= {expected} bytes, the file has {got} bytes after the header"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    if dtype.itemsize > 1:
        data = data.astype(dtype.newbyteorder("="))
    data.flags.writeable = False
    return data


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    return _decode(path, _read_bytes(path))


def read_idx(path, cache: bool = True) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a NumPy array of its native dtype and shape.

    Args:
        path: the file (``str`` or path-like).
        cache: keep the decoded array in a per-process cache (keyed by path, size and
            modification time) so that a training script loading the data repeatedly pays the
            decompression once. The returned array is always a fresh, writable copy.

    Returns:
        ndarray, e.g. ``uint8 (60000, 28, 28)`` for Fashion-MNIST training images.

    Raises:
        ValueError: naming the file and what is wrong (wrong magic, unknown dtype code,
            truncated header, byte count not matching the header's sizes, bad gzip data).
        FileNotFoundError: the file does not exist.
    """
    path = os.fspath(path)
    if not cache:
        return _decode(path, _read_bytes(path)).copy()
    st = os.stat(path)
    return _read_cached(os.path.realpath(path), st.st_size, st.st_mtime_ns).copy()


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzipped if ``compress`` or if ``path`` ends in ``.gz``).

    The inverse of :func:`read_idx`; the dtype must be one IDX can hold (uint8, int8, int16,
    int32, float32, float64).
    """
    array = np.asarray(array)
    key = array.dtype.kind + str(array.dtype.itemsize)
    if key not in _CODES:
        raise ValueError(
            f"cannot write dtype {array.dtype} to IDX; use uint8, int8, int16, int32, "
            "float32 or float64"
        )
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX holds arrays of 1 to 255 dimensions, got ndim={array.ndim}")
    code = _CODES[key]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    path = os.fspath(path)
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with open(path, "wb") as f:
        f.write(payload)
