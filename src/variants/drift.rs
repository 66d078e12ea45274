//! Drift: how far the traffic a model serves has moved from the rows it was trained on,
//! field by field and in its predictions, as a population stability index (PSI).
//!
//! **Reference.** The trainer writes `<model>.drift.json` next to the model
//! (`models/ctrbid_train/drift.py`): for each categorical field its most frequent bucket
//! values and their shares of the training rows, plus one share for all the others; for
//! each numeric field, and for the model's pCTR on those rows, the edges of quantile bins
//! and the share in each (value `v` falls in bin `#{edges <= v}`). A variant whose model
//! has no reference, or one for another model version or feature spec, is not measured
//! (the log says why).
//!
//! **Live.** One request in `every` ([`DriftConfig`]) is counted into the same bins: of
//! each of its imps, one row. The training rows are one per impression, the creative
//! shown drawn uniformly from the eligible ones (the simulator's logging policy); the
//! bidder scores every candidate of an imp. So the row counted is drawn uniformly from
//! the imp's candidates (by a hash of the request's sample number and the imp): the
//! live distribution is that of a uniformly drawn candidate, as the reference's is, and
//! candidate fields (campaign, creative) compare like with like. (Where
//! `bidding.max_candidates_per_imp` cuts the eligible set, they differ by that cut.) One
//! row per imp also keeps the cost down: with drift on, the bid path's instruction count
//! did not rise (benches/README.md).
//!
//! **Window.** Counts go into the current of two windows of `window_s` seconds of the
//! auction clock; the index covers the current and the previous one (between one and
//! two windows of traffic). A daily cycle shows as drift in the time fields unless the
//! window spans a day, hence the default of 86,400 s. Rolling zeroes the older window
//! while requests may still be counting into it: a few observations at the turn land in
//! the new window or are lost, never counted twice.
//!
//! **PSI** of a field: `sum over bins of (a - e) ln(a / e)`, `a` the live share and `e`
//! the reference share, each at least [`FLOOR`] so an empty bin stays finite. Read as
//! usual: under 0.1 stable, 0.1 to 0.25 moved, over 0.25 shifted. Reported from
//! [`MIN_IMPS`] observed imps on.

use crate::scoring::{ModelInfo, Rows};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// The reference file format this bidder reads.
pub const FORMAT: &str = "ctrbid.drift.v1";
/// Shares below this count as this in the index (an empty bin would be infinite).
pub const FLOOR: f64 = 1e-4;
/// Imps observed in the window before an index is reported.
pub const MIN_IMPS: u64 = 200;

/// How drift is measured (`[variants]` `drift_sample_every`, `drift_window_s`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftConfig {
    /// One request in this many is counted; 0 measures nothing.
    pub every: u64,
    /// Seconds of the auction clock per window.
    pub window_s: i64,
}

/// A model's training distribution (`<model>.drift.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    pub format: String,
    pub model_version: String,
    pub spec_sha256: String,
    pub rows: u64,
    pub cat: Vec<CatBins>,
    pub num: Vec<NumBins>,
    pub pctr: NumBins,
}

/// A categorical field's most frequent values; `shares` has one more entry, the rest's.
#[derive(Debug, Clone, Deserialize)]
pub struct CatBins {
    pub name: String,
    pub values: Vec<i64>,
    pub shares: Vec<f64>,
}

/// Quantile bins of a number; `shares` has one more entry than `edges`.
#[derive(Debug, Clone, Deserialize)]
pub struct NumBins {
    pub name: String,
    pub edges: Vec<f32>,
    pub shares: Vec<f64>,
}

impl CatBins {
    fn bin(&self, v: i64) -> usize {
        self.values.iter().position(|&x| x == v).unwrap_or(self.values.len())
    }
}

impl NumBins {
    fn bin(&self, v: f32) -> usize {
        // NaN is above no edge: bin 0, as the trainer puts it.
        self.edges.partition_point(|&e| e <= v)
    }
}

impl Reference {
    /// Where `model`'s reference is: `model.onnx` -> `model.drift.json`.
    pub fn path_for(model: &Path) -> PathBuf {
        let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        model.with_file_name(format!("{stem}.drift.json"))
    }

    /// The reference of `model`: `Ok(None)` when it has none, an error (to log) when the
    /// file is unreadable or is not `model`'s.
    pub fn for_model(model: &ModelInfo) -> Result<Option<Reference>, String> {
        let path = Reference::path_for(&model.path);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let r: Reference = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        r.check(model).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(r))
    }

    fn check(&self, model: &ModelInfo) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {:?}, this bidder reads {FORMAT:?}", self.format));
        }
        if self.spec_sha256 != model.spec_sha256 || self.model_version != model.version {
            return Err(format!(
                "for model version {} (spec {}), not {} (spec {})",
                self.model_version, self.spec_sha256, model.version, model.spec_sha256
            ));
        }
        if self.cat.len() != model.cat_width || self.num.len() != model.num_width {
            return Err(format!(
                "{} categorical and {} numeric fields, the model reads {} and {}",
                self.cat.len(),
                self.num.len(),
                model.cat_width,
                model.num_width
            ));
        }
        let cats = self.cat.iter().map(|c| (&c.name, c.values.len() + 1, c.shares.len()));
        let nums = self.num.iter().chain([&self.pctr]).map(|n| (&n.name, n.edges.len() + 1, n.shares.len()));
        for (name, bins, shares) in cats.chain(nums) {
            if bins != shares {
                return Err(format!("field {name}: {shares} shares for {bins} bins"));
            }
        }
        Ok(())
    }

    /// Bins of every field, categorical then numeric, then pCTR's.
    fn bins(&self) -> impl Iterator<Item = (&str, &[f64])> {
        let cats = self.cat.iter().map(|c| (c.name.as_str(), c.shares.as_slice()));
        let nums = self.num.iter().chain([&self.pctr]).map(|n| (n.name.as_str(), n.shares.as_slice()));
        cats.chain(nums)
    }
}

/// One window's counts: every field's bins end to end, in imps.
struct Window {
    counts: Box<[AtomicU64]>,
    imps: AtomicU64,
}

impl Window {
    fn new(bins: usize) -> Window {
        Window { counts: (0..bins).map(|_| AtomicU64::new(0)).collect(), imps: AtomicU64::new(0) }
    }

    fn clear(&self) {
        self.imps.store(0, Ordering::Relaxed);
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// The live measure of one variant's traffic against its model's reference.
pub struct Drift {
    reference: Reference,
    cfg: DriftConfig,
    /// Where each field's bins start in a window's counts (one more entry: the end).
    offsets: Vec<usize>,
    windows: [Window; 2],
    current: AtomicUsize,
    /// Auction-clock second the current window began; 0 before the first roll.
    started_unix: AtomicI64,
    requests: AtomicU64,
}

impl std::fmt::Debug for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drift").field("model_version", &self.reference.model_version).finish_non_exhaustive()
    }
}

/// A counted request: its sample number draws the row counted of each imp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample(u64);

impl Sample {
    /// The row counted of each imp (`imp_rows`: rows per imp, in order), uniform over
    /// the imp's rows.
    fn rows(self, imp_rows: impl Iterator<Item = usize>) -> impl Iterator<Item = usize> {
        let mut first = 0;
        imp_rows.enumerate().filter(|&(_, k)| k > 0).map(move |(i, k)| {
            let draw = xxhash_rust::xxh3::xxh3_64_with_seed(&(i as u64).to_le_bytes(), self.0);
            let row = first + (draw % k as u64) as usize;
            first += k;
            row
        })
    }
}

/// A field's index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldPsi {
    pub field: String,
    pub psi: f64,
}

/// What [`Drift::report`] says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    pub model_version: String,
    /// Imps counted in the window (current and previous).
    pub imps: u64,
    pub window_s: i64,
    pub sample_every: u64,
    /// Every feature field, the most moved first; empty below [`MIN_IMPS`].
    pub fields: Vec<FieldPsi>,
    /// The predictions' index; `None` below [`MIN_IMPS`].
    pub pctr: Option<f64>,
}

impl Drift {
    pub fn new(reference: Reference, cfg: DriftConfig) -> Drift {
        let mut offsets = vec![0];
        for (_, shares) in reference.bins() {
            offsets.push(offsets.last().unwrap() + shares.len());
        }
        let bins = *offsets.last().unwrap();
        Drift {
            reference,
            cfg,
            offsets,
            windows: [Window::new(bins), Window::new(bins)],
            current: AtomicUsize::new(0),
            started_unix: AtomicI64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Whether this request is one of those counted (one in `every`): its sample
    /// number, which draws the row counted of each imp, when it is.
    pub fn sampled(&self) -> Option<Sample> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        (self.cfg.every > 0 && n.is_multiple_of(self.cfg.every)).then_some(Sample(n))
    }

    fn window(&self) -> &Window {
        &self.windows[self.current.load(Ordering::Relaxed) & 1]
    }

    /// Counts a sampled request's rows: of each imp, the row `sample` draws;
    /// `imp_rows` gives how many rows each imp has, in order (they add up to `rows.n`).
    pub fn observe_rows(&self, sample: Sample, rows: &Rows, imp_rows: impl Iterator<Item = usize>) {
        let r = &self.reference;
        let (f, d) = (r.cat.len(), r.num.len());
        let w = self.window();
        for row in sample.rows(imp_rows) {
            let cat = &rows.cat[row * f..(row + 1) * f];
            for (j, (bins, &v)) in r.cat.iter().zip(cat).enumerate() {
                w.counts[self.offsets[j] + bins.bin(v)].fetch_add(1, Ordering::Relaxed);
            }
            let num = &rows.num[row * d..(row + 1) * d];
            for (j, (bins, &v)) in r.num.iter().zip(num).enumerate() {
                w.counts[self.offsets[f + j] + bins.bin(v)].fetch_add(1, Ordering::Relaxed);
            }
            w.imps.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the pCTR of the rows [`Drift::observe_rows`] counted (`pctr` of row `r`).
    pub fn observe_pctr(&self, sample: Sample, pctr: impl Fn(usize) -> f32, imp_rows: impl Iterator<Item = usize>) {
        let r = &self.reference;
        let at = self.offsets[r.cat.len() + r.num.len()];
        let w = self.window();
        for row in sample.rows(imp_rows) {
            w.counts[at + r.pctr.bin(pctr(row))].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts a new window when the current one is `window_s` old at `now_unix`.
    pub fn roll(&self, now_unix: i64) {
        let started = self.started_unix.load(Ordering::Relaxed);
        if started == 0 {
            self.started_unix.store(now_unix, Ordering::Relaxed);
        } else if now_unix - started >= self.cfg.window_s {
            let next = (self.current.load(Ordering::Relaxed) + 1) & 1;
            self.windows[next].clear();
            self.current.store(next, Ordering::Relaxed);
            self.started_unix.store(now_unix, Ordering::Relaxed);
        }
    }

    /// The index of every field and of the predictions over the window.
    pub fn report(&self) -> DriftReport {
        let imps = self.windows.iter().map(|w| w.imps.load(Ordering::Relaxed)).sum();
        let mut report = DriftReport {
            model_version: self.reference.model_version.clone(),
            imps,
            window_s: self.cfg.window_s,
            sample_every: self.cfg.every,
            fields: Vec::new(),
            pctr: None,
        };
        if imps < MIN_IMPS {
            return report;
        }
        let count = |i: usize| self.windows.iter().map(|w| w.counts[i].load(Ordering::Relaxed) as f64).sum::<f64>();
        let mut fields: Vec<FieldPsi> = self
            .reference
            .bins()
            .enumerate()
            .map(|(j, (name, expected))| {
                let live: Vec<f64> = (self.offsets[j]..self.offsets[j + 1]).map(count).collect();
                FieldPsi { field: name.to_string(), psi: psi(&live, expected) }
            })
            .collect();
        report.pctr = fields.pop().map(|p| p.psi);
        fields.sort_by(|a, b| b.psi.total_cmp(&a.psi).then_with(|| a.field.cmp(&b.field)));
        report.fields = fields;
        report
    }
}

/// Prometheus text: each measured variant's imps in the window, and the index of every
/// field and of its predictions once there are [`MIN_IMPS`].
pub fn render(set: &super::VariantSet, out: &mut String) {
    use std::fmt::Write as _;
    let reports: Vec<(&str, DriftReport)> =
        set.all().iter().filter_map(|v| Some((v.name.as_str(), v.drift.as_deref()?.report()))).collect();
    let _ = writeln!(
        out,
        "# HELP ctrbid_drift_window_imps Imps whose rows the drift measure counted in its window (sampled).\n\
         # TYPE ctrbid_drift_window_imps gauge"
    );
    for (variant, r) in &reports {
        let _ = writeln!(out, "ctrbid_drift_window_imps{{variant=\"{variant}\"}} {}", r.imps);
    }
    let _ = writeln!(
        out,
        "# HELP ctrbid_drift_feature_psi Population stability index of a feature field, live traffic against the model's training rows (over 0.25: shifted).\n\
         # TYPE ctrbid_drift_feature_psi gauge"
    );
    for (variant, r) in &reports {
        for f in &r.fields {
            let field = super::label_value(&f.field);
            let _ = writeln!(out, "ctrbid_drift_feature_psi{{variant=\"{variant}\",field=\"{field}\"}} {:.6}", f.psi);
        }
    }
    let _ = writeln!(
        out,
        "# HELP ctrbid_drift_prediction_psi Population stability index of the model's pCTR on live traffic against its training rows.\n\
         # TYPE ctrbid_drift_prediction_psi gauge"
    );
    for (variant, r) in &reports {
        if let Some(psi) = r.pctr {
            let _ = writeln!(out, "ctrbid_drift_prediction_psi{{variant=\"{variant}\"}} {psi:.6}");
        }
    }
}

/// The population stability index of `live` counts against `expected` shares (same bins).
pub fn psi(live: &[f64], expected: &[f64]) -> f64 {
    let total: f64 = live.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    live.iter()
        .zip(expected)
        .map(|(&n, &e)| {
            let (a, e) = ((n / total).max(FLOOR), e.max(FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        Reference {
            format: FORMAT.into(),
            model_version: "7".into(),
            spec_sha256: "ab".into(),
            rows: 1000,
            cat: vec![CatBins { name: "site".into(), values: vec![10, 20], shares: vec![0.5, 0.3, 0.2] }],
            num: vec![NumBins { name: "floor".into(), edges: vec![1.0, 2.0], shares: vec![0.25, 0.5, 0.25] }],
            pctr: NumBins { name: "pctr".into(), edges: vec![0.01], shares: vec![0.5, 0.5] },
        }
    }

    fn rows(cat: &[i64], num: &[f32]) -> Rows {
        Rows { cat: cat.to_vec(), num: num.to_vec(), n: cat.len() }
    }

    const CFG: DriftConfig = DriftConfig { every: 1, window_s: 100 };

    /// Sends `n` imps of one row each, drawn to the given shares (exactly, in turn).
    fn feed(d: &Drift, site: [usize; 3], floor: [usize; 3], n: usize) {
        let sites = [10, 20, 99];
        let floors = [0.5, 1.5, 2.5];
        let pick = |shares: [usize; 3], i: usize| {
            let i = i % shares.iter().sum::<usize>();
            if i < shares[0] {
                0
            } else if i < shares[0] + shares[1] {
                1
            } else {
                2
            }
        };
        for i in 0..n {
            let r = rows(&[sites[pick(site, i)]], &[floors[pick(floor, i)]]);
            let sample = d.sampled().expect("every request");
            d.observe_rows(sample, &r, [1].into_iter());
            d.observe_pctr(sample, |_| if i % 2 == 0 { 0.005 } else { 0.02 }, [1].into_iter());
        }
    }

    #[test]
    fn traffic_like_the_reference_has_no_drift_and_moved_traffic_has_the_textbook_index() {
        let d = Drift::new(reference(), CFG);
        feed(&d, [5, 3, 2], [1, 2, 1], 1000);
        let r = d.report();
        assert_eq!(r.imps, 1000);
        assert!(r.fields.iter().all(|f| f.psi < 1e-9), "{r:?}");
        assert!(r.pctr.unwrap() < 1e-9);
        // Sites 20 % / 30 % / 50 %: (0.2-0.5) ln(0.2/0.5) + 0 + (0.5-0.2) ln(0.5/0.2).
        let moved = Drift::new(reference(), CFG);
        feed(&moved, [2, 3, 5], [1, 2, 1], 1000);
        let r = moved.report();
        let want = -0.3 * (0.4f64).ln() + 0.3 * (2.5f64).ln();
        assert_eq!(r.fields[0].field, "site");
        assert!((r.fields[0].psi - want).abs() < 1e-9, "{r:?} want {want}");
        assert!(r.fields[1].psi < 1e-9, "{r:?}");
    }

    #[test]
    fn of_each_imp_one_row_is_counted_drawn_uniformly() {
        // An imp with two candidates (site 10 and 99) and one with site 20: the first
        // imp counts 10 half the time, so the sites come 25 % / 50 % / 25 %.
        let d = Drift::new(reference(), CFG);
        for _ in 0..4_000 {
            let sample = d.sampled().unwrap();
            d.observe_rows(sample, &rows(&[10, 99, 20], &[0.5, 1.5, 2.5]), [2, 1].into_iter());
        }
        let r = d.report();
        assert_eq!(r.imps, 8_000);
        let site = r.fields.iter().find(|f| f.field == "site").unwrap().psi;
        // 4,000 draws: the share of 10 is 0.25 +- 0.007 (sd), the index +- 0.01.
        let want = psi(&[0.25, 0.5, 0.25], &[0.5, 0.3, 0.2]);
        assert!((site - want).abs() < 0.03, "{site} against {want}");
        // The pCTR counted is that of the row counted: a row of its own per imp here.
        let d = Drift::new(reference(), CFG);
        for _ in 0..MIN_IMPS {
            let sample = d.sampled().unwrap();
            let imps = || [1, 1].into_iter();
            d.observe_rows(sample, &rows(&[10, 20], &[0.5, 1.5]), imps());
            d.observe_pctr(sample, |row| [0.005, 0.02][row], imps());
        }
        assert!(d.report().pctr.unwrap() < 1e-9);
    }

    #[test]
    fn nothing_is_said_before_enough_imps_and_windows_roll() {
        let d = Drift::new(reference(), CFG);
        feed(&d, [2, 3, 5], [1, 2, 1], (MIN_IMPS - 1) as usize);
        assert_eq!((d.report().fields.len(), d.report().pctr), (0, None));
        d.roll(1_000);
        feed(&d, [2, 3, 5], [1, 2, 1], 1);
        assert!(d.report().fields[0].psi > 0.5);
        // One window on, both still count; two on, the old traffic is gone.
        d.roll(1_100);
        assert_eq!(d.report().imps, MIN_IMPS);
        d.roll(1_150);
        assert_eq!(d.report().imps, MIN_IMPS, "not yet a window old");
        d.roll(1_200);
        assert_eq!(d.report().imps, 0);
    }

    #[test]
    fn one_request_in_every_is_sampled() {
        let d = Drift::new(reference(), DriftConfig { every: 4, window_s: 100 });
        assert_eq!((0..100).filter(|_| d.sampled().is_some()).count(), 25);
        let off = Drift::new(reference(), DriftConfig { every: 0, window_s: 100 });
        assert!(!(0..100).any(|_| off.sampled().is_some()));
    }

    #[test]
    fn a_reference_for_another_model_is_refused() {
        let info = |version: &str, cat, num| ModelInfo {
            path: "/m/model.onnx".into(),
            spec_sha256: "ab".into(),
            kind: "fm".into(),
            version: version.into(),
            trained_at: String::new(),
            metrics: "{}".into(),
            cat_width: cat,
            num_width: num,
            heads: crate::scoring::Heads::Pctr,
        };
        assert!(reference().check(&info("7", 1, 1)).is_ok());
        assert!(reference().check(&info("8", 1, 1)).unwrap_err().contains("model version 7"));
        assert!(reference().check(&info("7", 2, 1)).unwrap_err().contains("fields"));
        let mut bad = reference();
        bad.cat[0].shares.pop();
        assert!(bad.check(&info("7", 1, 1)).unwrap_err().contains("site"));
        assert_eq!(Reference::path_for(Path::new("/m/model.onnx")), Path::new("/m/model.drift.json"));
    }
}
