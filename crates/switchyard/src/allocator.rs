//! The process allocator (mimalloc, installed by the binary in `main.rs`) and how the process's
//! memory is paged.

/// Hands the memory the allocator holds free back to the system now, instead of at its next
/// purge, which may not come for a thread that goes quiet. Worth calling after a one-off burst
/// that frees many MiB at once, such as compiling a tokenizer's pre-tokenizer pattern (about
/// 16 MiB of scratch for 3 MiB kept). Where mimalloc is not the global allocator (unit tests),
/// its heaps are empty and this does nothing.
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointers; mimalloc allows it on any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// Keeps the process out of transparent huge pages. mimalloc marks its arena for huge pages,
/// and on a kernel whose THP mode is `madvise` the kernel's background collapser then fills
/// each touched 2 MiB stretch of it with a whole huge page: an idle gateway's RSS grew by about
/// 5 MiB some seconds after a burst of allocations, with no allocation of its own. A gateway's
/// heap is tens of MiB, too small for huge pages to save much in address translation, so
/// resident memory that follows use wins. Call once, first thing in `main`.
pub fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Not fatal: memory use is then only less predictable.
        eprintln!("switchyard: could not opt out of transparent huge pages: {e}");
    }
}
