//! `ctrbid features --shard i/n`: the shards of one input, built apart, concatenated
//! in order, are the whole run's arrays byte for byte, for the simulator's log (with
//! the aggregates' replay, whose state each shard must rebuild from the rows before it)
//! and for a Criteo file.

use ctrbid::cli::features::{extract_table_shard, extract_with, Shard, SimReplay};
use ctrbid::features::{Delimiter, Format};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An `.npy` file's data, after its header.
fn npy_data(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let header = match bytes[6] {
        1 => 10 + usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
        _ => 12 + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
    };
    bytes[header..].to_vec()
}

/// Builds the whole run into `dir/whole` and `n` shards into `dir/<i>`, and checks
/// every array: the shards' data concatenated is the whole's, and each shard has rows.
fn check_shards(dir: &Path, arrays: &[&str], n: usize, build: impl Fn(&Path, Shard) -> usize) {
    let whole = build(&dir.join("whole"), Shard::WHOLE);
    let mut total = 0;
    for index in 0..n {
        let rows = build(&dir.join(index.to_string()), Shard { index, count: n });
        assert!(rows > 0 && rows.abs_diff(whole / n) <= 1, "shard {index}/{n}: {rows} rows of {whole}");
        total += rows;
    }
    assert_eq!(total, whole);
    for name in arrays {
        let parts: Vec<u8> = (0..n).flat_map(|i| npy_data(&dir.join(i.to_string()).join(name))).collect();
        assert!(parts == npy_data(&dir.join("whole").join(name)), "{name}: the shards differ from the whole");
    }
}

#[test]
fn simulator_log_shards_concatenate_to_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let cfg = ctrbid::simulate::SimConfig { seed: 11, impressions: 3000, ..Default::default() };
    ctrbid::simulate::simulate(&cfg, &sim).unwrap();
    let spec = repo().join("models/specs/default_with_aggregates.json");
    let arrays = ["cat.npy", "num.npy", "click.npy", "conv.npy", "pctr_true.npy", "pcvr_true.npy", "ts.npy"];
    check_shards(dir.path(), &arrays, 3, |out, shard| {
        extract_with(&sim, &spec, out, &SimReplay { shard, ..SimReplay::default() }).unwrap()
    });
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("1/meta.json")).unwrap()).unwrap();
    assert_eq!(meta["shard"], serde_json::json!({"index": 1, "count": 3, "first_row": 1000}));
}

#[test]
fn criteo_shards_concatenate_to_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = repo().join("tests/fixtures/datasets/criteo_sample.csv");
    let spec = repo().join("models/specs/criteo.json");
    check_shards(dir.path(), &["cat.npy", "num.npy", "click.npy", "ts.npy"], 4, |out, shard| {
        extract_table_shard(&input, &Format::criteo(Delimiter::Auto), &spec, out, shard).unwrap()
    });
}

#[test]
fn a_shard_is_given_as_i_of_n() {
    assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
    for bad in ["4/4", "1/0", "1", "a/2", ""] {
        assert!(bad.parse::<Shard>().unwrap_err().contains("i/n"), "{bad}");
    }
    let ranges: Vec<_> = (0..3).map(|index| Shard { index, count: 3 }.range(10)).collect();
    assert_eq!(ranges, [0..3, 3..6, 6..10]);
    assert_eq!(Shard::WHOLE.range(10), 0..10);
}
