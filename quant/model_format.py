"""The quantized model file: a versioned ``.npz`` holding a JSON manifest and integer arrays.

A file holds one network as a graph of nodes in execution order. Each node names its inputs
(earlier nodes, or ``"input"`` for the image). ``save`` refuses to write an inconsistent model
and ``load`` checks version, checksums, dtypes, shapes, value ranges and graph consistency, so
any model that loads is one the golden model and the hardware can run.

Every node may also carry ``out_shape`` [C, H, W] for the model's own input size; ``save``
writes it and the loader checks it. Node kinds and their fields (docs/model-format.md has the
full table):

``conv``     in_channels, out_channels, kernel, stride, padding, relu;
             arrays weight (O, I, k, k) int8, scheme (O,) uint8, bias (O,) int32,
             mult (O,) uint16, shift (O,) uint8
``fc``       in_features, out_features; arrays weight (O, I) int8 and the same per-row arrays
``add``      two inputs, relu, mult [a, b], shift [a, b]
``maxpool``  kernel, stride, padding (pads with 0; input must be unsigned)
``avgpool``  mult, shift (global average pool to 1x1)
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import contract as C

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MAX_JSON_DEPTH", "MAX_JSON_DIGITS",
           "ModelFormatError", "NodeInfo", "QModel"]

FORMAT_NAME = "ilmpq-int-model"
FORMAT_VERSION = 1
_MANIFEST_KEY = "manifest"

_PER_ROW = {"scheme": np.uint8, "bias": np.int32, "mult": np.uint16, "shift": np.uint8}
_NODE_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "conv": {"in_channels": int, "out_channels": int, "kernel": int, "stride": int,
             "padding": int, "relu": bool},
    "fc": {"in_features": int, "out_features": int},
    "add": {"relu": bool, "mult": list, "shift": list},
    "maxpool": {"kernel": int, "stride": int, "padding": int},
    "avgpool": {"mult": int, "shift": int},
}
_TOP_KEYS = {"format", "version", "act_bits", "input_bits", "input_shape", "output", "nodes",
             "meta"}
_N_INPUTS = {"conv": 1, "fc": 1, "add": 2, "maxpool": 1, "avgpool": 1}
#: Deepest nesting of objects and arrays a manifest may have (the format itself needs 4; ``meta``
#: gets room to spare), and the most digits of an integer in it (int64 needs 19).
MAX_JSON_DEPTH = 32
MAX_JSON_DIGITS = 20


class ModelFormatError(ValueError):
    """A model file or model object that cannot be used, with what is wrong and how to fix it."""


@dataclass(frozen=True)
class NodeInfo:
    """Shape (C, H, W) and element type of a node's output."""

    shape: tuple[int, int, int]
    ttype: C.TensorType


@dataclass
class QModel:
    """An integer network: ``manifest`` (JSON-able dict) and ``arrays`` keyed ``node.array``."""

    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    # ---- convenience -------------------------------------------------------------------------

    @property
    def nodes(self) -> list[dict[str, Any]]:
        return self.manifest["nodes"]

    @property
    def act_bits(self) -> int:
        return self.manifest["act_bits"]

    @property
    def input_bits(self) -> int:
        return self.manifest["input_bits"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["input_shape"])

    @property
    def output(self) -> str:
        return self.manifest["output"]

    def node(self, name: str) -> dict[str, Any]:
        for node in self.nodes:
            if node["name"] == name:
                return node
        raise KeyError(f"model has no node {name!r}")

    def params(self, name: str) -> dict[str, np.ndarray]:
        prefix = name + "."
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}

    def layers(self, op: str | None = None) -> list[dict[str, Any]]:
        """Nodes with weights (conv and fc), or nodes of one op."""
        if op is None:
            return [n for n in self.nodes if n["op"] in ("conv", "fc")]
        return [n for n in self.nodes if n["op"] == op]

    def infer(self, input_shape: tuple[int, int, int] | None = None) -> dict[str, NodeInfo]:
        """Shapes and types of every tensor for an input of ``input_shape`` (default: the
        model's own); raises ModelFormatError if the graph does not fit that input."""
        return _infer(self.manifest, input_shape or self.input_shape)

    def validate(self) -> None:
        """Check everything ``load`` checks; raise ModelFormatError naming the problem."""
        _validate(self.manifest, self.arrays)

    # ---- files -------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Validate, then write ``path`` (``.npz`` appended if missing) atomically."""
        self.validate()
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        manifest = dict(self.manifest)
        shapes = self.infer()
        manifest["nodes"] = [{**n, "out_shape": list(shapes[n["name"]].shape)} for n in self.nodes]
        manifest["arrays"] = {k: _describe(v) for k, v in sorted(self.arrays.items())}
        payload = {_MANIFEST_KEY: np.frombuffer(
            json.dumps(manifest, indent=1, sort_keys=True).encode(), dtype=np.uint8)}
        payload.update(self.arrays)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **payload)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> QModel:
        path = Path(path)
        where = f"model file {str(path)!r}"
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ModelFormatError(f"cannot read {where}: {exc.strerror}") from None
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                contents = {k: npz[k] for k in npz.files}
        # A damaged container can fail inside zipfile/zlib/numpy in many ways (BadZipFile,
        # zlib.error, NotImplementedError for a garbled version field, struct.error, ...): any
        # failure to decode it means the same thing to the user.
        except Exception as exc:
            raise ModelFormatError(
                f"{where} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                f"export or copy it again") from None
        if _MANIFEST_KEY not in contents:
            raise ModelFormatError(f"{where} has no manifest; it is not a quantized model file")
        manifest = _parse_manifest(contents.pop(_MANIFEST_KEY), where)
        _check_header(manifest, where)
        described = manifest.pop("arrays", None)
        if not isinstance(described, dict):
            raise ModelFormatError(f"{where} manifest lacks its 'arrays' table; export it again")
        missing = sorted(set(described) - set(contents))
        extra = sorted(set(contents) - set(described))
        if missing or extra:
            raise ModelFormatError(
                f"{where}: arrays do not match the manifest (missing {missing}, unlisted {extra}); "
                f"the file is damaged, export it again")
        for key, arr in contents.items():
            if _describe(arr) != described[key]:
                raise ModelFormatError(
                    f"{where}: array {key!r} does not match its manifest entry (dtype, shape or "
                    f"checksum differs); the file is corrupt, export it again")
        model = cls(manifest, contents)
        try:
            _validate(manifest, contents, require_out_shape=True)
        except ModelFormatError as exc:
            raise ModelFormatError(f"{where}: {exc}") from None
        return model


class _JSONLimit(ValueError):
    """A JSON value beyond what a model manifest may hold."""


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise _JSONLimit(f"an integer of {len(text.lstrip('-'))} digits (at most "
                         f"{MAX_JSON_DIGITS})")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise _JSONLimit(f"the number {text[:40]} overflows a float")
    return value


def _json_constant(text: str) -> Any:
    raise _JSONLimit(f"{text}, which is not a number JSON allows")


def _text_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in JSON text, outside strings: measured before
    parsing, since the C parser recurses as deep as the text goes, and a process that raised
    its recursion limit (Amaranth's elaboration does) may run out of stack instead of
    raising RecursionError."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _parse_manifest(raw: np.ndarray, where: str) -> dict[str, Any]:
    """The manifest JSON object, refusing damaged text, NaN/Infinity, integers longer than
    ``MAX_JSON_DIGITS`` digits and nesting deeper than ``MAX_JSON_DEPTH``."""
    try:
        text = raw.tobytes().decode()
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{where} has a corrupt manifest ({exc}); "
                               f"export it again") from None
    if _text_depth(text) > MAX_JSON_DEPTH:
        raise ModelFormatError(f"{where} has a manifest nested deeper than "
                               f"{MAX_JSON_DEPTH} levels; export it again")
    try:
        manifest = json.loads(text, parse_int=_json_int,
                              parse_float=_json_float, parse_constant=_json_constant)
    except _JSONLimit as exc:
        raise ModelFormatError(f"{where} has a manifest holding {exc}; export it "
                               f"again") from None
    except RecursionError:
        raise ModelFormatError(f"{where} has a manifest nested deeper than "
                               f"{MAX_JSON_DEPTH} levels; export it again") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"{where} has a corrupt manifest ({exc}); "
                               f"export it again") from None
    if not isinstance(manifest, dict):
        raise ModelFormatError(f"{where} manifest must be a JSON object")
    return manifest


def _describe(arr: np.ndarray) -> dict[str, Any]:
    arr = np.ascontiguousarray(arr)
    return {"dtype": arr.dtype.str, "shape": list(arr.shape),
            "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}


def _check_header(manifest: dict[str, Any], where: str = "model") -> None:
    if manifest.get("format") != FORMAT_NAME:
        raise ModelFormatError(
            f"{where} is not a quantized model (format {manifest.get('format')!r}, expected "
            f"{FORMAT_NAME!r})")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFormatError(f"{where} has no integer format version")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{where} has format version {version}, newer than this software reads "
            f"({FORMAT_VERSION}); update the software")
    if version < FORMAT_VERSION:
        raise ModelFormatError(
            f"{where} has old format version {version} (this software reads {FORMAT_VERSION}); "
            f"export the model again")


def _fail(node: str, msg: str) -> ModelFormatError:
    return ModelFormatError(f"node {node!r}: {msg}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_manifest_top(m: dict[str, Any]) -> None:
    _check_header(m)
    unknown = sorted(set(m) - _TOP_KEYS)
    if unknown:
        raise ModelFormatError(f"manifest has unknown field {unknown[0]!r}; known: "
                               f"{', '.join(sorted(_TOP_KEYS))}")
    if not isinstance(m.get("meta", {}), dict):
        raise ModelFormatError("manifest field 'meta' must be an object")
    for key in ("act_bits", "input_bits"):
        if not _int(m.get(key)):
            raise ModelFormatError(f"manifest field {key!r} must be an integer, "
                                   f"not {m.get(key)!r}")
    if m["act_bits"] not in (4, 5):
        raise ModelFormatError(f"act_bits must be 4 or 5, not {m['act_bits']}")
    if not m["act_bits"] <= m["input_bits"] <= 8:
        raise ModelFormatError(
            f"input_bits must be between act_bits ({m['act_bits']}) and 8, not {m['input_bits']}")
    shape = m.get("input_shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(_int(v) and v > 0 for v in shape)):
        raise ModelFormatError(f"input_shape must be [channels, height, width] of positive "
                               f"integers, not {shape!r}")
    if not isinstance(m.get("nodes"), list) or not m["nodes"]:
        raise ModelFormatError("manifest must hold a non-empty list 'nodes'")
    if not isinstance(m.get("output"), str):
        raise ModelFormatError("manifest field 'output' must name the output node")


def _check_node_fields(node: Any, index: int, seen: set[str], require_out_shape: bool) -> None:
    if not isinstance(node, dict):
        raise ModelFormatError(f"nodes[{index}] must be an object, not {node!r}")
    name = node.get("name")
    if not isinstance(name, str) or not name or name == "input":
        raise ModelFormatError(f"nodes[{index}] needs a name other than 'input', not {name!r}")
    if name in seen:
        raise _fail(name, "name used twice")
    op = node.get("op")
    if not isinstance(op, str) or op not in _NODE_FIELDS:
        raise _fail(name, f"unknown op {op!r}; allowed: {', '.join(_NODE_FIELDS)}")
    expected = {"name", "op", "inputs", *_NODE_FIELDS[op]}
    extra = sorted(set(node) - expected - {"out_shape"})
    missing = sorted(expected - set(node))
    if extra or missing:
        raise _fail(name, f"{op} fields wrong (missing {missing}, unknown {extra})")
    if "out_shape" in node:
        shape = node["out_shape"]
        if (not isinstance(shape, list) or len(shape) != 3
                or not all(_int(v) and v > 0 for v in shape)):
            raise _fail(name, f"field 'out_shape' must be [C, H, W] of positive integers, "
                              f"not {shape!r}")
    elif require_out_shape:
        raise _fail(name, "field 'out_shape' is missing (a saved model has it on every node); "
                          "export the model again")
    for key, typ in _NODE_FIELDS[op].items():
        value = node[key]
        ok = isinstance(value, typ) and (typ is not int or _int(value))
        if not ok:
            raise _fail(name, f"field {key!r} must be {typ.__name__}, not {value!r}")
    inputs = node["inputs"]
    if (not isinstance(inputs, list) or len(inputs) != _N_INPUTS[op]
            or not all(isinstance(i, str) for i in inputs)):
        raise _fail(name, f"{op} needs {_N_INPUTS[op]} input name(s), not {inputs!r}")
    for i in inputs:
        if i != "input" and i not in seen:
            raise _fail(name, f"input {i!r} is not an earlier node (nodes must be in "
                              f"execution order)")


def _check_requant(name: str, mult: Any, shift: Any) -> None:
    if not (_int(mult) and 0 <= mult <= C.MULT_MAX):
        raise _fail(name, f"requant multiplier must be an integer in [0, {C.MULT_MAX}], "
                          f"not {mult!r}")
    if not (_int(shift) and 0 <= shift <= C.SHIFT_MAX):
        raise _fail(name, f"requant shift must be an integer in [0, {C.SHIFT_MAX}], not {shift!r}")


def _infer(m: dict[str, Any], input_shape: tuple[int, ...], require_out_shape: bool = False
           ) -> dict[str, NodeInfo]:
    """Shape/type inference and the graph checks that need them."""
    _check_manifest_top(m)
    act = C.TensorType(False, m["act_bits"])
    info = {"input": NodeInfo(tuple(input_shape), C.TensorType(False, m["input_bits"]))}
    seen: set[str] = set()
    for index, node in enumerate(m["nodes"]):
        _check_node_fields(node, index, seen, require_out_shape)
        name, op = node["name"], node["op"]
        ins = [info[i] for i in node["inputs"]]
        c, h, w = ins[0].shape
        if op in ("conv", "fc", "maxpool", "avgpool") and ins[0].ttype.signed:
            raise _fail(name, f"{op} input {node['inputs'][0]!r} is signed ({ins[0].ttype}); "
                              f"activations into a {op} must be unsigned (add a ReLU)")
        if op == "conv":
            k, s, p = node["kernel"], node["stride"], node["padding"]
            if k not in (1, 3, 5, 7) or s not in (1, 2) or not 0 <= p <= k // 2:
                raise _fail(name, f"conv kernel {k} stride {s} padding {p} not supported "
                                  f"(kernel 1/3/5/7, stride 1/2, padding 0..kernel//2)")
            if node["in_channels"] != c:
                raise _fail(name, f"in_channels {node['in_channels']} but its input has {c} "
                                  f"channels")
            if ins[0].ttype not in (act, info["input"].ttype):
                raise _fail(name, f"conv input type {ins[0].ttype} is neither u{m['act_bits']} "
                                  f"nor the network input's u{m['input_bits']}")
            ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if ho < 1 or wo < 1:
                raise _fail(name, f"a {h}x{w} input is too small for kernel {k}")
            if node["out_channels"] < 1:
                raise _fail(name, "out_channels must be positive")
            info[name] = NodeInfo((node["out_channels"], ho, wo),
                                  C.conv_out_type(node["relu"], m["act_bits"]))
        elif op == "fc":
            if node["in_features"] != c * h * w:
                raise _fail(name, f"in_features {node['in_features']} but its input has "
                                  f"{c}x{h}x{w} = {c * h * w} values")
            if node["out_features"] < 1:
                raise _fail(name, "out_features must be positive")
            info[name] = NodeInfo((node["out_features"], 1, 1), C.TensorType(True, C.LOGIT_BITS))
        elif op == "add":
            if ins[0].shape != ins[1].shape:
                raise _fail(name, f"adds shapes {ins[0].shape} and {ins[1].shape}; they must match")
            if (len(node["mult"]) != 2 or len(node["shift"]) != 2):
                raise _fail(name, "add needs two multipliers and two shifts (one per input)")
            for mult, shift in zip(node["mult"], node["shift"], strict=True):
                _check_requant(name, mult, shift)
            for i, t in zip(node["inputs"], ins, strict=True):
                if t.ttype.bits > m["act_bits"] + 1:
                    raise _fail(name, f"add input {i!r} is {t.ttype}; only activations "
                                      f"(u{m['act_bits']}, s{m['act_bits'] + 1}) can be added")
            info[name] = NodeInfo(ins[0].shape, C.conv_out_type(node["relu"], m["act_bits"]))
        elif op == "maxpool":
            k, s, p = node["kernel"], node["stride"], node["padding"]
            if not (1 <= k <= 7 and 1 <= s <= k and 0 <= p <= k // 2):
                raise _fail(name, f"maxpool kernel {k} stride {s} padding {p} not supported")
            ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if ho < 1 or wo < 1:
                raise _fail(name, f"a {h}x{w} input is too small for kernel {k}")
            info[name] = NodeInfo((c, ho, wo), ins[0].ttype)
        elif op == "avgpool":
            _check_requant(name, node["mult"], node["shift"])
            info[name] = NodeInfo((c, 1, 1), act)
        stored = node.get("out_shape")
        if "out_shape" in node and tuple(input_shape) == tuple(m["input_shape"]) \
                and stored != list(info[name].shape):
            raise _fail(name, f"stored out_shape {stored} but the graph gives "
                              f"{list(info[name].shape)} for input {m['input_shape']}")
        seen.add(name)
    if m["output"] not in seen:
        raise ModelFormatError(f"output {m['output']!r} is not a node of the model")
    return info


def _validate(m: dict[str, Any], arrays: dict[str, np.ndarray],
              require_out_shape: bool = False) -> None:
    if not isinstance(m, dict):
        raise ModelFormatError("manifest must be a dict")
    info = _infer(m, tuple(m.get("input_shape") or ()), require_out_shape)
    expected: set[str] = set()
    for node in m["nodes"]:
        name, op = node["name"], node["op"]
        if op not in ("conv", "fc"):
            continue
        if op == "conv":
            rows, cols = node["out_channels"], node["in_channels"]
            wshape = (rows, cols, node["kernel"], node["kernel"])
        else:
            rows, cols = node["out_features"], node["in_features"]
            wshape = (rows, cols)
        specs = {"weight": (np.int8, wshape)}
        specs.update({k: (dt, (rows,)) for k, dt in _PER_ROW.items()})
        for key, (dtype, shape) in specs.items():
            full = f"{name}.{key}"
            expected.add(full)
            arr = arrays.get(full)
            if arr is None:
                raise _fail(name, f"array {key!r} is missing")
            if not isinstance(arr, np.ndarray) or arr.dtype != np.dtype(dtype):
                got = getattr(arr, "dtype", type(arr).__name__)
                raise _fail(name, f"array {key!r} must be {np.dtype(dtype).name}, not {got}")
            if arr.shape != shape:
                raise _fail(name, f"array {key!r} has shape {arr.shape}, expected {shape}")
        scheme = arrays[f"{name}.scheme"]
        if np.any(scheme >= len(C.SCHEMES)):
            row = int(np.argmax(scheme >= len(C.SCHEMES)))
            raise _fail(name, f"filter {row} has scheme code {scheme[row]}; allowed codes "
                              f"0..{len(C.SCHEMES) - 1} ({', '.join(C.SCHEMES)})")
        weight = arrays[f"{name}.weight"].reshape(rows, -1)
        for code, scheme_name in enumerate(C.SCHEMES):
            sel = scheme == code
            legal = C.weights_legal(weight[sel], code).all(axis=1)
            if not legal.all():
                row = int(np.flatnonzero(sel)[np.argmin(legal)])
                bad = weight[row][~C.weights_legal(weight[row], code)][0]
                raise _fail(name, f"filter {row} is {scheme_name} but holds weight {bad}, "
                                  f"outside that scheme")
        shift = arrays[f"{name}.shift"]
        if np.any(shift > C.SHIFT_MAX):
            raise _fail(name, f"a requant shift exceeds {C.SHIFT_MAX}")
    extra = sorted(set(arrays) - expected)
    if extra:
        raise ModelFormatError(f"arrays {extra} belong to no conv/fc node")
    del info
