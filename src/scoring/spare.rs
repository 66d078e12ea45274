//! Spare buffers: a request's feature rows and scores, once used, hand their buffers
//! back here and the next request's are written into them, so building rows and
//! scores does not allocate once the server is warm (three allocations per request
//! without it, two of them 10-30 KB).
//!
//! Each kind of buffer has a bounded lock-free queue shared by every thread: rows are
//! built on a tokio worker and dropped there (inline scoring) or on an inference
//! thread (once copied into its batch); scores are made on either and dropped after
//! pricing. At most [`KEPT`] buffers of each kind are kept, and only those of up to
//! [`MAX_KEPT`] values (a few hundred rows): what a burst of unusually large requests
//! grows is freed rather than kept, so the spares hold at most about 20 MB.

use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::OnceLock;

/// Buffers of one kind kept at most.
const KEPT: usize = 64;
/// The largest buffer kept, in values (16 Ki: 128 KiB of `i64`).
const MAX_KEPT: usize = 16 * 1024;

/// The spare buffers of one element type.
pub struct Spares<T> {
    put: Sender<Vec<T>>,
    get: Receiver<Vec<T>>,
}

impl<T> Spares<T> {
    fn new() -> Spares<T> {
        let (put, get) = bounded(KEPT);
        Spares { put, get }
    }

    /// An empty buffer with room for `n` values: a spare when there is one.
    pub fn take(&self, n: usize) -> Vec<T> {
        match self.get.try_recv() {
            Ok(mut v) => {
                v.clear();
                v.reserve(n);
                v
            }
            Err(_) => Vec::with_capacity(n),
        }
    }

    /// Keeps `v` for a later [`Spares::take`], unless enough are kept or it is too
    /// large to keep (then it is freed).
    pub fn give(&self, v: Vec<T>) {
        if v.capacity() == 0 || v.capacity() > MAX_KEPT {
            return;
        }
        let _ = self.put.try_send(v);
    }
}

/// Categorical feature rows ([`super::Rows::cat`]).
pub fn cat() -> &'static Spares<i64> {
    static SPARES: OnceLock<Spares<i64>> = OnceLock::new();
    SPARES.get_or_init(Spares::new)
}

/// Numeric feature rows ([`super::Rows::num`]).
pub fn num() -> &'static Spares<f32> {
    static SPARES: OnceLock<Spares<f32>> = OnceLock::new();
    SPARES.get_or_init(Spares::new)
}

/// Scores ([`super::Scores`]).
pub fn scores() -> &'static Spares<f32> {
    static SPARES: OnceLock<Spares<f32>> = OnceLock::new();
    SPARES.get_or_init(Spares::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_comes_back_empty_with_its_room() {
        // Not the shared spares: other tests run beside this one.
        let spares = Spares::<i64>::new();
        let mut v = spares.take(100);
        assert!(v.capacity() >= 100);
        v.extend([1, 2, 3]);
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        spares.give(v);
        let v = spares.take(50);
        assert!(v.is_empty());
        assert_eq!((v.as_ptr(), v.capacity()), (ptr, cap), "the same buffer, not a new one");
        // Too large to keep: freed, and the next take allocates.
        spares.give(Vec::with_capacity(MAX_KEPT + 1));
        assert!(spares.get.try_recv().is_err());
        // Kept up to KEPT.
        for _ in 0..KEPT + 5 {
            spares.give(Vec::with_capacity(8));
        }
        assert_eq!(spares.get.len(), KEPT);
    }
}
