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
    /// Extra `redis-server` arguments (TLS, a password).
    args: Vec<String>,
    /// For TLS: the directory with the certificate authority (`ca.pem`) and the server's keys.
    tls_dir: Option<std::path::PathBuf>,
}

impl Redis {
    /// Starts a server on a free port below 32768 and waits until it answers.
    pub fn start() -> Redis {
        Redis::start_with(Vec::new(), None)
    }

    /// Starts a server that speaks TLS only, with a certificate from a throw-away authority
    /// (made with `openssl`; `ca_file` is its PEM) and `password`.
    pub fn start_tls(password: &str) -> Redis {
        let dir = std::env::temp_dir().join(format!("peerpigeon-redis-tls-{}-{}", std::process::id(), test_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl").args(args).current_dir(&dir).stderr(Stdio::null()).status();
            assert!(status.is_ok_and(|s| s.success()), "openssl {args:?} failed (apt-get install openssl)");
        };
        openssl(
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca"]
                .into_iter()
                .chain(["-keyout", "ca.key", "-out", "ca.pem"])
                .collect::<Vec<_>>(),
        );
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let args = vec![
            "--tls-cert-file".into(),
            path("server.pem"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--requirepass".into(),
            password.into(),
        ];
        Redis::start_with(args, Some(dir))
    }

    fn start_with(args: Vec<String>, tls_dir: Option<std::path::PathBuf>) -> Redis {
        loop {
            let port = test_port();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let mut redis = Redis { port, child: None, args: args.clone(), tls_dir: tls_dir.clone() };
            redis.restart();
            return redis;
        }
    }

    /// The certificate authority's PEM file of a TLS server.
    pub fn ca_file(&self) -> String {
        self.tls_dir.as_ref().expect("a TLS server").join("ca.pem").to_string_lossy().into_owned()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, and waits until it answers.
    pub fn restart(&mut self) {
        let port = self.port.to_string();
        let listen: [&str; 4] = if self.tls_dir.is_some() {
            ["--port", "0", "--tls-port", &port]
        } else {
            ["--port", &port, "--bind", "127.0.0.1"]
        };
        let child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server) starts");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        if self.tls_dir.is_some() {
            // Plain commands cannot reach a TLS port: wait until it takes connections.
            while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server (TLS) on port {} does not listen", self.port);
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
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
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
