//! The `peerpigeon` binary: read the configuration from the environment, run the server until
//! Ctrl-C or SIGTERM, then shut down gracefully.

use std::process::ExitCode;

use peerpigeon::{Config, Server, env_help, log};

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
    // thousands of idle threads (this re-executes the binary once; see malloc_tuning.rs).
    peerpigeon::reexec_with_malloc_tunables();

    // A value that is not valid Unicode is passed on as-is (lossily), so validation names it.
    let config = Config::from_env_vars(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()));
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            eprintln!("peerpigeon: {err}");
            return ExitCode::from(2);
        }
    };
    log::set_level(config.log_level);
    // One descriptor per peer, plus a few for the listener and HTTP requests.
    if let Some(limit) = peerpigeon::raise_open_file_limit()
        && limit < config.max_connections as u64 + 64
    {
        peerpigeon::log_warn!(
            "open-file limit is {limit}, too low for MAX_CONNECTIONS={}; raise it (ulimit -n)",
            config.max_connections
        );
    }

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
            return ExitCode::FAILURE;
        }
    };
    let _ = stop_rx.recv();
    server.shutdown();
    ExitCode::SUCCESS
}
