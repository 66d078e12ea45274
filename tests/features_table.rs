//! Public CTR datasets to training arrays: `ctrbid features --criteo` and `--csv` read
//! a table spec (`models/specs/`) and write the simulator path's arrays, hashed in Rust.
//! Fixtures: `tests/fixtures/datasets/` (see its NOTICE).

use ctrbid::cli::features::extract_table;
use ctrbid::features::{Delimiter, Format};
use ctrbid::npy;
use std::path::{Path, PathBuf};
use std::process::Command;

const ARRAYS: [&str; 4] = ["cat.npy", "num.npy", "click.npy", "ts.npy"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/datasets").join(name)
}

fn criteo(input: &Path, out: &Path) -> anyhow::Result<usize> {
    extract_table(input, &Format::criteo(Delimiter::Auto), &repo().join("models/specs/criteo.json"), out)
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap()
}

/// The first cell of every data line of a delimited text with a header.
fn labels(text: &str) -> Vec<f32> {
    text.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect()
}

/// Every index of `cat.npy` lies in its field's range (from `meta.json`).
fn check_indices_in_fields(dir: &Path) {
    let meta = meta(dir);
    let (cat, shape) = npy::read::<i64>(&dir.join("cat.npy")).unwrap();
    let offsets = meta["field_offsets"].as_array().unwrap();
    let buckets = meta["field_buckets"].as_array().unwrap();
    assert_eq!(shape[1], offsets.len());
    for (i, &v) in cat.iter().enumerate() {
        let f = i % shape[1];
        let (lo, n) = (offsets[f].as_i64().unwrap(), buckets[f].as_i64().unwrap());
        assert!((lo..lo + n).contains(&v), "row {} field {f}: {v} not in {lo}..{}", i / shape[1], lo + n);
    }
    assert!(cat.iter().all(|&v| v < meta["cardinality"].as_i64().unwrap()));
}

#[test]
fn criteo_sample_becomes_training_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("criteo_sample.csv");
    assert_eq!(criteo(&input, dir.path()).unwrap(), 200);
    let (_, cat_shape) = npy::read::<i64>(&dir.path().join("cat.npy")).unwrap();
    let (num, num_shape) = npy::read::<f32>(&dir.path().join("num.npy")).unwrap();
    let (click, click_shape) = npy::read::<f32>(&dir.path().join("click.npy")).unwrap();
    let (ts, _) = npy::read::<i64>(&dir.path().join("ts.npy")).unwrap();
    assert_eq!((cat_shape, num_shape, click_shape), (vec![200, 26], vec![200, 13], vec![200]));
    assert_eq!(click, labels(&std::fs::read_to_string(&input).unwrap()));
    assert!(click.contains(&1.0) && click.contains(&0.0));
    assert_eq!(ts, (0..200).collect::<Vec<i64>>());
    assert!(num.iter().all(|v| (0.0..=20.0).contains(v)), "log1p then clip [0, 20]");
    check_indices_in_fields(dir.path());
    let meta = meta(dir.path());
    assert_eq!(meta["format"], "criteo");
    assert_eq!(meta["rows"], 200);
    assert_eq!(meta["cat_fields"][0], "C1");
    assert_eq!(meta["num_fields"][12], "I13");
    assert_eq!(meta["spec_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(meta["crosses"], serde_json::json!({}), "the Criteo spec crosses nothing");
    for absent in ["conv.npy", "pctr_true.npy", "pcvr_true.npy"] {
        assert!(!dir.path().join(absent).exists(), "{absent}");
    }
}

#[test]
fn criteo_tsv_without_header_gives_identical_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("criteo_sample.csv")).unwrap();
    assert!(!text.contains('"'), "the conversion below assumes no quoted cells");
    let tsv: String = text.lines().skip(1).map(|l| l.replace(',', "\t") + "\n").collect();
    std::fs::write(dir.path().join("train.txt"), tsv).unwrap();
    let (csv_out, tsv_out) = (dir.path().join("csv"), dir.path().join("tsv"));
    assert_eq!(criteo(&fixture("criteo_sample.csv"), &csv_out).unwrap(), 200);
    assert_eq!(criteo(&dir.path().join("train.txt"), &tsv_out).unwrap(), 200);
    for name in ARRAYS {
        let (a, b) = (std::fs::read(csv_out.join(name)).unwrap(), std::fs::read(tsv_out.join(name)).unwrap());
        assert!(a == b, "{name} differs");
    }
    assert_eq!(meta(&csv_out)["spec_sha256"], meta(&tsv_out)["spec_sha256"]);
}

/// The sample with `edit` applied to its data row `row` (0-based) fails with `needle`.
fn check_malformed(row: usize, edit: impl Fn(&mut Vec<String>), needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("criteo_sample.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut cells: Vec<String> = lines[row + 1].split(',').map(str::to_string).collect();
    edit(&mut cells);
    lines[row + 1] = cells.join(",");
    let input = dir.path().join("bad.csv");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let err = format!("{:#}", criteo(&input, &dir.path().join("out")).unwrap_err());
    assert!(err.contains(needle), "{err:?} should contain {needle:?}");
    assert!(err.contains("bad.csv"), "{err:?} should name the file");
}

#[test]
fn malformed_criteo_input_names_the_line_and_column() {
    check_malformed(55, |c| drop(c.pop()), "line 57: expected 40 columns, found 39");
    check_malformed(0, |c| c.push("x".into()), "line 2: expected 40 columns, found 41");
    check_malformed(8, |c| c[3] = "12x".into(), "line 10, column 4 (\"I3\"): expected a number, found \"12x\"");
    check_malformed(199, |c| c[0] = "2".into(), "line 201, column 1 (\"label\"): expected a label 0 or 1");
}

fn ctrbid(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ctrbid")).args(args).current_dir(repo()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn avazu_shaped_csv_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("avazu_sample.csv");
    let out = dir.path().to_str().unwrap();
    let (ok, stderr) = ctrbid(&[
        "features",
        "--csv",
        input.to_str().unwrap(),
        "--label",
        "click",
        "--spec",
        "models/specs/avazu.json",
        "--out",
        out,
    ]);
    assert!(ok, "{stderr}");
    let (cat, shape) = npy::read::<i64>(&dir.path().join("cat.npy")).unwrap();
    let (num, _) = npy::read::<f32>(&dir.path().join("num.npy")).unwrap();
    let (click, _) = npy::read::<f32>(&dir.path().join("click.npy")).unwrap();
    assert_eq!(shape, vec![10, 23]);
    let text = std::fs::read_to_string(&input).unwrap();
    let clicks: Vec<f32> = text.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(click, clicks);
    check_indices_in_fields(dir.path());
    let meta = meta(dir.path());
    assert_eq!((meta["format"].as_str(), meta["rows"].as_u64()), (Some("csv"), Some(10)));
    assert_eq!(meta["cat_fields"][0], "hour_of_day");
    // Rows 0 and 8 are hour 00 of 2014-10-21 (a Tuesday) and 2014-10-22.
    let cell = |row: usize, field: usize| cat[row * 23 + field];
    assert_eq!(cell(0, 0), cell(8, 0));
    assert_ne!(cell(0, 0), cell(2, 0));
    assert_ne!(cell(0, 1), cell(8, 1));
    assert_eq!(cell(0, 1), cell(7, 1));
    assert!((num[0] - (0.0 - 11.5) / 6.922).abs() < 1e-6, "{}", num[0]);
    // Row 4's quoted `"model, x"` is one cell: the row has the header's width.
    assert_ne!(cell(4, 12), cell(0, 12));
}

#[test]
fn command_line_wants_one_input_and_a_matching_spec() {
    let check = |args: &[&str], needle: &str| {
        let (ok, stderr) = ctrbid(args);
        assert!(!ok && stderr.contains(needle), "{args:?}: {stderr}");
    };
    let sample = fixture("criteo_sample.csv");
    let sample = sample.to_str().unwrap();
    check(&["features", "--out", "/nonexistent"], "required");
    check(&["features", "--sim", "x", "--criteo", sample, "--out", "/nonexistent"], "cannot be used with");
    check(&["features", "--csv", sample, "--out", "/nonexistent"], "--spec");
    check(
        &["features", "--criteo", sample, "--spec", "models/feature_spec.json", "--out", "/nonexistent"],
        "is an OpenRTB spec (no column: sources) and cannot read CSV input",
    );
    check(
        &["features", "--csv", sample, "--spec", "models/specs/criteo.json", "--label", "click", "--out", "/x"],
        "no column \"click\"",
    );
}
