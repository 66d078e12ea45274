//! Loading ONNX Runtime (the `ort` crate's `load-dynamic` mode) once per process.
//!
//! The library comes from the pinned PyPI `onnxruntime` wheel (`make setup-ort` copies it
//! to `.ort/libonnxruntime.so`). A missing file is a start-up error naming the path and
//! the command that installs it, never a panic inside `ort`.

use super::ScoringError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The process-wide environment; sessions are built from it.
static ENVIRONMENT: OnceLock<(PathBuf, ort::environment::Environment)> = OnceLock::new();

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider; needs the `cuda` cargo feature and fails
    /// loudly when it cannot register.
    Cuda,
}

/// The library path: the configured one, else `ORT_DYLIB_PATH`, else `.ort/libonnxruntime.so`.
pub fn library_path(configured: Option<&Path>) -> PathBuf {
    configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".ort/libonnxruntime.so"))
}

/// Loads the library at `path` (first call) and returns the environment.
/// Later calls return the same environment whatever path they pass.
pub fn environment(path: &Path) -> Result<&'static ort::environment::Environment, ScoringError> {
    if let Some((_, env)) = ENVIRONMENT.get() {
        return Ok(env);
    }
    if !path.is_file() {
        return Err(ScoringError::LibraryMissing { path: path.display().to_string() });
    }
    let load = |reason: String| ScoringError::LibraryLoad { path: path.display().to_string(), reason };
    let env = ort::init_from(path)
        .map_err(|e| load(e.to_string()))?
        .with_name("ctrbid")
        .with_telemetry(false)
        .build()
        .map_err(|e| load(e.to_string()))?;
    Ok(&ENVIRONMENT.get_or_init(|| (path.to_path_buf(), env)).1)
}
