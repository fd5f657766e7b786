//! A throwaway `redis-server`, for the Redis store's tests and benches.
//!
//! Every server runs on a free loopback port without persistence (or with
//! an append-only file in a directory of the caller's, for the restart tests),
//! so the tests never touch a Redis somebody else runs. A server is stopped
//! when its [`RedisServer`] is dropped; a small watchdog process also kills
//! it when the test process exits, so the per-process [`shared`] server (a
//! static, never dropped) and the servers of a test that panicked do not
//! outlive the run.
//!
//! Without `redis-server` on `PATH` starting one panics, saying how to install it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "the Redis store tests need `redis-server` on PATH; install it \
     (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`), \
     or run the tests without `--features redis`";

/// A `redis-server` child process on a loopback port.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// Append-only file directory, for a server whose data survives restarts.
    aof_dir: Option<PathBuf>,
    /// More `redis-server` arguments (a cluster node's), kept for restarts.
    extra_args: Vec<String>,
    process: Option<Running>,
}

#[derive(Debug)]
struct Running {
    server: Child,
    /// `sh` blocked reading a pipe from this process: when the pipe closes
    /// (this process exits, however it exits), it kills the server.
    watchdog: Child,
}

impl RedisServer {
    /// A server without persistence (`--save "" --appendonly no`).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server with an append-only file in `dir`, synced on every write
    /// (`appendfsync always`): what it acknowledged survives a kill.
    pub fn start_persistent(dir: &Path) -> Self {
        Self::start_with(Some(dir.to_path_buf()))
    }

    fn start_with(aof_dir: Option<PathBuf>) -> Self {
        Self::start_with_args(aof_dir, |_| Vec::new())
    }

    /// A server with more arguments, given its port (a Redis Cluster node's:
    /// see [`crate::redis_cluster`]); they are passed again on a
    /// [`restart`](Self::restart).
    pub fn start_with_args(
        aof_dir: Option<PathBuf>,
        extra_args: impl Fn(u16) -> Vec<String>,
    ) -> Self {
        let mut last_error = String::new();
        // Another process may take the free port before the server binds it:
        // try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self {
                port,
                aof_dir: aof_dir.clone(),
                extra_args: extra_args(port),
                process: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True unless the server was [killed](Self::kill) (and not restarted).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Kills the server at once (`SIGKILL`: no shutdown, no final save).
    pub fn kill(&mut self) {
        if let Some(mut running) = self.process.take() {
            let _ = running.watchdog.kill();
            let _ = running.watchdog.wait();
            let _ = running.server.kill();
            let _ = running.server.wait();
        }
    }

    /// Starts the server again, on the same port (and the same data
    /// directory), and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The port can linger a moment after the kill.
                Err(error) if Instant::now() > deadline => {
                    panic!(
                        "could not restart redis-server on port {}: {error}",
                        self.port
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "yes",
        ]);
        command.args(["--save", "", "--daemonize", "no", "--loglevel", "warning"]);
        match &self.aof_dir {
            None => command.args(["--appendonly", "no"]),
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
        };
        command.args(&self.extra_args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let server = match command.spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("{INSTALL_HINT}")
            }
            Err(error) => panic!("could not run redis-server: {error}"),
        };
        let watchdog = Command::new("sh")
            .args([
                "-c",
                "read _ignored; kill -9 \"$0\" 2>/dev/null",
                &server.id().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("could not run sh for the redis-server watchdog");
        let mut running = Running { server, watchdog };
        match wait_ready(self.port, &mut running.server) {
            Ok(()) => {
                self.process = Some(running);
                Ok(())
            }
            Err(error) => {
                let _ = running.watchdog.kill();
                let _ = running.watchdog.wait();
                let _ = running.server.kill();
                let _ = running.server.wait();
                Err(error)
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (free now: another process may take it).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("no free loopback port")
        .port()
}

/// True when `redis-server` can be run (the Redis Cluster tests skip
/// themselves, saying so, when it cannot).
pub fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits until the server answers `PING` with `PONG` (not `LOADING`).
fn wait_ready(port: u16, server: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!(
                "redis-server exited at start ({status}); port {port} taken?"
            ));
        }
        if let Ok(mut socket) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
            let mut reply = [0u8; 64];
            if socket.write_all(b"PING\r\n").is_ok()
                && let Ok(n) = socket.read(&mut reply)
                && reply[..n].starts_with(b"+PONG")
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("redis-server on port {port} did not become ready"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One server for the whole process, for tests that only need a Redis
/// (each uses its own key prefix). Killed when the process exits.
pub fn shared() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}
