//! ctrbid: a demand-side real-time bidder.
//!
//! The request path reads top to bottom in this module list:
//! an OpenRTB request is parsed and validated ([`openrtb`]), the campaigns that may
//! bid are selected from the [`catalog`], each candidate becomes a feature row
//! ([`features`]), all rows of a request are scored in one job by the micro-batched
//! ONNX Runtime [`scoring`] stage, [`pricing`] turns probabilities into bids, and the
//! [`server`] answers. [`metrics`] records every stage; [`config`] holds the knobs.
//! [`simulate`] is the synthetic exchange the default model is trained on,
//! [`loadgen`] the open-loop load generator that measures the server, and [`exchange`]
//! the simulator played as a live exchange against running bidders, judged by its own
//! ledger.

pub mod aggregates;
pub mod bidder;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cpus;
pub mod currency;
pub mod economics;
pub mod eventlog;
pub mod events;
pub mod exchange;
pub mod features;
pub mod fleet;
pub mod freqcap;
pub mod jsonl;
pub mod loadgen;
pub mod metrics;
pub mod notice;
pub mod npy;
pub mod openrtb;
pub mod pricing;
pub mod scoring;
pub mod server;
pub mod shading;
pub mod simulate;
pub mod variants;
