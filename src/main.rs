//! The `peerpigeon` binary: read the configuration from the environment, install the logger, run
//! the server until Ctrl-C or SIGTERM, then shut down gracefully.

mod logger;
#[path = "platform/reexec.rs"]
mod reexec;

use std::process::ExitCode;

use peerpigeon::{Config, Error, LogFormat, Server, env_help};

const USAGE: &str = "\
PeerPigeon-rs: WebSocket signaling server for PeerPigeon WebRTC meshes

Usage: peerpigeon [--help | --version]

Configured by environment variables (default in brackets):";

fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        return match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}\n{}\n\nExample: PORT=8080 IS_HUB=true peerpigeon", env_help());
                ExitCode::SUCCESS
            }
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
