//! Scoring: click (and, with a conversion head, conversion) probabilities from an ONNX
//! model run by ONNX Runtime.
//!
//! [`runtime`] loads the ONNX Runtime shared library once per process; [`model`] opens
//! and checks a model against the feature spec (its signature and the spec's SHA-256 in
//! its metadata); [`batcher`] is the micro-batcher the server scores through: requests
//! put their rows on a bounded queue and inference threads, each owning its sessions,
//! run them in batches, or with inline scoring the worker runs them itself ([`busy`]
//! tells auto scoring when the workers have time for that); [`cache`] remembers rows'
//! scores for repeated impressions (off by default). A model has one head (`pctr`) or
//! two (`pctr`, `pcvr`: see [`Heads`]); answers carry what the model that scored them
//! computed ([`Scores`]). Rows' buffers are reused from one request to the next
//! ([`spare`]).

pub mod batcher;
pub mod busy;
pub mod cache;
pub mod model;
pub mod realtime;
pub mod runtime;
mod spare;

#[cfg(test)]
mod tests;

pub use batcher::{Batcher, BatcherConfig, Rows, ScoreError, Scores, ScoringPath};
pub use busy::WorkerBusy;
pub use cache::{CacheConfig, ScoreCache};
pub use model::{Heads, Model, ModelInfo};
pub use runtime::Device;

/// Start-up errors of the scoring stage; each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    #[error("ONNX Runtime library {path} not found: run `make setup-ort` (it installs the pinned onnxruntime wheel and copies libonnxruntime.so to .ort/), or point model.onnxruntime_library (--onnxruntime-library, CTRBID_ONNXRUNTIME_LIBRARY) or ORT_DYLIB_PATH at libonnxruntime.so")]
    LibraryMissing { path: String },
    #[error("cannot load ONNX Runtime library {path}: {reason}")]
    LibraryLoad { path: String, reason: String },
    #[error("model file {path} not found: run `make models` to train one, or set model.path")]
    ModelMissing { path: String },
    #[error("cannot load model {path}: {reason}")]
    ModelLoad { path: String, reason: String },
    #[error("model {path} was built for feature spec {model_sha} but the configured spec {spec_path} is {spec_sha}: retrain the model with this spec or configure the spec it was built with")]
    SpecMismatch { path: String, model_sha: String, spec_path: String, spec_sha: String },
    /// `built_for`: the model's spec and its field counts; `configured`: the server's.
    #[error("model {path} was built for feature spec {built_for}, but the server is configured with {configured}: retrain the model with this spec (`ctrbid features --spec`, then the trainer) or set model.spec to the spec it was built with")]
    SpecWidth { path: String, built_for: String, configured: String },
    #[error("model {path} does not have the ctrbid signature: {reason}")]
    Signature { path: String, reason: String },
    #[error("execution provider: {0}")]
    Device(String),
    #[error("inference failed: {0}")]
    Inference(String),
}
