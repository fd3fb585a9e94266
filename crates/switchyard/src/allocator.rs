//! The process allocator: mimalloc, installed by the binary (`main.rs`).

/// Hands the memory the allocator holds free back to the system now, instead of at its next
/// purge, which may not come for a thread that goes quiet. Worth calling after a one-off burst,
/// such as building a vocabulary, that frees tens of MiB at once. Where mimalloc is not the
/// global allocator (unit tests), its heaps are empty and this does nothing.
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointers; mimalloc allows it on any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
