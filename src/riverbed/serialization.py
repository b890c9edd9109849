"""The only module that pickles.

Artifacts are framed as ``MAGIC | format version | sha256 | payload`` so that a truncated or
tampered blob is refused before it is unpickled. Unpickling runs code: riverbed only loads
blobs that it wrote itself (checkpoints, versions it created) or that an admin uploaded.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from typing import Any

from riverbed.exceptions import InvalidArtifact, InvalidInput

__all__ = [
    "FORMAT_VERSION",
    "checksum",
    "dumps",
    "dumps_plain",
    "is_framed",
    "loads",
    "loads_plain",
]

MAGIC = b"RVBD"
FORMAT_VERSION = 1
_HEADER = len(MAGIC) + 1 + 32


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dumps(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return MAGIC + bytes([FORMAT_VERSION]) + hashlib.sha256(payload).digest() + payload


def loads(blob: bytes) -> Any:
    if len(blob) < _HEADER or not blob.startswith(MAGIC):
        raise InvalidInput("not a riverbed artifact (bad header)")
    if blob[len(MAGIC)] != FORMAT_VERSION:
        raise InvalidInput(f"unsupported artifact format version {blob[len(MAGIC)]}")
    digest, payload = blob[len(MAGIC) + 1 : _HEADER], blob[_HEADER:]
    if hashlib.sha256(payload).digest() != digest:
        raise InvalidInput("artifact checksum mismatch: the blob is corrupt")
    return pickle.loads(payload)  # noqa: S301 - only blobs riverbed wrote or an admin uploaded


def is_framed(blob: bytes) -> bool:
    """Whether ``blob`` is an artifact that :func:`dumps` wrote."""
    return len(blob) >= _HEADER and blob.startswith(MAGIC)


def dumps_plain(obj: Any) -> bytes:
    """A plain pickle, as ``pickle.dump`` writes it (for downloads other tools can read)."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def loads_plain(data: bytes, format: str) -> Any:
    """Unpickle uploaded bytes written by ``pickle``, ``joblib`` or ``dill`` (format names
    which).

    Only call this for uploads the caller was allowed to make: it runs code.
    """
    try:
        if format == "dill":  # what chantilly's and django-river-ml's clients send
            import dill

            return dill.loads(data)
        if format == "joblib":
            import joblib

            return joblib.load(io.BytesIO(data))
        return pickle.loads(data)  # noqa: S301 - the caller checked the uploader may run code
    except Exception as exc:
        raise InvalidArtifact(
            f"the artifact could not be read as {format}: {type(exc).__name__}: {exc}"
        ) from None
