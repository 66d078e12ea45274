//! The `ctrbid` binary's errors name what the user set: the flag and the file, and the
//! environment variable when that is where a value came from.

mod common;

use common::repo;
use std::process::Command;

/// Runs `ctrbid` with `args` and `env`; its exit code and stderr.
fn ctrbid(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctrbid"));
    cmd.args(args).current_dir(repo());
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("CTRBID_")) {
        cmd.env_remove(name);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn score_names_the_missing_file_and_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().display().to_string();
    let (code, err) =
        ctrbid(&["score", "--model", "models/default/model.onnx", "--features", &features, "--out", "x.npy"], &[]);
    assert_eq!(code, Some(1), "{err}");
    let cat = dir.path().join("cat.npy").display().to_string();
    assert!(err.contains(&format!("--features {features}")) && err.contains(&cat), "{err}");
}

#[test]
fn score_names_the_output_it_cannot_write() {
    // Real arrays, made by `ctrbid simulate` and `ctrbid features`.
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let features = dir.path().join("features");
    for args in [
        vec!["simulate", "--seed", "3", "--impressions", "200", "--out", sim.to_str().unwrap()],
        vec!["features", "--sim", sim.to_str().unwrap(), "--out", features.to_str().unwrap()],
    ] {
        let (code, err) = ctrbid(&args, &[]);
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
    let out = dir.path().join("missing-dir/preds.npy").display().to_string();
    let (code, err) = ctrbid(
        &["score", "--model", "models/default/model.onnx", "--features", features.to_str().unwrap(), "--out", &out],
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("--out {out}: cannot write the scores")), "{err}");
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let (code, err) = ctrbid(&["serve"], &[("CTRBID_DEBUG_EXT", "yes")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--debug-ext was given by the environment variable CTRBID_DEBUG_EXT"), "{err}");
    // On the command line, the flag is what is named, and no variable.
    let (code, err) = ctrbid(&["serve", "--debug-ext", "yes"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--debug-ext") && !err.contains("CTRBID_DEBUG_EXT"), "{err}");
}

#[test]
fn a_setting_the_environment_made_invalid_names_the_variable() {
    let (code, err) = ctrbid(&["serve"], &[("CTRBID_NOTICE_KEY", "short")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("notices.hmac_key"), "{err}");
    assert!(
        err.contains("notices.hmac_key was set by the environment variable CTRBID_NOTICE_KEY (--notice-key)"),
        "{err}"
    );
    assert!(!err.contains("short"), "the key's value is not printed: {err}");
    let (code, err) = ctrbid(&["serve"], &[("CTRBID_ONNXRUNTIME_LIBRARY", "/nonexistent/libonnxruntime.so")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
    assert!(
        err.contains("model.onnxruntime_library was set by the environment variable CTRBID_ONNXRUNTIME_LIBRARY"),
        "{err}"
    );
}
