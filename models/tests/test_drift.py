"""The drift reference (``ctrbid_train.drift``): written next to the model, for that
model and spec; its shares are those of the training rows, binned as the bidder bins
them (a categorical field's top values and the rest; ``v`` in bin ``#{edges <= v}``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctrbid_train.data import load_features
from ctrbid_train.drift import FORMAT, build_reference, reference_path, write_reference
from ctrbid_train.predict import predict_rows


def test_the_reference_bins_the_training_rows_as_the_bidder_does(trained, synth_dir):
    out, _ = trained
    model = out / "model.onnx"
    path = write_reference(model, synth_dir, rows=10_000, top=5, bins=4)
    assert path == reference_path(model) == out / "model.drift.json"
    ref = json.loads(path.read_text())
    fs = load_features(synth_dir)
    assert (ref["format"], ref["spec_sha256"], ref["rows"]) == (FORMAT, fs.meta["spec_sha256"], 10_000)
    assert [c["name"] for c in ref["cat"]] == fs.meta["cat_fields"]
    assert [n["name"] for n in ref["num"]] == fs.meta["num_fields"]
    picked = np.arange(0, fs.rows, fs.rows // 10_000)[:10_000]
    for j, c in enumerate(ref["cat"]):
        column = fs.cat[picked, j]
        assert len(c["shares"]) == len(c["values"]) + 1 and abs(sum(c["shares"]) - 1) < 1e-9
        # Most frequent first, each with its exact share.
        for v, share in zip(c["values"], c["shares"]):
            assert share == pytest.approx(np.mean(column == v), abs=1e-12)
        assert c["shares"][:-1] == sorted(c["shares"][:-1], reverse=True)
    pctr = predict_rows(model, fs.cat[picked], fs.num[picked])[:, 0]
    for bins, column in [*((n, fs.num[picked, j]) for j, n in enumerate(ref["num"])), (ref["pctr"], pctr)]:
        edges = np.asarray(bins["edges"], dtype=np.float32)
        assert len(bins["shares"]) == len(edges) + 1 and np.all(np.diff(edges) > 0)
        # The bidder's rule: a value's bin is how many edges are at or below it.
        index = (edges[None, :] <= column.astype(np.float32)[:, None]).sum(axis=1)
        counts = np.bincount(index, minlength=len(edges) + 1) / column.size
        np.testing.assert_allclose(bins["shares"], counts, atol=1e-12)
    # Quartiles: each bin near a quarter when the values are spread.
    assert max(ref["pctr"]["shares"]) < 0.3


def test_a_reference_for_arrays_of_another_spec_is_refused(trained, synth_dir, tmp_path):
    out, _ = trained
    other = tmp_path / "feat"
    other.mkdir()
    for f in synth_dir.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    meta = json.loads((other / "meta.json").read_text())
    meta["spec_sha256"] = "0" * 64
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="feature spec"):
        build_reference(out / "model.onnx", other)
