//! Shared pieces of the ctrbid fuzz targets: the invariant checks ([`checks`], also
//! replayed by `tests/fuzz_regressions.rs`) and the serving state they run against,
//! loaded once per fuzzing process.

pub mod checks;
pub mod request_model;

use checks::Serving;
use std::path::Path;
use std::sync::OnceLock;

/// The shipped feature spec, catalog and a rate table, loaded on first use.
pub fn serving() -> &'static Serving {
    static SERVING: OnceLock<Serving> = OnceLock::new();
    SERVING.get_or_init(|| Serving::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))))
}
