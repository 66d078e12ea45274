//! Table specs and table rows: public CTR datasets (Criteo, Avazu, any delimited file
//! with named columns) through the feature spec format and hashing of served traffic.
//!
//! A table spec is a spec file (`spec.rs` loads and checks it: power-of-two buckets,
//! offsets, field seeds, SHA-256) whose sources name columns: `column:NAME` takes the
//! cell as it stands; `hour_of_day:NAME` and `weekday:NAME` read a `YYMMDDHH` time (Avazu's
//! `hour`, years 20YY) and take its hour (`0..24`) or its weekday (`0` = Monday). The
//! label column is not in the spec: [`Format::label`] names it. [`TableReader`] streams a
//! file one record at a time (constant memory: one record's buffers, reused) and writes
//! each record's row in spec order, hashed by `hash.rs` like a served row.
//!
//! Values, and the invariants every row keeps:
//! - a categorical cell hashes as its bytes, unchanged (no trimming, case kept); a cross
//!   hashes the value hashes of its two cells. Every index lies in its field's
//!   `offset..offset + buckets`.
//! - **an empty cell is the missing value**: it hashes as the empty byte string, `hash.rs`'s
//!   value for an absent one. No other cell has those bytes (a quoted `""` is empty too),
//!   so missing has its own value hash, distinct from every string, `"0"`, `"NA"` and
//!   `"missing"` included. A derived source of an empty cell is missing as well.
//! - a numeric cell is a finite decimal number (ASCII blanks around it allowed) put through
//!   the field's transforms in order; `Transform::Log1p` clamps negatives such as Criteo's
//!   `I2 = -1` to 0 first. **An empty (or blank) numeric cell is 0.0, transforms skipped.**
//! - the label cell is `0` or `1`.
//!
//! Any other cell, a record whose width differs from the header's, or an unterminated
//! quote is a [`TableError`] that names the file, the line and the column. Comma-separated
//! files may quote cells (RFC 4180: `"a, ""b"""` is `a, "b"`, and may span lines);
//! tab-separated files are not quoted (the TSV convention, and the Criteo layout).

use super::hash::{bucket, bucket_cross, value_hash, value_hash_int};
use super::spec::{self, CatField, CatKind, NumField, Parsed, SpecError};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// The columns of the Criteo Kaggle / 1TB layout, in file order.
pub fn criteo_columns() -> Vec<String> {
    let ints = (1..=13).map(|i| format!("I{i}"));
    let cats = (1..=26).map(|i| format!("C{i}"));
    std::iter::once("label".to_string()).chain(ints).chain(cats).collect()
}

/// Size of the read buffer.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// How a value is taken from its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derive {
    /// The cell itself (`column:NAME`).
    Cell,
    /// Hour of a `YYMMDDHH` time, `0..24` (`hour_of_day:NAME`).
    HourOfDay,
    /// Weekday of a `YYMMDDHH` time, `0` = Monday (`weekday:NAME`).
    Weekday,
}

/// Where a table value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Index into [`TableSpec::columns`].
    pub index: usize,
    pub derive: Derive,
}

/// A loaded, checked table spec: the invariants of `FeatureSpec` hold (power-of-two
/// buckets, running offsets, every index below `cardinality`).
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub version: u32,
    pub hash_seed: u64,
    /// Hex SHA-256 of the spec file's bytes.
    pub sha256: String,
    pub cat: Vec<CatField<Column>>,
    pub num: Vec<NumField<Column>>,
    pub cardinality: u64,
    /// Names of the columns the spec reads, each once, in order of first use.
    pub columns: Vec<String>,
}

/// Resolves `kind:NAME` sources, collecting the column names.
#[derive(Default)]
struct Columns(Vec<String>);

impl Columns {
    fn resolve(&mut self, source: &str) -> Result<Column, String> {
        let (kind, name) = source.split_once(':').unwrap_or(("", source));
        let derive = match kind {
            "column" => Derive::Cell,
            "hour_of_day" => Derive::HourOfDay,
            "weekday" => Derive::Weekday,
            _ => {
                return Err(format!(
                    "unknown source {source:?} (table sources are column:NAME, hour_of_day:NAME, weekday:NAME)"
                ))
            }
        };
        if name.is_empty() {
            return Err(format!("source {source:?} names no column"));
        }
        let index = match self.0.iter().position(|c| c == name) {
            Some(i) => i,
            None => {
                self.0.push(name.to_string());
                self.0.len() - 1
            }
        };
        Ok(Column { index, derive })
    }
}

impl spec::Sources for Columns {
    type Cat = Column;
    type Num = Column;
    const TABLE: bool = true;
    fn cat(&mut self, source: &str) -> Result<Column, String> {
        self.resolve(source)
    }
    fn num(&mut self, source: &str, prior: Option<crate::aggregates::Prior>) -> Result<Column, String> {
        match prior {
            Some(_) => Err(format!("{source:?}: a table column takes no prior")),
            None => self.resolve(source),
        }
    }
}

impl TableSpec {
    /// Loads a table spec; refuses an OpenRTB spec ([`SpecError::NotTableSpec`]).
    pub fn load(path: &Path) -> Result<TableSpec, SpecError> {
        let mut columns = Columns::default();
        spec::load(path, &mut columns).map(|p| TableSpec::from_parsed(p, columns))
    }

    /// Parses and checks a table spec from the bytes of its file.
    pub fn from_bytes(bytes: &[u8]) -> Result<TableSpec, SpecError> {
        let mut columns = Columns::default();
        spec::parse(bytes, &mut columns).map(|p| TableSpec::from_parsed(p, columns))
    }

    fn from_parsed(p: Parsed<Column, Column>, columns: Columns) -> TableSpec {
        TableSpec {
            name: p.name,
            version: p.version,
            hash_seed: p.hash_seed,
            sha256: p.sha256,
            cat: p.cat,
            num: p.num,
            cardinality: p.cardinality,
            columns: columns.0,
        }
    }
}

/// Field separator of a delimited file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    /// Tab when the first line holds one, else comma.
    Auto,
    Comma,
    Tab,
}

impl std::str::FromStr for Delimiter {
    type Err = String;
    fn from_str(s: &str) -> Result<Delimiter, String> {
        match s {
            "auto" => Ok(Delimiter::Auto),
            "," | "comma" => Ok(Delimiter::Comma),
            "tab" | "\t" | "\\t" => Ok(Delimiter::Tab),
            _ => Err(format!("delimiter {s:?}: expected auto, \",\" or tab")),
        }
    }
}

/// How to read a file.
#[derive(Debug, Clone)]
pub struct Format {
    pub delimiter: Delimiter,
    /// Column names for a file without a header line. With them, the first line is a
    /// header only when its label cell is not `0` or `1`; without them it always is.
    pub names: Option<Vec<String>>,
    /// Name of the label column.
    pub label: String,
}

impl Format {
    /// A delimited file with a header line.
    pub fn csv(label: &str, delimiter: Delimiter) -> Format {
        Format { delimiter, names: None, label: label.to_string() }
    }

    /// The Criteo layout: [`criteo_columns`], tab-separated without a header (Kaggle
    /// `train.txt`, the 1TB logs) or any delimited file with a header line.
    pub fn criteo(delimiter: Delimiter) -> Format {
        Format { delimiter, names: Some(criteo_columns()), label: "label".to_string() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot read {file}: {error}")]
    Io { file: String, error: std::io::Error },
    #[error("{file} is empty: it has no header line")]
    Empty { file: String },
    #[error("{file}: line {line}: {reason}")]
    Line { file: String, line: u64, reason: String },
    #[error("{file}: line {line}, column {column}: {reason}")]
    Cell { file: String, line: u64, column: String, reason: String },
    #[error("{file}: the header has no column {name:?}, which {user} reads")]
    NoColumn { file: String, name: String, user: String },
}

/// One record: its cells' bytes back to back, and where each ends.
#[derive(Debug, Default)]
struct Record {
    bytes: Vec<u8>,
    /// `ends[i]` is the end of cell `i` in `bytes`; nondecreasing.
    ends: Vec<usize>,
    /// 1-based line the record starts on.
    line: u64,
}

impl Record {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn cell(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// The columns of a file, bound to a spec: which cell feeds each spec column.
#[derive(Debug)]
struct Binding {
    /// Header names, for messages.
    names: Vec<String>,
    /// Cell index of each of the spec's columns (`TableSpec::columns` order).
    cells: Vec<usize>,
    label: usize,
}

/// Streams a delimited file and writes a row per record.
pub struct TableReader<'a, R> {
    file: String,
    input: R,
    spec: &'a TableSpec,
    delimiter: u8,
    quoting: bool,
    /// Lines read so far.
    lines: u64,
    raw: Vec<u8>,
    record: Record,
    /// True when `record` holds a data record not yet returned.
    pending: bool,
    /// True when the file's first line was a header.
    header: bool,
    binding: Binding,
}

impl<'a> TableReader<'a, BufReader<File>> {
    pub fn open(path: &Path, spec: &'a TableSpec, format: &Format) -> Result<Self, TableError> {
        let file = path.display().to_string();
        let input = File::open(path).map_err(|error| TableError::Io { file: file.clone(), error })?;
        TableReader::new(file, BufReader::with_capacity(READ_BUFFER_BYTES, input), spec, format)
    }
}

impl<'a, R: BufRead> TableReader<'a, R> {
    /// Reads the header (or the first record, for a file without one) and binds the spec's
    /// columns. `file` names the input in messages.
    pub fn new(file: String, mut input: R, spec: &'a TableSpec, format: &Format) -> Result<Self, TableError> {
        let delimiter = match format.delimiter {
            Delimiter::Comma => b',',
            Delimiter::Tab => b'\t',
            Delimiter::Auto => {
                let head = input.fill_buf().map_err(|error| TableError::Io { file: file.clone(), error })?;
                let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
                if first_line.contains(&b'\t') {
                    b'\t'
                } else {
                    b','
                }
            }
        };
        let mut reader = TableReader {
            file,
            input,
            spec,
            delimiter,
            quoting: delimiter != b'\t',
            lines: 0,
            raw: Vec::new(),
            record: Record::default(),
            pending: false,
            header: true,
            binding: Binding { names: Vec::new(), cells: Vec::new(), label: 0 },
        };
        if !reader.read_record()? {
            return Err(TableError::Empty { file: reader.file });
        }
        let first: Vec<String> = (0..reader.record.len())
            .map(|i| String::from_utf8_lossy(reader.record.cell(i)).trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        let names = match &format.names {
            Some(names) => {
                let label_cell = names.iter().position(|n| *n == format.label).and_then(|i| first.get(i));
                reader.pending = matches!(label_cell.map(String::as_str), Some("0" | "1"));
                if reader.pending {
                    names.clone()
                } else {
                    first
                }
            }
            None => first,
        };
        reader.header = !reader.pending;
        reader.binding = reader.bind(names, &format.label)?;
        Ok(reader)
    }

    fn bind(&self, names: Vec<String>, label: &str) -> Result<Binding, TableError> {
        let find = |name: &str, user: String| -> Result<usize, TableError> {
            let mut at = names.iter().enumerate().filter(|(_, n)| *n == name).map(|(i, _)| i);
            match (at.next(), at.next()) {
                (Some(i), None) => Ok(i),
                (Some(_), Some(_)) => Err(TableError::Line {
                    file: self.file.clone(),
                    line: 1,
                    reason: format!("the header names column {name:?} twice"),
                }),
                (None, _) => Err(TableError::NoColumn { file: self.file.clone(), name: name.to_string(), user }),
            }
        };
        let label_at = find(label, "the label (--label)".to_string())?;
        let mut cells = Vec::with_capacity(self.spec.columns.len());
        for (index, name) in self.spec.columns.iter().enumerate() {
            if name == label {
                return Err(TableError::Line {
                    file: self.file.clone(),
                    line: 1,
                    reason: format!("spec {:?} reads the label column {name:?} as a feature", self.spec.name),
                });
            }
            cells.push(find(name, format!("field {:?} of spec {:?}", self.user_of(index), self.spec.name))?);
        }
        Ok(Binding { names, cells, label: label_at })
    }

    /// Name of the first field that reads spec column `index`.
    fn user_of(&self, index: usize) -> &str {
        let reads = |c: Column| c.index == index;
        let cat = self.spec.cat.iter().find(|f| match f.kind {
            CatKind::Single(c) => reads(c),
            CatKind::Cross(a, b) => reads(a) || reads(b),
        });
        cat.map(|f| f.name.as_str())
            .or_else(|| self.spec.num.iter().find(|f| reads(f.source)).map(|f| f.name.as_str()))
            .unwrap_or_default()
    }

    /// Width of the categorical row.
    pub fn cat_width(&self) -> usize {
        self.spec.cat.len()
    }

    /// Width of the numeric row.
    pub fn num_width(&self) -> usize {
        self.spec.num.len()
    }

    /// True when the file started with a header line.
    pub fn had_header(&self) -> bool {
        self.header
    }

    /// Writes the next record's row into `cat` and `num` (the widths above) and returns
    /// its label; `None` at the end of the file.
    pub fn next_row(&mut self, cat: &mut [i64], num: &mut [f32]) -> Result<Option<f32>, TableError> {
        if !std::mem::take(&mut self.pending) && !self.read_record()? {
            return Ok(None);
        }
        let rec = &self.record;
        let b = &self.binding;
        if rec.len() != b.names.len() {
            return Err(TableError::Line {
                file: self.file.clone(),
                line: rec.line,
                reason: format!("expected {} columns, found {}", b.names.len(), rec.len()),
            });
        }
        let cell_error = |cell: usize, reason: String| TableError::Cell {
            file: self.file.clone(),
            line: rec.line,
            column: format!("{} ({:?})", cell + 1, b.names[cell]),
            reason,
        };
        let label = match rec.cell(b.label).trim_ascii() {
            b"0" => 0.0,
            b"1" => 1.0,
            other => return Err(cell_error(b.label, format!("expected a label 0 or 1, found {}", shown(other)))),
        };
        let seed = self.spec.hash_seed;
        let vh = |c: Column| -> Result<u64, TableError> {
            let cell = b.cells[c.index];
            cat_hash(seed, rec.cell(cell), c.derive).map_err(|reason| cell_error(cell, reason))
        };
        for (slot, f) in cat.iter_mut().zip(&self.spec.cat) {
            let bucket = match f.kind {
                CatKind::Single(c) => bucket(f.seed, vh(c)?, f.buckets),
                CatKind::Cross(a, c) => bucket_cross(f.seed, vh(a)?, vh(c)?, f.buckets),
            };
            *slot = (f.offset + bucket) as i64;
        }
        for (slot, f) in num.iter_mut().zip(&self.spec.num) {
            let cell = b.cells[f.source.index];
            let value = number(rec.cell(cell), f.source.derive).map_err(|reason| cell_error(cell, reason))?;
            *slot = match value {
                Some(v) => f.transforms.iter().fold(v, |v, t| t.apply(v)) as f32,
                None => 0.0,
            };
        }
        Ok(Some(label))
    }

    /// Reads the next non-blank record into `self.record`; false at the end of the file.
    fn read_record(&mut self) -> Result<bool, TableError> {
        let TableReader { file, input, delimiter, quoting, lines, raw, record: rec, .. } = self;
        let delimiter = *delimiter;
        rec.bytes.clear();
        rec.ends.clear();
        loop {
            if !read_line(input, raw, lines, file)? {
                return Ok(false);
            }
            if !raw.is_empty() {
                break;
            }
        }
        rec.line = *lines;
        if !*quoting {
            for cell in raw.split(|&b| b == delimiter) {
                rec.bytes.extend_from_slice(cell);
                rec.ends.push(rec.bytes.len());
            }
            return Ok(true);
        }
        // RFC 4180: a cell that starts with a quote runs to the next lone quote, `""`
        // inside it is one quote, and it may span lines.
        let (mut quoted, mut closed, mut start) = (false, false, true);
        loop {
            let mut i = 0;
            while i < raw.len() {
                let c = raw[i];
                i += 1;
                if quoted {
                    if c != b'"' {
                        rec.bytes.push(c);
                    } else if raw.get(i) == Some(&b'"') {
                        rec.bytes.push(b'"');
                        i += 1;
                    } else {
                        (quoted, closed) = (false, true);
                    }
                } else if c == delimiter {
                    rec.ends.push(rec.bytes.len());
                    (closed, start) = (false, true);
                } else if closed {
                    return Err(TableError::Line {
                        file: file.clone(),
                        line: *lines,
                        reason: format!("cell {}: text after a closing quote", rec.ends.len() + 1),
                    });
                } else if c == b'"' && start {
                    (quoted, start) = (true, false);
                } else {
                    rec.bytes.push(c);
                    start = false;
                }
            }
            if !quoted {
                rec.ends.push(rec.bytes.len());
                return Ok(true);
            }
            rec.bytes.push(b'\n');
            if !read_line(input, raw, lines, file)? {
                return Err(TableError::Line {
                    file: file.clone(),
                    line: rec.line,
                    reason: format!("cell {}: the quote it opens is never closed", rec.ends.len() + 1),
                });
            }
        }
    }
}

/// Reads one line into `raw` without its line end and counts it; false at the end.
fn read_line(input: &mut impl BufRead, raw: &mut Vec<u8>, lines: &mut u64, file: &str) -> Result<bool, TableError> {
    raw.clear();
    let n = input.read_until(b'\n', raw).map_err(|error| TableError::Io { file: file.to_string(), error })?;
    if n == 0 {
        return Ok(false);
    }
    *lines += 1;
    if raw.last() == Some(&b'\n') {
        raw.pop();
    }
    if raw.last() == Some(&b'\r') {
        raw.pop();
    }
    Ok(true)
}

/// A cell for a message.
fn shown(cell: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(cell))
}

/// Value hash of a categorical cell; empty is the missing value (module docs).
fn cat_hash(seed: u64, cell: &[u8], derive: Derive) -> Result<u64, String> {
    let derived = match derive {
        Derive::Cell => return Ok(value_hash(seed, cell)),
        Derive::HourOfDay => time(cell)?.map(|(hour, _)| hour),
        Derive::Weekday => time(cell)?.map(|(_, weekday)| weekday),
    };
    Ok(match derived {
        Some(v) => value_hash_int(seed, i64::from(v)),
        None => value_hash(seed, b""),
    })
}

/// Value of a numeric cell before transforms; `None` when empty or blank.
fn number(cell: &[u8], derive: Derive) -> Result<Option<f64>, String> {
    match derive {
        Derive::Cell => {
            let text = cell.trim_ascii();
            if text.is_empty() {
                return Ok(None);
            }
            match std::str::from_utf8(text).ok().and_then(|t| t.parse::<f64>().ok()) {
                Some(v) if v.is_finite() => Ok(Some(v)),
                _ => Err(format!("expected a number, found {}", shown(cell))),
            }
        }
        Derive::HourOfDay => Ok(time(cell)?.map(|(hour, _)| f64::from(hour))),
        Derive::Weekday => Ok(time(cell)?.map(|(_, weekday)| f64::from(weekday))),
    }
}

/// Hour and weekday (0 = Monday) of a `YYMMDDHH` time in 20YY; `None` when empty.
fn time(cell: &[u8]) -> Result<Option<(u32, u32)>, String> {
    if cell.is_empty() {
        return Ok(None);
    }
    let bad = || format!("expected a YYMMDDHH time, found {}", shown(cell));
    if cell.len() != 8 || !cell.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let two = |i: usize| u32::from(cell[i] - b'0') * 10 + u32::from(cell[i + 1] - b'0');
    let (year, month, day, hour) = (2000 + two(0) as i64, two(2), two(4), two(6));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 {
        return Err(bad());
    }
    // Days since 1970-01-01 (a Thursday), Howard Hinnant's `days_from_civil`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(Some((hour, (days + 3).rem_euclid(7) as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureSpec;

    const HEAD: &str = r#"{"name":"t","version":1,"hash_seed":5,"#;

    /// A spec over columns `c` (categorical), `n` (numeric, log1p then clip [0, 2]) and
    /// `h` (a YYMMDDHH time: hour of day and weekday, numeric and categorical).
    fn spec() -> TableSpec {
        let json = format!(
            r#"{HEAD}"categorical":[
                {{"name":"c","source":"column:c","buckets":1024}},
                {{"name":"hour","source":"hour_of_day:h","buckets":64}},
                {{"name":"c_x_hour","cross":["c","hour"],"buckets":4096}}],
              "numeric":[
                {{"name":"n","source":"column:n","transform":[{{"op":"log1p"}},{{"op":"clip","min":0,"max":2}}]}},
                {{"name":"hour_n","source":"hour_of_day:h"}},
                {{"name":"weekday_n","source":"weekday:h"}}]}}"#
        );
        TableSpec::from_bytes(json.as_bytes()).unwrap()
    }

    /// (label, cat, num) of one record.
    type Row = (f32, Vec<i64>, Vec<f32>);

    /// Rows of `text` (a header `y,c,n,h` is prepended).
    fn rows(text: &str, delimiter: Delimiter) -> Result<Vec<Row>, String> {
        let spec = spec();
        let sep = if text.contains('\t') { "\t" } else { "," };
        let input = format!("y{sep}c{sep}n{sep}h\n{text}");
        let format = Format::csv("y", delimiter);
        let mut r = TableReader::new("t.csv".into(), input.as_bytes(), &spec, &format).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let (mut cat, mut num) = (vec![0; r.cat_width()], vec![0.0; r.num_width()]);
        while let Some(label) = r.next_row(&mut cat, &mut num).map_err(|e| e.to_string())? {
            out.push((label, cat.clone(), num.clone()));
        }
        Ok(out)
    }

    fn field_index(spec: &TableSpec, field: usize, bytes: &[u8]) -> i64 {
        let f = &spec.cat[field];
        (f.offset + bucket(f.seed, value_hash(spec.hash_seed, bytes), f.buckets)) as i64
    }

    /// `text`'s single record gives categorical value `c` the index of `expected` bytes.
    fn check_cat(text: &str, expected: &[u8]) {
        let got = rows(text, Delimiter::Comma).unwrap();
        assert_eq!(got.len(), 1, "{text:?}");
        assert_eq!(got[0].1[0], field_index(&spec(), 0, expected), "{text:?}");
    }

    #[test]
    fn categorical_cells_hash_their_bytes_and_empty_is_missing() {
        check_cat("1,abc,1,14102100", b"abc");
        check_cat("1, abc ,1,14102100", b" abc ");
        check_cat("1,\"a,b\",1,14102100", b"a,b");
        check_cat("1,\"say \"\"hi\"\"\",1,14102100", b"say \"hi\"");
        check_cat("1,\"two\nlines\",1,14102100", b"two\nlines");
        check_cat("1,,1,14102100", b"");
        check_cat("1,\"\",1,14102100", b"");
        check_cat("1,x,1,14102100\r\n", b"x");
        // Missing is its own value: not the text of any placeholder.
        let missing = field_index(&spec(), 0, b"");
        for s in ["0", "NA", "missing", "\"\"", " "] {
            assert_ne!(field_index(&spec(), 0, s.as_bytes()), missing, "{s}");
        }
    }

    /// `cell` in column `n` (and `h` = `time`) gives numeric row `expected`.
    fn check_num(cell: &str, time: &str, expected: [f32; 3]) {
        let got = rows(&format!("0,a,{cell},{time}\n"), Delimiter::Comma).unwrap();
        assert_eq!(got[0].2, expected, "{cell:?} {time:?}");
    }

    #[test]
    fn numeric_cells_go_through_transforms_and_empty_is_zero() {
        check_num("0", "14102100", [0.0, 0.0, 1.0]);
        check_num("1", "14102105", [2f64.ln() as f32, 5.0, 1.0]);
        check_num(" 3.0 ", "14102623", [4f64.ln() as f32, 23.0, 6.0]);
        check_num("-1", "14102700", [0.0, 0.0, 0.0]);
        check_num("1e9", "00010100", [2.0, 0.0, 5.0]);
        check_num("", "", [0.0, 0.0, 0.0]);
        check_num("  ", "", [0.0, 0.0, 0.0]);
    }

    #[test]
    fn derived_sources_hash_as_integers() {
        let spec = spec();
        let got = rows("1,a,1,14102107\n1,a,1,\n", Delimiter::Comma).unwrap();
        let f = &spec.cat[1];
        let hour = |vh| (f.offset + bucket(f.seed, vh, f.buckets)) as i64;
        assert_eq!(got[0].1[1], hour(value_hash(spec.hash_seed, b"7")));
        assert_eq!(got[1].1[1], hour(value_hash(spec.hash_seed, b"")));
        let x = &spec.cat[2];
        let cross = bucket_cross(x.seed, value_hash(5, b"a"), value_hash(5, b"7"), x.buckets);
        assert_eq!(got[0].1[2], (x.offset + cross) as i64);
    }

    #[test]
    fn tab_and_comma_files_give_the_same_rows() {
        let csv = rows("1,a,2,14102100\n0,,,\n\n1,b,-1,14102223\n", Delimiter::Comma).unwrap();
        let tsv = rows("1\ta\t2\t14102100\n0\t\t\t\n\n1\tb\t-1\t14102223\n", Delimiter::Tab).unwrap();
        let auto = rows("1\ta\t2\t14102100\n0\t\t\t\n\n1\tb\t-1\t14102223\n", Delimiter::Auto).unwrap();
        assert_eq!(csv.len(), 3);
        assert_eq!(csv, tsv);
        assert_eq!(csv, auto);
        assert_eq!(csv.iter().map(|r| r.0).collect::<Vec<_>>(), [1.0, 0.0, 1.0]);
    }

    fn check_err(text: &str, needle: &str) {
        let err = rows(text, Delimiter::Comma).unwrap_err();
        assert!(err.contains(needle), "{err:?} should contain {needle:?}");
    }

    #[test]
    fn bad_input_names_file_line_and_column() {
        check_err("1,a,1,14102100\n1,a,1\n", "t.csv: line 3: expected 4 columns, found 3");
        check_err("1,a,1,14102100,9\n", "line 2: expected 4 columns, found 5");
        check_err("1,a,x1,14102100\n", "t.csv: line 2, column 3 (\"n\"): expected a number, found \"x1\"");
        check_err("1,a,nan,14102100\n", "column 3 (\"n\"): expected a number");
        check_err("1,a,inf,14102100\n", "column 3 (\"n\"): expected a number");
        check_err("2,a,1,14102100\n", "line 2, column 1 (\"y\"): expected a label 0 or 1, found \"2\"");
        check_err(",a,1,14102100\n", "expected a label 0 or 1, found \"\"");
        check_err("1,a,1,141021\n", "column 4 (\"h\"): expected a YYMMDDHH time, found \"141021\"");
        check_err("1,a,1,14102124\n", "expected a YYMMDDHH time");
        check_err("1,a,1,14132100\n", "expected a YYMMDDHH time");
        check_err("1,\"a\"b,1,14102100\n", "line 2: cell 2: text after a closing quote");
        check_err("1,a,1,14102100\n0,\"open,1,1\n", "line 3: cell 2: the quote it opens is never closed");
    }

    fn check_header(input: &str, format: &Format, needle: &str) {
        let err = TableReader::new("t.csv".into(), input.as_bytes(), &spec(), format).err().unwrap().to_string();
        assert!(err.contains(needle), "{err:?} should contain {needle:?}");
    }

    #[test]
    fn headers_must_name_the_spec_columns_and_the_label_once() {
        let csv = Format::csv("y", Delimiter::Auto);
        check_header("", &csv, "t.csv is empty");
        check_header("y,c,n\n", &csv, "no column \"h\", which field \"hour\" of spec \"t\" reads");
        check_header("click,c,n,h\n", &csv, "no column \"y\", which the label (--label) reads");
        check_header("y,c,c,n,h\n", &csv, "names column \"c\" twice");
        check_header("c,n,h\n", &Format::csv("c", Delimiter::Auto), "reads the label column \"c\"");
    }

    #[test]
    fn criteo_layout_reads_with_or_without_a_header() {
        let spec = TableSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/specs/criteo.json")).unwrap();
        let row: Vec<String> = (0..40).map(|i| if i == 0 { "1".into() } else { format!("{i}") }).collect();
        let read = |text: String| {
            let format = Format::criteo(Delimiter::Auto);
            let mut r = TableReader::new("c".into(), text.as_bytes(), &spec, &format).unwrap();
            let (mut cat, mut num) = (vec![0; 26], vec![0.0; 13]);
            let label = r.next_row(&mut cat, &mut num).unwrap();
            assert_eq!(r.next_row(&mut cat, &mut num).unwrap(), None);
            (label, cat, num, r.had_header())
        };
        let (l1, c1, n1, h1) = read(row.join("\t"));
        let (l2, c2, n2, h2) = read(format!("{}\n{}\n", criteo_columns().join(","), row.join(",")));
        assert_eq!((l1, l2, h1, h2), (Some(1.0), Some(1.0), false, true));
        assert_eq!((&c1, &n1), (&c2, &n2));
    }

    #[test]
    fn shipped_table_specs_load_and_are_refused_for_serving() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (file, cat, num) in [("criteo.json", 26, 13), ("avazu.json", 23, 1)] {
            let path = dir.join("models/specs").join(file);
            let spec = TableSpec::load(&path).unwrap();
            assert_eq!((spec.cat.len(), spec.num.len()), (cat, num), "{file}");
            assert!(spec.cardinality < 1_500_000, "{file}: {}", spec.cardinality);
            let err = FeatureSpec::load(&path).unwrap_err().to_string();
            assert!(err.contains("is a table spec (column: sources) and cannot be served"), "{err}");
        }
        let err = TableSpec::load(&dir.join("models/feature_spec.json")).unwrap_err().to_string();
        assert!(err.contains("is an OpenRTB spec (no column: sources) and cannot read CSV input"), "{err}");
        let bad = format!(r#"{HEAD}"numeric":[],"categorical":[{{"name":"a","source":"col:x","buckets":64}}]}}"#);
        let err = TableSpec::from_bytes(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("field \"a\": unknown source \"col:x\""), "{err}");
    }
}
