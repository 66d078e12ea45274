//! [`List`]: the lists of a parsed request, held inline while they are short.
//!
//! Most lists an exchange sends have one or two elements (one imp, one format, one
//! currency, a category or two), and a `Vec` would cost an allocation for each: about
//! eight per request on the simulator's traffic. A `List<T, N>` keeps its first `N`
//! elements in the struct that owns it and moves to the heap only when it grows past
//! them.
//!
//! It is an enum over `arrayvec::ArrayVec` and `Vec` rather than `smallvec` 1's
//! `SmallVec`, because that one is invariant in its element type: a request whose
//! strings borrow from the body (`Cow<'a, str>`) could then not be read through a
//! shorter lifetime, which serde's borrowing derive and the bid path both need. This
//! one is covariant, as `Vec` is.

use arrayvec::ArrayVec;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// A list with room for `N` elements inline. Reads as a slice.
pub enum List<T, const N: usize> {
    /// At most `N` elements, no heap.
    Inline(ArrayVec<T, N>),
    /// Grown past `N`.
    Heap(Vec<T>),
}

impl<T, const N: usize> List<T, N> {
    pub const fn new() -> Self {
        List::Inline(ArrayVec::new_const())
    }

    /// Room for `n` elements: inline when `n <= N`, else one heap allocation.
    pub fn with_capacity(n: usize) -> Self {
        if n <= N {
            Self::new()
        } else {
            List::Heap(Vec::with_capacity(n))
        }
    }

    pub fn push(&mut self, value: T) {
        match self {
            List::Heap(v) => v.push(value),
            List::Inline(a) => {
                if let Err(full) = a.try_push(value) {
                    let mut v = Vec::with_capacity(2 * N.max(2));
                    v.extend(a.drain(..));
                    v.push(full.element());
                    *self = List::Heap(v);
                }
            }
        }
    }

    pub fn as_slice(&self) -> &[T] {
        self
    }

    /// Whether the elements live on the heap.
    pub fn spilled(&self) -> bool {
        matches!(self, List::Heap(_))
    }
}

impl<T, const N: usize> Default for List<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Deref for List<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            List::Inline(a) => a,
            List::Heap(v) => v,
        }
    }
}

impl<T, const N: usize> DerefMut for List<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            List::Inline(a) => a,
            List::Heap(v) => v,
        }
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for List<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T, const N: usize> FromIterator<T> for List<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut list = Self::with_capacity(iter.size_hint().0);
        for v in iter {
            list.push(v);
        }
        list
    }
}

impl<'l, T, const N: usize> IntoIterator for &'l List<T, N> {
    type Item = &'l T;
    type IntoIter = std::slice::Iter<'l, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn short_lists_stay_inline_and_long_ones_spill_in_order() {
        let mut l: List<u32, 2> = List::with_capacity(2);
        l.push(1);
        l.push(2);
        assert!(!l.spilled());
        assert_eq!(&l[..], &[1, 2]);
        l.push(3);
        l.push(4);
        assert!(l.spilled());
        assert_eq!(&l[..], &[1, 2, 3, 4]);
        let long: List<u32, 2> = (0..5).collect();
        assert!(long.spilled());
        assert_eq!(long.iter().sum::<u32>(), 10);
        let empty: List<u32, 2> = List::default();
        assert!(empty.is_empty() && !empty.spilled());
    }

    /// Covariance, checked by the compiler: this function builds only while a list of
    /// longer borrows is a list of shorter ones (with `smallvec` 1 it does not).
    fn shorten<'s, 'l: 's>(list: List<Cow<'l, str>, 2>) -> List<Cow<'s, str>, 2> {
        list
    }

    #[test]
    fn a_list_of_borrowed_strings_reads_through_a_shorter_lifetime() {
        let body = String::from("USD,EUR,GBP");
        let long: List<Cow<'_, str>, 2> = body.split(',').map(Cow::Borrowed).collect();
        let short = shorten(long);
        assert!(short.spilled());
        assert_eq!(short.iter().map(|c| c.as_ref()).collect::<Vec<_>>(), ["USD", "EUR", "GBP"]);
    }
}
