//! The bytes of a segment: a header, then framed records.
//!
//! A segment is [`HEADER`] (magic `CTREVL` and a little-endian `u16` format version),
//! then records, each `u32 length (LE) | u32 CRC (LE) | payload`. The CRC is CRC-32
//! (`crc32fast`, the IEEE polynomial gzip uses) over the four length bytes and then the
//! payload: covering the length catches a damaged length whose payload happens to fit,
//! and a zero-filled stretch of file (what a power loss can leave) fails the check
//! instead of reading as empty records (the CRC of no bytes is 0).
//!
//! [`read_frame`] tells a *torn* frame (the input ends inside it: what a writer killed
//! mid-write leaves, always a prefix of what it meant to write) from a *corrupt* one
//! (complete, but with a length over [`MAX_RECORD_BYTES`] or a CRC that does not match).

use std::io::{self, Read, Write};

/// The largest record accepted by `append` and by the reader.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Bytes before each payload: length, then CRC.
pub const FRAME_HEADER_BYTES: usize = 8;
/// The first bytes of every segment.
pub const MAGIC: [u8; 6] = *b"CTREVL";
/// The format this module writes and reads.
pub const VERSION: u16 = 1;
/// Bytes of the segment header: magic, then the version.
pub const HEADER_BYTES: usize = MAGIC.len() + 2;

/// The segment header this version writes.
pub fn header() -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..MAGIC.len()].copy_from_slice(&MAGIC);
    h[MAGIC.len()..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Bytes a record of `len` payload bytes takes in a segment.
pub fn framed_len(len: usize) -> u64 {
    (FRAME_HEADER_BYTES + len) as u64
}

fn crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// Writes one framed record. The caller has checked `payload.len() <= MAX_RECORD_BYTES`.
pub fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    debug_assert!(payload.len() <= MAX_RECORD_BYTES);
    let len = (payload.len() as u32).to_le_bytes();
    let mut head = [0u8; FRAME_HEADER_BYTES];
    head[..4].copy_from_slice(&len);
    head[4..].copy_from_slice(&crc(len, payload).to_le_bytes());
    out.write_all(&head)?;
    out.write_all(payload)
}

/// Why a frame or header could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The input ended inside it, after this many of its bytes.
    Torn(u64),
    /// A complete frame or header that is wrong.
    Corrupt(&'static str),
    Io(io::Error),
}

/// Reads the next record into `buf` (replacing its contents): `Ok(Some(framed bytes))`,
/// or `Ok(None)` at a clean end of input (no byte of a next frame).
pub fn read_frame(input: &mut impl Read, buf: &mut Vec<u8>) -> Result<Option<u64>, FrameError> {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    let got = read_full(input, &mut head).map_err(FrameError::Io)?;
    if got == 0 {
        return Ok(None);
    }
    if got < head.len() {
        return Err(FrameError::Torn(got as u64));
    }
    let len_bytes: [u8; 4] = head[..4].try_into().expect("four bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_RECORD_BYTES {
        return Err(FrameError::Corrupt("record length over the maximum"));
    }
    buf.clear();
    buf.resize(len, 0);
    let got = read_full(input, buf).map_err(FrameError::Io)?;
    if got < len {
        return Err(FrameError::Torn((FRAME_HEADER_BYTES + got) as u64));
    }
    let want = u32::from_le_bytes(head[4..].try_into().expect("four bytes"));
    if crc(len_bytes, buf) != want {
        return Err(FrameError::Corrupt("CRC mismatch"));
    }
    Ok(Some(framed_len(len)))
}

/// Reads and checks a segment header; `Torn` when the input ends inside it (a segment
/// created by a writer killed before the header reached the file).
pub fn read_header(input: &mut impl Read) -> Result<(), FrameError> {
    let mut h = [0u8; HEADER_BYTES];
    let got = read_full(input, &mut h).map_err(FrameError::Io)?;
    if got < h.len() {
        return Err(FrameError::Torn(got as u64));
    }
    if h[..MAGIC.len()] != MAGIC {
        return Err(FrameError::Corrupt("not an event log segment (bad magic)"));
    }
    if h[MAGIC.len()..] != VERSION.to_le_bytes() {
        return Err(FrameError::Corrupt("unknown segment format version"));
    }
    Ok(())
}

/// Fills `buf` as far as the input goes; the bytes read (less than `buf.len()` only at
/// the end of input).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = header().to_vec();
        for p in payloads {
            write_frame(&mut out, p).unwrap();
        }
        out
    }

    fn read_all(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        read_header(&mut bytes)?;
        let (mut out, mut buf) = (Vec::new(), Vec::new());
        while read_frame(&mut bytes, &mut buf)?.is_some() {
            out.push(buf.clone());
        }
        Ok(out)
    }

    #[test]
    fn records_of_every_size_round_trip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut payloads: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0xff; MAX_RECORD_BYTES]];
        for _ in 0..200 {
            let len = if rng.gen_bool(0.1) { rng.gen_range(0..=MAX_RECORD_BYTES) } else { rng.gen_range(0..600) };
            payloads.push((0..len).map(|_| rng.gen()).collect());
        }
        let bytes = framed(&payloads);
        let expected: u64 = payloads.iter().map(|p| framed_len(p.len())).sum();
        assert_eq!(bytes.len() as u64, HEADER_BYTES as u64 + expected);
        assert!(read_all(&bytes).unwrap() == payloads);
    }

    #[test]
    fn every_cut_inside_a_frame_is_torn_and_says_how_far_it_got() {
        let bytes = framed(&[b"first".to_vec(), b"the last record".to_vec()]);
        let last = HEADER_BYTES + FRAME_HEADER_BYTES + 5;
        for cut in last + 1..bytes.len() {
            let mut rest = &bytes[last..cut];
            match read_frame(&mut rest, &mut Vec::new()) {
                Err(FrameError::Torn(n)) => assert_eq!(n, (cut - last) as u64),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        assert!(matches!(read_frame(&mut &bytes[last..last], &mut Vec::new()), Ok(None)));
    }

    #[test]
    fn damage_is_corrupt_not_torn() {
        let good = framed(&[b"abc".to_vec()]);
        let check = |bytes: &[u8], what: &str| match read_all(bytes) {
            Err(FrameError::Corrupt(w)) => assert!(w.contains(what), "{w}"),
            other => panic!("{what}: {other:?}"),
        };
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        check(&flipped, "CRC");
        let mut long = good.clone();
        long[HEADER_BYTES..HEADER_BYTES + 4].copy_from_slice(&(MAX_RECORD_BYTES as u32 + 1).to_le_bytes());
        check(&long, "length");
        // Zeros, as a power loss may leave: not a run of empty records.
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0; 16]);
        check(&zeros, "CRC");
        let mut magic = good.clone();
        magic[0] = b'X';
        check(&magic, "magic");
        let mut version = good;
        version[HEADER_BYTES - 1] = 9;
        check(&version, "version");
        assert!(matches!(read_header(&mut &header()[..5]), Err(FrameError::Torn(5))));
    }
}
