//! What the load goes to: the simulator (in this process, on a thread and runtime of its own),
//! the gateway (the real `switchyard` binary as a child process) and, when installed, nginx as a
//! reverse-proxy reference. Every child is stopped when its handle drops (the gateway with
//! `SIGTERM` first, the rest killed outright), or by `stop_signal` when a signal ends the
//! harness, so the harness never leaves a process behind; everything listens on 127.0.0.1 only.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use switchyard_sim::{SimConfig, SimServer};

use crate::payload::MASTER_KEY;

/// How long a child process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A scratch directory removed on drop (configs, logs, pid files).
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    pub fn new(label: &str) -> anyhow::Result<ScratchDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "switchyard-bench-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The simulator in zero-latency mode on its own thread, so its work never runs on the load
/// generator's runtime.
pub struct SimThread {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SimThread {
    pub fn start() -> anyhow::Result<SimThread> {
        let config = SimConfig {
            // The per-request log is for tests; keep its bookkeeping small.
            log_capacity: 16,
            ..SimConfig::default()
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("simulator".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                    match SimServer::start(config, loopback).await {
                        Ok(server) => {
                            let _ = ready_tx.send(Ok(server.addr));
                            let _ = stopped.await;
                            server.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .context("starting the simulator thread")?;
        let addr = ready_rx
            .recv_timeout(START_TIMEOUT)
            .context("the simulator did not start")?
            .context("starting the simulator")?;
        Ok(SimThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Killed {
    fn new(child: Child) -> Killed {
        crate::stop_signal::started(child.id(), None);
        Killed(child)
    }

    /// The child's exit status once it has exited (and is reaped), else `None`. A reaped child
    /// leaves the registry at once: its process id is free for the system to give again, and a
    /// signal meant for the child must not reach whatever gets it.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.0.try_wait().ok().flatten()?;
        crate::stop_signal::finished(self.0.id());
        Some(status)
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        crate::stop_signal::finished(self.0.id());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long the gateway has to finish after `SIGTERM` before it is killed.
const GATEWAY_STOP_GRACE: Duration = Duration::from_secs(5);

/// A child process asked to stop on drop (`SIGTERM`, as an operator or a service manager
/// would), killed if it has not exited within [`GATEWAY_STOP_GRACE`]. The gateway then runs
/// its own shutdown: the last records are written, and so is anything a tool attached to the
/// process records at exit (a heap profiler's, for one).
struct Stopped(Child);

impl Stopped {
    fn new(child: Child) -> Stopped {
        crate::stop_signal::started(child.id(), Some(GATEWAY_STOP_GRACE));
        Stopped(child)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        crate::stop_signal::finished(self.0.id());
        let pid = i32::try_from(self.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        let asked = pid.is_some_and(|pid| {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
        });
        if asked {
            let deadline = Instant::now() + GATEWAY_STOP_GRACE;
            while Instant::now() < deadline {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a program's file once, so the whole of it is in the page cache before it starts.
///
/// When a process first runs some code, the kernel maps that page of the file and, with it, the
/// neighbouring ones the page cache already holds (fault-around), and all of them count in the
/// process's RSS. So one build's idle RSS came out 2–3 MiB apart with the cache's state alone: a
/// binary just built or copied is wholly cached, one left unused for a while only in part
/// (docs/PERFORMANCE.md, forty-ninth round). Read first, every start finds it wholly cached.
/// Where the file cannot be read, the program's own start fails and says so.
fn read_whole(bin: &Path) {
    if let Ok(mut file) = std::fs::File::open(bin) {
        let _ = std::io::copy(&mut file, &mut std::io::sink());
    }
}

/// `switchyard serve` on a case's configuration, listening on a free loopback port.
pub struct Gateway {
    /// Stopped when the gateway handle drops.
    _child: Stopped,
    pub addr: SocketAddr,
    pub pid: u32,
    scratch: ScratchDir,
}

impl Gateway {
    /// Starts the gateway with `config` (a file that may use `${SIM_URL}`, `${SIM_OPENAI_BASE}`,
    /// `${BENCH_MASTER_KEY}`, `${BENCH_DATA_DIR}`, a fresh directory for its store, and, when an
    /// OTLP sink runs, `${BENCH_OTLP_ENDPOINT}`) and waits for its `switchyard listening on` line.
    pub fn start(
        bin: &Path,
        config: &Path,
        sim_url: &str,
        otlp_endpoint: Option<&str>,
    ) -> anyhow::Result<Gateway> {
        let scratch = ScratchDir::new("gateway")?;
        let stderr = std::fs::File::create(scratch.path.join("stderr.log"))?;
        read_whole(bin);
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            // Whatever the file says, listen on loopback only.
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("SIM_URL", sim_url)
            .env("SIM_OPENAI_BASE", format!("{sim_url}/v1"))
            .env("BENCH_MASTER_KEY", MASTER_KEY)
            .env("BENCH_DATA_DIR", scratch.path.join("data"))
            // The case's `logging.level` decides, not the caller's environment.
            .env_remove("RUST_LOG")
            .env_remove("BENCH_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(endpoint) = otlp_endpoint {
            cmd.env("BENCH_OTLP_ENDPOINT", endpoint);
        }
        let mut child = Stopped::new(
            cmd.spawn()
                .with_context(|| format!("starting {}", bin.display()))?,
        );
        let pid = child.0.id();
        let stdout = child.0.stdout.take().context("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("switchyard listening on http://") {
                    let _ = tx.send(url.trim().to_owned());
                    break;
                }
            }
            // Keep draining so the gateway never blocks on a full pipe.
            for _ in lines {}
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                drop(child);
                bail!(
                    "the gateway did not start listening; its stderr:\n{}",
                    tail(&scratch.path.join("stderr.log"))
                );
            }
        };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("the gateway printed an odd address `{addr}`"))?;
        Ok(Gateway {
            _child: child,
            addr,
            pid,
            scratch,
        })
    }

    /// The end of the gateway's stderr, for error reports.
    pub fn stderr_tail(&self) -> String {
        tail(&self.scratch.path.join("stderr.log"))
    }
}

/// nginx as a plain reverse proxy in front of the simulator: one worker, no daemon, keep-alive
/// to the upstream, `proxy_buffering off`, everything (logs, pid, temp files) in a scratch dir.
pub struct Nginx {
    child: Killed,
    pub addr: SocketAddr,
    pub pid: u32,
    _scratch: ScratchDir,
}

impl Nginx {
    /// `nginx` on `PATH`, else `/usr/sbin/nginx`.
    pub fn find() -> Option<PathBuf> {
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nginx"))
                .find(|p| p.is_file())
        });
        on_path.or_else(|| {
            let sbin = PathBuf::from("/usr/sbin/nginx");
            sbin.is_file().then_some(sbin)
        })
    }

    /// What `nginx -v` says, e.g. `nginx/1.22.1`.
    pub fn version(bin: &Path) -> String {
        Command::new(bin)
            .arg("-v")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .and_then(|s| s.strip_prefix("nginx version: ").map(str::to_owned))
            .unwrap_or_else(|| "nginx".into())
    }

    pub fn start(bin: &Path, upstream: SocketAddr) -> anyhow::Result<Nginx> {
        read_whole(bin);
        let scratch = ScratchDir::new("nginx")?;
        let port = free_port()?;
        let dir = scratch.path.display().to_string();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log combined buffer=64k flush=1s;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream simulator {{
        server {upstream};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://simulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
        }}
    }}
}}
"#
        );
        let conf_path = scratch.path.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let mut child = Killed::new(
            Command::new(bin)
                .arg("-p")
                .arg(&scratch.path)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(scratch.path.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?,
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.exited() {
                bail!(
                    "nginx exited at start ({status}):\n{}",
                    tail(&scratch.path.join("error.log"))
                );
            }
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("nginx did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = child.0.id();
        Ok(Nginx {
            child,
            addr,
            pid,
            _scratch: scratch,
        })
    }

    pub fn stop(self) {
        drop(self.child);
    }
}

/// A loopback port that was free a moment ago (nginx cannot be told to pick one itself).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The last 2 KB of a log file.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let start = text.len().saturating_sub(2048);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_child_is_asked_with_sigterm_first() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("terminated");
        // Writes the marker only if it gets SIGTERM; a SIGKILL would leave none.
        let script = format!(
            "trap 'echo yes > {}; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
            marker.display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the trap is in place before stopping it.
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        drop(Stopped(child));
        assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "yes");
    }

    #[test]
    fn a_child_seen_to_exit_leaves_the_registry_at_once() {
        let mut child = Killed::new(Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap());
        let pid = child.0.id();
        assert!(crate::stop_signal::registered(pid));
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.exited() {
                break status;
            }
            assert!(Instant::now() < deadline, "the child did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(3));
        // Reaped: its process id may be given to another process, which no signal may reach.
        assert!(!crate::stop_signal::registered(pid));
        drop(child);
        assert!(!crate::stop_signal::registered(pid));
    }
}
