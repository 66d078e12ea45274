"""INT8 variants: ONNX Runtime quantisation of an exported model.

``quantize(src, dst)`` writes the dynamically quantised graph (weights of
MatMul/Gemm and the embedding Gathers in int8, activations quantised on the
fly, per batch) and ``quantize(src, dst, calibration=(cat, num))`` the
statically quantised one (MatMul/Gemm in int8 with activation scales fixed
from calibration rows: QLinearMatMul/QGemm), each with the source's
``ctrbid.*`` metadata plus ``ctrbid.quantization``. ``judge`` decides
whether it may be served: the AUC it loses on the test rows (scored in
batches of 64, as the bidder's micro-batches are) must be at most
``MAX_AUC_LOSS`` for every head, it must be faster, it must not move a head's
calibration ratio by more than ``MAX_CALIBRATION_SHIFT`` (the bid is
proportional to the probability: a shifted mean over- or underbids on every
request), and a row's score must not depend on the other rows of its batch
by more than ``MAX_BATCH_DEPENDENCE`` (relative). Dynamic quantisation computes the
activation scale from each batch's minimum and maximum, so a bid would move
with whatever other requests share its micro-batch;
``batch_dependence`` measures by how much.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

#: The most AUC the INT8 model may lose, per head, and still be served (issue 4).
MAX_AUC_LOSS = 0.001
#: The most the INT8 model may move a head's calibration ratio (relative to float32's).
MAX_CALIBRATION_SHIFT = 0.01
#: The most a row's probability may move (relative) between being scored alone
#: and in a batch of 64, for a model to be served.
MAX_BATCH_DEPENDENCE = 1e-4


def batch_dependence(path: str | Path, cat: np.ndarray, num: np.ndarray, rows: int = 256, batch: int = 64) -> float:
    """Largest relative change of any output between scoring ``rows`` rows one
    at a time and in batches of ``batch``."""
    from .export import onnxruntime_session, predict_onnx

    session = onnxruntime_session(path, threads=1)
    cat, num = np.asarray(cat[:rows]), np.asarray(num[:rows])
    alone = np.concatenate([predict_onnx(session, cat[i : i + 1], num[i : i + 1]) for i in range(cat.shape[0])])
    batched = predict_onnx(session, cat, num, batch_rows=batch)
    return float(np.max(np.abs(alone - batched) / np.maximum(np.abs(alone), 1e-12), initial=0.0))


class _Rows:
    """``CalibrationDataReader`` over (cat, num) arrays, 512 rows at a time."""

    def __init__(self, cat: np.ndarray, num: np.ndarray, rows: int = 512):
        self.blocks = [(np.ascontiguousarray(cat[s : s + rows]), np.ascontiguousarray(num[s : s + rows])) for s in range(0, cat.shape[0], rows)]

    def get_next(self):
        if not self.blocks:
            return None
        c, n = self.blocks.pop(0)
        return {"cat": c, "num": n}


def quantize(src: str | Path, dst: str | Path, calibration: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """INT8 quantisation of ``src`` into ``dst``: dynamic, or static with
    activation ranges from the ``calibration`` rows; returns what was done."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    mode = "int8-dynamic" if calibration is None else "int8-static"
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if calibration is None:
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=False)
        else:
            quantize_static(
                str(pre),
                str(dst),
                _Rows(*calibration),
                quant_format=QuantFormat.QOperator,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
    source = onnx.load(str(src), load_external_data=False)
    proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    for p in source.metadata_props:
        proto.metadata_props.add(key=p.key, value=p.value)
    proto.metadata_props.add(key="ctrbid.quantization", value=mode)
    onnx.save_model(proto, str(dst))
    ops = sorted({n.op_type for n in proto.graph.node})
    return {"mode": mode, "path": str(dst), "bytes": dst.stat().st_size, "ops": ops}


def judge(fp32: dict, int8: dict, speedup: float, dependence: float) -> dict:
    """Serve the INT8 model only if it keeps the AUC, is faster and scores each row on its own."""
    losses = {h: fp32[h]["auc"] - int8[h]["auc"] for h in fp32 if h in int8}
    reasons = []
    if not all(v <= MAX_AUC_LOSS for v in losses.values()):
        reasons.append(f"AUC loss above {MAX_AUC_LOSS} (" + ", ".join(f"{h} {v:+.4f}" for h, v in losses.items()) + ")")
    if speedup <= 1.0:
        reasons.append(f"not faster ({speedup:.2f}x the float32 rows/s)")
    shifts = {h: int8[h]["calibration_ratio"] / fp32[h]["calibration_ratio"] - 1 for h in fp32 if h in int8}
    if any(abs(v) > MAX_CALIBRATION_SHIFT for v in shifts.values()):
        reasons.append(
            f"calibration ratio moves by more than {MAX_CALIBRATION_SHIFT:.0%} ("
            + ", ".join(f"{h} {v:+.1%}" for h, v in shifts.items())
            + ")"
        )
    if dependence > MAX_BATCH_DEPENDENCE:
        reasons.append(
            f"a row's probability moves by up to {dependence:.1%} with the other rows of its batch "
            f"(dynamic activation scales; limit {MAX_BATCH_DEPENDENCE:g})"
        )
    serve = not reasons
    why = (
        f"AUC loss within {MAX_AUC_LOSS} and calibration within {MAX_CALIBRATION_SHIFT:.0%} on every head, {speedup:.2f}x faster, batch-independent"
        if serve
        else "; ".join(reasons)
    )
    return {
        "auc_loss": losses,
        "calibration_shift": shifts,
        "speedup": speedup,
        "batch_dependence": dependence,
        "serve": serve,
        "reason": why,
    }
