//! Process and machine facts from `/proc`: CPU time (`utime + stime` of `/proc/PID/stat`) and
//! minor page faults (`minflt`, the same line), resident memory (`VmRSS` of
//! `/proc/PID/status`), the machine's CPU time and the part of it the hypervisor gave to other
//! guests (`/proc/stat`), and the CPU model, core count and memory printed in the report
//! header. Linux only; elsewhere the figures are simply absent.

use std::process::Command;

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, almost always 100).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The numeric field `n` (1-based, as `proc(5)` numbers them) of a `/proc/PID/stat` line, from
/// field 3 on. The command name (field 2) is in parentheses and may hold spaces, so the fields
/// are counted from after its last `)`.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    from_state(stat)?.nth(n.checked_sub(3)?)?.parse().ok()
}

/// The fields of a `/proc/PID/stat` line from field 3 (the state) on.
fn from_state(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace())
}

/// Whether process `pid` still runs: it is there and not a zombie (a process that has exited
/// and waits for its parent to reap it).
pub fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        from_state(&stat)
            .and_then(|mut f| f.next())
            .is_some_and(|s| s != "Z")
    })
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // utime and stime.
    let utime = stat_field(stat, 14)?;
    let stime = stat_field(stat, 15)?;
    Some(utime + stime)
}

/// A process's counters so far (all its threads), from one read of its `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Minor page faults: pages it touched for the first time since the kernel gave them, or
    /// again after it took them back. Each costs the faulting thread a trip into the kernel
    /// (and a page cleared), so a count that grows with the requests shows memory handed back
    /// and fetched anew on the request path.
    pub minor_faults: u64,
}

impl Counters {
    /// What the counters grew by since `start`.
    pub fn since(self, start: Counters) -> Counters {
        Counters {
            cpu_ticks: self.cpu_ticks.saturating_sub(start.cpu_ticks),
            minor_faults: self.minor_faults.saturating_sub(start.minor_faults),
        }
    }
}

/// A process's CPU time and minor page faults so far.
pub fn counters(pid: u32) -> Option<Counters> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_counters(&stat)
}

fn parse_counters(stat: &str) -> Option<Counters> {
    Some(Counters {
        cpu_ticks: parse_cpu_ticks(stat)?,
        // minflt.
        minor_faults: stat_field(stat, 10)?,
    })
}

/// The machine's CPU time so far, in clock ticks: all of it (every state of every CPU), and
/// the part stolen: time a virtual CPU was ready to run but its hypervisor ran another guest.
/// Requests that wait out a steal take that long longer whatever the target does, so a run's
/// steal tells how far its tail is the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTotals {
    pub all: u64,
    pub steal: u64,
}

impl CpuTotals {
    /// The machine's totals now.
    pub fn now() -> Option<CpuTotals> {
        parse_cpu_totals(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// What passed between `earlier` and `self`.
    pub fn since(self, earlier: CpuTotals) -> CpuTotals {
        CpuTotals {
            all: self.all.saturating_sub(earlier.all),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }

    pub fn add(self, other: CpuTotals) -> CpuTotals {
        CpuTotals {
            all: self.all + other.all,
            steal: self.steal + other.steal,
        }
    }

    /// Stolen time as a percentage of all CPU time; `None` over no time at all.
    pub fn steal_pct(self) -> Option<f64> {
        (self.all > 0).then(|| self.steal as f64 * 100.0 / self.all as f64)
    }
}

fn parse_cpu_totals(stat: &str) -> Option<CpuTotals> {
    // `cpu  user nice system idle iowait irq softirq steal guest guest_nice`: the guest times
    // are already counted in user and nice, so the first eight make up the whole.
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [.., steal] = fields[..] else {
        return None;
    };
    // A line with fewer times (an old kernel's, without steal) is not a reading.
    (fields.len() == 8).then(|| CpuTotals {
        all: fields.iter().sum(),
        steal,
    })
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kib_line(&status, "VmRSS:")
}

/// Resident set size of a process and its anonymous part (the heap and stacks, without the
/// binary's and libraries' pages), in KiB.
pub fn rss_and_anon_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((
        parse_kib_line(&status, "VmRSS:")?,
        parse_kib_line(&status, "RssAnon:")?,
    ))
}

fn parse_kib_line(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs this process may use (what `nproc` prints).
    pub cpus: usize,
    pub memory_mib: u64,
    pub kernel: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib: parse_kib_line(&meminfo, "MemTotal:").unwrap_or(0) / 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_found_after_an_awkward_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1190 0 0 0 37 12 0 0 20 0 3 0 \
                    123 456 789";
        assert_eq!(parse_cpu_ticks(stat), Some(49));
        assert_eq!(
            parse_counters(stat),
            Some(Counters {
                cpu_ticks: 49,
                minor_faults: 1190
            })
        );
    }

    #[test]
    fn machine_totals_count_every_state_and_the_stolen_part() {
        let stat = "cpu  84765 10 10728 126936 883 5 856 2137 40 0\n\
                    cpu0 42000 5 5000 63000 400 2 400 1000 20 0\nintr 1 2 3\n";
        let totals = parse_cpu_totals(stat).unwrap();
        assert_eq!(totals.steal, 2137);
        assert_eq!(
            totals.all,
            84765 + 10 + 10728 + 126936 + 883 + 5 + 856 + 2137
        );
        let later = CpuTotals {
            all: totals.all + 1000,
            steal: totals.steal + 50,
        };
        assert_eq!(later.since(totals).steal_pct(), Some(5.0));
        assert_eq!(CpuTotals::default().steal_pct(), None);
        // An old kernel's line without the steal field is not a reading.
        assert_eq!(parse_cpu_totals("cpu  1 2 3 4 5 6 7\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(counters(pid).unwrap().minor_faults > 0);
        assert!(rss_kib(pid).unwrap() > 0);
        let (rss, anon) = rss_and_anon_kib(pid).unwrap();
        assert!(anon > 0 && anon <= rss);
        assert!(Machine::probe().cpus >= 1);
        assert!(CpuTotals::now().is_some_and(|t| t.all > 0));
    }
}
