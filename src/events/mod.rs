//! Events: what the bidder writes down about its bids and what came back of them.
//!
//! [`record`] defines the records (a bid with the feature row it scored, each win,
//! billing, loss, click and conversion notice, a shadow variant's prediction for a
//! bid's row, and an event another instance of a fleet counted in the aggregates); [`sink`] is how the bidder writes them
//! to the durable log ([`crate::eventlog`]): bids sampled and never waiting, notices
//! durable before they are answered; [`join`] turns a log into training rows
//! (`ctrbid features --events`).

pub mod join;
pub mod record;
pub mod restore;
pub mod sink;

pub use record::{AggStamp, BidRecord, CountedRecord, DecodeError, Event, NoticeKind, NoticeRecord, ShadowRecord};
pub use sink::EventSink;
