"""Artifacts: the bytes of a version, the formats they come in, and what riverbed reads
from the object inside (its flavor, its task, its hyperparameters).

Formats:

========== ======================================================== ==========
format     what the bytes are                                       runs code?
========== ======================================================== ==========
riverbed   riverbed's framed pickle (what the engine writes)        yes
pickle     ``pickle.dump`` of a river model or scikit-learn object  yes
joblib     ``joblib.dump`` of the same                              yes
skops      ``skops.io.dump``: the safe format for scikit-learn      no
file       anything else (any framework): stored, never loaded      no
========== ======================================================== ==========

The bytes are stored exactly as they arrived, so a download returns them unchanged. The
three pickle formats are read by :mod:`riverbed.serialization` only, after the caller
checked that the uploader may run code on the server. A skops artifact is read trusting
only skops' defaults, plain containers and the types of the allowed modules (``river`` and
``sklearn`` by default); any other type refuses the file.
"""

from __future__ import annotations

import inspect
import io
import math
import zipfile
from collections.abc import Sequence
from typing import Any

from riverbed import serialization
from riverbed.exceptions import InvalidArtifact, NotServable

__all__ = [
    "FORMATS",
    "PICKLED",
    "UNVETTED",
    "dump_object",
    "flavor_of",
    "guess_format",
    "hyperparameters",
    "jsonable",
    "load",
    "task_of",
]

FORMATS = ("riverbed", "pickle", "joblib", "skops", "file")
PICKLED = frozenset({"riverbed", "pickle", "joblib"})
# What riverbed cannot vet: the pickled formats, and a file kept opaque, which whoever
# downloads it may unpickle. A browser uploads these only from pickle_origins (with auth off).
UNVETTED = PICKLED | {"file"}
_EXTENSIONS = {
    ".skops": "skops",
    ".joblib": "joblib",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".rvbd": "riverbed",
}
# Types skops may rebuild besides those of the allowed modules: plain containers.
_SKOPS_ALWAYS_TRUSTED = frozenset(
    {
        "builtins.bytearray",
        "builtins.bytes",
        "builtins.complex",
        "builtins.frozenset",
        "builtins.range",
        "builtins.set",
        "builtins.slice",
        "collections.Counter",
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.deque",
    }
)


def guess_format(data: bytes, filename: str | None = None) -> str:
    """The format of uploaded bytes, from their header or the file name's extension.

    >>> guess_format(serialization.dumps([1, 2]))
    'riverbed'
    >>> guess_format(b"{}", "weights.json")
    'file'
    """
    if serialization.is_framed(data):
        return "riverbed"
    if filename:
        for extension, format in _EXTENSIONS.items():
            if filename.lower().endswith(extension):
                return format
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "schema.json" in archive.namelist():
                    return "skops"
        except zipfile.BadZipFile:
            pass
        return "file"
    if data[:1] == b"\x80" and data.rstrip().endswith(b"."):
        return "pickle"
    return "file"


def load(data: bytes, format: str, *, allowed: Sequence[str] = ("river", "sklearn")) -> Any:
    """The object in an artifact. The caller has checked that pickled formats are allowed."""
    if format == "riverbed":
        try:
            return serialization.loads(data)
        except InvalidArtifact:
            raise
        except Exception as exc:
            raise InvalidArtifact(f"the artifact could not be read: {exc}") from None
    if format in ("pickle", "joblib"):
        return serialization.loads_plain(data, format)
    if format == "skops":
        return _load_skops(data, allowed)
    if format == "file":
        raise NotServable("this version is an opaque file: it is kept and downloadable, not served")
    raise InvalidArtifact(f"unknown artifact format {format!r}; one of {', '.join(FORMATS)}")


def _load_skops(data: bytes, allowed: Sequence[str]) -> Any:
    try:
        import skops.io as sio
    except ImportError:  # pragma: no cover - skops is a dependency
        raise InvalidArtifact("skops is not installed on this server") from None
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise InvalidArtifact(f"the artifact is not a skops file: {exc}") from None
    refused = [
        t for t in untrusted if t not in _SKOPS_ALWAYS_TRUSTED and t.split(".")[0] not in allowed
    ]
    if refused:
        raise InvalidArtifact(
            f"the skops file holds types outside the allowed modules: {', '.join(refused)}",
            detail={"untrusted_types": refused, "allowed_modules": list(allowed)},
        )
    try:
        return sio.loads(data, trusted=untrusted)
    except Exception as exc:
        raise InvalidArtifact(f"the skops file could not be read: {exc}") from None


def dump_object(obj: Any) -> tuple[bytes, str]:
    """Bytes and format for an in-process object: skops for scikit-learn (when it can hold
    it), riverbed's framed pickle otherwise."""
    if flavor_of(obj) == "sklearn":
        try:
            import skops.io as sio

            return sio.dumps(obj), "skops"
        except Exception:  # a type skops cannot persist
            pass
    return serialization.dumps(obj), "riverbed"


def flavor_of(obj: Any) -> str:
    """``river`` for a river estimator, ``sklearn`` for a scikit-learn one."""
    from river import base

    if isinstance(obj, base.Base):
        return "river"
    if hasattr(obj, "get_params") and hasattr(obj, "predict") and not inspect.isclass(obj):
        return "sklearn"
    raise InvalidArtifact(
        f"a {type(obj).__name__} is neither a river model nor a scikit-learn estimator; "
        "upload it with format 'file' to keep it in the registry without serving it"
    )


def task_of(obj: Any) -> str:
    """The task of a scikit-learn estimator, named like river's."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(obj):
        classes = getattr(obj, "classes_", None)
        return "binary" if classes is not None and len(classes) == 2 else "multiclass"
    if is_regressor(obj):
        return "regression"
    return "custom"


def hyperparameters(obj: Any) -> dict[str, Any]:
    """The object's hyperparameters as one flat mapping of JSON values.

    River's ``_get_params`` nests (pipelines by step, optimizers as ``(class, params)``);
    nested keys are joined with dots. scikit-learn's ``get_params(deep=True)`` is flat
    already (``step__param``); estimator values become their class names.

    >>> from river import linear_model, optim, preprocessing
    >>> model = preprocessing.StandardScaler() | linear_model.LinearRegression(
    ...     optimizer=optim.SGD(0.05))
    >>> params = hyperparameters(model)
    >>> params["LinearRegression.optimizer"], params["LinearRegression.optimizer.lr.learning_rate"]
    ('SGD', 0.05)
    """
    from river import base

    flat: dict[str, Any] = {}
    if isinstance(obj, base.Base):
        _flatten(obj._get_params(), "", flat)
    elif hasattr(obj, "get_params"):
        try:
            params = obj.get_params(deep=True)
        except Exception:  # a broken get_params must not block a registration
            params = {}
        for key, value in params.items():
            if key == "steps" and isinstance(value, list):
                continue
            flat[key] = jsonable(value)
    return flat


def _flatten(params: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, tuple) and len(value) == 2 and inspect.isclass(value[0]):
            out[path] = value[0].__name__
            if isinstance(value[1], dict):
                _flatten(value[1], path + ".", out)
        elif isinstance(value, dict) and all(isinstance(k, str) for k in value):
            _flatten(value, path + ".", out)
        else:
            out[path] = jsonable(value)


def jsonable(value: Any) -> Any:
    """A JSON-ready form of a parameter value (classes and objects by name)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):  # numpy's float64 is one: a plain float then
        return float(value) if math.isfinite(value) else str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return jsonable(value.item())  # a numpy scalar
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if inspect.isclass(value) or inspect.isfunction(value):
        return value.__name__
    return type(value).__name__
