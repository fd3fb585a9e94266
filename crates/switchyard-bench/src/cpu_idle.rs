//! The CPUs' idle states during a run. A CPU with nothing to run halts, and waking it again
//! takes tens of microseconds (on a virtual machine, a trip through the hypervisor, on bare
//! metal a deeper sleep state's exit). At a fixed rate the CPUs idle between requests, so every
//! hop of every request wakes one, and the tail of a measurement follows the host's idle path
//! as much as the targets' work. That is part of what a proxy hop costs where it is deployed,
//! so runs leave it in by default; to see a target's own work without it (`--cpu-idle poll`),
//! Linux lets a process ask, through the PM QoS device `/dev/cpu_dma_latency`, that no CPU take
//! longer than a given time to wake: asked for 0 µs, idle CPUs poll instead of halting for as
//! long as the device is held open. The request goes with the file descriptor, so it ends
//! however the process does.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};

use serde::Serialize;

/// The kernel's CPU latency QoS device (root only on most systems).
const QOS_DEVICE: &str = "/dev/cpu_dma_latency";
/// A CPU latency limit at or below this keeps idle CPUs out of every halting state.
const POLLING_LIMIT_US: i32 = 1;
/// Where the kernel names its idle driver and governor.
const CPUIDLE_DIR: &str = "/sys/devices/system/cpu/cpuidle";

/// What a run asks of the CPUs' idle states (`--cpu-idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdleRequest {
    /// Leave them as the host has them.
    #[value(name = "as-is")]
    AsIs,
    /// Hold idle CPUs at polling, or do not run.
    Poll,
}

/// The CPUs' idle states as a run had them, for its report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuIdle {
    /// The kernel's cpuidle driver (`haltpoll`, `intel_idle`, `acpi_idle`, …), when it has one.
    pub driver: Option<String>,
    /// Its governor (`menu`, `teo`, `haltpoll`, …).
    pub governor: Option<String>,
    /// Idle CPUs polled rather than halted for the whole run.
    pub polling_held: bool,
    /// The CPU wake-up latency every holder of the QoS device together asked for when the run
    /// started, µs, when this process may read it: another process holding 0 makes idle CPUs
    /// poll whatever this run asked.
    pub latency_limit_us: Option<i32>,
}

/// Idle CPUs held at polling while this lives.
#[derive(Debug)]
pub struct PollingHold {
    _device: File,
}

impl PollingHold {
    /// Asks for a CPU wake-up latency of 0 µs. Fails where the device is missing or this
    /// process may not write it.
    pub fn acquire() -> io::Result<PollingHold> {
        let mut device = OpenOptions::new().write(true).open(QOS_DEVICE)?;
        // The device takes the limit as a native-endian 32-bit integer, in microseconds.
        device.write_all(&0i32.to_ne_bytes())?;
        Ok(PollingHold { _device: device })
    }
}

/// The CPU wake-up latency every holder of the device together asks for now, µs (the kernel's
/// default, when none does, is 2,000 s).
pub fn current_limit_us() -> io::Result<i32> {
    let mut bytes = [0u8; 4];
    File::open(QOS_DEVICE)?.read_exact(&mut bytes)?;
    Ok(i32::from_ne_bytes(bytes))
}

fn cpuidle_file(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("{CPUIDLE_DIR}/{name}"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s != "none")
}

/// Applies `request` for a run: the report's account of the CPUs' idle states and, when
/// polling is held, the hold to keep until the run ends.
pub fn prepare(request: IdleRequest) -> anyhow::Result<(CpuIdle, Option<PollingHold>)> {
    let mut idle = CpuIdle {
        driver: cpuidle_file("current_driver"),
        governor: cpuidle_file("current_governor_ro").or_else(|| cpuidle_file("current_governor")),
        ..CpuIdle::default()
    };
    let hold = match request {
        IdleRequest::AsIs => None,
        IdleRequest::Poll => Some(PollingHold::acquire().map_err(|e| {
            anyhow::anyhow!("holding idle CPUs at polling (--cpu-idle poll): {QOS_DEVICE}: {e}")
        })?),
    };
    idle.polling_held = hold.is_some();
    // Read after this run's own request, so that it counts too.
    idle.latency_limit_us = current_limit_us().ok();
    Ok((idle, hold))
}

/// The report's line on the CPUs' idle states.
pub fn line(idle: &CpuIdle) -> String {
    let kernel = match (&idle.driver, &idle.governor) {
        (Some(d), Some(g)) => format!("driver {d}, governor {g}"),
        (Some(d), None) => format!("driver {d}"),
        _ => "no cpuidle driver".to_owned(),
    };
    let state = match (idle.polling_held, idle.latency_limit_us) {
        (true, _) => "held at polling for the run (--cpu-idle poll, CPU latency QoS 0 us): no \
                      target's latency includes waking a halted CPU, which a deployed hop pays"
            .to_owned(),
        // Another process asks for a CPU latency this short: idle CPUs poll, or stay shallow.
        (false, Some(limit)) if limit <= POLLING_LIMIT_US => format!(
            "warning: left as they are, but another process holds the CPU latency QoS at \
             {limit} us, so idle CPUs poll as under --cpu-idle poll"
        ),
        (false, _) => "left as the host has them: every figure includes waking halted CPUs (on a \
                       virtual machine, through the hypervisor); --cpu-idle poll holds them at \
                       polling"
            .to_owned(),
    };
    format!("CPU idle: {kernel}; {state}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn may_hold() -> bool {
        OpenOptions::new().write(true).open(QOS_DEVICE).is_ok()
    }

    #[test]
    fn as_is_holds_nothing_and_reports_the_kernel() {
        let (idle, hold) = prepare(IdleRequest::AsIs).unwrap();
        assert!(hold.is_none());
        assert!(!idle.polling_held);
        // The limit is read where this process may read the device, never made up.
        assert_eq!(idle.latency_limit_us.is_some(), current_limit_us().is_ok());
        // What the kernel names is passed on as it is, never an empty or placeholder name.
        assert_eq!(idle.driver, cpuidle_file("current_driver"));
        for name in [&idle.driver, &idle.governor].into_iter().flatten() {
            assert!(!name.is_empty() && name != "none" && name.trim() == name);
        }
    }

    #[test]
    fn polling_is_held_while_the_hold_lives_or_the_run_refused() {
        match prepare(IdleRequest::Poll) {
            Ok((idle, hold)) => {
                assert!(may_hold());
                assert!(idle.polling_held && hold.is_some());
                assert_eq!(idle.latency_limit_us, Some(0));
                // Every holder together asks for the least of their limits: 0 while this one
                // lives.
                assert_eq!(current_limit_us().unwrap(), 0);
            }
            Err(e) => {
                eprintln!("note: {QOS_DEVICE} is not writable here; only the refusal is checked");
                assert!(!may_hold());
                assert!(format!("{e:#}").contains("--cpu-idle poll"), "{e:#}");
            }
        }
    }

    #[test]
    fn the_line_names_the_kernel_and_the_state() {
        let mut idle = CpuIdle {
            driver: Some("haltpoll".into()),
            governor: Some("haltpoll".into()),
            polling_held: true,
            latency_limit_us: Some(0),
        };
        let held = line(&idle);
        assert!(held.starts_with("CPU idle: driver haltpoll, governor haltpoll; held at polling"));
        // Left as they are while another process holds them at polling: the run says so.
        idle.polling_held = false;
        assert!(line(&idle).contains(
            "; warning: left as they are, but another process holds the CPU latency QoS at 0 us"
        ));
        idle.driver = None;
        idle.governor = None;
        for limit in [None, Some(2_000_000_000), Some(100)] {
            idle.latency_limit_us = limit;
            assert!(
                line(&idle).starts_with("CPU idle: no cpuidle driver; left as the host has them"),
                "{limit:?}"
            );
        }
    }
}
