//! Reading the log back: every record, in append order, across plain and gzip segments.
//!
//! [`Reader::open`] lists the segments once; the reader then streams them oldest first
//! through a fixed read buffer (memory is bounded by it and the largest record), and
//! sees a prefix of a log being written: the segments that existed at `open`, the
//! newest up to wherever its end was when read. A segment is read from its plain file,
//! or its `.gz` if there is no plain file (also when compression replaced it since
//! `open`); one removed by retention since `open` is skipped and counted
//! ([`Reader::vanished`]).
//!
//! A torn record at the end of the newest segment (a writer still writing it, or one
//! killed mid-write and not yet reopened) is the end of the log: skipped and counted
//! ([`Reader::torn`]). Anything else wrong ends the iteration with a [`ReadError`]
//! naming the file and the byte offset (in the uncompressed segment).

use super::frame::{self, FrameError, HEADER_BYTES};
pub use super::segment::ReadError;
use super::segment::{self, Found, READ_BUFFER};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// One record and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The segment's number (`seg-NNNNNNNNNN`).
    pub segment: u64,
    /// Where its frame starts in the segment (uncompressed bytes, header included).
    pub offset: u64,
    pub data: Vec<u8>,
}

/// An iterator over the records of a log directory; see the module doc.
pub struct Reader {
    dir: PathBuf,
    /// Segments not yet opened, oldest first.
    todo: std::vec::IntoIter<Found>,
    /// The newest segment at `open`: the only one whose end may be torn.
    newest: Option<u64>,
    current: Option<Current>,
    torn: u64,
    vanished: u64,
    skipped: usize,
    /// After an error the iteration is over.
    done: bool,
}

struct Current {
    seq: u64,
    path: PathBuf,
    gz: bool,
    input: Box<dyn Read + Send>,
    /// Where the next frame starts. Invariant: the bytes before it were read and valid.
    offset: u64,
}

impl Reader {
    /// Lists the segments of `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Reader, ReadError> {
        let dir = dir.as_ref().to_path_buf();
        let found = segment::list(&dir).map_err(|source| ReadError::Io { file: dir.clone(), source })?;
        let newest = found.last().map(|f| f.seq);
        Ok(Reader {
            dir,
            todo: found.into_iter(),
            newest,
            current: None,
            torn: 0,
            vanished: 0,
            skipped: 0,
            done: false,
        })
    }

    /// Like [`Reader::open`], but leaves out the segments whose files were all last
    /// modified before `since`: no record in them was appended after it. (Compression
    /// rewrites a segment later than its last record, so it may keep one more; never
    /// fewer.)
    pub fn open_since(dir: impl AsRef<Path>, since: std::time::SystemTime) -> Result<Reader, ReadError> {
        let mut reader = Reader::open(dir)?;
        let dir = reader.dir.clone();
        let modified_since = |f: &Found| {
            [(f.plain, false), (f.gz, true)].into_iter().filter(|&(present, _)| present).any(|(_, gz)| {
                // Unreadable metadata keeps the segment: the read reports what is wrong.
                std::fs::metadata(segment::path(&dir, f.seq, gz))
                    .and_then(|m| m.modified())
                    .map_or(true, |t| t >= since)
            })
        };
        let kept: Vec<Found> = reader.todo.as_slice().iter().copied().filter(modified_since).collect();
        reader.skipped = reader.todo.len() - kept.len();
        reader.todo = kept.into_iter();
        Ok(reader)
    }

    /// Segments [`Reader::open_since`] left out.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Torn records skipped at the end of the newest segment (0 or 1).
    pub fn torn(&self) -> u64 {
        self.torn
    }

    /// Segments listed at `open` and removed (by retention) before they were read.
    pub fn vanished(&self) -> u64 {
        self.vanished
    }

    /// Opens the segment `f`, plain first, and reads its header; `Ok(None)` when it is
    /// gone, or is the newest and holds no whole header yet.
    fn open_segment(&mut self, f: Found) -> Result<Option<Current>, ReadError> {
        let forms: &[bool] = match (f.plain, f.gz) {
            (true, _) => &[false, true],
            (false, true) => &[true],
            // Only a `.gz.tmp`: a compression that never finished, of a removed segment.
            (false, false) => return Ok(None),
        };
        for &gz in forms {
            let path = segment::path(&self.dir, f.seq, gz);
            match File::open(&path) {
                Ok(file) => return self.start(f.seq, path, file, gz),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(ReadError::Io { file: path, source }),
            }
        }
        self.vanished += 1;
        Ok(None)
    }

    fn start(&mut self, seq: u64, path: PathBuf, file: File, gz: bool) -> Result<Option<Current>, ReadError> {
        let mut input: Box<dyn Read + Send> = if gz {
            Box::new(BufReader::with_capacity(READ_BUFFER, MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::with_capacity(READ_BUFFER, file))
        };
        match frame::read_header(&mut input) {
            Ok(()) => Ok(Some(Current { seq, path, gz, input, offset: HEADER_BYTES as u64 })),
            Err(FrameError::Torn(n)) if !gz && Some(seq) == self.newest => {
                self.torn += u64::from(n > 0);
                Ok(None)
            }
            Err(e) => Err(segment::damage(&path, 0, e)),
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::new();
        while !self.done {
            let Some(cur) = &mut self.current else {
                let f = self.todo.next()?;
                match self.open_segment(f) {
                    Ok(opened) => self.current = opened,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                continue;
            };
            match frame::read_frame(&mut cur.input, &mut buf) {
                Ok(Some(n)) => {
                    let record = Record { segment: cur.seq, offset: cur.offset, data: buf };
                    cur.offset += n;
                    return Some(Ok(record));
                }
                Ok(None) => self.current = None,
                Err(FrameError::Torn(_)) if !cur.gz && Some(cur.seq) == self.newest => {
                    self.torn += 1;
                    self.current = None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(segment::damage(&cur.path, cur.offset, e)));
                }
            }
        }
        None
    }
}
