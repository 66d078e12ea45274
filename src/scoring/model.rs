//! One ONNX model opened for scoring, checked against the feature spec.
//!
//! Signature (DESIGN.md): inputs `cat` int64 `[N, F]` and `num` float32 `[N, D]`, output
//! `pctr` float32 `[N]` and, for a model with a conversion head, `pcvr` float32 `[N]`
//! (probability of a conversion given a click), N dynamic; metadata
//! `ctrbid.spec_sha256` equal to the spec's. The heads are read from the graph's outputs
//! ([`Heads`]); a `ctrbid.heads` metadata entry (`"pctr"` or `"pctr,pcvr"`), when
//! present, must agree with them.
//! A [`Model`] owns its ORT session; `Session::run` takes `&mut self`, so a model
//! belongs to one thread at a time (an inference thread, or a CLI command).

use super::runtime::{environment, Device};
use super::ScoringError;
use crate::features::FeatureSpec;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use std::path::{Path, PathBuf};

/// The probabilities a model outputs per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heads {
    /// `pctr` only.
    Pctr,
    /// `pctr` and `pcvr`.
    PctrPcvr,
}

impl Heads {
    /// Probabilities per row.
    pub fn count(self) -> usize {
        match self {
            Heads::Pctr => 1,
            Heads::PctrPcvr => 2,
        }
    }

    pub fn has_pcvr(self) -> bool {
        self == Heads::PctrPcvr
    }

    /// As in the `ctrbid.heads` metadata: `pctr` or `pctr,pcvr`.
    pub fn label(self) -> &'static str {
        match self {
            Heads::Pctr => "pctr",
            Heads::PctrPcvr => "pctr,pcvr",
        }
    }
}

/// What a model says about itself.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub spec_sha256: String,
    /// `ctrbid.kind`, e.g. `wide_deep`.
    pub kind: String,
    pub version: String,
    pub trained_at: String,
    /// `ctrbid.metrics`: JSON text of the held-out metrics.
    pub metrics: String,
    pub cat_width: usize,
    pub num_width: usize,
    /// Whether the model has a conversion head (`pcvr` output).
    pub heads: Heads,
}

impl ModelInfo {
    pub fn has_pcvr(&self) -> bool {
        self.heads.has_pcvr()
    }
}

pub struct Model {
    session: Session,
    pub info: ModelInfo,
    /// The graph lists `cat` before `num`: inputs are passed by position, in an array
    /// on the stack (by name they would go in a `Vec` per run).
    cat_first: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("info", &self.info).finish_non_exhaustive()
    }
}

/// Where the model and the runtime come from, and how to run it.
#[derive(Debug, Clone)]
pub struct ModelSource<'a> {
    pub path: &'a Path,
    pub spec: &'a FeatureSpec,
    pub spec_path: &'a Path,
    pub library: &'a Path,
    pub device: Device,
}

impl Model {
    /// Opens and checks a model; one intra-op thread (the batcher supplies parallelism).
    pub fn open(src: &ModelSource<'_>) -> Result<Model, ScoringError> {
        let path = src.path.display().to_string();
        if !src.path.is_file() {
            return Err(ScoringError::ModelMissing { path });
        }
        let env = environment(src.library)?;
        let load = |reason: String| ScoringError::ModelLoad { path: path.clone(), reason };
        let mut builder = Session::builder(env)
            .map_err(|e| load(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| load(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| load(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| load(e.to_string()))?;
        builder = with_device(builder, src.device)?;
        let session = builder.commit_from_file(src.path).map_err(|e| load(e.to_string()))?;
        let info = check(&session, src)?;
        let cat_first = session.inputs().first().is_some_and(|input| input.name() == "cat");
        Ok(Model { session, info, cat_first })
    }

    /// Scores `rows` rows: `cat` is `rows * cat_width` long, `num` `rows * num_width`.
    /// Click probabilities are appended to `out` (one per row; a conversion head, if
    /// any, is not read).
    pub fn score(&mut self, cat: &[i64], num: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<(), ScoringError> {
        self.run(cat, num, rows, |pctr, _| out.extend_from_slice(pctr))
    }

    /// Scores `rows` rows like [`Model::score`] and appends every head: pCTR to `pctr`,
    /// and pCVR to `pcvr` when the model has a conversion head (else `pcvr` is left as
    /// it is). Both are appended `rows` values, row order kept.
    pub fn score_heads(
        &mut self,
        cat: &[i64],
        num: &[f32],
        rows: usize,
        pctr: &mut Vec<f32>,
        pcvr: &mut Vec<f32>,
    ) -> Result<(), ScoringError> {
        self.run(cat, num, rows, |ctr, cvr| {
            pctr.extend_from_slice(ctr);
            if let Some(cvr) = cvr {
                pcvr.extend_from_slice(cvr);
            }
        })
    }

    /// Runs the session and hands `take` the outputs, each checked to hold `rows` values;
    /// `pcvr` is `Some` exactly when the model has a conversion head.
    fn run(
        &mut self,
        cat: &[i64],
        num: &[f32],
        rows: usize,
        take: impl FnOnce(&[f32], Option<&[f32]>),
    ) -> Result<(), ScoringError> {
        let (f, d) = (self.info.cat_width, self.info.num_width);
        if cat.len() != rows * f || num.len() != rows * d {
            return Err(ScoringError::Inference(format!("row buffers do not match {rows} rows of widths {f}/{d}")));
        }
        if rows == 0 {
            return Ok(());
        }
        let fail = |e: ort::Error| ScoringError::Inference(e.to_string());
        let cat_t = TensorRef::from_array_view(([rows, f], cat)).map_err(fail)?;
        let num_t = TensorRef::from_array_view(([rows, d], num)).map_err(fail)?;
        let outputs = if self.cat_first {
            self.session.run(ort::inputs![cat_t, num_t])
        } else {
            self.session.run(ort::inputs![num_t, cat_t])
        }
        .map_err(fail)?;
        let checked = |name: &str| -> Result<&[f32], ScoringError> {
            let (_, values) = outputs[name].try_extract_tensor::<f32>().map_err(fail)?;
            if values.len() != rows {
                return Err(ScoringError::Inference(format!(
                    "model returned {} {name} values for {rows} rows",
                    values.len()
                )));
            }
            Ok(values)
        };
        let pctr = checked("pctr")?;
        let pcvr = if self.info.heads.has_pcvr() { Some(checked("pcvr")?) } else { None };
        take(pctr, pcvr);
        Ok(())
    }
}

#[cfg(feature = "cuda")]
fn with_device(
    builder: ort::session::builder::SessionBuilder,
    device: Device,
) -> Result<ort::session::builder::SessionBuilder, ScoringError> {
    match device {
        Device::Cpu => Ok(builder),
        Device::Cuda => builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| ScoringError::Device(format!("cannot register the CUDA execution provider: {e}"))),
    }
}

#[cfg(not(feature = "cuda"))]
fn with_device(
    builder: ort::session::builder::SessionBuilder,
    device: Device,
) -> Result<ort::session::builder::SessionBuilder, ScoringError> {
    match device {
        Device::Cpu => Ok(builder),
        Device::Cuda => Err(ScoringError::Device(
            "scoring.device is \"cuda\" but ctrbid was built without the `cuda` feature: rebuild with `--features cuda` or use \"cpu\"".into(),
        )),
    }
}

/// Checks the signature and the spec hash; reads the metadata.
fn check(session: &Session, src: &ModelSource<'_>) -> Result<ModelInfo, ScoringError> {
    let path = src.path.display().to_string();
    let sig = |reason: String| ScoringError::Signature { path: path.clone(), reason };
    let meta = session.metadata().map_err(|e| sig(e.to_string()))?;
    let get = |key: &str| meta.custom(key).unwrap_or_default();
    // A model of the right kind built for another spec: say so with both field counts.
    let width = |name: &str| match session.inputs().iter().find(|o| o.name() == name).map(|o| o.dtype()) {
        Some(ValueType::Tensor { shape, .. }) if shape.len() == 2 => Some(shape[1]),
        _ => None,
    };
    if let (Some(cat), Some(num)) = (width("cat"), width("num")) {
        let (want_cat, want_num) = (src.spec.cat.len() as i64, src.spec.num.len() as i64);
        if cat != want_cat || num != want_num {
            let name = get("ctrbid.spec_name");
            let sha = get("ctrbid.spec_sha256");
            let model_spec = match (name.is_empty(), sha.is_empty()) {
                (false, _) => format!("{name:?}"),
                (true, false) => format!("sha256 {sha}"),
                (true, true) => "(unnamed)".into(),
            };
            return Err(ScoringError::SpecWidth {
                path,
                built_for: format!("{model_spec} ({cat} categorical and {num} numeric fields)"),
                configured: format!(
                    "{} ({:?}, {want_cat} categorical and {want_num} numeric fields)",
                    src.spec_path.display(),
                    src.spec.name
                ),
            });
        }
    }
    let input = |name: &str, ty: TensorElementType, width: usize| -> Result<(), ScoringError> {
        let outlet = session
            .inputs()
            .iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| sig(format!("no input named {name:?}")))?;
        match outlet.dtype() {
            ValueType::Tensor { ty: t, shape, .. } if *t == ty && shape.len() == 2 && shape[1] == width as i64 => {
                Ok(())
            }
            other => Err(sig(format!("input {name:?} is {other:?}, expected {ty:?} [N, {width}]"))),
        }
    };
    input("cat", TensorElementType::Int64, src.spec.cat.len())?;
    input("num", TensorElementType::Float32, src.spec.num.len())?;
    if session.inputs().len() != 2 {
        return Err(sig(format!("{} inputs, expected cat and num", session.inputs().len())));
    }
    // Some(true): a float32 [N] output of that name; Some(false): none.
    let output = |name: &str| -> Result<bool, ScoringError> {
        match session.outputs().iter().find(|o| o.name() == name).map(|o| o.dtype()) {
            Some(ValueType::Tensor { ty: TensorElementType::Float32, shape, .. }) if shape.len() == 1 => Ok(true),
            Some(other) => Err(sig(format!("output {name:?} is {other:?}, expected float32 [N]"))),
            None => Ok(false),
        }
    };
    if !output("pctr")? {
        return Err(sig("no output named \"pctr\"".into()));
    }
    let heads = if output("pcvr")? { Heads::PctrPcvr } else { Heads::Pctr };
    let declared = get("ctrbid.heads");
    if !declared.is_empty() && declared.replace(' ', "") != heads.label() {
        return Err(sig(format!(
            "metadata ctrbid.heads is {declared:?} but the graph's outputs are {:?}",
            heads.label()
        )));
    }
    let spec_sha256 = get("ctrbid.spec_sha256");
    if spec_sha256 != src.spec.sha256 {
        return Err(ScoringError::SpecMismatch {
            path,
            model_sha: if spec_sha256.is_empty() {
                "(none: no ctrbid.spec_sha256 metadata)".into()
            } else {
                spec_sha256
            },
            spec_path: src.spec_path.display().to_string(),
            spec_sha: src.spec.sha256.clone(),
        });
    }
    Ok(ModelInfo {
        path: src.path.to_path_buf(),
        spec_sha256,
        kind: get("ctrbid.kind"),
        version: get("ctrbid.version"),
        trained_at: get("ctrbid.trained_at"),
        metrics: get("ctrbid.metrics"),
        cat_width: src.spec.cat.len(),
        num_width: src.spec.num.len(),
        heads,
    })
}
