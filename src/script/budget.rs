//! Memory a script's thread holds, for the scripts' total memory budget.
//!
//! Rhai limits the size of each string, array and map, not their sum: a map of 9,000 strings of
//! 512 KiB passes every per-object limit and takes 4.5 GB. So ktplay's allocator counts, per
//! thread, the bytes allocated minus the bytes freed; a script runs on a thread of its own (a
//! blocking task) and its progress callback stops it once that count has grown past the budget
//! since the script started. One operation allocates little (a string is at most
//! `max_string_size`, a host call's body is capped), so a script stops within a few MiB of its
//! budget instead of taking the process down.
//!
//! The count costs a thread-local add per allocation; nothing else changes for the rest of the
//! program.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting bytes per thread.
pub struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    // `try_with`: during thread teardown the slot may be gone; an allocation then goes uncounted.
    let _ = HELD.try_with(|h| h.set(h.get().wrapping_add(n)));
}

// SAFETY: every call is forwarded to `System` unchanged; the counting touches only a const
// thread-local `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes this thread has allocated and not freed (it may be negative when it frees what other
/// threads allocated); compare two readings.
pub fn held() -> isize {
    HELD.try_with(Cell::get).unwrap_or(0)
}
