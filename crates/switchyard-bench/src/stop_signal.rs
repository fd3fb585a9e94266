//! Stopping what the harness started when a signal ends it. A harness stopped with `kill`
//! (`SIGTERM`), by a terminal that closes (`SIGHUP`) or by Ctrl-C (`SIGINT`) ends without
//! unwinding, so the drops that stop its children never run: the gateway and nginx of the case
//! under way kept running on their ports after the harness had gone (Ctrl-C alone reached them,
//! through the terminal's process group). Here every child is registered
//! while it runs, and a thread waiting for those signals stops each (the gateway as its drop
//! does, with `SIGTERM` and a grace period), removes the run's scratch directories and exits
//! with the signal's status.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::procfs::runs;

/// The children running now.
static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Running {
    pid: u32,
    /// Asked with `SIGTERM` and given `grace` to finish; otherwise killed outright.
    grace: Option<Duration>,
}

/// Registers a child until [`finished`]; `grace` as its drop would give it after `SIGTERM`.
pub(crate) fn started(pid: u32, grace: Option<Duration>) {
    lock().push(Running { pid, grace });
}

/// Called by a child's drop before it signals and reaps the child. A child the signal thread
/// is stopping meanwhile is not reaped until that thread is done (the lock is held until the
/// process exits), so its process id cannot have been reused when it is signalled.
pub(crate) fn finished(pid: u32) {
    lock().retain(|r| r.pid != pid);
}

/// Whether `pid` is registered (for tests of the children's owners).
#[cfg(test)]
pub(crate) fn registered(pid: u32) -> bool {
    lock().iter().any(|r| r.pid == pid)
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Running>> {
    RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the thread that waits for `SIGTERM`, `SIGHUP` and `SIGINT`. From then on those
/// signals no longer end the process at once: the thread stops the children and exits with
/// 128 plus the signal's number, as the shell reports a process a signal ended.
pub fn stop_children_on_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered here, before the run starts, so no signal comes between.
    let (mut term, mut hup, mut int) = runtime.block_on(async {
        anyhow::Ok((
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("stop-signal".into())
        .spawn(move || {
            let (name, number) = runtime.block_on(async {
                tokio::select! {
                    _ = term.recv() => ("SIGTERM", 15),
                    _ = hup.recv() => ("SIGHUP", 1),
                    _ = int.recv() => ("SIGINT", 2),
                }
            });
            eprintln!("\nswitchyard-bench: {name}: stopping the gateway and nginx, then exiting");
            let guard = lock();
            stop_all(&guard);
            remove_scratch_dirs();
            std::process::exit(128 + number);
        })?;
    Ok(())
}

/// How long a child killed outright may take to be gone (`SIGKILL` is not instant).
const KILLED_WAIT: Duration = Duration::from_secs(2);

/// Stops every registered child: `SIGTERM` to those given a grace, `SIGKILL` to the rest and
/// to any still running when its grace is up; returns once each is gone or after
/// [`KILLED_WAIT`] more.
fn stop_all(running: &[Running]) {
    for r in running {
        let signal = if r.grace.is_some() {
            Signal::TERM
        } else {
            Signal::KILL
        };
        send(r.pid, signal);
    }
    for r in running {
        let Some(grace) = r.grace else { continue };
        let deadline = Instant::now() + grace;
        while runs(r.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if runs(r.pid) {
            send(r.pid, Signal::KILL);
        }
    }
    let deadline = Instant::now() + KILLED_WAIT;
    while running.iter().any(|r| runs(r.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn send(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, signal);
    }
}

/// Removes this process's scratch directories (`targets::ScratchDir`, named after its process id).
fn remove_scratch_dirs() {
    let ours = format!("-{}-", std::process::id());
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_scratch_dir_of(name, &ours) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `switchyard-bench-{label}-{pid}-{nanos}`, with `ours` = `-{pid}-`.
fn is_scratch_dir_of(name: &str, ours: &str) -> bool {
    name.strip_prefix("switchyard-bench")
        .and_then(|rest| rest.rfind('-').map(|end| &rest[..=end]))
        .is_some_and(|head| head.ends_with(ours))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_child_is_registered_while_it_runs_and_not_after() {
        started(4_000_001, None);
        started(4_000_002, Some(Duration::from_secs(5)));
        assert!(lock().contains(&Running {
            pid: 4_000_002,
            grace: Some(Duration::from_secs(5))
        }));
        finished(4_000_001);
        finished(4_000_002);
        assert!(!lock().iter().any(|r| r.pid >= 4_000_001));
    }

    #[test]
    fn children_are_stopped_as_asked_and_a_reaped_one_counts_as_exited() {
        let mut polite = Command::new("sh")
            .args(["-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stubborn = Command::new("sh")
            .args(["-c", "trap '' TERM; while :; do sleep 0.05; done"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Give the shells time to set their traps.
        std::thread::sleep(Duration::from_millis(300));
        assert!(runs(polite.id()) && runs(stubborn.id()));
        stop_all(&[
            Running {
                pid: polite.id(),
                grace: Some(Duration::from_secs(5)),
            },
            Running {
                pid: stubborn.id(),
                grace: Some(Duration::from_millis(200)),
            },
        ]);
        // Exited, not yet reaped: zombies, which count as stopped.
        assert!(!runs(polite.id()));
        assert!(!runs(stubborn.id()));
        let polite_status = polite.wait().unwrap();
        let stubborn_status = stubborn.wait().unwrap();
        assert_eq!(
            polite_status.code(),
            Some(0),
            "ended by its own SIGTERM trap"
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            stubborn_status.signal(),
            Some(9),
            "killed once its grace was up"
        );
    }

    #[test]
    fn only_this_process_s_scratch_directories_are_taken_for_its_own() {
        let ours = "-4242-";
        assert!(is_scratch_dir_of(
            "switchyard-bench-gateway-4242-123456",
            ours
        ));
        assert!(is_scratch_dir_of("switchyard-bench-nginx-4242-9", ours));
        assert!(!is_scratch_dir_of("switchyard-bench-gateway-14242-9", ours));
        assert!(!is_scratch_dir_of("switchyard-bench-gateway-4243-9", ours));
        assert!(!is_scratch_dir_of("switchyard-bench-gateway-9-4242", ours));
        assert!(!is_scratch_dir_of("other-gateway-4242-9", ours));
    }
}
