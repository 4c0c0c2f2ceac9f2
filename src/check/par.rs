//! Independent per-file work on every core, results in input order.
//!
//! Reading, parsing and lowering one file do not depend on the others, and they are nearly all
//! of a check's work. Each thread takes the next file as soon as it has finished one, so a large
//! file, or a core the machine gives to another process for a while, does not hold back a fixed
//! share of the files (as splitting the list in equal parts did). The calling thread works too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::diag::InternalError;

/// The cores this process may use. Asked once: the standard library reads the cgroup's CPU quota
/// from `/proc` and `/sys` to answer.
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f` over `items` on up to [`cores`] threads, in input order. A panic in `f` is that item's
/// [`InternalError`] for `stage`, never a missing result: the other items are unaffected.
pub(crate) fn map<T, R, F>(stage: &'static str, items: &[T], f: F) -> Vec<Result<R, InternalError>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let guarded = |item: &T| crate::diag::guarded(stage, || f(item));
    // One item (or one core): a thread would only add its start-up. The item count is looked at
    // first, so checking one file never asks for the core count (three files read in `/proc`
    // and `/sys`).
    if items.len() <= 1 || cores() <= 1 {
        return items.iter().map(guarded).collect();
    }
    let threads = cores().min(items.len());
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            done.push((i, guarded(item)));
        }
        done
    };
    let mut slots: Vec<Option<Result<R, InternalError>>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mine = work();
        let theirs = helpers.into_iter().filter_map(|h| h.join().ok());
        for (i, r) in std::iter::once(mine).chain(theirs).flatten() {
            slots[i] = Some(r);
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            // Only a thread that died outside `guarded` (it cannot panic inside it) leaves a gap.
            slot.unwrap_or_else(|| {
                Err(InternalError {
                    stage,
                    message: "a worker thread stopped".into(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_in_input_order_whatever_thread_ran_them() {
        let items: Vec<u64> = (0..1000).collect();
        let out = map("testing", &items, |&i| {
            // Uneven work, so threads finish out of order.
            std::hint::black_box((0..(i % 7) * 1000).sum::<u64>());
            i * 2
        });
        let got: Vec<u64> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, items.iter().map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_panic_is_that_items_internal_error_only() {
        let items: Vec<u32> = (0..50).collect();
        let out = map("parsing", &items, |&i| {
            if i % 10 == 3 {
                panic!("item {i} broke");
            }
            i
        });
        assert_eq!(out.len(), 50);
        for (i, r) in out.into_iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(v as usize, i),
                Err(e) => {
                    assert_eq!(i % 10, 3, "item {i} failed: {}", e.message);
                    assert_eq!(e.stage, "parsing");
                    assert_eq!(e.message, format!("item {i} broke"));
                }
            }
        }
    }

    #[test]
    fn no_items_no_threads() {
        let out = map("testing", &[] as &[u8], |_| unreachable!());
        assert!(out.is_empty());
    }
}
