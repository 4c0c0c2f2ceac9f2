//! The C allocator's settings for short commands that allocate a lot at once.
//!
//! glibc grows the heap of each thread other than the main one by what the allocation needs,
//! one `mprotect` per step: a check of 100 playbooks made 1,369 of them, a quarter of its system
//! calls and about 3 ms of CPU. Asking for 16 MiB of slack at each growth (`M_TOP_PAD`; virtual
//! until touched, so the resident memory is unchanged) makes it 14. Not for `run`, `lsp` or
//! `sim serve`: a long-lived process should give freed memory back as glibc's defaults do.

/// Let the heap grow in large steps for the rest of this process.
pub(crate) fn grow_in_large_steps() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a tunable of glibc's allocator; any value is valid for it.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
}
