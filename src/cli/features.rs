//! `ctrbid features`: simulator logs to training arrays, through the serving extractor.
//!
//! Reads `requests.jsonl`, `impressions.jsonl` and `catalog.json` from the simulator's
//! output, and for every impression parses its request with the server's parser,
//! validates it, and writes the feature row of (request, imp, creative) at the
//! impression's time: exactly the row the server would build for that candidate.
//! Output (`.npy`, row-aligned, in log order): `cat` i64 [N,F], `num` f32 [N,D],
//! `click`, `conv`, `pctr_true`, `pcvr_true` f32 [N], `ts` i64 [N], and `meta.json`.

use crate::catalog::{Catalog, Selector};
use crate::features::{Extractor, FeatureSpec};
use crate::npy::NpyWriter;
use crate::simulate::ImpressionRecord;
use anyhow::{bail, Context as _};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Directory written by `ctrbid simulate`.
    #[arg(long)]
    sim: PathBuf,
    /// Feature spec.
    #[arg(long, default_value = crate::config::DEFAULT_SPEC)]
    spec: PathBuf,
    /// Output directory for the arrays.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    let started = Instant::now();
    let rows = extract(&opts.sim, &opts.spec, &opts.out)?;
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

/// Writes the arrays; returns the number of rows.
pub fn extract(sim: &Path, spec_path: &Path, out: &Path) -> anyhow::Result<usize> {
    let spec = FeatureSpec::load(spec_path)?;
    let extractor = Extractor::new(spec);
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
    let open = |name: &str| -> anyhow::Result<BufReader<File>> {
        let p = sim.join(name);
        Ok(BufReader::with_capacity(1 << 20, File::open(&p).with_context(|| format!("opening {}", p.display()))?))
    };
    let mut requests = open("requests.jsonl")?.lines();
    let mut request_line: Vec<u8> = Vec::new();
    let mut next_line = 0u64;
    let mut impressions = open("impressions.jsonl")?.lines().enumerate().peekable();
    let (mut cat, mut num) = (vec![0i64; f], vec![0f32; d]);
    let mut rows = 0usize;
    while let Some((n, line)) = impressions.next() {
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
        for imp in &group {
            let Some(spot) = req.imp.iter().find(|i| i.id.as_deref() == Some(imp.imp_id.as_str())) else {
                bail!("request on line {} has no imp {:?}", target + 1, imp.imp_id);
            };
            let Some(&creative) = creative_index.get(imp.crid.as_str()) else {
                bail!("impression names unknown creative {:?}", imp.crid);
            };
            let ic = extractor.imp(&rc, spot);
            extractor.write_row(&ic, selector.keys(creative), &mut cat, &mut num);
            w.cat.push(&cat)?;
            w.num.push(&num)?;
            w.click.push(&[f32::from(imp.click)])?;
            w.conv.push(&[f32::from(imp.conv)])?;
            w.pctr.push(&[imp.pctr as f32])?;
            w.pcvr.push(&[imp.pcvr as f32])?;
            w.ts.push(&[imp.ts])?;
            rows += 1;
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
    let meta = serde_json::json!({
        "spec_sha256": spec.sha256,
        "spec_name": spec.name,
        "spec_version": spec.version,
        "cat_fields": spec.cat.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "num_fields": spec.num.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "field_offsets": spec.cat.iter().map(|c| c.offset).collect::<Vec<_>>(),
        "field_buckets": spec.cat.iter().map(|c| c.buckets).collect::<Vec<_>>(),
        "cardinality": spec.cardinality,
        "rows": rows,
        "source": sim.display().to_string(),
    });
    std::fs::write(out.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    Ok(rows)
}
