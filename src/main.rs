//! The `peerpigeon` binary: read the configuration from the environment, install the logger, run
//! the server until Ctrl-C or SIGTERM, then shut down gracefully.

mod logger;
#[path = "platform/reexec.rs"]
mod reexec;

use std::process::ExitCode;

use peerpigeon::{Config, Error, LogFormat, Server, ServiceHeap, env_help};

/// The acceptor and the HTTP desk allocate from a small heap of their own, so that a `/health`
/// request never waits for a malloc lock held by one of thousands of peer threads (`service_heap`).
#[global_allocator]
static ALLOCATOR: ServiceHeap = ServiceHeap;

const USAGE: &str = "\
PeerPigeon-rs: WebSocket signaling server for PeerPigeon WebRTC meshes

Usage: peerpigeon [--help | --version | --healthcheck]

  --healthcheck   ask the server on this machine's PORT for /health; exit 0 if it is healthy
                  (for container HEALTHCHECKs, without curl in the image)

Configured by environment variables (default in brackets):";

fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        return match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}\n{}\n\nExample: PORT=8080 IS_HUB=true peerpigeon", env_help());
                ExitCode::SUCCESS
            }
            "--healthcheck" => healthcheck(),
            "-V" | "--version" => {
                println!("peerpigeon {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            other => {
                eprintln!(
                    "peerpigeon: unknown argument {other:?}; the server is configured by environment variables (see --help)"
                );
                ExitCode::from(2)
            }
        };
    }

    // First, before any thread or allocation matters: run with allocator settings suited to
    // thousands of idle threads (this re-executes the binary once; see src/platform/reexec.rs).
    reexec::reexec_with_malloc_tunables();

    // A value that is not valid Unicode is passed on as-is (lossily), so validation names it.
    let config = Config::from_env_vars(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()));
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            eprintln!("peerpigeon: {err}");
            return ExitCode::from(2);
        }
    };
    let format = match config.log_format {
        LogFormat::Text => logger::Format::Text,
        LogFormat::Json => logger::Format::Json,
    };
    logger::install(config.log_level, format);

    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    if let Err(err) = ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    }) {
        eprintln!("peerpigeon: cannot install the Ctrl-C/SIGTERM handler: {err}");
        return ExitCode::FAILURE;
    }

    let server = match Server::start(config) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("peerpigeon: {err}");
            // A host that does not resolve or cannot be bound is a bad setting, like any other.
            return match err {
                Error::Resolve { .. } | Error::Bind { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            };
        }
    };
    let _ = stop_rx.recv();
    server.shutdown();
    ExitCode::SUCCESS
}

/// `--healthcheck`: GET /health from the server on this machine's `PORT` (loopback, or `HOST` when
/// it names one address), with a 3 s limit. Exit 0 on `200`, 1 otherwise.
fn healthcheck() -> ExitCode {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
    use std::time::Duration;

    let port = std::env::var("PORT").ok().and_then(|p| p.trim().parse::<u16>().ok()).unwrap_or(3000);
    let host = std::env::var("HOST").ok().filter(|h| !h.is_empty() && h != "0.0.0.0" && h != "::");
    let host = host.unwrap_or_else(|| "127.0.0.1".to_string());
    let Some(addr): Option<SocketAddr> = (host.as_str(), port).to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        eprintln!("peerpigeon: cannot resolve {host}");
        return ExitCode::FAILURE;
    };
    let limit = Duration::from_secs(3);
    let answer = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, limit)?;
        stream.set_read_timeout(Some(limit))?;
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    })();
    match answer {
        Ok(reply) if reply.starts_with("HTTP/1.1 200") && reply.contains("\"healthy\"") => ExitCode::SUCCESS,
        Ok(reply) => {
            eprintln!("peerpigeon: {addr}/health answered {:?}", reply.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("peerpigeon: cannot reach {addr}/health: {err}");
            ExitCode::FAILURE
        }
    }
}
