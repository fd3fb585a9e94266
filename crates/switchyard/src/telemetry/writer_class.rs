//! The record writer's scheduling class (`server.idle_writer`): idle while it keeps up, normal
//! from the moment it falls behind.
//!
//! In the idle class the writer and the thread of its SQLite connection use only CPU time no
//! other thread wants. A serving thread that wakes while a batch is being written takes the CPU
//! at once, and the kernel counts a CPU that runs only idle threads as free when it places a
//! woken thread. In the normal class a request that came during a batch could wait behind a
//! SQLite statement for a few hundred µs while the other CPU went idle (docs/PERFORMANCE.md,
//! fiftieth round).
//!
//! The class has a cost when the CPUs are busy: the writer then gets almost no CPU (a weight of 3
//! against a normal thread's 1,024) and its queue grows. So the serving thread that queues a
//! record past a mark (records, or bytes of content) puts both threads back in the normal class
//! at once ([`WriterClass::lift`]), and the writer goes back to the idle class itself once it has
//! written all it found and a second has passed since the lift ([`WriterSide::caught_up`]).
//! Leaving the idle class takes a privilege, so the recorder uses the class only where this
//! process may leave it (`scheduling::idle_class_is_reversible`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::scheduling::{self, Class};

/// How long the writer stays in the normal class after a lift, at least: under a sustained
/// load that keeps lifting it, it does not go back and forth with every batch.
const STAY_NORMAL: Duration = Duration::from_secs(1);

/// The class the writer's threads are in, shared by the writer and the serving threads.
#[derive(Debug, Default)]
pub struct WriterClass {
    /// Even: normal; odd: idle. Every change adds one, so the writer can tell that a lift came
    /// in while it was moving to the idle class.
    state: AtomicU32,
    /// The writer's thread id (0 until it runs).
    writer: AtomicI32,
    /// The records connection's thread id (0 while unknown, or for a database elsewhere).
    db: AtomicI32,
    /// Times the writer was put back in the normal class.
    pub lifts: AtomicU64,
}

impl WriterClass {
    pub fn is_idle(&self) -> bool {
        self.state.load(Ordering::Relaxed) & 1 == 1
    }

    /// Puts the writer's threads back in the normal class, if they are idle. Called by a
    /// serving thread whose record finds the queue past its mark, and at shutdown.
    pub fn lift(&self) {
        let state = self.state.load(Ordering::Acquire);
        if state & 1 == 0 {
            return;
        }
        // Only lifts move an odd state on: a failed exchange means another thread lifted.
        if self
            .state
            .compare_exchange(state, state + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.lifts.fetch_add(1, Ordering::Relaxed);
            set(self.writer.load(Ordering::Acquire), Class::Normal);
            set(self.db.load(Ordering::Acquire), Class::Normal);
        }
    }
}

/// Sets thread `tid`'s class; 0 is no thread here.
fn set(tid: i32, class: Class) {
    if tid != 0
        && let Err(e) = scheduling::set_class(tid, class)
    {
        tracing::debug!(error = %e, ?class, "cannot set the record writer's scheduling class");
    }
}

/// The writer's own side: it alone moves the state from normal to idle.
pub struct WriterSide {
    pub shared: Arc<WriterClass>,
    /// The state as the writer last set or saw it.
    seen: u32,
    /// When the writer saw the last lift.
    normal_since: Instant,
    /// The name of the records connection's thread (SQLite), found once it exists.
    db_thread: Option<Arc<str>>,
}

impl WriterSide {
    pub fn new(shared: Arc<WriterClass>, db_thread: Option<&str>) -> Self {
        Self {
            seen: shared.state.load(Ordering::Acquire),
            shared,
            normal_since: Instant::now(),
            db_thread: db_thread.map(Arc::from),
        }
    }

    /// On the writer's thread, before its first record: registers it, and starts it idle.
    pub fn start(&mut self) {
        self.shared
            .writer
            .store(scheduling::current_thread_id(), Ordering::Release);
        self.lower();
    }

    /// After the writer has written everything it found: back to the idle class if it is
    /// normal and a second has passed since it was lifted.
    pub fn caught_up(&mut self, now: Instant) {
        let state = self.shared.state.load(Ordering::Acquire);
        if state != self.seen {
            // Lifted since the writer last looked.
            self.seen = state;
            self.normal_since = now;
        }
        if state & 1 == 0 && now.duration_since(self.normal_since) >= STAY_NORMAL {
            self.lower();
        }
    }

    /// After a write that reached the database: once the records connection's thread exists,
    /// puts it in the writer's class (it inherited the class the writer had when it opened the
    /// connection, which may have changed since).
    pub fn wrote(&mut self) {
        if self.shared.db.load(Ordering::Relaxed) != 0 {
            return;
        }
        let Some(tid) = self.db_thread.as_deref().and_then(scheduling::thread_named) else {
            return;
        };
        self.shared.db.store(tid, Ordering::Release);
        set(tid, class_of(self.seen));
        self.follow();
    }

    /// After a failed write: the connection may be opened again, on a new thread, found again
    /// after the next write that succeeds.
    pub fn write_failed(&mut self) {
        self.shared.db.store(0, Ordering::Release);
    }

    fn lower(&mut self) {
        let state = self.seen;
        if state & 1 == 1
            || self
                .shared
                .state
                .compare_exchange(state, state + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.seen = state + 1;
        set(self.shared.db.load(Ordering::Acquire), Class::Idle);
        set(scheduling::current_thread_id(), Class::Idle);
        self.follow();
    }

    /// A lift that came in while the writer changed classes may have set the threads normal
    /// before the writer set them idle: while the state moved on meanwhile, the threads are set
    /// again to what it says.
    fn follow(&mut self) {
        loop {
            let state = self.shared.state.load(Ordering::Acquire);
            if state == self.seen {
                return;
            }
            self.seen = state;
            self.normal_since = Instant::now();
            set(self.shared.db.load(Ordering::Acquire), class_of(state));
            set(scheduling::current_thread_id(), class_of(state));
        }
    }
}

fn class_of(state: u32) -> Class {
    if state & 1 == 1 {
        Class::Idle
    } else {
        Class::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decisions, on a thread of the test's own (its class changes are real when this
    /// process may make them, and ignored otherwise).
    #[test]
    fn idle_until_lifted_and_back_once_caught_up_a_second_later() {
        std::thread::spawn(|| {
            let shared = Arc::new(WriterClass::default());
            let mut writer = WriterSide::new(shared.clone(), None);
            writer.start();
            assert!(shared.is_idle());
            // Idle and caught up: nothing changes.
            let t0 = Instant::now();
            writer.caught_up(t0);
            assert!(shared.is_idle());

            shared.lift();
            assert!(!shared.is_idle());
            assert_eq!(shared.lifts.load(Ordering::Relaxed), 1);
            // A second lift of a normal writer does nothing.
            shared.lift();
            assert_eq!(shared.lifts.load(Ordering::Relaxed), 1);
            // Caught up soon after the lift: stays normal; a second after it saw the lift, idle.
            writer.caught_up(t0 + Duration::from_millis(10));
            assert!(!shared.is_idle());
            writer.caught_up(t0 + Duration::from_millis(500));
            assert!(!shared.is_idle());
            writer.caught_up(t0 + Duration::from_millis(1010));
            assert!(shared.is_idle());
            // Lifted again: the second counts from when the writer sees it.
            shared.lift();
            writer.caught_up(t0 + Duration::from_secs(5));
            assert!(!shared.is_idle());
            writer.caught_up(t0 + Duration::from_millis(5990));
            assert!(!shared.is_idle());
            writer.caught_up(t0 + Duration::from_secs(6));
            assert!(shared.is_idle());
            assert_eq!(shared.lifts.load(Ordering::Relaxed), 2);
            shared.lift();
        })
        .join()
        .unwrap();
    }
}
