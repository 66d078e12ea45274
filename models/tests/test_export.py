"""ONNX export: signature, metadata, size and parity with PyTorch."""

import json

import numpy as np
import onnx
import pytest
import torch

from ctrbid_train.data import load_features
from ctrbid_train.export import export_onnx, onnxruntime_session, predict_onnx, read_metadata
from ctrbid_train.model import CalibratedModel, CtrCvrModel, ServingGraph, load_checkpoint, predict_batches
from ctrbid_train.parity import check_parity
from ctrbid_train.nets import KINDS


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_signature(trained, synth_dir):
    out, _ = trained
    meta = json.loads((synth_dir / "meta.json").read_text())
    proto = onnx.load(str(out / "model.onnx"))
    inputs = {i.name: i for i in proto.graph.input}
    assert set(inputs) == {"cat", "num"}
    assert inputs["cat"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert inputs["num"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    n_cat, n_num = _dims(inputs["cat"]), _dims(inputs["num"])
    assert isinstance(n_cat[0], str) and n_cat[1] == len(meta["cat_fields"])
    assert isinstance(n_num[0], str) and n_num[1] == len(meta["num_fields"])
    assert [o.name for o in proto.graph.output] == ["pctr", "pcvr"]
    for output in proto.graph.output:
        assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert len(_dims(output)) == 1 and isinstance(_dims(output)[0], str)
    assert not proto.graph.initializer[0].external_data
    size = (out / "model.onnx").stat().st_size
    assert 1_000_000 < size < 8_000_000  # embeddings in float32, a few MB


def test_metadata(trained, synth_dir):
    out, report = trained
    md = read_metadata(out / "model.onnx")
    meta = json.loads((synth_dir / "meta.json").read_text())
    assert md["ctrbid.spec_sha256"] == meta["spec_sha256"]
    assert md["ctrbid.kind"] == "wide_deep"
    assert md["ctrbid.version"] == "2"
    assert md["ctrbid.heads"] == "pctr,pcvr"
    assert md["ctrbid.cat_fields"] == str(len(meta["cat_fields"]))
    assert md["ctrbid.num_fields"] == str(len(meta["num_fields"]))
    assert md["ctrbid.trained_at"].endswith("Z") and "T" in md["ctrbid.trained_at"]
    m = json.loads(md["ctrbid.metrics"])
    for key in ("auc", "log_loss", "ne", "calibration_ratio", "ece"):
        assert m[key] == pytest.approx(report["test"]["ctr"][key])
        assert m["pctr"][key] == pytest.approx(report["test"]["ctr"][key])
        assert m["pcvr"][key] == pytest.approx(report["test"]["cvr"][key], nan_ok=True)


def test_onnxruntime_matches_torch(trained, synth_dir):
    out, _ = trained
    fs = load_features(synth_dir)
    net, ckpt = load_checkpoint(out / "model.pt")
    rows = slice(fs.rows - 5000, fs.rows)
    p_torch = predict_batches(net, fs.cat[rows], fs.num[rows])
    p_ort = predict_onnx(onnxruntime_session(out / "model.onnx"), fs.cat[rows], fs.num[rows])
    assert p_ort.dtype == np.float32 and p_ort.shape == (5000, 2)
    assert np.max(np.abs(p_ort - p_torch)) <= 1e-5
    assert ckpt["calibrations"]["ctr"]["method"] == net.calibrators["ctr"].method


def test_dynamic_batch_sizes(trained, synth_dir):
    out, _ = trained
    fs = load_features(synth_dir)
    session = onnxruntime_session(out / "model.onnx")
    full = predict_onnx(session, fs.cat[:777], fs.num[:777])
    for n in (1, 2, 50, 777):
        pctr, pcvr = session.run(["pctr", "pcvr"], {"cat": np.array(fs.cat[:n]), "num": np.array(fs.num[:n])})
        assert pctr.shape == pcvr.shape == (n,)
        np.testing.assert_allclose(np.stack([pctr, pcvr], axis=1), full[:n], rtol=0, atol=1e-6)


def test_parity_without_rust(trained, synth_dir):
    out, _ = trained
    report = check_parity(out / "model.onnx", synth_dir, rows=3000, use_rust=False)
    assert report["ok"] and report["backends"] == ["torch", "onnxruntime"]
    assert report["max_abs_diff"]["torch_vs_onnxruntime"] <= 1e-5
    assert report["max_abs_diff"]["torch_vs_onnxruntime_pcvr"] <= 1e-5
    saved = json.loads((out / "parity.json").read_text())
    assert saved["rows"] == 3000


# The dynamo exporter fails in onnxscript's version converter with the pinned
# torch 2.9.1 + onnxscript 0.5.6; strict xfail flags the day an upgrade fixes it.
DYNAMO_BROKEN = pytest.mark.xfail(strict=True, reason="onnxscript version converter: 'The model contains functions'")


@pytest.mark.parametrize("exporter,opset", [pytest.param("dynamo", 18, marks=DYNAMO_BROKEN), ("torchscript", 17)])
def test_both_exporters(tmp_path, exporter, opset):
    torch.manual_seed(0)
    base = CtrCvrModel("wide_deep", cardinality=500, n_cat=4, n_num=2, embedding_dim=4, hidden=[16])
    torch.nn.init.normal_(base.wide["ctr"].weight, 0, 0.5)
    model = CalibratedModel(base, {"ctr": {"method": "platt", "a": 0.8, "b": -0.3}}).eval()
    info = export_onnx(model, tmp_path / "m.onnx", 500, 4, 2, {"ctrbid.kind": "wide_deep"}, exporter=exporter, opset=opset)
    assert info["opset"] == opset
    rng = np.random.default_rng(0)
    cat = rng.integers(0, 500, size=(300, 4))
    num = rng.normal(size=(300, 2)).astype(np.float32)
    expected = predict_batches(model, cat, num)
    got = predict_onnx(onnxruntime_session(tmp_path / "m.onnx"), cat, num)
    assert np.max(np.abs(got - expected)) <= 1e-6
    assert read_metadata(tmp_path / "m.onnx") == {"ctrbid.kind": "wide_deep"}


@pytest.mark.parametrize("kind", KINDS)
def test_serving_graph_is_the_model_with_one_table(kind, tmp_path):
    torch.manual_seed(1)
    base = CtrCvrModel(kind, cardinality=700, n_cat=5, n_num=3, heads=("ctr", "cvr"), embedding_dim=4, hidden=[8], cvr_hidden=[4])
    for table in base.embedding_tables():
        torch.nn.init.normal_(table, 0, 0.3)
    model = CalibratedModel(base, {"ctr": {"method": "platt", "a": 0.9, "b": 0.1}}).eval()
    graph = ServingGraph(model).eval()
    # embedding dim + one wide column per head
    widths = {"lr": 2, "fm": 6, "deepfm": 6, "wide_deep": 6, "dcn_v2": 4, "autoint": 6, "finalmlp": 4}
    assert tuple(graph.table.shape) == (700, widths[kind])
    rng = np.random.default_rng(2)
    cat = rng.integers(0, 700, size=(257, 5))
    num = rng.normal(size=(257, 3)).astype(np.float32)
    np.testing.assert_array_equal(predict_batches(graph, cat, num), predict_batches(model, cat, num))
    export_onnx(graph, tmp_path / "m.onnx", 700, 5, 3, {}, exporter="torchscript", opset=17)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    big = [i for i in proto.graph.initializer if len(i.dims) == 2 and i.dims[0] == 700]
    assert len(big) == 1, "every index is gathered from one table"
    got = predict_onnx(onnxruntime_session(tmp_path / "m.onnx"), cat, num)
    assert np.max(np.abs(got - predict_batches(model, cat, num))) <= 1e-6
