//! Features: the feature spec and the one code path that turns a request and a
//! candidate creative into a model input row, for serving and for training alike.
//!
//! `ctrbid features` runs [`Extractor`] over simulator logs to make training arrays; the
//! server runs the same [`Extractor`] on live requests. That is what makes training and
//! serving agree bit for bit (checked by the parity tests). Public datasets (Criteo,
//! Avazu, any CSV) go through [`table`]: the same spec format over columns, hashed the
//! same way; a table spec cannot be served.

mod extract;
pub mod hash;
mod spec;
pub mod table;

pub use extract::{CandidateKeys, Extractor, ImpContext, RequestContext};
pub use spec::{CatField, CatKind, FeatureSpec, NumField, NumSource, Source, SpecError, Transform};
pub use table::{Delimiter, Format, TableError, TableReader, TableSpec};
