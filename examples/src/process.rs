//! Child processes for the crash harnesses and process tests: a guard that
//! kills its process when dropped (so a failing test leaves nothing
//! running), readiness by polling an HTTP path, output lines waited for,
//! SIGKILL and SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines of output kept for diagnostics, per process.
const TAIL: usize = 200;

/// A child process that is killed (SIGKILL) and reaped when dropped.
///
/// Its standard output and error are read line by line on two threads:
/// every line can be waited for ([`Proc::wait_line`]) and the last ones are
/// kept for error messages ([`Proc::tail`]).
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    tail: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

fn forward(pipe: impl Read + Send + 'static, tx: Sender<String>, tail: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut t) = tail.lock() {
                if t.len() >= TAIL {
                    t.remove(0);
                }
                t.push(line.clone());
            }
            // The receiver may be gone; the pipe is still drained.
            let _ = tx.send(line);
        }
    });
}

impl Proc {
    /// Starts `cmd` with its standard output and error piped.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> std::io::Result<Proc> {
        let name = name.into();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("starting {name}: {e}")))?;
        let (tx, rx) = channel();
        let tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            forward(out, tx.clone(), Arc::clone(&tail));
        }
        if let Some(err) = child.stderr.take() {
            forward(err, tx, Arc::clone(&tail));
        }
        Ok(Proc {
            name,
            child,
            lines: rx,
            tail,
            status: None,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The name given at the start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last lines of its output (both streams), for error messages.
    pub fn tail(&self) -> String {
        self.tail.lock().map(|t| t.join("\n")).unwrap_or_default()
    }

    /// Waits up to `timeout` for an output line for which `pred` holds;
    /// `None` when the time ran out or the process closed its output.
    pub fn wait_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Some(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills it with SIGKILL (no chance to clean up) and reaps it.
    pub fn sigkill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Asks it to stop with SIGTERM and waits up to `timeout`; kills it
    /// when it does not stop in time (`None`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        let status = if sent { self.wait_exit(timeout) } else { None };
        if status.is_none() {
            self.sigkill();
        }
        status
    }

    /// Polls `http://addr{path}` until it answers 200, the process exits
    /// or `timeout` passes.
    pub fn wait_http_ok(
        &mut self,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http_get(addr, path, Duration::from_secs(2)) {
                return Ok(());
            }
            if let Some(s) = self.exited() {
                return Err(format!(
                    "{} exited ({s}) before {path} answered:\n{}",
                    self.name,
                    self.tail()
                ));
            }
            if Instant::now() >= end {
                return Err(format!(
                    "{}: {path} did not answer 200 within {timeout:?}:\n{}",
                    self.name,
                    self.tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// A port that was free a moment ago on 127.0.0.1, below Linux's
/// ephemeral range (32768 and up), so that no client connection takes it
/// as its local port while a server that listens on it is restarted.
pub fn free_port() -> std::io::Result<u16> {
    let mut x = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    for _ in 0..200 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20_000 + ((x >> 33) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A plain HTTP/1.0 GET: the status and the body.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer from {addr}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A program built next to the running one (`im-server` next to
/// `im-crash`), as a fallback for `CARGO_BIN_EXE_*`.
pub fn sibling_program(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
        .join(name)
}

/// The example server as a separate process on a database in `dir`,
/// restartable on the same database and port.
#[derive(Debug, Clone)]
pub struct ServerProcess {
    /// The `im-server` program.
    pub program: PathBuf,
    /// Where the configuration, database and key file live.
    pub dir: PathBuf,
    /// The port it listens on (kept across restarts).
    pub port: u16,
    /// Extra lines of the TOML configuration (e.g. `am_url = "…"`).
    pub extra_config: String,
}

impl ServerProcess {
    /// A server on a free port with its files in `dir`.
    pub fn new(program: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        Ok(ServerProcess {
            program: program.into(),
            dir: dir.into(),
            port: free_port()?,
            extra_config: String::new(),
        })
    }

    /// The SQLite database file.
    pub fn database(&self) -> PathBuf {
        self.dir.join("im.db")
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The service URL.
    pub fn url(&self) -> String {
        format!("http://{}/services/EgyptWorkSheetAll", self.addr())
    }

    /// Writes the configuration, starts the server and waits until
    /// `/health` answers 200 (the store is open and the demo inventory
    /// installed).
    pub fn start(&self) -> Result<Proc, String> {
        let cfg = self.dir.join("im.toml");
        let text = format!(
            "listen = \"{}\"\ndatabase = \"{}\"\nlog_level = \"warn\"\n{}\n",
            self.addr(),
            self.database().display(),
            self.extra_config
        );
        std::fs::write(&cfg, text).map_err(|e| format!("{}: {e}", cfg.display()))?;
        // The port may still be taken for a moment after a kill.
        let mut tries = 0;
        loop {
            let mut cmd = Command::new(&self.program);
            cmd.arg("--config").arg(&cfg);
            let mut p = Proc::spawn("im-server", cmd).map_err(|e| e.to_string())?;
            match p.wait_http_ok(self.addr(), "/health", Duration::from_secs(60)) {
                Err(e) if e.contains("Address already in use") && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                r => return r.map(|()| p),
            }
        }
    }
}

/// Starts a program that prints the URL it listens at (`… http://host:port…`
/// on a line containing `marker`), then waits until `ready_path` answers
/// 200; returns it with that address.
pub fn start_listening(
    name: &str,
    cmd: Command,
    marker: &str,
    ready_path: &str,
) -> Result<(Proc, SocketAddr), String> {
    let mut p = Proc::spawn(name, cmd).map_err(|e| e.to_string())?;
    let line = p
        .wait_line(Duration::from_secs(60), |l| {
            l.contains(marker) && l.contains("http://")
        })
        .ok_or_else(|| format!("{name} did not start:\n{}", p.tail()))?;
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ' ']).next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{name}: no address in {line:?}"))?;
    p.wait_http_ok(addr, ready_path, Duration::from_secs(30))?;
    Ok((p, addr))
}

/// Starts the AM simulator (`am-sim`) on a free port with `args` (e.g.
/// `--delay-ms 5`); returns it with its address once it listens.
pub fn start_am_sim(program: &Path, args: &[&str]) -> Result<(Proc, SocketAddr), String> {
    let mut cmd = Command::new(program);
    cmd.args(["--listen", "127.0.0.1:0", "--report-every", "0"])
        .args(args);
    start_listening(
        "am-sim",
        cmd,
        "AM listening at",
        im_sync::am::sim::RECEIVED_PATH,
    )
}
