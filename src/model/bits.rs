//! The sets the abstract run works on: versions of one component (indices into its sorted,
//! interned versions) and components (indices into [`Program::components`](super::Program)).
//!
//! Two representations behind one trait: `u64` (one word; every playbook with at most 64
//! components and at most 64 versions of each, so every real one) and [`Wide`], a bitset of any
//! width for the rest. The engine is generic over them and [`super::analyse`] picks the word when
//! it fits, so there is no limit on components or versions, and the common case pays nothing for
//! it. Both give the same findings (`tests/model_check.rs` compares them).

use std::fmt::Debug;
use std::hash::Hash;

/// A set of small indices.
pub(super) trait Bits: Clone + Eq + Hash + Debug {
    /// Does a set of this representation hold index `i`'s bit? (`u64`: `i < 64`.)
    fn fits(width: usize) -> bool;
    fn empty() -> Self;
    fn single(i: usize) -> Self;
    fn is_empty(&self) -> bool;
    fn has(&self, i: usize) -> bool;
    fn insert(&mut self, i: usize);
    fn or(&self, other: &Self) -> Self;
    fn and(&self, other: &Self) -> Self;
    /// `self & !other`.
    fn minus(&self, other: &Self) -> Self;
    /// The highest index in the set.
    fn highest(&self) -> Option<usize>;
    /// The indices in ascending order.
    fn iter(&self) -> impl Iterator<Item = usize> + '_;
}

fn word_bits(mut m: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(i)
        }
    })
}

impl Bits for u64 {
    fn fits(width: usize) -> bool {
        width <= 64
    }
    fn empty() -> Self {
        0
    }
    fn single(i: usize) -> Self {
        1 << i
    }
    fn is_empty(&self) -> bool {
        *self == 0
    }
    fn has(&self, i: usize) -> bool {
        self >> i & 1 == 1
    }
    fn insert(&mut self, i: usize) {
        *self |= 1 << i;
    }
    fn or(&self, other: &Self) -> Self {
        self | other
    }
    fn and(&self, other: &Self) -> Self {
        self & other
    }
    fn minus(&self, other: &Self) -> Self {
        self & !other
    }
    fn highest(&self) -> Option<usize> {
        (*self != 0).then(|| self.ilog2() as usize)
    }
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        word_bits(*self)
    }
}

/// A bitset of any width: words, lowest first, with no trailing zero word (so equal sets are
/// equal values and hash alike).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub(super) struct Wide(Vec<u64>);

impl Wide {
    fn trimmed(mut words: Vec<u64>) -> Wide {
        while words.last() == Some(&0) {
            words.pop();
        }
        Wide(words)
    }
}

impl Bits for Wide {
    fn fits(_: usize) -> bool {
        true
    }
    fn empty() -> Self {
        Wide(Vec::new())
    }
    fn single(i: usize) -> Self {
        let mut w = Wide::empty();
        w.insert(i);
        w
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn has(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }
    fn insert(&mut self, i: usize) {
        if self.0.len() <= i / 64 {
            self.0.resize(i / 64 + 1, 0);
        }
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn or(&self, other: &Self) -> Self {
        let (long, short) = if self.0.len() >= other.0.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut words = long.0.clone();
        for (w, o) in words.iter_mut().zip(&short.0) {
            *w |= o;
        }
        Wide(words)
    }
    fn and(&self, other: &Self) -> Self {
        Wide::trimmed(self.0.iter().zip(&other.0).map(|(a, b)| a & b).collect())
    }
    fn minus(&self, other: &Self) -> Self {
        Wide::trimmed(
            self.0
                .iter()
                .enumerate()
                .map(|(i, a)| a & !other.0.get(i).copied().unwrap_or(0))
                .collect(),
        )
    }
    fn highest(&self) -> Option<usize> {
        let last = self.0.last()?;
        Some((self.0.len() - 1) * 64 + last.ilog2() as usize)
    }
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(i, &w)| word_bits(w).map(move |b| i * 64 + b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wide(set: &[usize]) -> Wide {
        let mut w = Wide::empty();
        for &i in set {
            w.insert(i);
        }
        w
    }

    fn word(set: &[usize]) -> u64 {
        set.iter().fold(0, |m, &i| m | 1 << (i % 64))
    }

    proptest! {
        /// On indices below 64 the wide set is the word, operation by operation.
        #[test]
        fn wide_agrees_with_the_word(
            a in proptest::collection::vec(0usize..64, 0..8),
            b in proptest::collection::vec(0usize..64, 0..8),
        ) {
            let (wa, wb, ua, ub) = (wide(&a), wide(&b), word(&a), word(&b));
            let same = |w: &Wide, u: u64| w.iter().collect::<Vec<_>>() == u.iter().collect::<Vec<_>>()
                && w.is_empty() == u.is_empty() && w.highest() == u.highest();
            prop_assert!(same(&wa, ua));
            prop_assert!(same(&wa.or(&wb), ua.or(&ub)));
            prop_assert!(same(&wa.and(&wb), ua.and(&ub)));
            prop_assert!(same(&wa.minus(&wb), ua.minus(&ub)));
            prop_assert_eq!(wa.minus(&wb) == wb.minus(&wa), ua.minus(&ub) == ub.minus(&ua));
            for i in 0..64 {
                prop_assert_eq!(wa.has(i), ua.has(i));
            }
        }

        /// Past 64: sets stay normalized (equal sets are equal values).
        #[test]
        fn wide_sets_are_normalized(
            a in proptest::collection::vec(0usize..300, 0..12),
            b in proptest::collection::vec(0usize..300, 0..12),
        ) {
            let (wa, wb) = (wide(&a), wide(&b));
            let mut sa: Vec<usize> = a.clone();
            sa.sort_unstable();
            sa.dedup();
            prop_assert_eq!(wa.iter().collect::<Vec<_>>(), sa.clone());
            prop_assert_eq!(wa.highest(), sa.last().copied());
            prop_assert_eq!(wa.or(&wb).minus(&wb), wa.minus(&wb));
            prop_assert_eq!(wa.and(&wb).and(&wa), wb.and(&wa));
            prop_assert_eq!(wa.minus(&wa), Wide::empty());
        }
    }
}
