//! How the process's threads ask the kernel for a CPU: background threads at a higher nice value
//! (`server.background_nice`), and the record writer in the idle scheduling class while it keeps
//! up (`server.idle_writer`, see `telemetry::recorder`). Linux keeps both per thread; elsewhere
//! nothing is changed.

/// A thread's scheduling class, of the two the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `SCHED_OTHER`: the fair share every thread has by default.
    Normal,
    /// `SCHED_IDLE`: runs only on a CPU no normal thread wants, and gives it up the moment one
    /// does (a normal thread that wakes preempts it at once; a CPU that runs only idle threads
    /// counts as free when the kernel places a woken thread).
    Idle,
}

/// The calling thread's id (the `tid` other threads name it by).
pub fn current_thread_id() -> i32 {
    #[cfg(target_os = "linux")]
    return rustix::thread::gettid().as_raw_nonzero().get();
    #[cfg(not(target_os = "linux"))]
    0
}

/// Puts thread `tid` (0: the calling thread) in `class`, keeping its nice value.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn set_class(tid: i32, class: Class) -> std::io::Result<()> {
    let policy = match class {
        Class::Normal => libc::SCHED_OTHER,
        Class::Idle => libc::SCHED_IDLE,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // The system call rather than libc's wrapper: musl's wrapper does nothing (it returns
    // ENOSYS), since POSIX defines the call per process while Linux applies it to one thread.
    // SAFETY: `param` is a valid `sched_param` that outlives the call, which only reads it.
    let result = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            libc::c_long::from(tid),
            libc::c_long::from(policy),
            &raw const param,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_class(_tid: i32, _class: Class) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Whether this process may put a thread in the idle class and take it out again. Leaving the
/// idle class is a raise in priority: Linux allows it with `CAP_SYS_NICE`, or when the thread's
/// `RLIMIT_NICE` would allow its nice value (at least 20 for nice 0); an unprivileged process,
/// a container without that capability, may enter the class but never leave it. Tried once on a
/// thread of its own, which ends after.
pub fn idle_class_is_reversible() -> bool {
    static REVERSIBLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REVERSIBLE.get_or_init(|| {
        std::thread::Builder::new()
            .name("switchyard-probe".into())
            .spawn(|| set_class(0, Class::Idle).is_ok() && set_class(0, Class::Normal).is_ok())
            .ok()
            .and_then(|probe| probe.join().ok())
            .unwrap_or(false)
    })
}

/// Raises the calling thread's nice value to `nice` (`server.background_nice`, 0 by default:
/// nothing). A thread it starts inherits the value: the SQLite connection a writer opens runs
/// on a thread it starts. When the CPUs are all busy, a background burst then waits for the
/// serving threads instead of delaying their requests by whole scheduler slices; the
/// background's share shrinks with it.
pub fn lower_priority(nice: u8) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        let thread = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(thread), i32::from(nice)) {
            tracing::debug!(error = %e, "cannot lower a background thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// The id of the thread of this process named `name`, if there is one (Linux: its `comm`, the
/// first 15 bytes of the name it was given).
pub fn thread_named(name: &str) -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        let name = &name.as_bytes()[..name.len().min(15)];
        std::fs::read_dir("/proc/self/task")
            .ok()?
            .filter_map(Result::ok)
            .find(|task| {
                std::fs::read(task.path().join("comm"))
                    .is_ok_and(|comm| comm.strip_suffix(b"\n").unwrap_or(&comm) == name)
            })
            .and_then(|task| task.file_name().to_str()?.parse().ok())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = name;
        None
    }
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;

    fn policy_of(tid: i32) -> u64 {
        // Field 41 of a thread's stat line, counted after the parenthesised name.
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(38).unwrap().parse().unwrap()
    }

    #[test]
    fn a_thread_enters_the_idle_class_and_leaves_it_when_allowed() {
        let reversible = idle_class_is_reversible();
        std::thread::Builder::new()
            .name("class-test".into())
            .spawn(move || {
                let tid = current_thread_id();
                assert_eq!(thread_named("class-test"), Some(tid));
                assert_eq!(policy_of(tid), libc::SCHED_OTHER as u64);
                set_class(0, Class::Idle).unwrap();
                assert_eq!(policy_of(tid), libc::SCHED_IDLE as u64);
                assert_eq!(set_class(tid, Class::Normal).is_ok(), reversible);
                let expected = if reversible {
                    libc::SCHED_OTHER
                } else {
                    libc::SCHED_IDLE
                };
                assert_eq!(policy_of(tid), expected as u64);
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(thread_named("no-such-thread"), None);
    }
}
