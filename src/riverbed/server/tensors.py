"""The Open Inference Protocol's tensors on the wire (no I/O, no engine).

A tensor is a name, a datatype, a shape and its elements in row-major order, in the JSON
``data`` array (flat or nested) or, with the binary tensor data extension, as raw bytes after
the JSON header (``Inference-Header-Content-Length``), little-endian, ``BYTES`` elements
each prefixed by its length in 4 bytes. :func:`read_request` turns an inference request into
checked :class:`Tensor` values (Python scalars); :func:`column` picks an output's datatype
and :func:`encode_response` writes the answer in either form. docs/protocols.md has the
mapping to riverbed's features and predictions.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from riverbed.exceptions import InvalidInput, PayloadTooLarge
from riverbed.server.http import reject_unknown

__all__ = ["DATATYPES", "Request", "Tensor", "column", "encode_response", "read_request"]

# datatype -> numpy's little-endian dtype (None: BYTES, length-prefixed)
DATATYPES: dict[str, str | None] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BYTES": None,
}
_INTEGERS = {
    k: np.iinfo(np.dtype(v)) for k, v in DATATYPES.items() if v and np.dtype(v).kind in "iu"
}
_MAX_DIMS = 2  # a batch of scalars [B] or of rows [B, F]


@dataclasses.dataclass
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any]  # the elements, row-major, as Python values
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def batch(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1] if len(self.shape) > 1 else 1

    def rows(self) -> list[list[Any]]:
        """The elements as ``batch`` rows of ``width``."""
        w = self.width
        return [self.data[i * w : (i + 1) * w] for i in range(self.batch)]


@dataclasses.dataclass
class Request:
    id: str | None
    parameters: dict[str, Any]
    inputs: list[Tensor]
    model_name: Any
    model_version: Any
    # requested outputs: name -> binary (True/False) or None (as the request's default says)
    outputs: dict[str, bool | None]
    binary_output: bool


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def read_request(doc: Any, blob: bytes, *, max_batch: int) -> Request:
    """A checked inference request from its JSON ``doc`` and the binary data after it."""
    if not isinstance(doc, dict):
        raise InvalidInput("an inference request is a JSON object with 'inputs'")
    # KServe's client also names the model in the body (model_name, model_version)
    reject_unknown(doc, {"id", "parameters", "inputs", "outputs", "model_name", "model_version"})
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("the request's 'id' must be a string")
    parameters = _object(doc.get("parameters"), "'parameters'")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty array of tensors")
    inputs: list[Tensor] = []
    offset = 0
    names: set[str] = set()
    for index, raw in enumerate(raw_inputs):
        tensor, offset = _input(raw, index, blob, offset)
        if tensor.name in names:
            raise InvalidInput(f"input {tensor.name!r} comes twice")
        names.add(tensor.name)
        inputs.append(tensor)
    if offset != len(blob):
        raise InvalidInput(
            f"the body holds {len(blob) - offset} bytes of binary data that no input's "
            "binary_data_size claims"
        )
    batch = inputs[0].batch
    for tensor in inputs:
        if tensor.batch != batch:
            raise InvalidInput(
                f"input {tensor.name!r} has a batch of {tensor.batch}, input "
                f"{inputs[0].name!r} of {batch}: every input's first dimension is the batch"
            )
    if batch > max_batch:
        raise PayloadTooLarge(
            f"a batch of {batch} samples is more than the limit of {max_batch} per request",
            detail={"limit": "max_batch_size", "max": max_batch, "given": batch},
        )
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidInput("the parameter 'binary_data_output' must be true or false")
    outputs: dict[str, bool | None] = {}
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput("'outputs' must be an array of {'name', 'parameters'}")
        for raw in raw_outputs:
            name, binary = _output(raw)
            outputs[name] = binary
    return Request(
        request_id,
        parameters,
        inputs,
        doc.get("model_name"),
        doc.get("model_version"),
        outputs,
        binary_output,
    )


def _output(raw: Any) -> tuple[str, bool | None]:
    if not isinstance(raw, dict):
        raise InvalidInput("each requested output is an object with a 'name'")
    reject_unknown(raw, {"name", "parameters"})
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("a requested output needs a 'name' (a string)")
    parameters = _object(raw.get("parameters"), f"output {name!r}'s parameters")
    if "class_count" in parameters:
        raise InvalidInput(
            "the classification extension (class_count) is not supported: request the "
            "'probabilities' output instead",
            detail={"parameter": "class_count"},
        )
    binary = parameters.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise InvalidInput(f"output {name!r}: the parameter 'binary_data' must be true or false")
    return name, binary


def _input(raw: Any, index: int, blob: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"input {index} must be an object with name, shape, datatype, data")
    reject_unknown(raw, {"name", "shape", "datatype", "parameters", "data"})
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"input {index} needs a 'name' (a non-empty string)")
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}",
            detail={"input": name},
        )
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= _MAX_DIMS
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise InvalidInput(
            f"input {name!r}: shape must be [batch] or [batch, width] (non-negative "
            f"integers), got {shape!r}",
            detail={"input": name},
        )
    if shape[0] == 0 or (len(shape) == 2 and shape[1] == 0):
        raise InvalidInput(
            f"input {name!r}: shape {shape} holds no element", detail={"input": name}
        )
    parameters = _object(raw.get("parameters"), f"input {name!r}'s parameters")
    count = math.prod(shape)
    size = parameters.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInput(f"input {name!r}: binary_data_size must be a byte count")
        if "data" in raw:
            raise InvalidInput(f"input {name!r}: give 'data' or binary_data_size, not both")
        if offset + size > len(blob):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size} runs past the body's binary data "
                f"({len(blob) - offset} bytes left)",
                detail={"input": name},
            )
        data = _from_binary(name, datatype, blob[offset : offset + size], count)
        offset += size
    else:
        if "data" not in raw:
            raise InvalidInput(f"input {name!r} needs 'data'", detail={"input": name})
        data = _from_json(name, datatype, raw["data"], count)
    return Tensor(name, datatype, tuple(shape), data, parameters), offset


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(d, list) for d in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _from_json(name: str, datatype: str, data: Any, count: int) -> list[Any]:
    values = _flatten(data)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: its shape holds {count} elements, its data {len(values)}",
            detail={"input": name},
        )
    if datatype == "BYTES":
        ok = all(type(v) is str for v in values)
        what = "strings"
    elif datatype == "BOOL":
        ok = all(type(v) is bool for v in values)
        what = "true or false"
    elif datatype in _INTEGERS:
        info = _INTEGERS[datatype]
        ok = all(type(v) is int and info.min <= v <= info.max for v in values)
        what = f"integers from {info.min} to {info.max}"
    else:
        ok = all(type(v) in (int, float) for v in values)
        what = "numbers"
        if ok:
            values = [float(v) for v in values]
    if not ok:
        raise InvalidInput(
            f"input {name!r}: a {datatype} tensor's data must be {what}", detail={"input": name}
        )
    return values


def _from_binary(name: str, datatype: str, raw: bytes, count: int) -> list[Any]:
    dtype = DATATYPES[datatype]
    if dtype is None:
        values: list[Any] = []
        at = 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise InvalidInput(f"input {name!r}: a BYTES element's length is cut off")
            (n,) = struct.unpack_from("<I", raw, at)
            at += 4
            if at + n > len(raw):
                raise InvalidInput(f"input {name!r}: a BYTES element runs past its data")
            try:
                values.append(raw[at : at + n].decode())
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"input {name!r}: a BYTES element is not UTF-8 text", detail={"input": name}
                ) from None
            at += n
        if len(values) != count:
            raise InvalidInput(
                f"input {name!r}: its shape holds {count} elements, its data {len(values)}",
                detail={"input": name},
            )
        return values
    itemsize = np.dtype(dtype).itemsize
    if len(raw) != count * itemsize:
        raise InvalidInput(
            f"input {name!r}: {count} {datatype} elements are {count * itemsize} bytes, "
            f"binary_data_size says {len(raw)}",
            detail={"input": name},
        )
    if datatype == "BOOL":
        return (np.frombuffer(raw, dtype=np.uint8) != 0).tolist()
    array = np.frombuffer(raw, dtype=np.dtype(dtype))
    if datatype.startswith("FP"):
        return array.astype(np.float64).tolist()
    return array.tolist()


# -- outputs ----------------------------------------------------------------------------------


def _fits(datatype: str, values: Sequence[Any]) -> bool:
    if datatype == "BYTES":
        return True
    if datatype == "BOOL":
        return all(type(v) is bool for v in values)
    if datatype == "INT64":
        return all(type(v) is int for v in values)
    return all(v is None or (type(v) in (int, float)) for v in values)  # FP64


def _kind(values: Sequence[Any]) -> str:
    for datatype in ("BOOL", "INT64", "FP64"):
        if _fits(datatype, values):
            return datatype
    return "BYTES"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def column(values: Sequence[Any], declared: str | None = None) -> tuple[str, list[Any]]:
    """The datatype and elements of an output whose elements are ``values``: ``declared``
    when every value fits it, else the narrowest of BOOL, INT64, FP64 (nulls allowed) and
    BYTES (other values as JSON text) that fits."""
    datatype = declared if declared is not None and _fits(declared, values) else _kind(values)
    if datatype == "BYTES":
        return datatype, [_text(v) for v in values]
    if datatype == "FP64":
        return datatype, [None if v is None else float(v) for v in values]
    return datatype, list(values)


def _binary(datatype: str, data: list[Any]) -> bytes:
    dtype = DATATYPES[datatype]
    if dtype is None:
        parts = []
        for value in data:
            encoded = value.encode()
            parts.append(struct.pack("<I", len(encoded)) + encoded)
        return b"".join(parts)
    if datatype == "FP64":
        data = [math.nan if v is None else v for v in data]
    return np.asarray(data, dtype=np.dtype(dtype)).tobytes()


def encode_response(
    head: dict[str, Any], outputs: list[Tensor], binary: set[str]
) -> tuple[bytes, int | None]:
    """The response body: ``head`` with ``outputs`` (those named in ``binary`` as binary
    data after the JSON), and the JSON's length when binary data follows (None when the
    body is all JSON)."""
    blobs: list[bytes] = []
    wire = []
    for tensor in outputs:
        item: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        parameters = dict(tensor.parameters)
        if tensor.name in binary:
            blob = _binary(tensor.datatype, tensor.data)
            blobs.append(blob)
            parameters["binary_data_size"] = len(blob)
        else:
            item["data"] = tensor.data
        if parameters:
            item["parameters"] = parameters
        wire.append(item)
    body = orjson.dumps({**head, "outputs": wire}, option=orjson.OPT_NON_STR_KEYS)
    if not blobs:
        return body, None
    return body + b"".join(blobs), len(body)
