//! Inputs the fuzz targets once broke, replayed as ordinary tests.
//!
//! Every file in `tests/fixtures/fuzz-regressions/` is named `<target>-<short-name>` and
//! goes through the same checks its fuzz target runs (`fuzz/src/checks.rs`, included
//! below), on a 2 MiB stack: tokio's default worker stack, where the server parses
//! bodies. Each file also has an expected outcome in [`expected`]. See `fuzz/README.md`
//! for turning a crash into a file here.

#[allow(dead_code)]
#[path = "../fuzz/src/checks.rs"]
mod checks;

use checks::Outcome;
use std::path::{Path, PathBuf};

/// tokio's default worker thread stack size.
const WORKER_STACK_BYTES: usize = 2 * 1024 * 1024;

/// Auction time for replayed `validate_and_extract` bodies: 2026-01-05 00:00 UTC.
const NOW_UNIX: i64 = 1_767_571_200;

/// What simd-json (the server's parser) must make of each saved input.
fn expected(name: &str) -> fn(&Outcome) -> bool {
    match name {
        // A request whose imp.ext nests 20 000 arrays deep (40 KB): it once overflowed
        // the stack in simd-json's serde deserializer and killed the server. Now refused
        // (400) by the nesting limit before it reaches the deserializer.
        "parse_request-deep-nesting" => |o| matches!(o, Err(())),
        // `[-0]`: a top-level array was read positionally into the request's fields, and
        // the two parsers disagreed on the id (simd-json "0", serde_json "-0"). Now
        // refused (400): a bid request is an object. Found by `parse_request` in its
        // first 10-minute run.
        "parse_request-top-level-array" => |o| matches!(o, Err(())),
        // simd-json 0.14.3 read `3333333333333351169.3333333333333333333333` as
        // 0.000114788883521 when it started 74 to 92 bytes into the body (67 spaces in
        // front of `{"id": `), and correctly elsewhere (cause: `openrtb::parse`). Found by
        // `parse_request` seeded with Prebid-shaped requests. The id now reads as its
        // text; the request has no imp, so it is refused (400).
        "parse_request-float-id-at-offset-67" => |o| matches!(o, Ok(Err(_))),
        // The same number as an imp's floor 80 bytes in, which no id fallback covers: it
        // must read as 3.3333333333333514e18 through simd-json itself.
        "parse_request-float-floor-at-offset-24" => |o| o.is_ok(),
        _ => panic!("{name}: add its expected outcome to `expected`"),
    }
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable directory entry").path())
        .collect();
    files.sort();
    files
}

fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::Builder::new().stack_size(WORKER_STACK_BYTES).spawn(f).expect("thread starts");
    thread.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn replay(path: &Path) {
    let name = path.file_name().and_then(|n| n.to_str()).expect("UTF-8 file name").to_string();
    let bytes = std::fs::read(path).expect("fixture reads");
    let (target, _) = name.split_once('-').expect("named <target>-<short-name>");
    let outcome = match target {
        "parse_request" => on_worker_stack(move || checks::parse_request(&bytes).0),
        "validate_and_extract" => on_worker_stack(move || {
            let serving = checks::Serving::load(Path::new(env!("CARGO_MANIFEST_DIR")));
            let mut body = bytes;
            match checks::validate_and_extract(&mut body, NOW_UNIX, &serving) {
                Err(_) => Err(()),
                Ok(v) => Ok(v.map(|_rows| ())),
            }
        }),
        other => panic!("{name}: no replay for target {other:?}"),
    };
    assert!(expected(&name)(&outcome), "{name}: unexpected outcome {outcome:?}");
}

#[test]
fn saved_fuzz_inputs_replay_without_panic() {
    let files = fixtures();
    assert!(!files.is_empty());
    for path in files {
        replay(&path);
    }
}
