//! `ctrbid features`: simulator logs or public CTR datasets to training arrays.
//!
//! `--sim DIR` reads `requests.jsonl`, `impressions.jsonl` (or their `.gz` forms) and
//! `catalog.json` from the simulator's output, and for every impression parses its
//! request with the server's parser, validates it, and writes the feature row of
//! (request, imp, creative) at the impression's time: exactly the row the server would
//! build for that candidate. A spec that reads the aggregates (`agg.*`) gets them by
//! replaying the log in time order through the bidder's aggregate code
//! ([`crate::aggregates::replay`]): a row sees the impressions of earlier auctions and
//! the clicks and conversions due by its own (`--click-delay-s`, `--conv-delay-s`).
//! Output (`.npy`, row-aligned, in log order): `cat` i64 [N,F], `num` f32 [N,D],
//! `click`, `conv`, `pctr_true`, `pcvr_true` f32 [N], `ts` i64 [N], and `meta.json`.
//!
//! `--events DIR` reads the bidder's own event log ([`crate::events::join`]): one row
//! per impression it bought, the features exactly as it scored them, labelled with the
//! clicks and conversions that came back; the same arrays but `pctr_true` and
//! `pcvr_true` (the bidder never knows the truth: `--truth LEDGER` takes them from the
//! ledger `ctrbid exchange` wrote), plus `pctr_served`, `pcvr_served` (what the model
//! predicted when it bid) and `propensity` f32 [N], `bid` i64 [N] (the bid ids' bits),
//! and `meta.json` with `"format": "events"` and the join's counts.
//!
//! `--csv FILE` (a delimited file with a header line) and `--criteo FILE` (the Criteo
//! layout, with or without a header) read a table spec (`features::table`) instead, one
//! row per record, streamed: the same arrays but `conv`, `pctr_true` and `pcvr_true`,
//! with `ts` the record's row number (the files are in time order) and `meta.json`
//! saying `"format": "csv"` or `"criteo"`.
//!
//! `--shard i/n` (with `--sim`, `--csv` or `--criteo`) writes the `i`-th of `n`
//! contiguous row ranges only, so `n` processes or machines build one input's arrays in
//! parallel: the shards' arrays, concatenated in order, are the whole run's byte for
//! byte (the hashing is the same code with the same seeds; `ts` of a table row stays its
//! row number in the whole file). Each shard counts the input's rows first, then reads up
//! to its range's end: the rows before it are parsed and not written (the aggregates'
//! replay needs every earlier event).

use crate::aggregates::replay::{Replay, Visibility};
use crate::aggregates::{id_hash, Audience, EntityKeys};
use crate::catalog::{Catalog, Selector};
use crate::features::{CatField, CatKind, Delimiter, Extractor, FeatureSpec, Format, NumField, TableReader, TableSpec};
use crate::npy::NpyWriter;
use crate::simulate::ImpressionRecord;
use anyhow::{bail, Context as _};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Table spec `--criteo` uses unless `--spec` names another.
pub const CRITEO_SPEC: &str = "models/specs/criteo.json";

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["sim", "events", "csv", "criteo"])))]
pub struct Opts {
    /// Directory written by `ctrbid simulate`.
    #[arg(long)]
    sim: Option<PathBuf>,
    /// The bidder's event log directory (`events.dir`): its bids joined with their
    /// notices. A fleet's instances each wrote one: give them all (`--events a --events
    /// b`, or `a,b`), a bid's notices may be in another instance's log than the bid.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    events: Vec<PathBuf>,
    /// With --events: leave out bids this many seconds before the log's last event (their
    /// clicks may still come).
    #[arg(long, default_value_t = 3600, requires = "events")]
    label_wait_s: i64,
    /// With --events: `ctrbid exchange`'s ledger.jsonl, whose impressions carry the true
    /// click and conversion probabilities (written as pctr_true, pcvr_true).
    #[arg(long, requires = "events")]
    truth: Option<PathBuf>,
    /// A delimited file with a header line, read with a table spec (`column:` sources).
    #[arg(long, requires = "spec")]
    csv: Option<PathBuf>,
    /// A Criteo file: the Kaggle/1TB TSV (label, I1..I13, C1..C26, no header) or a CSV with that header.
    #[arg(long)]
    criteo: Option<PathBuf>,
    /// Feature spec [default: models/feature_spec.json for --sim, models/specs/criteo.json for --criteo].
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Label column of --csv or --criteo input.
    #[arg(long, default_value = "label", conflicts_with = "sim")]
    label: String,
    /// Field separator of --csv or --criteo input: auto (tab if the first line has one), "," or tab.
    #[arg(long, default_value = "auto", conflicts_with = "sim")]
    delimiter: Delimiter,
    /// With --sim and a spec that reads the aggregates: the mean delay of a click after
    /// its impression, seconds (the exchange's `--click-delay-s`), before which the
    /// replay does not let later rows see it.
    #[arg(long, default_value_t = 30.0, requires = "sim")]
    click_delay_s: f64,
    /// ... and of a conversion after its click (the exchange's `--conv-delay-s`).
    #[arg(long, default_value_t = 7200.0, requires = "sim")]
    conv_delay_s: f64,
    /// With --sim: entities the replay's aggregates hold, as the bidder's
    /// `aggregates.max_entries` (which must be the same for its rows to be the same).
    #[arg(long, default_value_t = crate::config::AggregatesConfig::default().max_entries, requires = "sim")]
    aggregate_entries: usize,
    /// Only the `i`-th of `n` contiguous row ranges (0-based, `0/4` to `3/4`): the
    /// shards concatenated in order are the whole run. Not with --events.
    #[arg(long, conflicts_with = "events")]
    shard: Option<Shard>,
    /// Output directory for the arrays.
    #[arg(long)]
    out: PathBuf,
}

/// One of `count` contiguous row ranges of an input, `index` from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// All of it.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// The rows `[start, end)` of `total` this shard writes: sizes differ by at most one.
    pub fn range(self, total: usize) -> std::ops::Range<usize> {
        let at = |i: usize| (total as u128 * i as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let why = || format!("{s:?}: give the shard as i/n, 0 <= i < n (e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(why)?;
        let (index, count) = (i.trim().parse().map_err(|_| why())?, n.trim().parse().map_err(|_| why())?);
        if count == 0 || index >= count {
            return Err(why());
        }
        Ok(Shard { index, count })
    }
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    let started = Instant::now();
    let spec = |default: &str| opts.spec.clone().unwrap_or_else(|| default.into());
    if !opts.events.is_empty() {
        let events = &opts.events;
        let spec = spec(crate::config::DEFAULT_SPEC);
        let rows = extract_events(events, &spec, opts.label_wait_s, opts.truth.as_deref(), &opts.out)?;
        eprintln!("features: {rows} rows to {} in {:.1}s", opts.out.display(), started.elapsed().as_secs_f64());
        return Ok(());
    }
    let rows = match (&opts.sim, &opts.csv, &opts.criteo) {
        (Some(sim), _, _) => {
            let replay = SimReplay {
                visibility: Visibility { click_delay_s: opts.click_delay_s, conv_delay_s: opts.conv_delay_s },
                max_entries: opts.aggregate_entries,
                shard: opts.shard.unwrap_or(Shard::WHOLE),
            };
            extract_with(sim, &spec(crate::config::DEFAULT_SPEC), &opts.out, &replay)?
        }
        (_, Some(csv), _) => {
            let format = Format::csv(&opts.label, opts.delimiter);
            let spec = opts.spec.as_deref().context("--csv needs --spec (a table spec)")?;
            extract_table_shard(csv, &format, spec, &opts.out, opts.shard.unwrap_or(Shard::WHOLE))?
        }
        (_, _, Some(criteo)) => {
            let format = Format { label: opts.label.clone(), ..Format::criteo(opts.delimiter) };
            extract_table_shard(criteo, &format, &spec(CRITEO_SPEC), &opts.out, opts.shard.unwrap_or(Shard::WHOLE))?
        }
        (None, None, None) => bail!("give one of --sim, --events, --csv and --criteo"),
    };
    eprintln!("features: {rows} rows to {} in {:.1}s", opts.out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

struct Writers {
    cat: NpyWriter<i64>,
    num: NpyWriter<f32>,
    click: NpyWriter<f32>,
    conv: NpyWriter<f32>,
    pctr: NpyWriter<f32>,
    pcvr: NpyWriter<f32>,
    ts: NpyWriter<i64>,
}

/// How `--sim` replays the log through the aggregates, for a spec that reads them.
#[derive(Debug, Clone)]
pub struct SimReplay {
    pub visibility: Visibility,
    pub max_entries: usize,
    /// Which rows are written ([`Shard::WHOLE`]: all).
    pub shard: Shard,
}

impl Default for SimReplay {
    fn default() -> Self {
        SimReplay {
            visibility: Visibility::default(),
            max_entries: crate::config::AggregatesConfig::default().max_entries,
            shard: Shard::WHOLE,
        }
    }
}

/// Writes the arrays; returns the number of rows. The default replay.
pub fn extract(sim: &Path, spec_path: &Path, out: &Path) -> anyhow::Result<usize> {
    extract_with(sim, spec_path, out, &SimReplay::default())
}

/// Writes the arrays; returns the number of rows. A spec that reads the aggregates gets
/// them from the log replayed in time order ([`crate::aggregates::replay`]): each row
/// sees the impressions of earlier auctions and the clicks and conversions due by its
/// own.
pub fn extract_with(sim: &Path, spec_path: &Path, out: &Path, how: &SimReplay) -> anyhow::Result<usize> {
    let spec = FeatureSpec::load(spec_path)?;
    let extractor = Extractor::new(spec);
    let mut replay = extractor.reads_aggregates().then(|| Replay::new(how.max_entries, how.visibility));
    let selector = Selector::new(Catalog::load(&sim.join("catalog.json"))?, &extractor);
    let creative_index: HashMap<&str, u32> =
        selector.catalog().creatives.iter().enumerate().map(|(i, c)| (c.id.as_str(), i as u32)).collect();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (f, d) = (extractor.cat_width(), extractor.num_width());
    let mut w = Writers {
        cat: NpyWriter::create(&out.join("cat.npy"), Some(f))?,
        num: NpyWriter::create(&out.join("num.npy"), Some(d))?,
        click: NpyWriter::create(&out.join("click.npy"), None)?,
        conv: NpyWriter::create(&out.join("conv.npy"), None)?,
        pctr: NpyWriter::create(&out.join("pctr_true.npy"), None)?,
        pcvr: NpyWriter::create(&out.join("pcvr_true.npy"), None)?,
        ts: NpyWriter::create(&out.join("ts.npy"), None)?,
    };
    let open = |name: &str| crate::jsonl::open(&sim.join(name)).context("opening the simulator's logs");
    // Every impression is a row: the shard's rows are a range of impressions.jsonl's lines.
    let keep = match how.shard {
        Shard::WHOLE => 0..usize::MAX,
        shard => shard.range(open("impressions.jsonl")?.lines().count()),
    };
    let mut seen = 0usize;
    let mut requests = open("requests.jsonl")?.lines();
    let mut request_line: Vec<u8> = Vec::new();
    let mut next_line = 0u64;
    let mut impressions = open("impressions.jsonl")?.lines().enumerate().peekable();
    let (mut cat, mut num) = (vec![0i64; f], vec![0f32; d]);
    let mut rows = 0usize;
    while let Some((n, line)) = impressions.next() {
        if seen >= keep.end {
            break;
        }
        let first: ImpressionRecord =
            serde_json::from_str(&line?).with_context(|| format!("impressions.jsonl line {}", n + 1))?;
        // Gather every impression of the same request (they are consecutive).
        let mut group = vec![first];
        while let Some((_, Ok(next))) = impressions.peek() {
            let imp: ImpressionRecord = serde_json::from_str(next).with_context(|| "impressions.jsonl")?;
            if imp.line != group[0].line {
                break;
            }
            group.push(imp);
            impressions.next();
        }
        let target = group[0].line;
        if target < next_line {
            bail!("impressions.jsonl is not in request order at line {}", n + 1);
        }
        while next_line <= target {
            let text = requests.next().with_context(|| format!("requests.jsonl has no line {}", target + 1))??;
            if next_line == target {
                request_line = text.into_bytes();
            }
            next_line += 1;
        }
        let req =
            crate::openrtb::parse(&mut request_line).with_context(|| format!("requests.jsonl line {}", target + 1))?;
        let req = crate::openrtb::validate(req).with_context(|| format!("requests.jsonl line {}", target + 1))?;
        let rc = extractor.request(&req, group[0].ts);
        if let Some(r) = replay.as_mut() {
            r.advance_to(group[0].ts);
        }
        for imp in &group {
            let Some(spot) = req.imp.iter().find(|i| i.id.as_deref() == Some(imp.imp_id.as_str())) else {
                bail!("request on line {} has no imp {:?}", target + 1, imp.imp_id);
            };
            let Some(&creative) = creative_index.get(imp.crid.as_str()) else {
                bail!("impression names unknown creative {:?}", imp.crid);
            };
            seen += 1;
            if !keep.contains(&(seen - 1)) {
                continue;
            }
            let ic = extractor.imp(&rc, spot);
            match &replay {
                Some(r) => r
                    .store()
                    .read(|snap| extractor.write_row(&ic, selector.keys(creative), Some(snap), &mut cat, &mut num)),
                None => extractor.write_row(&ic, selector.keys(creative), None, &mut cat, &mut num),
            }
            w.cat.push(&cat)?;
            w.num.push(&num)?;
            w.click.push(&[f32::from(imp.click)])?;
            w.conv.push(&[f32::from(imp.conv)])?;
            w.pctr.push(&[imp.pctr as f32])?;
            w.pcvr.push(&[imp.pcvr as f32])?;
            w.ts.push(&[imp.ts])?;
            rows += 1;
        }
        // The auction's impressions count only for later auctions.
        if let Some(r) = replay.as_mut() {
            let audience = Audience::of(&req);
            for imp in &group {
                let campaign = selector.campaign_of(creative_index[imp.crid.as_str()]);
                let keys = EntityKeys::of(audience, &campaign.id, &imp.crid, id_hash(&campaign.category));
                let clicked = imp.click != 0;
                r.impression(imp.ts, keys, (&imp.request_id, &imp.imp_id), clicked, clicked && imp.conv != 0);
            }
        }
    }
    for n in [
        w.cat.finish()?,
        w.num.finish()?,
        w.click.finish()?,
        w.conv.finish()?,
        w.pctr.finish()?,
        w.pcvr.finish()?,
        w.ts.finish()?,
    ] {
        debug_assert_eq!(n, rows);
    }
    let spec = extractor.spec();
    let layout =
        Layout { sha256: &spec.sha256, name: &spec.name, version: spec.version, cardinality: spec.cardinality };
    write_meta(out, &layout, &spec.cat, &spec.num, rows, sim, None)?;
    note_shard(out, how.shard, keep.start)?;
    if replay.is_some() {
        // What the rows' aggregates depend on besides the log: a bidder serving them
        // must run with the same `aggregates.max_entries`, an exchange with these delays.
        let path = out.join("meta.json");
        let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        meta["aggregates"] = serde_json::json!({
            "max_entries": how.max_entries,
            "click_delay_s": how.visibility.click_delay_s,
            "conv_delay_s": how.visibility.conv_delay_s,
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&meta)?)?;
    }
    Ok(rows)
}

/// Writes the arrays of the bidder's event logs in `dirs` (one per instance of a
/// fleet), rows of the spec at `spec_path` only; returns the number of rows.
pub fn extract_events(
    dirs: &[PathBuf],
    spec_path: &Path,
    label_wait_s: i64,
    truth: Option<&Path>,
    out: &Path,
) -> anyhow::Result<usize> {
    let spec = FeatureSpec::load(spec_path)?;
    let tag = crate::events::record::spec_tag(&spec.sha256);
    let (rows, stats) = crate::events::join::join(dirs, tag, label_wait_s.saturating_mul(1000))?;
    let dir = PathBuf::from(dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(","));
    if stats.other_spec > 0 && stats.bids == 0 {
        bail!(
            "{}: none of its {} bid records was built with the feature spec {} (sha256 {}): give the spec the bidder served with (--spec)",
            dir.display(),
            stats.other_spec,
            spec_path.display(),
            spec.sha256
        );
    }
    let truth = match truth {
        Some(ledger) => Some(truth_by_bid(ledger)?),
        None => None,
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (f, d) = (spec.cat.len(), spec.num.len());
    let f32s = |name: &str| NpyWriter::<f32>::create(&out.join(name), None);
    let mut cat = NpyWriter::<i64>::create(&out.join("cat.npy"), Some(f))?;
    let mut num = NpyWriter::<f32>::create(&out.join("num.npy"), Some(d))?;
    let (mut click, mut conv, mut served_ctr, mut served_cvr, mut propensity) = (
        f32s("click.npy")?,
        f32s("conv.npy")?,
        f32s("pctr_served.npy")?,
        f32s("pcvr_served.npy")?,
        f32s("propensity.npy")?,
    );
    let (mut ts, mut bid) =
        (NpyWriter::<i64>::create(&out.join("ts.npy"), None)?, NpyWriter::<i64>::create(&out.join("bid.npy"), None)?);
    let mut true_ctr = match truth {
        Some(_) => Some((f32s("pctr_true.npy")?, f32s("pcvr_true.npy")?)),
        None => None,
    };
    let mut without_truth = 0usize;
    for r in &rows {
        anyhow::ensure!(
            r.cat.len() == f && r.num.len() == d,
            "bid {:x} has a row of {} + {} fields, the spec {} + {}",
            r.bid,
            r.cat.len(),
            r.num.len(),
            f,
            d
        );
        cat.push(&r.cat)?;
        num.push(&r.num)?;
        click.push(&[f32::from(u8::from(r.click))])?;
        conv.push(&[f32::from(u8::from(r.conv))])?;
        served_ctr.push(&[r.pctr])?;
        served_cvr.push(&[r.pcvr])?;
        propensity.push(&[r.propensity])?;
        ts.push(&[r.ts_ms.div_euclid(1000)])?;
        bid.push(&[r.bid as i64])?;
        if let (Some((pctr_w, pcvr_w)), Some(truth)) = (true_ctr.as_mut(), truth.as_ref()) {
            let (p, c) = truth.get(&r.bid).copied().unwrap_or_else(|| {
                without_truth += 1;
                (f32::NAN, f32::NAN)
            });
            pctr_w.push(&[p])?;
            pcvr_w.push(&[c])?;
        }
    }
    for n in [cat.finish()?, num.finish()?, click.finish()?, conv.finish()?, served_ctr.finish()?, served_cvr.finish()?]
    {
        debug_assert_eq!(n, rows.len());
    }
    propensity.finish()?;
    ts.finish()?;
    bid.finish()?;
    if let Some((p, c)) = true_ctr {
        p.finish()?;
        c.finish()?;
        anyhow::ensure!(without_truth == 0, "{without_truth} rows have no impression in the truth ledger");
    }
    let layout =
        Layout { sha256: &spec.sha256, name: &spec.name, version: spec.version, cardinality: spec.cardinality };
    write_meta(out, &layout, &spec.cat, &spec.num, rows.len(), &dir, Some("events"))?;
    let meta_path = out.join("meta.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path)?)?;
    meta["join"] = serde_json::to_value(&stats)?;
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta)?)?;
    eprintln!("features: {} events joined: {}", dir.display(), serde_json::to_string(&stats)?);
    Ok(rows.len())
}

/// The true click and conversion probabilities of every impression in a ledger of
/// `ctrbid exchange` (its `"type": "impression"` lines), by bid id.
fn truth_by_bid(ledger: &Path) -> anyhow::Result<HashMap<u64, (f32, f32)>> {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        bid_id: String,
        #[serde(default)]
        pctr: f64,
        #[serde(default)]
        pcvr: f64,
    }
    let mut out = HashMap::new();
    for (n, line) in crate::jsonl::open(ledger)?.lines().enumerate() {
        let line: Line =
            serde_json::from_str(&line?).with_context(|| format!("{} line {}", ledger.display(), n + 1))?;
        if line.kind == "impression" {
            let bid = u64::from_str_radix(&line.bid_id, 16)
                .with_context(|| format!("{} line {}: bid_id {:?} is not hex", ledger.display(), n + 1, line.bid_id))?;
            out.insert(bid, (line.pctr as f32, line.pcvr as f32));
        }
    }
    Ok(out)
}

/// Writes the arrays of a delimited file read with a table spec; returns the number of
/// rows. `format.names` set means the Criteo layout (`meta.json` `"format": "criteo"`).
pub fn extract_table(input: &Path, format: &Format, spec_path: &Path, out: &Path) -> anyhow::Result<usize> {
    extract_table_shard(input, format, spec_path, out, Shard::WHOLE)
}

/// As [`extract_table`], the rows of `shard` only (`ts` stays the row's number in the
/// whole input).
pub fn extract_table_shard(
    input: &Path,
    format: &Format,
    spec_path: &Path,
    out: &Path,
    shard: Shard,
) -> anyhow::Result<usize> {
    let spec = TableSpec::load(spec_path)?;
    let keep = match shard {
        Shard::WHOLE => 0..usize::MAX,
        shard => {
            let mut reader = TableReader::open(input, &spec, format)?;
            let (mut cat, mut num) = (vec![0i64; reader.cat_width()], vec![0f32; reader.num_width()]);
            let mut total = 0usize;
            while reader.next_row(&mut cat, &mut num)?.is_some() {
                total += 1;
            }
            shard.range(total)
        }
    };
    let mut reader = TableReader::open(input, &spec, format)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (f, d) = (reader.cat_width(), reader.num_width());
    let mut cat_w = NpyWriter::<i64>::create(&out.join("cat.npy"), Some(f))?;
    let mut num_w = NpyWriter::<f32>::create(&out.join("num.npy"), Some(d))?;
    let mut click_w = NpyWriter::<f32>::create(&out.join("click.npy"), None)?;
    let mut ts_w = NpyWriter::<i64>::create(&out.join("ts.npy"), None)?;
    let (mut cat, mut num) = (vec![0i64; f], vec![0f32; d]);
    let (mut rows, mut seen) = (0usize, 0usize);
    while seen < keep.end {
        let Some(label) = reader.next_row(&mut cat, &mut num)? else { break };
        seen += 1;
        if seen <= keep.start {
            continue;
        }
        cat_w.push(&cat)?;
        num_w.push(&num)?;
        click_w.push(&[label])?;
        ts_w.push(&[(seen - 1) as i64])?;
        rows += 1;
    }
    for n in [cat_w.finish()?, num_w.finish()?, click_w.finish()?, ts_w.finish()?] {
        debug_assert_eq!(n, rows);
    }
    let layout =
        Layout { sha256: &spec.sha256, name: &spec.name, version: spec.version, cardinality: spec.cardinality };
    let kind = if format.names.is_some() { "criteo" } else { "csv" };
    write_meta(out, &layout, &spec.cat, &spec.num, rows, input, Some(kind))?;
    note_shard(out, shard, keep.start)?;
    Ok(rows)
}

/// Adds to `meta.json` which shard of the input its rows are, and the first row's
/// number in the whole input; nothing for the whole.
fn note_shard(out: &Path, shard: Shard, first_row: usize) -> anyhow::Result<()> {
    if shard == Shard::WHOLE {
        return Ok(());
    }
    let path = out.join("meta.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    meta["shard"] = serde_json::json!({ "index": shard.index, "count": shard.count, "first_row": first_row });
    std::fs::write(&path, serde_json::to_vec_pretty(&meta)?)?;
    Ok(())
}

/// What `meta.json` says about the spec, for either kind of spec.
struct Layout<'a> {
    sha256: &'a str,
    name: &'a str,
    version: u32,
    cardinality: u64,
}

/// Writes `meta.json` (the Python loader's contract, `ctrbid_train/data.py`): the spec's
/// identity and field layout, which fields cross which (`crosses`: name -> the two
/// fields' names; the report reads it), the row count, the input, and for tabular
/// input its `format`.
fn write_meta<C: PartialEq, N>(
    out: &Path,
    spec: &Layout<'_>,
    cat: &[CatField<C>],
    num: &[NumField<N>],
    rows: usize,
    source: &Path,
    format: Option<&str>,
) -> anyhow::Result<()> {
    let mut meta = serde_json::json!({
        "spec_sha256": spec.sha256,
        "spec_name": spec.name,
        "spec_version": spec.version,
        "cat_fields": cat.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "num_fields": num.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "field_offsets": cat.iter().map(|c| c.offset).collect::<Vec<_>>(),
        "field_buckets": cat.iter().map(|c| c.buckets).collect::<Vec<_>>(),
        "crosses": crosses(cat),
        "cardinality": spec.cardinality,
        "rows": rows,
        "source": source.display().to_string(),
    });
    if let Some(format) = format {
        meta["format"] = format.into();
    }
    std::fs::write(out.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    Ok(())
}

/// Each crossed field's name -> the names of the single fields it crosses (a spec's
/// crosses name earlier single fields, so each source has a name).
fn crosses<C: PartialEq>(cat: &[CatField<C>]) -> serde_json::Map<String, serde_json::Value> {
    let name_of = |src: &C| {
        cat.iter()
            .find(|f| matches!(&f.kind, CatKind::Single(s) if s == src))
            .map(|f| f.name.clone())
            .unwrap_or_default()
    };
    cat.iter()
        .filter_map(|f| match &f.kind {
            CatKind::Cross(a, b) => Some((f.name.clone(), serde_json::json!([name_of(a), name_of(b)]))),
            CatKind::Single(_) => None,
        })
        .collect()
}
