//! Binding the server's one port: the host's addresses (IPv4 first), probing upward from `PORT`
//! while ports are busy.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};

use crate::config::Config;
use crate::error::Error;

/// Binds `config.host` on the first free port from `config.port` upward (docs/protocol.md §7), trying IPv4
/// addresses of the host first so that `localhost` means 127.0.0.1, as clients usually expect.
pub(crate) fn bind(config: &Config) -> Result<TcpListener, Error> {
    let resolve_error = |source| Error::Resolve { host: config.host.clone(), source };
    let mut addresses: Vec<IpAddr> =
        (config.host.as_str(), 0).to_socket_addrs().map_err(resolve_error)?.map(|a| a.ip()).collect();
    addresses.sort_by_key(|ip| ip.is_ipv6());
    addresses.dedup();
    if addresses.is_empty() {
        return Err(resolve_error(io::Error::new(io::ErrorKind::NotFound, "no addresses")));
    }
    let retries = if config.port == 0 { 0 } else { config.port_retries };
    let last = config.port.saturating_add(retries);
    for port in config.port..=last {
        match bind_first(&addresses, port) {
            Ok(listener) => {
                if port != config.port {
                    log::info!("port {} was in use; using port {port}", config.port);
                }
                return Ok(listener);
            }
            Err(BindFailure::InUse) => log::warn!("port {port} on {} is in use", config.host),
            Err(BindFailure::Other(addr, source)) => return Err(Error::Bind { addr, source }),
        }
    }
    Err(Error::PortsBusy { host: config.host.clone(), first: config.port, last })
}

enum BindFailure {
    InUse,
    Other(SocketAddr, io::Error),
}

fn bind_first(addresses: &[IpAddr], port: u16) -> Result<TcpListener, BindFailure> {
    let mut failure = BindFailure::InUse;
    for &ip in addresses {
        let addr = SocketAddr::new(ip, port);
        match TcpListener::bind(addr) {
            Ok(listener) => {
                crate::platform::listen_backlog::lengthen(&listener);
                return Ok(listener);
            }
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => failure = BindFailure::InUse,
            Err(err) => failure = BindFailure::Other(addr, err),
        }
    }
    Err(failure)
}
