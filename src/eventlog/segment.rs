//! Segment files: their names, the one being written, and the recovery of a crashed one.
//!
//! Segment `n` is `seg-NNNNNNNNNN.log` (ten digits, so that lexical order is append
//! order) while plain, `seg-NNNNNNNNNN.log.gz` once compressed, and
//! `seg-NNNNNNNNNN.log.gz.tmp` while being compressed (see [`super::closed`]). Every
//! listing here sorts by the parsed number, and when both forms of a segment exist the
//! plain one is *the* segment (the `.gz` may be incomplete as far as anyone knows).

use super::frame::{self, FrameError, HEADER_BYTES};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Output buffer of the segment being written: lossy records reach the file when it
/// fills, at each commit, and at least every `flush_interval`.
const WRITE_BUFFER: usize = 256 << 10;
/// Read buffer of recovery and of the reader.
pub const READ_BUFFER: usize = 256 << 10;

const PREFIX: &str = "seg-";
const PLAIN: &str = ".log";
const GZ: &str = ".log.gz";
const TMP: &str = ".log.gz.tmp";

/// The path of segment `seq` in `dir`, plain or compressed.
pub fn path(dir: &Path, seq: u64, gz: bool) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:010}{}", if gz { GZ } else { PLAIN }))
}

/// Where segment `seq` is compressed to before its rename.
pub fn tmp_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:010}{TMP}"))
}

/// The forms of one segment found in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub seq: u64,
    pub plain: bool,
    pub gz: bool,
    /// A `.log.gz.tmp`: a compression that did not finish.
    pub tmp: bool,
}

/// The segments in `dir`, oldest first (files of other names are ignored).
pub fn list(dir: &Path) -> io::Result<Vec<Found>> {
    let mut found: Vec<Found> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        let name = entry.map_err(|e| with_path(e, dir))?.file_name();
        let Some((seq, kind)) = name.to_str().and_then(parse) else { continue };
        let i = match found.iter().position(|f| f.seq == seq) {
            Some(i) => i,
            None => {
                found.push(Found { seq, plain: false, gz: false, tmp: false });
                found.len() - 1
            }
        };
        match kind {
            PLAIN => found[i].plain = true,
            GZ => found[i].gz = true,
            _ => found[i].tmp = true,
        }
    }
    found.sort_unstable_by_key(|f| f.seq);
    Ok(found)
}

/// `seg-0000000012.log.gz` -> `(12, ".log.gz")`.
fn parse(name: &str) -> Option<(u64, &'static str)> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let kind = [PLAIN, GZ, TMP].into_iter().find(|k| &rest[digits..] == *k)?;
    Some((rest[..digits].parse().ok()?, kind))
}

pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Makes the directory's entries (a created, renamed or removed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| with_path(e, dir))
}

/// The segment being written.
///
/// Invariants: `synced <= len`; the file holds the header and whole frames up to
/// `synced` on disk, and up to `len` once `out` is flushed.
pub struct Active {
    pub seq: u64,
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes handed to `out`, header included.
    len: u64,
    /// Bytes made durable by the last `commit` (or the creation).
    synced: u64,
    /// When the first record was written: the segment's age counts from it.
    first_at: Option<Instant>,
    pub records: u64,
}

impl Active {
    /// Creates segment `seq` with its header, durable (file and directory entry).
    pub fn create(dir: &Path, seq: u64) -> io::Result<Active> {
        let path = path(dir, seq, false);
        let mut file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| with_path(e, &path))?;
        file.write_all(&frame::header()).and_then(|()| file.sync_data()).map_err(|e| with_path(e, &path))?;
        sync_dir(dir)?;
        let out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let len = HEADER_BYTES as u64;
        Ok(Active { seq, path, out, len, synced: len, first_at: None, records: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far, header included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// When the first record was written; `None` while there is none.
    pub fn first_at(&self) -> Option<Instant> {
        self.first_at
    }

    /// Frames `payload` into the buffer (the file sees it on the next flush).
    pub fn append(&mut self, payload: &[u8], now: Instant) -> io::Result<()> {
        frame::write_frame(&mut self.out, payload)?;
        self.len += frame::framed_len(payload.len());
        self.records += 1;
        self.first_at.get_or_insert(now);
        Ok(())
    }

    /// Hands the buffer to the file: safe from a process crash, not from a power loss.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and fdatasyncs: everything written so far is durable.
    pub fn commit(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        self.synced = self.len;
        Ok(())
    }

    /// Gives the segment up after a failed write or sync: drops what is buffered and
    /// cuts the file back to the last commit, so that no torn or unacknowledged frame
    /// stays in the middle of the log (best effort: the disk is failing). The path, for
    /// compression, when the segment holds records.
    pub fn abandon(self) -> Option<PathBuf> {
        let (file, _unwritten) = self.out.into_parts();
        if let Err(e) = file.set_len(self.synced).and_then(|()| file.sync_data()) {
            eprintln!("ctrbid: event log: could not cut {} back to {} bytes: {e}", self.path.display(), self.synced);
        }
        (self.synced > HEADER_BYTES as u64).then_some(self.path)
    }
}

/// What [`recover`] did to the last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Whole records kept.
    pub records: u64,
    /// Bytes of a torn last record (or header) cut off.
    pub cut_bytes: u64,
    /// The file held no complete header and was removed.
    pub removed: bool,
}

/// A segment damaged other than by a torn end of the newest, or one that could not be
/// read. `offset` counts bytes of the segment uncompressed, from its first (the header).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: at byte {offset}: {what}", file.display())]
    Corrupt { file: PathBuf, offset: u64, what: &'static str },
    #[error("{}: {source}", file.display())]
    Io { file: PathBuf, source: io::Error },
}

/// Cuts a plain segment left by a crashed writer back to its last whole record and makes
/// that durable; a file without a whole header is removed. Damage before the end (a bad
/// CRC or length on a complete frame) is an error: cutting there would drop the records
/// after it without a word.
pub fn recover(path: &Path) -> Result<Recovered, ReadError> {
    let io_err = |source| ReadError::Io { file: path.to_path_buf(), source };
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let mut input = BufReader::with_capacity(READ_BUFFER, &mut file);
    let mut done = Recovered::default();
    let mut offset = match frame::read_header(&mut input) {
        Ok(()) => HEADER_BYTES as u64,
        Err(FrameError::Torn(_)) => {
            drop(input);
            std::fs::remove_file(path).map_err(io_err)?;
            return Ok(Recovered { cut_bytes: size, removed: true, ..done });
        }
        Err(e) => return Err(damage(path, 0, e)),
    };
    let mut buf = Vec::new();
    loop {
        match frame::read_frame(&mut input, &mut buf) {
            Ok(Some(n)) => {
                offset += n;
                done.records += 1;
            }
            Ok(None) => return Ok(done),
            Err(FrameError::Torn(n)) => {
                drop(input);
                file.set_len(offset).and_then(|()| file.sync_data()).map_err(io_err)?;
                done.cut_bytes = n;
                return Ok(done);
            }
            Err(e) => return Err(damage(path, offset, e)),
        }
    }
}

/// `e` (not `Torn`) at `offset` of `file` as the error to report.
pub fn damage(file: &Path, offset: u64, e: FrameError) -> ReadError {
    match e {
        FrameError::Corrupt(what) => ReadError::Corrupt { file: file.to_path_buf(), offset, what },
        FrameError::Torn(_) => ReadError::Corrupt { file: file.to_path_buf(), offset, what: "torn record" },
        FrameError::Io(source) => ReadError::Io { file: file.to_path_buf(), source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse_back() {
        let dir = Path::new("/d");
        assert_eq!(path(dir, 7, false), Path::new("/d/seg-0000000007.log"));
        assert_eq!(path(dir, 7, true), Path::new("/d/seg-0000000007.log.gz"));
        assert_eq!(tmp_path(dir, 7), Path::new("/d/seg-0000000007.log.gz.tmp"));
        for (name, want) in [
            ("seg-0000000012.log", Some((12, PLAIN))),
            ("seg-0000000012.log.gz", Some((12, GZ))),
            ("seg-0000000012.log.gz.tmp", Some((12, TMP))),
            ("seg-0000000012.log.bak", None),
            ("seg-.log", None),
            ("notes.txt", None),
        ] {
            assert_eq!(parse(name), want, "{name}");
        }
        let a = path(dir, 9, false);
        let b = path(dir, 10, false);
        assert!(a.as_os_str() < b.as_os_str());
    }

    #[test]
    fn list_gathers_the_forms_of_each_segment_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["seg-0000000003.log", "seg-0000000001.log.gz", "seg-0000000003.log.gz.tmp", "other"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found = list(dir.path()).unwrap();
        assert_eq!(
            found,
            [Found { seq: 1, plain: false, gz: true, tmp: false }, Found { seq: 3, plain: true, gz: false, tmp: true }]
        );
    }
}
