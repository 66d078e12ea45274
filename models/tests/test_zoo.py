"""The model zoo: every kind trains, exports with both heads, and matches PyTorch;
focal loss; the streaming loader; the report and zoo commands."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from ctrbid_train.__main__ import main
from ctrbid_train.data import iter_batches, load_features
from ctrbid_train.export import onnxruntime_session, predict_onnx, read_metadata
from ctrbid_train.model import load_checkpoint, predict_batches
from ctrbid_train.nets import KINDS
from ctrbid_train.train import train

from conftest import make_synthetic

#: A few hundred steps: enough to move every weight, not to converge.
TINY = {"train": {"batch_size": 512, "epochs": 1, "lr": 0.003, "emb_lr": 0.01}, "model": {"hidden": [16, 8]}}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("zoo") / "feat", 12_000, seed=7, ctr=0.05)


@pytest.fixture(scope="module")
def runs(small, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for kind in KINDS:
        overrides = {**TINY, "model": {**TINY["model"], "kind": kind}}
        out[kind] = (root / kind, train(small, root / kind, overrides=overrides))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_exports_both_heads_and_matches_torch(kind, runs, small):
    out, report = runs[kind]
    proto = onnx.load(str(out / "model.onnx"))
    assert [o.name for o in proto.graph.output] == ["pctr", "pcvr"]
    md = read_metadata(out / "model.onnx")
    assert md["ctrbid.kind"] == kind and md["ctrbid.heads"] == "pctr,pcvr"
    assert set(json.loads(md["ctrbid.calibration"])) == {"pctr", "pcvr"}
    fs = load_features(small)
    rows = slice(fs.rows - 3000, fs.rows)
    net, _ = load_checkpoint(out / "model.pt")
    p_torch = predict_batches(net, fs.cat[rows], fs.num[rows])
    p_ort = predict_onnx(onnxruntime_session(out / "model.onnx"), fs.cat[rows], fs.num[rows])
    assert p_ort.shape == p_torch.shape == (3000, 2)
    assert np.max(np.abs(p_ort - p_torch)) <= 1e-5
    assert np.all((p_ort > 0) & (p_ort < 1))
    # Trained for real: the CTR head ranks the synthetic truth better than chance.
    assert report["test"]["ctr"]["auc"] > 0.6, report["test"]["ctr"]["auc"]


def pairwise_auc(scores, y) -> float:
    """AUC as the share of (positive, negative) pairs the scores order correctly, ties
    a half: every pair compared directly, no ranks (independent of ``metrics.auc``)."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y) > 0.5
    pos, neg = scores[y][:, None], scores[~y][None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def test_kinds_differ_and_their_aucs_are_the_aucs_of_their_predictions(runs, small):
    """Each kind's reported test AUC is the AUC of what its saved model predicts on the
    test rows, counted pair by pair here, and the report's paired comparison (each model
    against LR, the ordering) gives the differences of those recomputed AUCs."""
    from ctrbid_train.report import auc_differences

    fs = load_features(small)
    scores, recomputed = {}, {}
    for kind, (out, report) in runs.items():
        t = report["splits"]["test"]
        click = np.asarray(fs.click[t["start"] : t["end"]], dtype=np.float64)
        net, _ = load_checkpoint(out / "model.pt")
        p = predict_batches(net, fs.cat[t["start"] : t["end"]], fs.num[t["start"] : t["end"]])[:, 0].astype(np.float64)
        scores[kind], recomputed[kind] = p, pairwise_auc(p, click)
        assert report["test"]["ctr"]["rows"] == click.size and report["test"]["ctr"]["positives"] == int(click.sum())
        assert report["test"]["ctr"]["auc"] == pytest.approx(recomputed[kind], abs=1e-9), kind
    aucs = {k: r["test"]["ctr"]["auc"] for k, (_, r) in runs.items()}
    assert len(set(aucs.values())) == len(KINDS), aucs
    # The same ordering of the kinds, from the report and from the pair counts.
    assert sorted(aucs, key=aucs.get) == sorted(recomputed, key=recomputed.get)
    d = auc_differences(scores, click, reference="wide_deep")
    for kind in KINDS:
        assert d["auc"][kind] == pytest.approx(recomputed[kind], abs=1e-9), kind
        if kind != "wide_deep":
            step = d["vs_reference"][kind]
            assert (step["a"], step["b"]) == (kind, "wide_deep") and step["se"] > 0
            assert step["diff"] == pytest.approx(recomputed[kind] - recomputed["wide_deep"], abs=1e-9), kind
        if kind != "lr":
            step = d["vs_lr"][kind]
            assert (step["a"], step["b"]) == (kind, "lr")
            assert step["diff"] == pytest.approx(recomputed[kind] - recomputed["lr"], abs=1e-9), kind
            assert step["se"] > 0
    tiers = [max((k for k in tier if k in recomputed), key=recomputed.get) for tier in (("lr",), ("fm",), tuple(KINDS[2:]))]
    steps = d["ordering"]["steps"]
    assert [(s["a"], s["b"]) for s in steps] == [(tiers[1], tiers[0]), (tiers[2], tiers[1])]
    for s in steps:
        assert s["diff"] == pytest.approx(recomputed[s["a"]] - recomputed[s["b"]], abs=1e-9)
    assert d["ordering"]["holds"] == (recomputed[tiers[0]] < recomputed[tiers[1]] < recomputed[tiers[2]])


def test_focal_loss_trains_and_is_calibrated_afterwards(small, tmp_path):
    # Focal loss shrinks the gradients of easy rows: it needs a few more steps.
    overrides = {**TINY, "train": {**TINY["train"], "loss": "focal", "focal_gamma": 1.0, "epochs": 3, "patience": 3}}
    report = train(small, tmp_path / "focal", overrides=overrides)
    ctr = report["test"]["ctr"]
    # Focal loss pulls raw probabilities towards 0.5; the calibration map undoes it.
    assert abs(ctr["uncalibrated"]["calibration_ratio"] - 1) > abs(ctr["calibration_ratio"] - 1)
    assert 0.8 < ctr["calibration_ratio"] < 1.2 and ctr["auc"] > 0.6


def test_clicked_only_cvr_objective(small, tmp_path):
    report = train(small, tmp_path / "clicked", overrides={**TINY, "cvr": {"objective": "clicked"}})
    assert report["heads"] == ["ctr", "cvr"] and report["test"]["cvr"]["rows"] == report["test"]["ctr"]["positives"]


def test_no_conversions_means_one_head(tmp_path):
    feat = make_synthetic(tmp_path / "feat", 4_000, seed=2)
    (feat / "conv.npy").unlink()
    report = train(feat, tmp_path / "m", overrides=TINY)
    assert report["heads"] == ["ctr"] and report["outputs"] == ["pctr"]
    assert [o.name for o in onnx.load(str(tmp_path / "m" / "model.onnx")).graph.output] == ["pctr"]


def test_loader_streams_every_row_once_in_bounded_chunks(small):
    fs = load_features(small)
    seen = []
    for cat, num, click, conv in iter_batches(fs, 100, 9_100, 256, np.random.default_rng(0), chunk_rows=2_048):
        assert cat.shape[0] <= 256 and num.shape[0] == click.shape[0] == conv.shape[0] == cat.shape[0]
        seen.append(cat)
    rows = np.concatenate(seen)
    assert rows.shape[0] == 9_000
    # Every row exactly once: compare sorted row tuples with the source range.
    want = np.asarray(fs.cat[100:9_100])
    assert np.array_equal(np.unique(rows, axis=0), np.unique(want, axis=0))
    # Shuffled: the first batch is not the first rows.
    assert not np.array_equal(seen[0], want[:256])


def test_report_command_writes_its_files(runs, small, tmp_path):
    dirs = [str(runs[k][0]) for k in ("lr", "wide_deep")]
    assert main(["report", "--features", str(small), "--out", str(tmp_path / "rep"), *dirs]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    for needle in ("| lr |", "| wide_deep |", "| oracle |", "pCVR", "Per-field calibration error", "reliability.png",
                   "## AUC differences, paired", "| model | AUC | minus lr | oracle minus model |"):
        assert needle in md, needle
    for png in ("reliability.png", "roc.png"):
        data = (tmp_path / "rep" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    wd = rep["models"]["wide_deep"]
    assert wd["rows_per_second"] > 1_000
    assert set(wd["heads"]) == {"ctr", "cvr"} and 0.5 < wd["heads"]["ctr"]["auc"] <= 1
    assert rep["models"]["oracle"]["heads"]["ctr"]["auc"] > wd["heads"]["ctr"]["auc"] - 0.05
    diffs = rep["auc_differences"]["ctr"]
    gap = diffs["vs_oracle"]["wide_deep"]
    assert gap["diff"] == pytest.approx(rep["models"]["oracle"]["heads"]["ctr"]["auc"] - wd["heads"]["ctr"]["auc"])
    assert 0 < gap["se"] < 0.1
    assert diffs["ordering"] is None  # no fm among the runs: no ordering to judge


def test_why_fm_does_not_beat_lr_quotes_no_figures_from_other_logs():
    """The explanation under an unresolved FM-minus-LR step names this spec's crosses
    and points to models/README.md for the ablation's figures: it quotes no number
    that was not measured on the report's own rows (the only figure is the count of
    crosses, from the features' metadata)."""
    import re

    from ctrbid_train.report import _differences_markdown

    steps = [{"a": "fm", "b": "lr", "diff": -0.0005, "se": 0.0004}, {"a": "wide_deep", "b": "fm", "diff": 0.0105, "se": 0.001}]
    d = {"auc": {"lr": 0.70, "fm": 0.6995, "wide_deep": 0.71, "oracle": 0.72}, "vs_lr": {}, "vs_oracle": {},
         "ordering": {"steps": steps, "holds": False}}
    report = {"auc_differences": {"ctr": d}, "crosses": {"x_ab": ["alpha", "beta"], "x_cd": ["gamma", "delta"]}}
    why = [line for line in _differences_markdown(report) if line.startswith("Why FM does not beat LR here")]
    assert len(why) == 1, why
    assert "2 crossed fields (alpha x beta, gamma x delta)" in why[0]
    assert 'models/README.md ("Model ordering")' in why[0]
    assert re.findall(r"\d+(?:\.\d+)?", why[0]) == ["2"], why[0]
    # FM beyond LR: nothing to explain.
    report["auc_differences"]["ctr"]["ordering"]["steps"][0]["diff"] = 0.002
    assert not any(line.startswith("Why FM") for line in _differences_markdown(report))


def test_zoo_selects_on_validation_and_exports(small, tmp_path):
    from ctrbid_train.config import CONFIG_DIR
    from ctrbid_train.zoo import run_zoo

    configs = [CONFIG_DIR / "lr.toml", CONFIG_DIR / "wide_deep.toml"]
    report = run_zoo(small, tmp_path / "zoo", configs=configs, export=tmp_path / "default", epochs=1, overrides={"train": {"batch_size": 512}})
    zoo = report["zoo"]
    sel = zoo["selection"]
    lowest = min(sel["scores"].values())
    assert zoo["best"] in sel["tied"] and sel["scores"][zoo["best"]] <= lowest * (1 + sel["tolerance"])
    assert sel["rows_per_second"][zoo["best"]] == max(sel["rows_per_second"][n] for n in sel["tied"])
    # The costs are the timed rows/s as µs, and the served model is within the budget
    # (unless none is, when the cheapest is served). No bound on a timing here: the box is shared.
    for n, us in sel["us_per_row"].items():
        assert us == pytest.approx(1e6 / sel["rows_per_second"][n])
    assert sel["within_budget"] == [n for n in ("lr", "wide_deep") if sel["us_per_row"][n] <= sel["row_budget_us"]]
    assert zoo["best"] in sel["within_budget"] or not sel["within_budget"]
    # The budget is 3x Wide & Deep's cost timed in the same run, so Wide & Deep is within it.
    assert sel["row_budget_us"] == pytest.approx(3 * sel["us_per_row"]["wide_deep"]) and "wide_deep" in sel["within_budget"]
    assert sel["budget_basis"].startswith("3x wide_deep's")
    # The report gives every model's cost at the bidder's batch sizes.
    for n in ("lr", "wide_deep"):
        assert set(report["models"][n]["us_per_row"]) == {8, 64, 512} and all(v > 0 for v in report["models"][n]["us_per_row"].values())
    for f in ("model.onnx", "model.pt", "eval.json", "report.md", "reliability.png", "roc.png", "zoo.json",
              "model.drift.json"):
        assert (tmp_path / "default" / f).exists(), f
    drift = json.loads((tmp_path / "default" / "model.drift.json").read_text())
    assert drift["model_version"] == read_metadata(tmp_path / "default" / "model.onnx")["ctrbid.version"]
    int8 = tmp_path / "default" / "model.int8.onnx"
    assert (tmp_path / "default" / "model.int8.drift.json").exists() == int8.exists()
    assert json.loads((tmp_path / "default" / "eval.json").read_text())["model_kind"] == zoo["best"]
    # Each INT8 variant was judged on the figures the report measured for it and the float32 winner.
    rows = report["models"]
    for mode, q in zoo["int8"]["variants"].items():
        fp32, int8 = rows[zoo["best"]], rows[f"{zoo['best']} {q['mode']}"]
        assert set(q["auc_loss"]) == set(q["calibration_shift"]) == set(fp32["heads"]) == {"ctr", "cvr"}
        for h in fp32["heads"]:
            assert q["auc_loss"][h] == pytest.approx(fp32["heads"][h]["auc"] - int8["heads"][h]["auc"], abs=1e-12), (mode, h)
            want = int8["heads"][h]["calibration_ratio"] / fp32["heads"][h]["calibration_ratio"] - 1
            assert q["calibration_shift"][h] == pytest.approx(want, abs=1e-12), (mode, h)
        assert q["speedup"] == pytest.approx(int8["rows_per_second"] / fp32["rows_per_second"]), mode
        # The limits of models/README.md (INT8), as literal values, on those figures.
        within = (
            all(v <= 0.001 for v in q["auc_loss"].values())
            and all(abs(v) <= 0.01 for v in q["calibration_shift"].values())
            and q["speedup"] > 1.0
            and q["batch_dependence"] <= 1e-4
        )
        assert q["serve"] == within, q
    assert zoo["int8"]["served"] == next((m for m in ("dynamic", "static") if zoo["int8"]["variants"][m]["serve"]), None)
    # Static scales make a row's score independent of its batch; dynamic ones do not.
    assert zoo["int8"]["variants"]["static"]["batch_dependence"] <= 1e-4
    assert (tmp_path / "default" / "model.int8.onnx").exists() == (zoo["int8"]["served"] is not None)
    assert "## Selection" in (tmp_path / "default" / "report.md").read_text()


def test_choice_serves_the_best_model_within_the_row_budget_and_names_the_ones_too_slow():
    """``zoo.choose`` on made-up figures: the budget comes first, then the score, ties to the
    cheapest; a model better beyond the tie margin but over the budget is named."""
    from ctrbid_train.zoo import SELECTION_TOLERANCE, choose

    scores = {"fast": 0.1000, "slow_best": 0.0980, "middle": 0.0990}
    speed = {"fast": 1_000_000.0, "slow_best": 200_000.0, "middle": 500_000.0}  # 1, 5 and 2 µs a row
    c = choose(scores, speed, row_budget_us=2.5)
    assert c["best"] == "middle" and c["within_budget"] == ["fast", "middle"] and c["tied"] == ["middle"]
    assert c["better_but_too_slow"] == ["slow_best"]
    assert c["us_per_row"] == pytest.approx({"fast": 1.0, "slow_best": 5.0, "middle": 2.0})
    # A budget of 5 µs lets the best score in; a tighter one leaves only the fastest.
    assert choose(scores, speed, row_budget_us=5.0)["best"] == "slow_best"
    tight = choose(scores, speed, row_budget_us=1.5)
    assert tight["best"] == "fast" and tight["better_but_too_slow"] == ["slow_best", "middle"]
    # Nothing within budget: the cheapest is served, and the summary says so.
    none = choose(scores, speed, row_budget_us=0.5)
    assert none["best"] == "fast" and none["within_budget"] == [] and "no model is within" in none["explanation"]
    # Within the tie margin the cheaper model wins, and the dearer one is not "better".
    tie = {"fast": 0.1000, "middle": 0.1000 / (1 + SELECTION_TOLERANCE / 2), "slow_best": 0.1000 / (1 + SELECTION_TOLERANCE / 2)}
    c = choose(tie, speed, row_budget_us=2.5)
    assert c["best"] == "fast" and c["tied"] == ["fast", "middle"] and c["better_but_too_slow"] == []


def test_row_budget_is_a_multiple_of_the_reference_timed_in_the_same_run():
    from ctrbid_train.zoo import ROW_BUDGET_US, ROW_BUDGET_X, row_budget

    speed = {"lr": 2e6, "wide_deep": 5e5}  # 0.5 and 2 µs a row
    assert row_budget(speed, None)[0] == pytest.approx(ROW_BUDGET_X * 2.0)
    # The same models on a box twice as slow: the budget follows, the choice does not move.
    assert row_budget({n: v / 2 for n, v in speed.items()}, None)[0] == pytest.approx(ROW_BUDGET_X * 4.0)
    assert row_budget(speed, 1.25) == (1.25, "given (--row-budget-us)")
    assert row_budget({"lr": 2e6}, None)[0] == ROW_BUDGET_US


def test_selection_table_names_each_model_too_slow_that_scores_better(tmp_path):
    """The report's selection table: a model over the budget that scores better than the
    served one is named as too slow, with whether it is beyond the tie margin."""
    from ctrbid_train.zoo import SELECTION_TOLERANCE, _append_selection, choose

    scores = {"fast": 0.1000, "near": 0.1000 / (1 + SELECTION_TOLERANCE / 2), "far": 0.0980, "worse": 0.1010}
    speed = {"fast": 1e6, "near": 2e5, "far": 2e5, "worse": 2e5}
    c = choose(scores, speed, row_budget_us=2.5)
    summary = {"best": c.pop("best"), "selection": {"scores": scores, "tolerance": SELECTION_TOLERANCE, "budget_basis": "given", **c},
               "int8": {"variants": {}}}
    md = tmp_path / "report.md"
    md.write_text("")
    _append_selection(md, summary)
    rows = {line.split("|")[1].strip(): line for line in md.read_text().splitlines() if line.startswith("| ") and "model" not in line}
    assert rows["fast"].endswith("| yes |")
    assert "better than fast (within the tie margin), too slow to serve" in rows["near"]
    assert "2.000% better than fast (beyond the tie margin), too slow to serve" in rows["far"]
    assert rows["worse"].endswith("| no |")


def test_int8_judge_serves_within_the_documented_limits_and_refuses_beyond_them():
    """``quantize.judge`` on made-up figures, either side of each limit. The limits are
    the documented ones, written out: models/README.md (INT8) "loses at most 0.001 AUC
    on each head, moves no head's calibration by more than 1 %, is faster, and scores
    each row independently of its batch"; the batch tolerance, 1e-4 relative, is the one
    quantize.py documents."""
    from ctrbid_train.quantize import judge

    fp32 = {"ctr": {"auc": 0.7000, "calibration_ratio": 1.05}, "cvr": {"auc": 0.6000, "calibration_ratio": 0.95}}

    def int8(ctr_loss=0.0, cvr_loss=0.0, ctr_shift=0.0, cvr_shift=0.0):
        return {
            "ctr": {"auc": 0.7000 - ctr_loss, "calibration_ratio": 1.05 * (1 + ctr_shift)},
            "cvr": {"auc": 0.6000 - cvr_loss, "calibration_ratio": 0.95 * (1 + cvr_shift)},
        }

    def decide(q=None, speedup=1.05, dependence=0.0):
        return judge(fp32, q or int8(), speedup, dependence)

    # Just inside every limit at once: served.
    ok = decide(int8(ctr_loss=0.0009, cvr_loss=0.0009, ctr_shift=0.009, cvr_shift=-0.009), speedup=1.01, dependence=0.5e-4)
    assert ok["serve"] is True, ok["reason"]
    assert ok["auc_loss"] == pytest.approx({"ctr": 0.0009, "cvr": 0.0009}, abs=1e-12)
    assert ok["calibration_shift"] == pytest.approx({"ctr": 0.009, "cvr": -0.009}, abs=1e-12)
    assert (ok["speedup"], ok["batch_dependence"]) == (1.01, 0.5e-4)
    # An INT8 graph that gains AUC, keeps the calibration and does not depend on its batch at all.
    assert decide(int8(ctr_loss=-0.002, cvr_loss=-0.002))["serve"] is True

    # Just beyond one limit, everything else fine: refused, and the reason names it.
    refused = {
        "ctr AUC loss 0.0011": (decide(int8(ctr_loss=0.0011)), "AUC loss"),
        "cvr AUC loss 0.0011": (decide(int8(cvr_loss=0.0011)), "AUC loss"),
        "ctr calibration +1.1 %": (decide(int8(ctr_shift=0.011)), "calibration"),
        "cvr calibration -1.1 %": (decide(int8(cvr_shift=-0.011)), "calibration"),
        # Relative to float32's ratio: 1.00 is nearer the labels than 1.05, yet a 4.8 % move.
        "ctr ratio 1.05 -> 1.00": (decide(int8(ctr_shift=1 / 1.05 - 1)), "calibration"),
        "as fast (1.00x)": (decide(speedup=1.0), "not faster"),
        "slower (0.80x)": (decide(speedup=0.80), "not faster"),
        "batch dependence 2e-4": (decide(dependence=2e-4), "batch"),
        "batch dependence 7.4 %": (decide(dependence=0.074), "batch"),
    }
    for case, (d, why) in refused.items():
        assert d["serve"] is False, case
        assert why in d["reason"], (case, d["reason"])
    assert refused["ctr AUC loss 0.0011"][0]["auc_loss"]["ctr"] == pytest.approx(0.0011, abs=1e-12)


def test_zoo_jobs_train_in_processes_of_their_own_with_the_same_results(small, tmp_path):
    """Two trainings at a time, each spawned in a process of its own: the same models
    as one after the other (fixed seeds, one thread each), reported in config order."""
    from ctrbid_train.config import CONFIG_DIR
    from ctrbid_train.zoo import run_zoo

    configs = [CONFIG_DIR / "lr.toml", CONFIG_DIR / "fm.toml"]
    overrides = {"train": {"batch_size": 512}}
    report = run_zoo(small, tmp_path / "zoo", configs=configs, epochs=1, overrides=overrides, jobs=2)
    assert list(report["zoo"]["wall_seconds"]) == ["lr", "fm"]
    assert all(s > 0 for s in report["zoo"]["wall_seconds"].values())
    alone = train(small, tmp_path / "lr-alone", config_path=CONFIG_DIR / "lr.toml", epochs=1, overrides=overrides)
    pooled = json.loads((tmp_path / "zoo" / "lr" / "eval.json").read_text())
    for split in ("valid", "test"):
        for head in ("ctr", "cvr"):
            assert pooled[split][head]["log_loss"] == alone[split][head]["log_loss"], (split, head)
