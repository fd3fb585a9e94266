//! The CPUs' idle states during a run. A CPU with nothing to run halts, and waking it again
//! takes tens of microseconds (on a virtual machine, a trip through the hypervisor, on bare
//! metal a deeper sleep state's exit). At a fixed rate the CPUs idle between requests, so every
//! hop of every request wakes one, and the tail of a measurement follows the host's idle path
//! more than the targets' work. Linux lets a process ask, through the PM QoS device
//! `/dev/cpu_dma_latency`, that no CPU take longer than a given time to wake; asked for 0 µs,
//! idle CPUs poll instead of halting for as long as the device is held open. The request goes
//! with the file descriptor, so it ends however the process does.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};

use serde::Serialize;

/// The kernel's CPU latency QoS device (root only on most systems).
const QOS_DEVICE: &str = "/dev/cpu_dma_latency";
/// Where the kernel names its idle driver and governor.
const CPUIDLE_DIR: &str = "/sys/devices/system/cpu/cpuidle";

/// What a run asks of the CPUs' idle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleRequest {
    /// Leave them as the host has them.
    AsIs,
    /// Hold idle CPUs at polling where this process may; otherwise say so and go on.
    PollIfAllowed,
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
    /// Why polling was asked for and not held.
    pub not_held: Option<String>,
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
    if request == IdleRequest::AsIs {
        return Ok((idle, None));
    }
    match PollingHold::acquire() {
        Ok(hold) => {
            idle.polling_held = true;
            Ok((idle, Some(hold)))
        }
        Err(e) if request == IdleRequest::PollIfAllowed => {
            idle.not_held = Some(format!("{QOS_DEVICE}: {e}"));
            Ok((idle, None))
        }
        Err(e) => Err(anyhow::anyhow!(
            "holding idle CPUs at polling (--cpu-idle poll): {QOS_DEVICE}: {e}"
        )),
    }
}

/// The report's line on the CPUs' idle states.
pub fn line(idle: &CpuIdle) -> String {
    let kernel = match (&idle.driver, &idle.governor) {
        (Some(d), Some(g)) => format!("driver {d}, governor {g}"),
        (Some(d), None) => format!("driver {d}"),
        _ => "no cpuidle driver".to_owned(),
    };
    let state = if idle.polling_held {
        "held at polling for the run (CPU latency QoS 0 us): a woken thread's CPU never has to \
         come out of a halt, for every target alike; --cpu-idle as-is leaves them as they are"
            .to_owned()
    } else if let Some(why) = &idle.not_held {
        format!(
            "warning: not held at polling ({why}); every figure includes waking halted CPUs, \
             which on a virtual machine goes through the hypervisor"
        )
    } else {
        "left as the host has them (--cpu-idle as-is); every figure includes waking halted CPUs"
            .to_owned()
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
        assert_eq!(idle.not_held, None);
        // What the kernel names is passed on as it is, never an empty or placeholder name.
        assert_eq!(idle.driver, cpuidle_file("current_driver"));
        for name in [&idle.driver, &idle.governor].into_iter().flatten() {
            assert!(!name.is_empty() && name != "none" && name.trim() == name);
        }
    }

    #[test]
    fn polling_is_held_while_the_hold_lives_or_its_absence_is_explained() {
        let (idle, hold) = prepare(IdleRequest::PollIfAllowed).unwrap();
        if may_hold() {
            assert!(idle.polling_held);
            assert_eq!(idle.not_held, None);
            assert!(hold.is_some());
            // Every holder together asks for the least of their limits: 0 while this one lives.
            assert_eq!(current_limit_us().unwrap(), 0);
        } else {
            eprintln!("note: {QOS_DEVICE} is not writable here; only the refusal is checked");
            assert!(!idle.polling_held);
            assert!(hold.is_none());
            let why = idle.not_held.as_deref().unwrap();
            assert!(why.starts_with(QOS_DEVICE), "{why}");
        }
    }

    #[test]
    fn polling_asked_for_outright_fails_the_run_where_it_cannot_be_held() {
        match prepare(IdleRequest::Poll) {
            Ok((idle, hold)) => {
                assert!(may_hold());
                assert!(idle.polling_held && hold.is_some());
            }
            Err(e) => {
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
            not_held: None,
        };
        let held = line(&idle);
        assert!(held.starts_with("CPU idle: driver haltpoll, governor haltpoll; held at polling"));
        idle.polling_held = false;
        idle.not_held = Some("/dev/cpu_dma_latency: Permission denied".into());
        let refused = line(&idle);
        assert!(refused.contains("warning: not held at polling (/dev/cpu_dma_latency: Permission"));
        idle.not_held = None;
        idle.driver = None;
        idle.governor = None;
        assert!(line(&idle).starts_with("CPU idle: no cpuidle driver; left as the host has them"));
    }
}
