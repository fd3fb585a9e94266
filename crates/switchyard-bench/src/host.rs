//! A yardstick of the host itself, taken before each case while nothing of the run is busy: how
//! long a step of a fixed arithmetic chain takes (the clock), how long a chat request's JSON
//! takes to read into a tree and write back (work like the gateway's: branches, memory,
//! allocations), and a one-byte round trip over loopback TCP between threads on two CPUs
//! (wake-ups of an idle CPU). A shared virtual machine can run slower for minutes without
//! stealing any time (a busy sibling hyperthread, a neighbour's cache misses, a lower clock, a
//! hypervisor slow to wake an idle virtual CPU), which `--max-steal` cannot see; these figures
//! move with it, so cases of one run, and runs taken days apart, can be read against the host
//! each ran on.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Passes of the arithmetic chain; their median is kept, so one interrupted pass does not move
/// it.
const CPU_PASSES: usize = 21;
/// Steps in one pass: about a millisecond each on a current server core.
const CPU_STEPS: u64 = 1 << 20;
/// JSON documents read and written in one pass.
const JSON_PER_PASS: u32 = 200;
/// Round trips timed, after [`WARM_UP_TRIPS`] untimed ones.
const ROUND_TRIPS: usize = 2_000;
const WARM_UP_TRIPS: usize = 100;

/// The host's speed just before a case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HostProbe {
    /// Nanoseconds per step of a chain of dependent multiplications, additions and rotations
    /// (the median of 21 passes): the CPU's speed as one thread of this process gets it.
    pub cpu_step_ns: f64,
    /// Microseconds to read a 2 KB chat request (messages, a tool, numbers) into a tree of
    /// values and write it back out (the median of 21 passes of 200).
    pub json_us: f64,
    /// A byte written to a thread on another CPU over loopback TCP and written back,
    /// microseconds, p50 and p99 of 2,000: two wake-ups of a CPU gone idle and two trips through
    /// the kernel's TCP, what the hops of a proxied request at a moderate rate are made of (on a
    /// virtual machine, waking an idle CPU goes through the hypervisor).
    pub round_trip_p50_us: f64,
    pub round_trip_p99_us: f64,
}

/// Takes the yardstick: some 50 ms of computing and 2,100 round trips, about 0.2 s in all.
pub fn probe() -> io::Result<HostProbe> {
    let (round_trip_p50_us, round_trip_p99_us) = round_trips()?;
    Ok(HostProbe {
        cpu_step_ns: cpu_step_ns(),
        json_us: json_us()?,
        round_trip_p50_us,
        round_trip_p99_us,
    })
}

/// The median of [`CPU_PASSES`] timings of `pass`, in seconds.
fn median_pass(mut pass: impl FnMut()) -> f64 {
    let mut passes: Vec<f64> = (0..CPU_PASSES)
        .map(|_| {
            let start = Instant::now();
            pass();
            start.elapsed().as_secs_f64()
        })
        .collect();
    passes.sort_by(f64::total_cmp);
    passes[CPU_PASSES / 2]
}

fn cpu_step_ns() -> f64 {
    let pass = median_pass(|| {
        let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15_u64);
        for _ in 0..CPU_STEPS {
            // Each step needs the last one's result: the chain's length, not the core's
            // width, sets its time.
            x = x
                .wrapping_mul(0x5851_f42d_4c95_7f2d)
                .wrapping_add(0x1405_7b7e_f767_814f)
                .rotate_left(17);
        }
        std::hint::black_box(x);
    });
    pass * 1e9 / CPU_STEPS as f64
}

fn json_us() -> io::Result<f64> {
    let document = chat_request();
    let mut out = Vec::with_capacity(document.len() * 2);
    // Once untimed, so that a document that does not read back fails here, not in a pass.
    let tree: serde_json::Value = serde_json::from_slice(&document)?;
    serde_json::to_writer(&mut out, &tree)?;
    let pass = median_pass(|| {
        for _ in 0..JSON_PER_PASS {
            out.clear();
            let tree: serde_json::Value =
                serde_json::from_slice(std::hint::black_box(&document)).unwrap_or_default();
            let _ = serde_json::to_writer(&mut out, &tree);
            std::hint::black_box(&out);
        }
    });
    Ok(pass * 1e6 / f64::from(JSON_PER_PASS))
}

/// A fixed chat request of about 2 KB: a system message, turns of both roles, a tool with its
/// schema, sampling numbers.
fn chat_request() -> Vec<u8> {
    let turns: Vec<serde_json::Value> = (0..8)
        .map(|i| {
            serde_json::json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!(
                    "Turn {i}: summarise the third quarter's figures for the northern region, \
                     with the change against the second quarter in percent."
                ),
            })
        })
        .collect();
    let mut request = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are a careful analyst."}],
        "tools": [{
            "type": "function",
            "function": {
                "name": "quarterly_figures",
                "description": "Figures of one region for one quarter.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "region": {"type": "string", "enum": ["north", "south", "east", "west"]},
                        "quarter": {"type": "integer", "minimum": 1, "maximum": 4},
                    },
                    "required": ["region", "quarter"],
                },
            },
        }],
        "temperature": 0.2,
        "top_p": 0.95,
        "max_tokens": 512,
        "stream": false,
    });
    if let Some(messages) = request["messages"].as_array_mut() {
        messages.extend(turns);
    }
    serde_json::to_vec(&request).unwrap_or_default()
}

/// p50 and p99 of the timed round trips, in microseconds. The two threads are held on two
/// different CPUs where the process may use two: each byte then wakes a thread on the other CPU,
/// which has gone idle meanwhile, as most hops of a proxied request do at a moderate rate. Left
/// to the scheduler, the two threads would sometimes share one CPU, and the figure would land
/// on one of two levels (a switch on one CPU, or a wake-up of another) from case to case.
fn round_trips() -> io::Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let cpus = two_cpus();
    let echo = std::thread::Builder::new()
        .name("host-probe-echo".into())
        .spawn(move || -> io::Result<()> {
            if let Some((cpu, _)) = cpus {
                pin_to(cpu);
            }
            let (mut stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut byte = [0u8; 1];
            while stream.read(&mut byte)? == 1 {
                stream.write_all(&byte)?;
            }
            Ok(())
        })?;
    // The sending side on a thread of its own too, so that the harness's own thread (the load
    // generator's) keeps the CPUs it may use.
    let sender = std::thread::Builder::new()
        .name("host-probe-send".into())
        .spawn(move || -> io::Result<Vec<Duration>> {
            if let Some((_, cpu)) = cpus {
                pin_to(cpu);
            }
            let mut stream = TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut times = Vec::with_capacity(ROUND_TRIPS);
            let mut byte = [0u8; 1];
            for trip in 0..WARM_UP_TRIPS + ROUND_TRIPS {
                let start = Instant::now();
                stream.write_all(&[1])?;
                stream.read_exact(&mut byte)?;
                if trip >= WARM_UP_TRIPS {
                    times.push(start.elapsed());
                }
            }
            Ok(times)
        })?;
    let panicked = || io::Error::other("a thread of the host's probe panicked");
    let mut times = sender.join().map_err(|_| panicked())??;
    echo.join().map_err(|_| panicked())??;
    times.sort_unstable();
    let at = |pct: usize| times[(times.len() * pct).div_ceil(100) - 1].as_secs_f64() * 1e6;
    Ok((at(50), at(99)))
}

/// The first two CPUs this process may run on; `None` with only one.
#[cfg(target_os = "linux")]
fn two_cpus() -> Option<(usize, usize)> {
    let allowed = rustix::thread::sched_getaffinity(None).ok()?;
    let mut cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu));
    Some((cpus.next()?, cpus.next()?))
}

#[cfg(not(target_os = "linux"))]
fn two_cpus() -> Option<(usize, usize)> {
    None
}

/// Holds the calling thread on `cpu` (a probe's thread, which ends after).
#[cfg(target_os = "linux")]
fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

#[cfg(not(target_os = "linux"))]
fn pin_to(_cpu: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_times_both_yardsticks() {
        let probe = probe().expect("loopback is available");
        assert!(probe.cpu_step_ns.is_finite() && probe.cpu_step_ns > 0.0);
        assert!(probe.json_us.is_finite() && probe.json_us > 0.0);
        assert!(probe.round_trip_p50_us > 0.0);
        assert!(probe.round_trip_p99_us >= probe.round_trip_p50_us);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_round_trips_threads_are_given_two_cpus_the_process_may_use() {
        let allowed = rustix::thread::sched_getaffinity(None).unwrap();
        match two_cpus() {
            Some((first, second)) => {
                assert_ne!(first, second);
                assert!(allowed.is_set(first) && allowed.is_set(second));
            }
            None => assert_eq!(allowed.count(), 1),
        }
    }

    #[test]
    fn the_json_yardstick_is_a_chat_request_of_about_two_kilobytes() {
        let document = chat_request();
        assert!(
            (1_500..3_000).contains(&document.len()),
            "{}",
            document.len()
        );
        let tree: serde_json::Value = serde_json::from_slice(&document).unwrap();
        assert_eq!(tree["messages"].as_array().map(Vec::len), Some(9));
        assert_eq!(tree["messages"][8]["role"], "assistant");
    }
}
