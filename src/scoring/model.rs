//! One ONNX model opened for scoring, checked against the feature spec.
//!
//! Signature (DESIGN.md): inputs `cat` int64 `[N, F]` and `num` float32 `[N, D]`, output
//! `pctr` float32 `[N]`, N dynamic; metadata `ctrbid.spec_sha256` equal to the spec's.
//! A [`Model`] owns its ORT session; `Session::run` takes `&mut self`, so a model
//! belongs to one thread at a time (an inference thread, or a CLI command).

use super::runtime::{environment, Device};
use super::ScoringError;
use crate::features::FeatureSpec;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use std::path::{Path, PathBuf};

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
}

pub struct Model {
    session: Session,
    pub info: ModelInfo,
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
        Ok(Model { session, info })
    }

    /// Scores `rows` rows: `cat` is `rows * cat_width` long, `num` `rows * num_width`.
    /// Probabilities are appended to `out`.
    pub fn score(&mut self, cat: &[i64], num: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<(), ScoringError> {
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
        let outputs = self.session.run(ort::inputs!["cat" => cat_t, "num" => num_t]).map_err(fail)?;
        let (_, pctr) = outputs["pctr"].try_extract_tensor::<f32>().map_err(fail)?;
        if pctr.len() != rows {
            return Err(ScoringError::Inference(format!(
                "model returned {} probabilities for {rows} rows",
                pctr.len()
            )));
        }
        out.extend_from_slice(pctr);
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
    match session.outputs().iter().find(|o| o.name() == "pctr").map(|o| o.dtype()) {
        Some(ValueType::Tensor { ty: TensorElementType::Float32, shape, .. }) if shape.len() == 1 => {}
        Some(other) => return Err(sig(format!("output \"pctr\" is {other:?}, expected float32 [N]"))),
        None => return Err(sig("no output named \"pctr\"".into())),
    }
    let meta = session.metadata().map_err(|e| sig(e.to_string()))?;
    let get = |key: &str| meta.custom(key).unwrap_or_default();
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
    })
}
