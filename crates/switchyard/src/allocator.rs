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

/// mimalloc's number for its purge delay option (`mi_option_purge_delay` in its header, which
/// the bindings do not name).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Has the allocator hand a free page back to the system as soon as it has one, instead of
/// after its default delay of a second; `MIMALLOC_PURGE_DELAY` in the environment still wins.
/// Under steady load the gateway's live heap is flat, yet with the delayed purge its resident
/// memory crept or stepped up over ten minutes (by 0.8 and 2.5 MiB in two runs); purging at
/// once held it flat after the first minutes, for CPU within the machine's spread (at most a
/// few percent; docs/PERFORMANCE.md, eleventh round). Call once, first thing in `main`.
pub fn purge_free_pages_at_once() {
    // SAFETY: `mi_option_set_default` takes no pointers and only stores a number; it runs
    // before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn purge_delay() -> std::os::raw::c_long {
        // SAFETY: reads a number; no pointers.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    #[test]
    fn purge_delay_is_the_option_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // mimalloc's documented default for the purge delay: the number names that option.
        assert_eq!(purge_delay(), 1000);
        purge_free_pages_at_once();
        assert_eq!(purge_delay(), 0);
    }
}
