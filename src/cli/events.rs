//! `ctrbid events`: the event log as JSON lines, one record a line, in log order: for
//! reading a log by eye or with `jq`, and for checks that join it with an exchange's
//! ledger. Bid records leave their feature rows out unless `--rows` is given.

use crate::eventlog::Reader;
use crate::events::{Event, NoticeKind};
use anyhow::Context as _;
use serde_json::json;
use std::io::Write as _;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The event log directory (`events.dir`).
    dir: PathBuf,
    /// Only records of these kinds: bid, win, bill, loss, click, conv, shadow (comma-separated).
    #[arg(long, value_delimiter = ',')]
    kind: Vec<String>,
    /// Include each bid's feature row (`cat`, `num`).
    #[arg(long)]
    rows: bool,
    /// Instead of the records: their count and mean encoded size per kind, and the
    /// segment files' bytes on disk (closed segments are gzipped).
    #[arg(long)]
    stats: bool,
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    const KINDS: [&str; 7] = ["bid", "win", "bill", "loss", "click", "conv", "shadow"];
    if let Some(bad) = opts.kind.iter().find(|k| !KINDS.contains(&k.as_str())) {
        anyhow::bail!("--kind {bad:?}: expected some of {}", KINDS.join(", "));
    }
    let wanted = |k: &str| opts.kind.is_empty() || opts.kind.iter().any(|w| w == k);
    if opts.stats {
        return stats(&opts.dir);
    }
    let mut reader = Reader::open(&opts.dir).with_context(|| format!("reading {}", opts.dir.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for record in reader.by_ref() {
        let record = record?;
        let event = Event::decode(&record.data)
            .with_context(|| format!("segment {} at byte {}", record.segment, record.offset))?;
        let (kind, line) = match event {
            Event::Bid(b) => {
                let mut line = json!({
                    "kind": "bid", "ts_ms": b.ts_ms, "bid": format!("{:x}", b.bid), "request_id": b.request_id,
                    "imp_id": b.imp_id, "campaign": b.campaign, "creative": b.creative, "user": b.user,
                    "publisher": b.publisher, "model": b.model, "spec": format!("{:016x}", b.spec),
                    "pctr": b.pctr, "pcvr": finite(f64::from(b.pcvr)), "price": b.price, "currency": b.currency,
                    "value_usd": b.value_usd, "floor_usd": b.floor_usd, "auction": b.auction,
                    "propensity": b.propensity, "agg_applied": b.agg_applied,
                });
                if opts.rows {
                    line["cat"] = json!(b.cat);
                    line["num"] = json!(b.num);
                }
                ("bid", line)
            }
            Event::Counted(c) => {
                let line = json!({
                    "kind": "counted", "ts_ms": c.ts_ms, "outcome": c.outcome, "campaign": c.campaign,
                    "creative": c.creative, "seq": c.stamp.seq,
                });
                ("counted", line)
            }
            Event::Shadow(s) => {
                let line = json!({
                    "kind": "shadow", "ts_ms": s.ts_ms, "bid": format!("{:x}", s.bid), "variant": s.variant,
                    "model": s.model, "pctr": s.pctr, "pcvr": finite(f64::from(s.pcvr)),
                });
                ("shadow", line)
            }
            Event::Notice(n) => {
                let mut line = json!({
                    "kind": n.kind.label(), "ts_ms": n.ts_ms, "bid": format!("{:x}", n.bid), "campaign": n.campaign,
                    "creative": n.creative,
                });
                let extra = match n.kind {
                    NoticeKind::Win => json!({"price": finite(n.price), "auction_id": n.auction_id}),
                    NoticeKind::Bill => json!({"price": finite(n.price), "usd": n.usd, "test": n.test}),
                    NoticeKind::Loss => json!({"loss_reason": n.loss_reason, "min_to_win": finite(n.min_to_win)}),
                    NoticeKind::Click => json!({"imp_id": n.imp_id}),
                    NoticeKind::Conv => json!({"click_ms": n.click_ms, "value_usd": finite(n.usd)}),
                };
                line.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
                if let Some(a) = n.agg {
                    let hex = |k: Option<u64>| k.map(|k| format!("{k:x}"));
                    line["agg"] = json!({"seq": a.seq, "user": hex(a.user), "publisher": hex(a.publisher),
                                         "category": format!("{:x}", a.category)});
                }
                (n.kind.label(), line)
            }
        };
        if wanted(kind) {
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    if reader.torn() > 0 {
        eprintln!("events: the newest segment ends in a torn record (a writer killed mid-write), skipped");
    }
    Ok(())
}

/// `--stats`: records and bytes per kind, and the directory's bytes on disk.
fn stats(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut by_kind: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for record in Reader::open(dir)? {
        let record = record?;
        let kind = match Event::decode(&record.data)? {
            Event::Bid(_) => "bid",
            Event::Shadow(_) => "shadow",
            Event::Counted(_) => "counted",
            Event::Notice(n) => n.kind.label(),
        };
        let entry = by_kind.entry(kind).or_default();
        entry.0 += 1;
        // The frame's length and CRC are 8 bytes more on disk.
        entry.1 += record.data.len() as u64 + 8;
    }
    let mut on_disk = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("seg-") {
            on_disk += entry.metadata()?.len();
        }
    }
    let records: u64 = by_kind.values().map(|v| v.0).sum();
    let bytes: u64 = by_kind.values().map(|v| v.1).sum();
    let kinds: serde_json::Map<String, serde_json::Value> = by_kind
        .iter()
        .map(|(k, (n, b))| {
            (k.to_string(), json!({"records": n, "framed_bytes": b, "bytes_per_record": *b as f64 / *n as f64}))
        })
        .collect();
    let summary = json!({
        "records": records, "framed_bytes": bytes, "segment_bytes_on_disk": on_disk,
        "on_disk_per_record": if records > 0 { on_disk as f64 / records as f64 } else { 0.0 }, "kinds": kinds,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// NaN (not reported) as JSON null.
fn finite(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        serde_json::Value::Null
    }
}
