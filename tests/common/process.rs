//! The `peerpigeon` binary as a separate process, for tests that need to signal or kill a server.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::WAIT;

/// The binary, with none of its settings inherited from the environment the tests run in.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerpigeon"));
    for name in [
        "PORT",
        "HOST",
        "MAX_CONNECTIONS",
        "CORS_ORIGIN",
        "IS_HUB",
        "HUB_MESH_NAMESPACE",
        "BOOTSTRAP_HUBS",
        "AUTH_TOKEN",
        "LOG_LEVEL",
        "HUB_HEARTBEAT_SECS",
        "CLUSTER_REDIS_URL",
        "CLUSTER_REDIS_CA_FILE",
        "CLUSTER_NAMESPACE",
        "CLUSTER_INSTANCE_TTL_SECS",
        "CLUSTER_QUEUE",
    ] {
        command.env_remove(name);
    }
    command
}

/// A running server binary; killed if a test ends before it exited.
pub struct Running(pub Option<Child>);

impl Running {
    /// The process id, for sending it signals.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Sends the process `signal` (`TERM`, `KILL`, `STOP`, `CONT`, ...) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill").args([format!("-{signal}"), self.pid().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the binary on 127.0.0.1 with the settings `env` and returns it with the address it
/// logged and its log lines.
pub fn run_binary(env: &[(&str, &str)]) -> (Running, SocketAddr, Receiver<String>) {
    let mut command = binary();
    command.env("HOST", "127.0.0.1");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let stderr = child.stderr.take();
    let running = Running(Some(child));
    let stderr = stderr.expect("piped stderr");
    let (lines_tx, lines) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let line = lines.recv_deadline(deadline).expect("the binary logs its address");
        if let Some(rest) = line.split("listening on ws://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            return (running, addr, lines);
        }
    }
}

/// Waits up to `limit` for `child` to exit; kills it and returns `None` if it does not.
pub fn wait_exit(mut running: Running, limit: Duration) -> Option<std::process::ExitStatus> {
    let mut child = running.0.take()?;
    let pid = child.id().to_string();
    let (done_tx, done) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    match done.recv_timeout(limit) {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            None
        }
    }
}
