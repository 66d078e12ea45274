//! What a crash leaves, and what the reader and `open` make of it: torn tails, damage,
//! and compression interrupted at every step.

use super::*;
use crate::eventlog::{closed, segment};
use std::path::PathBuf;

/// A closed log of `n` durable records of 30 bytes in one plain segment; its path.
fn one_segment(dir: &Path, n: u32) -> PathBuf {
    let log = EventLog::open(config(dir)).unwrap();
    for i in 0..n {
        log.append_durable_blocking(numbered(i, 30)).unwrap();
    }
    log.close().unwrap();
    let segments = files(dir, ".log");
    assert_eq!(segments.len(), 1);
    segments[0].clone()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_torn_last_record_is_skipped_by_the_reader_and_cut_at_open_at_every_cut() {
    let original = tempfile::tempdir().unwrap();
    let segment = one_segment(original.path(), 5);
    let full = std::fs::metadata(&segment).unwrap().len();
    let last: Record = Reader::open(original.path()).unwrap().last().unwrap().unwrap();
    let want: Vec<Vec<u8>> = (0..4).map(|i| numbered(i, 30)).collect();
    for cut in last.offset + 1..full {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let path = dir.path().join(segment.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();

        let (got, reader) = read_all(dir.path());
        assert!(got == want, "cut at {cut}: {} records", got.len());
        assert_eq!(reader.torn(), 1, "cut at {cut}");

        let log = EventLog::open(config(dir.path())).unwrap();
        assert_eq!(log.stats().torn_bytes_cut, cut - last.offset, "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), last.offset, "cut at {cut}");
        log.append_durable_blocking(numbered(9, 30)).unwrap();
        log.close().unwrap();
        let (got, reader) = read_all(dir.path());
        assert!(got[..4] == want[..] && got[4] == numbered(9, 30) && got.len() == 5, "cut at {cut}");
        assert_eq!(reader.torn(), 0);
    }
}

#[test]
fn a_new_segment_torn_inside_its_header_is_skipped_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    one_segment(dir.path(), 3);
    let header = crate::eventlog::frame::header();
    for cut in 0..header.len() {
        let torn = segment::path(dir.path(), 1000, false);
        std::fs::write(&torn, &header[..cut]).unwrap();
        let (got, reader) = read_all(dir.path());
        assert_eq!((got.len(), reader.torn()), (3, u64::from(cut > 0)), "cut at {cut}");
        let log = EventLog::open(config(dir.path())).unwrap();
        assert_eq!(log.stats().torn_bytes_cut, cut as u64);
        assert!(!torn.exists());
        log.close().unwrap();
        assert_eq!(read_all(dir.path()).0.len(), 3);
    }
}

#[test]
fn a_damaged_record_before_the_end_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let segment = one_segment(dir.path(), 6);
    let third: Record = Reader::open(dir.path()).unwrap().nth(2).unwrap().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[third.offset as usize + 12] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let mut reader = Reader::open(dir.path()).unwrap();
    assert!(reader.next().unwrap().is_ok() && reader.next().unwrap().is_ok());
    let err = reader.next().unwrap().unwrap_err().to_string();
    let want = format!("{}: at byte {}: CRC mismatch", segment.display(), third.offset);
    assert_eq!(err, want);
    assert!(reader.next().is_none(), "the iteration ends at an error");

    // `open` will not cut the records after the damage away.
    let err = format!("{:#}", EventLog::open(config(dir.path())).unwrap_err());
    assert!(err.contains(&want), "{err}");
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "open changed the damaged segment");

    // A bad length is an error too.
    bytes[third.offset as usize + 12] ^= 0x40;
    bytes[third.offset as usize..third.offset as usize + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&segment, &bytes).unwrap();
    let err = Reader::open(dir.path()).unwrap().find_map(Result::err).unwrap().to_string();
    assert!(err.ends_with(&format!("at byte {}: record length over the maximum", third.offset)), "{err}");
}

#[test]
fn a_torn_end_of_an_older_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let segment = one_segment(dir.path(), 3);
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 1).unwrap();
    std::fs::write(segment::path(dir.path(), 99, false), crate::eventlog::frame::header()).unwrap();
    let err = Reader::open(dir.path()).unwrap().find_map(Result::err).unwrap().to_string();
    assert!(err.starts_with(&segment.display().to_string()) && err.ends_with("torn record"), "{err}");
}

/// Compression interrupted after each of its steps: every record is read once, and
/// `open` puts the directory right.
#[test]
fn compression_interrupted_at_any_step_neither_loses_nor_repeats_a_record() {
    let original = tempfile::tempdir().unwrap();
    let plain = one_segment(original.path(), 40);
    let want = read_all(original.path()).0;
    let seq = 1;
    // The states a crash can leave, each as (plain file, `.gz.tmp`, `.gz`).
    let compressed = tempfile::tempdir().unwrap();
    copy_dir(original.path(), compressed.path());
    assert!(closed::compress(compressed.path(), seq).unwrap());
    let gz_bytes = std::fs::read(segment::path(compressed.path(), seq, true)).unwrap();
    let plain_bytes = std::fs::read(&plain).unwrap();
    let states: [(bool, Option<&[u8]>, bool); 5] = [
        (true, Some(&gz_bytes[..gz_bytes.len() / 2]), false), // mid-compression
        (true, Some(&gz_bytes), false),                       // before the rename
        (true, None, true),                                   // before removing the plain file
        (false, None, true),                                  // done
        (true, Some(b"garbage"), true),                       // a second attempt, mid-way
    ];
    for (i, (has_plain, tmp, gz)) in states.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        if has_plain {
            std::fs::write(segment::path(dir.path(), seq, false), &plain_bytes).unwrap();
        }
        if let Some(tmp) = tmp {
            std::fs::write(segment::tmp_path(dir.path(), seq), tmp).unwrap();
        }
        if gz {
            std::fs::write(segment::path(dir.path(), seq, true), &gz_bytes).unwrap();
        }
        assert!(read_all(dir.path()).0 == want, "state {i}: the reader");
        // Opened without compression: one form left, the plain one if it was there.
        EventLog::open(config(dir.path())).unwrap().close().unwrap();
        assert!(files(dir.path(), ".tmp").is_empty(), "state {i}");
        let forms = (files(dir.path(), ".log").len(), files(dir.path(), ".gz").len());
        assert_eq!(forms, if has_plain { (1, 0) } else { (0, 1) }, "state {i}");
        assert!(read_all(dir.path()).0 == want, "state {i}: after open");
        let log = EventLog::open(EventLogConfig { compress_closed: true, ..config(dir.path()) }).unwrap();
        log.close().unwrap();
        assert!(files(dir.path(), ".tmp").is_empty() && files(dir.path(), ".log").is_empty(), "state {i}");
        assert_eq!(files(dir.path(), ".gz").len(), 1, "state {i}");
        assert!(read_all(dir.path()).0 == want, "state {i}: after open");
    }
}
