"""ONNX export of the calibrated model, with the ctrbid metadata.

Signature (see DESIGN.md, "ONNX model signature"): inputs ``cat`` int64
[N, F] and ``num`` float32 [N, D], outputs ``pctr`` float32 [N] and, for a
model with a conversion head, ``pcvr`` float32 [N]; N is dynamic, F and D are
fixed. Weights are stored inside the file (no external data). The outputs
are listed in ``ctrbid.heads`` (``pctr`` or ``pctr,pcvr``).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

INPUT_NAMES = ["cat", "num"]


def _example_inputs(cardinality: int, n_cat: int, n_num: int, rows: int = 3):
    # More than one row: torch.export specialises sizes 0 and 1.
    g = torch.Generator().manual_seed(0)
    cat = torch.randint(0, cardinality, (rows, n_cat), generator=g, dtype=torch.int64)
    num = torch.randn(rows, n_num, generator=g, dtype=torch.float32)
    return cat, num


def _output_names(model: torch.nn.Module) -> list[str]:
    return list(getattr(model, "output_names", ["pctr"]))


def _export_graph(model: torch.nn.Module, path: Path, example, exporter: str, opset: int) -> None:
    outputs = _output_names(model)
    with warnings.catch_warnings():
        # Both exporters are chatty (deprecation of the legacy exporter,
        # notes about merged dynamic axis names); neither matters here.
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            n = torch.export.Dim("N", min=1)
            program = torch.onnx.export(
                model,
                example,
                dynamo=True,
                input_names=INPUT_NAMES,
                output_names=outputs,
                dynamic_shapes={"cat": {0: n}, "num": {0: n}},
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
            program.save(str(path))
        elif exporter == "torchscript":
            torch.onnx.export(
                model,
                example,
                str(path),
                dynamo=False,
                input_names=INPUT_NAMES,
                output_names=outputs,
                dynamic_axes={"cat": {0: "N"}, "num": {0: "N"}, **{o: {0: "N"} for o in outputs}},
                opset_version=opset,
            )
        else:
            raise ValueError(f"unknown exporter {exporter!r}")


def _check_signature(proto: onnx.ModelProto, n_cat: int, n_num: int, output_names: list[str]) -> None:
    """Fail loudly if the graph does not have the contracted inputs/outputs."""

    def dims(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    inputs = {i.name: i for i in proto.graph.input}
    outputs = {o.name: o for o in proto.graph.output}
    expect = {
        "cat": (onnx.TensorProto.INT64, [n_cat]),
        "num": (onnx.TensorProto.FLOAT, [n_num]),
    }
    if sorted(inputs) != sorted(expect) or list(outputs) != output_names:
        raise RuntimeError(f"exported graph has inputs {list(inputs)} and outputs {list(outputs)}")
    for name, (dtype, tail) in expect.items():
        vi = inputs[name]
        d = dims(vi)
        if vi.type.tensor_type.elem_type != dtype or len(d) != 2 or d[1:] != tail or not isinstance(d[0], str):
            raise RuntimeError(f"input {name} has type {vi.type} (want dynamic N x {tail[0]})")
    for name, out in outputs.items():
        d = dims(out)
        if out.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or len(d) != 1 or not isinstance(d[0], str):
            raise RuntimeError(f"output {name} has type {out.type} (want float32 [N])")


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    cardinality: int,
    n_cat: int,
    n_num: int,
    metadata: dict[str, str],
    exporter: str = "dynamo",
    opset: int = 18,
) -> dict:
    """Export ``model`` (cat, num) -> pctr [, pcvr] to ``path`` and attach ``metadata``.

    Returns a dict describing the export (exporter, opset, ir_version, bytes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = _example_inputs(cardinality, n_cat, n_num)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        _export_graph(model, raw, example, exporter, opset)
        proto = onnx.load(str(raw), load_external_data=True)

    _check_signature(proto, n_cat, n_num, _output_names(model))
    proto.doc_string = "ctrbid model: calibrated " + " and ".join(_output_names(model))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(proto, full_check=True)
    tmp_path = path.with_suffix(".onnx.tmp")
    onnx.save_model(proto, str(tmp_path), save_as_external_data=False)
    os.replace(tmp_path, path)
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    return {
        "exporter": exporter,
        "opset": opsets.get("ai.onnx"),
        "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}",
        "bytes": path.stat().st_size,
    }


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file as a dict."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def ctrbid_metadata(
    meta: dict,
    kind: str,
    version: str,
    trained_at: str,
    metrics: dict,
    n_cat: int,
    n_num: int,
    heads: list[str] = ("pctr",),
    calibration: dict | None = None,
) -> dict:
    """The ``ctrbid.*`` metadata_props the server reads (see DESIGN.md)."""
    return {
        "ctrbid.heads": ",".join(heads),
        "ctrbid.calibration": json.dumps(calibration or {}, sort_keys=True),
        "ctrbid.spec_sha256": meta["spec_sha256"],
        "ctrbid.kind": kind,
        "ctrbid.version": str(version),
        "ctrbid.trained_at": trained_at,
        "ctrbid.metrics": json.dumps(metrics, sort_keys=True, allow_nan=False),
        "ctrbid.cat_fields": str(n_cat),
        "ctrbid.num_fields": str(n_num),
        "ctrbid.spec_name": str(meta.get("spec_name", "")),
        "ctrbid.cardinality": str(meta["cardinality"]),
    }


def onnxruntime_session(path: str | Path, threads: int = 2):
    """A CPU ONNX Runtime session for ``path``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def output_names(session) -> list[str]:
    """The graph's outputs in order (``pctr`` first)."""
    return [o.name for o in session.get_outputs()]


def predict_onnx(session, cat: np.ndarray, num: np.ndarray, batch_rows: int = 65536) -> np.ndarray:
    """Every output of an ONNX Runtime session, in batches: float32 [N, outputs]."""
    names = output_names(session)
    out = np.empty((cat.shape[0], len(names)), dtype=np.float32)
    for start in range(0, cat.shape[0], batch_rows):
        c = np.ascontiguousarray(cat[start : start + batch_rows], dtype=np.int64)
        n = np.ascontiguousarray(num[start : start + batch_rows], dtype=np.float32)
        for j, o in enumerate(session.run(names, {"cat": c, "num": n})):
            out[start : start + c.shape[0], j] = o
    return out
