//! A real `redis-server` (Debian's package; `.ci/run` installs it) on a loopback port of its own,
//! for the cluster tests. No persistence: a restarted server starts empty, as a failed-over one may.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{WAIT, test_port};

/// A running `redis-server`; killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts a server on a free port below 32768 and waits until it answers.
    pub fn start() -> Redis {
        loop {
            let port = test_port();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let mut redis = Redis { port, child: None };
            redis.restart();
            return redis;
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server) starts");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server on port {} does not answer", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends the server `signal` (`STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().map_or(0, Child::id).to_string();
        let sent = Command::new("kill").args([format!("-{signal}"), pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} redis-server failed");
    }

    /// One inline command's first reply line, or `None` if the server does not answer.
    pub fn command(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reply = [0u8; 512];
        let read = stream.read(&mut reply).ok()?;
        let text = String::from_utf8_lossy(&reply[..read]).into_owned();
        text.lines().next().map(str::to_string)
    }

    /// Redis's own CPU time so far (user + system seconds), from `INFO cpu`.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        stream.write_all(b"INFO cpu\r\n").ok()?;
        let mut reply = vec![0u8; 4096];
        let read = stream.read(&mut reply).ok()?;
        let text = String::from_utf8_lossy(&reply[..read]).into_owned();
        let field = |name: &str| -> Option<f64> {
            text.lines().find_map(|line| line.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        };
        Some(field("used_cpu_user:")? + field("used_cpu_sys:")?)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
