//! Minimal `.npy` (NumPy format 1.0) reading and writing for the training arrays:
//! little-endian `i64` and `f32`, C order, one or two dimensions.
//!
//! [`NpyWriter`] streams rows and fixes the shape in the header at [`NpyWriter::finish`]:
//! the header is padded to a fixed [`HEADER_LEN`] so it can be rewritten in place.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Bytes before the data: magic, version, header length, header dict, padding.
const HEADER_LEN: usize = 128;
const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// Element types the project stores.
pub trait Element: Copy {
    const DESCR: &'static str;
    fn write_le(self, out: &mut impl Write) -> io::Result<()>;
    fn from_le(bytes: &[u8]) -> Self;
    const SIZE: usize;
}

impl Element for i64 {
    const DESCR: &'static str = "<i8";
    const SIZE: usize = 8;
    fn write_le(self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_le_bytes())
    }
    fn from_le(b: &[u8]) -> Self {
        i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
    }
}

impl Element for f32 {
    const DESCR: &'static str = "<f4";
    const SIZE: usize = 4;
    fn write_le(self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.to_le_bytes())
    }
    fn from_le(b: &[u8]) -> Self {
        f32::from_le_bytes(b.try_into().unwrap_or([0; 4]))
    }
}

fn header<T: Element>(rows: usize, width: Option<usize>) -> Vec<u8> {
    let shape = match width {
        Some(w) => format!("({rows}, {w})"),
        None => format!("({rows},)"),
    };
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", T::DESCR);
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&((HEADER_LEN - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(HEADER_LEN - 1, b' ');
    h.push(b'\n');
    h
}

/// Streams rows of a fixed width into a `.npy` file.
pub struct NpyWriter<T: Element> {
    out: BufWriter<File>,
    width: Option<usize>,
    rows: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Element> NpyWriter<T> {
    /// `width` None writes a 1-D array.
    pub fn create(path: &Path, width: Option<usize>) -> io::Result<NpyWriter<T>> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        out.write_all(&header::<T>(0, width))?;
        Ok(NpyWriter { out, width, rows: 0, _t: std::marker::PhantomData })
    }

    /// Appends one row; its length must be the width (1 for 1-D arrays).
    pub fn push(&mut self, row: &[T]) -> io::Result<()> {
        debug_assert_eq!(row.len(), self.width.unwrap_or(1));
        for &v in row {
            v.write_le(&mut self.out)?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Writes the final shape into the header and flushes.
    pub fn finish(mut self) -> io::Result<usize> {
        let h = header::<T>(self.rows, self.width);
        if h.len() != HEADER_LEN {
            return Err(io::Error::other("npy header overflow"));
        }
        self.out.flush()?;
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&h)?;
        file.sync_data()?;
        Ok(self.rows)
    }
}

/// Reads a whole `.npy` array of `T`; returns (data, shape).
pub fn read<T: Element>(path: &Path) -> io::Result<(Vec<T>, Vec<usize>)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {m}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("unsupported .npy version")),
    };
    let dict = std::str::from_utf8(bytes.get(start..start + hlen).ok_or_else(|| bad("truncated header"))?)
        .map_err(|_| bad("header is not text"))?;
    if !dict.contains(&format!("'descr': '{}'", T::DESCR)) {
        return Err(bad(&format!("expected dtype {}, header {dict}", T::DESCR)));
    }
    if dict.contains("'fortran_order': True") {
        return Err(bad("fortran order is not supported"));
    }
    let shape_text =
        dict.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or_else(|| bad("no shape in header"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let data = &bytes[start + hlen..];
    if data.len() != count * T::SIZE {
        return Err(bad("data length does not match shape"));
    }
    Ok((data.chunks_exact(T::SIZE).map(T::from_le).collect(), shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_types_and_ranks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let mut w = NpyWriter::<i64>::create(&p, Some(3)).unwrap();
        w.push(&[1, -2, 3]).unwrap();
        w.push(&[i64::MAX, 0, 7]).unwrap();
        assert_eq!(w.finish().unwrap(), 2);
        let (data, shape) = read::<i64>(&p).unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(data, vec![1, -2, 3, i64::MAX, 0, 7]);
        assert_eq!(std::fs::metadata(&p).unwrap().len() as usize, HEADER_LEN + 48);

        let q = dir.path().join("b.npy");
        let mut w = NpyWriter::<f32>::create(&q, None).unwrap();
        w.push(&[0.25]).unwrap();
        w.finish().unwrap();
        assert_eq!(read::<f32>(&q).unwrap(), (vec![0.25], vec![1]));
        assert!(read::<i64>(&q).is_err());
    }
}
