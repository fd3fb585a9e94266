//! Buffers for the texts request records keep, handed back by the record writer once a batch is
//! stored, so the next requests copy their kept texts into them instead of into new memory.
//!
//! A record's kept prompt is copied on the serving thread (up to `telemetry.content_max_bytes`
//! and the masking margins: about 18 KiB by default) and freed on the writer's, a batch at a
//! time. Blocks that size sit in pages of half a MiB, which the allocator hands back to the
//! system soon after they are wholly free; at full load with long prompts each batch freed some
//! MiB at once, and the serving threads then touched fresh pages for the next records: four to
//! five page faults per request (docs/PERFORMANCE.md, forty-eighth round). Buffers kept here
//! are reused whole; the writer finishes a kept text where it lies ([`super::clip::finish_masked`]),
//! so a buffer comes back the size it went out.
//!
//! The store is a bounded lock-free queue, shared by all threads and capped in bytes
//! ([`SPARE_BYTES`]): under load it holds up to that much more than the records in flight; the
//! writer lets every buffer go once records stop coming for a second, so an idle gateway holds
//! none. The serving threads that allocated them then collect what was freed on their behalf
//! ([`crate::allocator::Collector`]).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_queue::ArrayQueue;

/// Buffers smaller than this are not kept: small blocks come from pages the allocator keeps.
const SPARE_FROM_BYTES: usize = 8 * 1024;
/// Most bytes of buffers kept at once: a whole batch's kept prompts at the default cap (512
/// records of some 18 KiB), which the serving threads use up while the next batch gathers.
const SPARE_BYTES: usize = 16 << 20;
/// Most buffers kept at once.
const SPARE_BUFFERS: usize = 1024;

static SPARES: LazyLock<Spares> = LazyLock::new(|| Spares::new(SPARE_BUFFERS, SPARE_BYTES));

/// An empty buffer of at least `capacity` bytes: a spare one when there is one large enough.
pub fn buffer(capacity: usize) -> String {
    SPARES.buffer(capacity)
}

/// Keeps `text`'s buffer for [`buffer`] when it is large enough to be worth it and the spares
/// have room; else it is freed.
pub fn hand_back(text: String) {
    SPARES.hand_back(text);
}

/// Whether any buffer is kept.
pub fn any() -> bool {
    !SPARES.queue.is_empty()
}

/// Frees every kept buffer. Serving threads allocated them, so they are told to collect.
pub fn let_go() {
    if SPARES.let_go() > 0 {
        crate::allocator::freed_in_bulk_elsewhere();
    }
}

/// Spare buffers, bounded in number and in bytes.
struct Spares {
    queue: ArrayQueue<String>,
    /// Capacity of the buffers in `queue`.
    held: AtomicUsize,
    max_bytes: usize,
}

impl Spares {
    fn new(buffers: usize, max_bytes: usize) -> Self {
        Self {
            queue: ArrayQueue::new(buffers),
            held: AtomicUsize::new(0),
            max_bytes,
        }
    }

    fn buffer(&self, capacity: usize) -> String {
        if capacity >= SPARE_FROM_BYTES
            && let Some(spare) = self.queue.pop()
        {
            self.held.fetch_sub(spare.capacity(), Ordering::Relaxed);
            // Kept texts of one configuration are mostly of one size; a smaller spare is let go.
            if spare.capacity() >= capacity {
                return spare;
            }
        }
        String::with_capacity(capacity)
    }

    fn hand_back(&self, mut text: String) {
        let capacity = text.capacity();
        if capacity < SPARE_FROM_BYTES {
            return;
        }
        // Counted before it is queued, so concurrent hands never hold more than the bound.
        if self.held.fetch_add(capacity, Ordering::Relaxed) + capacity > self.max_bytes {
            self.held.fetch_sub(capacity, Ordering::Relaxed);
            return;
        }
        text.clear();
        if let Err(text) = self.queue.push(text) {
            self.held.fetch_sub(text.capacity(), Ordering::Relaxed);
        }
    }

    /// Frees every kept buffer; returns how many.
    fn let_go(&self) -> usize {
        let mut freed = 0;
        while let Some(spare) = self.queue.pop() {
            self.held.fetch_sub(spare.capacity(), Ordering::Relaxed);
            freed += 1;
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_handed_back_is_reused_empty() {
        let spares = Spares::new(8, 1 << 20);
        let mut text = spares.buffer(20_000);
        text.push_str("a kept prompt");
        let address = text.as_ptr();
        spares.hand_back(text);
        assert_eq!(spares.queue.len(), 1);
        let again = spares.buffer(19_000);
        assert_eq!(again.as_ptr(), address, "the same buffer");
        assert!(again.is_empty() && again.capacity() >= 19_000);
        assert!(spares.queue.is_empty());
        // A small buffer neither takes a spare nor is kept.
        spares.hand_back(again);
        assert_eq!(spares.buffer(100).capacity(), 100);
        assert_eq!(spares.queue.len(), 1);
        spares.hand_back(String::with_capacity(100));
        assert_eq!(spares.queue.len(), 1);
        spares.let_go();
        assert!(spares.queue.is_empty());
        assert_eq!(spares.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_spare_too_small_is_let_go_and_what_is_kept_is_bounded() {
        let spares = Spares::new(64, 1 << 20);
        spares.hand_back(String::with_capacity(10_000));
        assert!(spares.buffer(20_000).capacity() >= 20_000);
        assert!(spares.queue.is_empty(), "the smaller spare was let go");
        assert_eq!(spares.held.load(Ordering::Relaxed), 0);
        // In bytes: 16 of 64 KiB fill 1 MiB.
        for _ in 0..64 {
            spares.hand_back(String::with_capacity(64 * 1024));
        }
        assert_eq!(spares.queue.len(), 16);
        assert_eq!(spares.held.load(Ordering::Relaxed), 1 << 20);
        // In number: eight buffers at most.
        let few = Spares::new(8, 1 << 20);
        for _ in 0..20 {
            few.hand_back(String::with_capacity(10_000));
        }
        assert_eq!(few.queue.len(), 8);
        assert_eq!(few.held.load(Ordering::Relaxed), 8 * 10_000);
    }
}
