//! `ctrbid score`: runs training arrays through the serving model code (no batcher),
//! so parity checks compare Rust's probabilities with PyTorch's and Python ORT's.
//! `--output pctr` (the default) or `--output pcvr` picks the head written; asking a
//! model without a conversion head for `pcvr` is an error.

use crate::features::FeatureSpec;
use crate::npy::{self, NpyWriter};
use crate::scoring::model::ModelSource;
use crate::scoring::{runtime, Device, Model};
use anyhow::{ensure, Context as _};
use std::path::PathBuf;

/// Rows per ORT call.
const CHUNK_ROWS: usize = 4096;

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// ONNX model.
    #[arg(long)]
    model: PathBuf,
    /// Directory with cat.npy and num.npy (from `ctrbid features`).
    #[arg(long)]
    features: PathBuf,
    /// Output .npy of float32 probabilities, one per row.
    #[arg(long)]
    out: PathBuf,
    /// Score only the first N rows.
    #[arg(long)]
    limit: Option<usize>,
    /// Which probability to write: `pctr`, or `pcvr` for a model with a conversion head.
    #[arg(long, value_enum, default_value = "pctr")]
    output: Output,
    /// Feature spec the model must have been built with.
    #[arg(long, default_value = crate::config::DEFAULT_SPEC)]
    spec: PathBuf,
    /// libonnxruntime.so (default: ORT_DYLIB_PATH, else .ort/libonnxruntime.so).
    #[arg(long, env = "CTRBID_ONNXRUNTIME_LIBRARY")]
    onnxruntime_library: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Pctr,
    Pcvr,
}

pub fn run(opts: Opts) -> anyhow::Result<()> {
    let spec = FeatureSpec::load(&opts.spec)?;
    let library = runtime::library_path(opts.onnxruntime_library.as_deref());
    let mut model = Model::open(&ModelSource {
        path: &opts.model,
        spec: &spec,
        spec_path: &opts.spec,
        library: &library,
        device: Device::Cpu,
    })?;
    let features = &opts.features;
    let unreadable = |path: &std::path::Path, e: std::io::Error| {
        anyhow::anyhow!(
            "--features {}: cannot read {} ({e}); `ctrbid features` writes cat.npy and num.npy there",
            features.display(),
            path.display()
        )
    };
    let (cat_path, num_path) = (features.join("cat.npy"), features.join("num.npy"));
    let (cat, cat_shape) = npy::read::<i64>(&cat_path).map_err(|e| unreadable(&cat_path, e))?;
    let (num, num_shape) = npy::read::<f32>(&num_path).map_err(|e| unreadable(&num_path, e))?;
    let (f, d) = (model.info.cat_width, model.info.num_width);
    ensure!(cat_shape.len() == 2 && cat_shape[1] == f, "cat.npy has shape {cat_shape:?}, the model wants [N, {f}]");
    ensure!(num_shape.len() == 2 && num_shape[1] == d, "num.npy has shape {num_shape:?}, the model wants [N, {d}]");
    ensure!(cat_shape[0] == num_shape[0], "cat.npy and num.npy have different row counts");
    ensure!(
        opts.output == Output::Pctr || model.info.has_pcvr(),
        "{} has no conversion head (outputs: {}), so there is no pcvr to write",
        opts.model.display(),
        model.info.heads.label()
    );
    let rows = opts.limit.unwrap_or(cat_shape[0]).min(cat_shape[0]);
    let (mut pctr, mut pcvr) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let mut start = 0;
    while start < rows {
        let n = CHUNK_ROWS.min(rows - start);
        model.score_heads(
            &cat[start * f..(start + n) * f],
            &num[start * d..(start + n) * d],
            n,
            &mut pctr,
            &mut pcvr,
        )?;
        start += n;
    }
    let out = if opts.output == Output::Pctr { pctr } else { pcvr };
    let cannot_write = || format!("--out {}: cannot write the scores", opts.out.display());
    let mut w = NpyWriter::<f32>::create(&opts.out, None).with_context(cannot_write)?;
    for p in &out {
        w.push(&[*p]).with_context(cannot_write)?;
    }
    w.finish().with_context(cannot_write)?;
    eprintln!("score: {rows} rows -> {}", opts.out.display());
    Ok(())
}
