//! The one error type of the public API: what can stop a server from starting.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Why [`crate::Server::start`] failed. The `Display` text says what to do about it.
#[derive(Debug)]
pub enum Error {
    /// `HOST` did not resolve to any address.
    Resolve {
        /// The `HOST` that was given.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// Every port from `first` to `last` was in use.
    PortsBusy {
        /// The `HOST` the ports were tried on.
        host: String,
        /// `PORT`, the first port tried.
        first: u16,
        /// The last port tried (`PORT` + `PORT_RETRIES`).
        last: u16,
    },
    /// Binding failed for a reason other than the port being in use (for example, no permission).
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// A server thread could not be started (the process is out of threads or memory).
    Spawn(io::Error),
    /// The configuration asks for something that cannot be done (hub mode and cluster mode together).
    Config(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve { host, source } => write!(
                f,
                "cannot resolve HOST {host:?}: {source}; set HOST to a hostname or IP address of this machine"
            ),
            Error::PortsBusy { host, first, last } => write!(
                f,
                "ports {first} to {last} on {host} are all in use; stop what holds them or set PORT to a free port"
            ),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Spawn(source) => write!(f, "cannot start a server thread: {source}"),
            Error::Config(problem) => write!(f, "{problem}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Resolve { source, .. } | Error::Bind { source, .. } | Error::Spawn(source) => Some(source),
            Error::PortsBusy { .. } | Error::Config(_) => None,
        }
    }
}
