//! The process allocator (mimalloc, installed by the binary in `main.rs`) and how the process's
//! memory is paged.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

/// mimalloc as the global allocator, asked for a plain block wherever the alignment a layout
/// needs is one every block has anyway (a machine word: blocks are whole words, and a free
/// block holds a pointer). The `mimalloc` crate's own allocator asks for an aligned block every
/// time, and mimalloc's aligned path only takes its fast lane for blocks of up to 1 KiB; above
/// that it over-allocates by the alignment and marks the page as holding interior pointers,
/// which made the nine or so larger buffers of every request (read and write buffers, bodies,
/// task cells) cost some two hundred instructions each. Wider alignments still go the aligned
/// way.
pub struct Mimalloc;

/// The alignment every mimalloc block has.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

// SAFETY: every method hands mimalloc's own blocks out and back; a layout whose alignment is
// above `BLOCK_ALIGN` goes through the aligned functions, which honour it; `dealloc` and
// `realloc` receive only pointers these functions returned, as `GlobalAlloc` requires.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                libmimalloc_sys::mi_malloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                libmimalloc_sys::mi_zalloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl; mimalloc frees aligned and plain blocks alike.
        unsafe { libmimalloc_sys::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl; the layout's alignment is the one the block was made with.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                libmimalloc_sys::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                libmimalloc_sys::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align())
                    .cast()
            }
        }
    }
}

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

/// How many times memory that serving threads allocated was freed in bulk by another thread.
static BULK_FREES_ELSEWHERE: AtomicU64 = AtomicU64::new(0);

/// Notes that this thread has just freed, in one go, many blocks that other threads allocated
/// (the record writer letting its spare text buffers go). mimalloc hands such blocks back to
/// their own thread's heap, which returns their pages to the system only when that thread next
/// allocates or collects: an idle serving thread would hold them until traffic resumed. Serving
/// threads see the count change and collect ([`Collector`]).
pub fn freed_in_bulk_elsewhere() {
    BULK_FREES_ELSEWHERE.fetch_add(1, Ordering::Relaxed);
}

/// When an event-loop thread should hand its free memory back: once after it goes idle, and
/// again whenever another thread has freed in bulk what it allocated. The thread calls
/// [`Collector::tick`] on a timer, telling it whether it did any work since the last tick.
///
/// A thread that did work since its last tick keeps its free pages: the next requests reuse
/// them, and collecting under load would only cost page faults.
pub struct Collector {
    collected: bool,
    bulk_frees_seen: u64,
}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector {
    pub fn new() -> Self {
        Self {
            collected: false,
            bulk_frees_seen: BULK_FREES_ELSEWHERE.load(Ordering::Relaxed),
        }
    }

    /// Collects if the thread was idle since the last tick and either has not collected since
    /// it last worked or memory of its own was freed elsewhere since. Returns whether it did.
    pub fn tick(&mut self, worked: bool) -> bool {
        let due = self.due(worked, BULK_FREES_ELSEWHERE.load(Ordering::Relaxed));
        if due {
            release_free_memory();
        }
        due
    }

    fn due(&mut self, worked: bool, bulk_frees: u64) -> bool {
        if worked {
            self.collected = false;
            return false;
        }
        if self.collected && bulk_frees == self.bulk_frees_seen {
            return false;
        }
        self.bulk_frees_seen = bulk_frees;
        self.collected = true;
        true
    }
}

/// mimalloc's number for its purge delay option (`mi_option_purge_delay` in its header, which
/// the bindings do not name).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long a free page stays with the allocator before it goes back to the system, in ms.
const PURGE_DELAY_MS: std::os::raw::c_long = 10;

/// Has the allocator hand a free page back to the system 10 ms after it became free, instead
/// of after its default delay of a second; `MIMALLOC_PURGE_DELAY` in the environment still
/// wins. Under steady load the gateway's live heap is flat, yet with the one-second delay its
/// resident memory crept or stepped up over ten minutes (by 0.8 and 2.5 MiB in two runs).
/// Purging at once (a delay of 0) held it flat but returned pages that the next requests
/// took back at once: at saturation 0.2 to 0.3 page faults per request, and a `madvise` for
/// about every thirty. Ten milliseconds keeps the pages that requests in flight reuse and
/// still returns what a burst left (docs/PERFORMANCE.md, eleventh and twentieth rounds).
/// Call once, first thing in `main`.
pub fn purge_free_pages_soon() {
    // SAFETY: `mi_option_set_default` takes no pointers and only stores a number; it runs
    // before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
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

    #[test]
    #[allow(unsafe_code)]
    fn blocks_have_the_alignment_asked_and_keep_their_bytes() {
        let alloc = Mimalloc;
        // Sizes on both sides of mimalloc's small-block limit (1 KiB) and of its bins, and
        // alignments from a byte to a page.
        let sizes = [
            1usize, 7, 8, 24, 40, 100, 1000, 1024, 1025, 1500, 4096, 70_000,
        ];
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for &size in &sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layout has a non-zero size; every block is freed with the layout
                // it was made with, and only the bytes it holds are touched.
                unsafe {
                    let p = alloc.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    for i in 0..size {
                        *p.add(i) = (i % 251) as u8;
                    }
                    let grown = size * 3 + 5;
                    let q = alloc.realloc(p, layout, grown);
                    assert_eq!(q as usize % align, 0, "grown {size} align {align}");
                    for i in 0..size {
                        assert_eq!(*q.add(i), (i % 251) as u8);
                    }
                    alloc.dealloc(q, Layout::from_size_align(grown, align).unwrap());

                    let z = alloc.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    alloc.dealloc(z, layout);
                }
            }
        }
    }

    #[test]
    fn an_idle_thread_collects_once_and_again_after_a_bulk_free() {
        let mut collector = Collector {
            collected: false,
            bulk_frees_seen: 7,
        };
        assert!(!collector.due(true, 7), "a busy thread keeps its pages");
        assert!(collector.due(false, 7), "the first idle tick collects");
        assert!(!collector.due(false, 7), "then nothing is left to collect");
        assert!(
            collector.due(false, 8),
            "memory freed elsewhere is collected"
        );
        assert!(!collector.due(false, 8));
        // A bulk free while busy is covered by the first idle tick's collection.
        assert!(!collector.due(true, 9));
        assert!(collector.due(false, 9));
        assert!(!collector.due(false, 9));
        // `tick` collects for real.
        assert!(Collector::new().tick(false));
    }

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
        purge_free_pages_soon();
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }
}
