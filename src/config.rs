//! Server configuration: the `Config` struct, its defaults, and reading it from environment variables.
//!
//! Everything the server can be told lives here and is validated once, at start. The rest of the crate
//! receives a finished `Config` and never reads the environment itself.

use std::fmt;
use std::time::Duration;

use crate::log::Level;

/// Everything a server needs to know before it starts. `Config::default()` matches the JavaScript
/// reference server's defaults; `Config::from_env_vars` reads the variables listed in [`ENV_HELP`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Interface to bind (`HOST`). `localhost` binds the IPv4 loopback first.
    pub host: String,
    /// First port to try (`PORT`); `0` lets the operating system pick one.
    pub port: u16,
    /// How many more ports, upward from `port`, to try when it is busy (`PORT_RETRIES`).
    pub port_retries: u16,
    /// Most WebSocket peers connected at once (`MAX_CONNECTIONS`); more are closed with 1008.
    pub max_connections: usize,
    /// Value of `Access-Control-Allow-Origin` on every HTTP reply (`CORS_ORIGIN`).
    pub cors_origin: String,
    /// Whether this server is a hub of a mesh of servers (`IS_HUB`).
    pub is_hub: bool,
    /// Network name that hubs announce into (`HUB_MESH_NAMESPACE`).
    pub hub_mesh_namespace: String,
    /// `ws://` URLs of the hubs to connect to in hub mode (`BOOTSTRAP_HUBS`, comma-separated).
    pub bootstrap_hubs: Vec<String>,
    /// When set, WebSocket upgrades must present this token (`AUTH_TOKEN`). Never logged.
    pub auth_token: Option<String>,
    /// Largest WebSocket message accepted, in bytes (`MAX_MESSAGE_SIZE`); larger ones close with 1009.
    pub max_message_size: usize,
    /// A peer that sends no frame (not even a pong) for this long is closed (`PEER_TIMEOUT_SECS`).
    pub peer_timeout: Duration,
    /// How often the sweeper pings peers and closes idle ones (`CLEANUP_INTERVAL_SECS`).
    pub cleanup_interval: Duration,
    /// Time a new socket has to send its HTTP request head (`HANDSHAKE_TIMEOUT_SECS`).
    pub handshake_timeout: Duration,
    /// Bytes that may wait in one peer's outbound queue (`MAX_QUEUED_BYTES`); a peer that lets more
    /// pile up is not reading and is closed.
    pub max_queued_bytes: usize,
    /// Largest `data` a peer may announce, in bytes (`MAX_PEER_DATA_BYTES`). Each peer is in one
    /// network at a time, so this bounds what the server stores per peer.
    pub max_peer_data_bytes: usize,
    /// Messages a peer may send per second, on average (`MAX_MESSAGES_PER_SEC`); hub links are exempt.
    pub max_messages_per_sec: u32,
    /// Messages a peer may send at once before the rate applies (`MESSAGE_BURST`).
    pub message_burst: u32,
    /// In hub mode, how often this hub tells the mesh it is alive (`HUB_HEARTBEAT_SECS`); the peers
    /// of a hub not heard from for three of these are dropped.
    pub hub_heartbeat: Duration,
    /// Most hub-to-hub links a relayed message may cross (`HUB_MAX_HOPS`).
    pub hub_max_hops: u32,
    /// Most sockets still sending their request head at once (`MAX_PENDING_HANDSHAKES`). Each costs
    /// a thread until its head arrives or `handshake_timeout` passes; past the limit, new sockets are
    /// closed on accept.
    pub max_pending_handshakes: usize,
    /// Most connection and writer threads at once (`MAX_THREADS`); 0 means as many as the system's
    /// `vm.max_map_count` allows (see `thread_budget.rs`), and a larger value is lowered to that.
    pub max_threads: usize,
    /// How much the server logs (`LOG_LEVEL`). Applied by the binary; the library only reads it.
    pub log_level: Level,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "localhost".to_string(),
            port: 3000,
            port_retries: 10,
            max_connections: 1000,
            cors_origin: "*".to_string(),
            is_hub: false,
            hub_mesh_namespace: "pigeonhub-mesh".to_string(),
            bootstrap_hubs: Vec::new(),
            auth_token: None,
            max_message_size: 1 << 20,
            peer_timeout: Duration::from_secs(300),
            cleanup_interval: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_queued_bytes: 16 << 20,
            max_pending_handshakes: 1024,
            max_threads: 0,
            max_peer_data_bytes: 16 * 1024,
            max_messages_per_sec: 200,
            message_burst: 400,
            hub_heartbeat: Duration::from_secs(10),
            hub_max_hops: 16,
            log_level: Level::Info,
        }
    }
}

/// The environment variables the server reads, with their defaults; printed by `peerpigeon --help`.
pub const ENV_HELP: &str = "\
  PORT                    first port to listen on; busy ports are probed upward    [3000]
  PORT_RETRIES            how many ports above PORT to try when it is busy          [10]
  HOST                    interface to bind                                         [localhost]
  MAX_CONNECTIONS         most WebSocket peers at once                              [1000]
  CORS_ORIGIN             Access-Control-Allow-Origin of HTTP replies               [*]
  IS_HUB                  true to run as a hub of a server mesh                     [false]
  HUB_MESH_NAMESPACE      network name hubs announce into                           [pigeonhub-mesh]
  BOOTSTRAP_HUBS          comma-separated ws:// URLs of hubs to link to             []
  AUTH_TOKEN              token peers must present (Bearer header or ?token=)       [unset: no auth]
  MAX_MESSAGE_SIZE        largest WebSocket message in bytes (bigger: close 1009)   [1048576]
  PEER_TIMEOUT_SECS       close a peer silent for this long                         [300]
  CLEANUP_INTERVAL_SECS   how often idle peers are pinged and swept                 [30]
  HANDSHAKE_TIMEOUT_SECS  time a new socket has to send its request head            [10]
  MAX_QUEUED_BYTES        outbound bytes one peer may leave unread before closing   [16777216]
  MAX_PEER_DATA_BYTES     largest announce data a peer may store                    [16384]
  MAX_MESSAGES_PER_SEC    messages a peer may send per second (then error, 1008)    [200]
  MESSAGE_BURST           messages a peer may send at once before the rate applies  [400]
  HUB_HEARTBEAT_SECS      hub mode: heartbeat interval; silent for 3 = hub gone      [10]
  HUB_MAX_HOPS            hub mode: most hub links a relayed message crosses        [16]
  MAX_PENDING_HANDSHAKES  most sockets still sending their request head at once     [1024]
  MAX_THREADS             most connection threads (2 per peer); 0: what the system allows [0]
  LOG_LEVEL               error, warn, info or debug                                [info]";

/// A configuration value that could not be used. Its `Display` names the variable and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Builds a configuration from environment variables, starting from the defaults.
    /// `lookup` returns a variable's value, or `None` when it is unset; empty values count as unset.
    ///
    /// ```
    /// let config = peerpigeon::Config::from_env_vars(|name| (name == "PORT").then(|| "8080".into())).unwrap();
    /// assert_eq!(config.port, 8080);
    /// ```
    pub fn from_env_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut config = Config::default();
        if let Some(v) = get("PORT") {
            config.port = parse_number("PORT", &v, 0, u16::MAX as u64)? as u16;
        }
        if let Some(v) = get("PORT_RETRIES") {
            config.port_retries = parse_number("PORT_RETRIES", &v, 0, 1000)? as u16;
        }
        if let Some(v) = get("HOST") {
            config.host = single_token("HOST", v)?;
        }
        if let Some(v) = get("MAX_CONNECTIONS") {
            config.max_connections = parse_number("MAX_CONNECTIONS", &v, 1, 1_000_000)? as usize;
        }
        if let Some(v) = get("CORS_ORIGIN") {
            config.cors_origin = single_token("CORS_ORIGIN", v)?;
        }
        if let Some(v) = get("IS_HUB") {
            config.is_hub = parse_bool("IS_HUB", &v)?;
        }
        if let Some(v) = get("HUB_MESH_NAMESPACE") {
            config.hub_mesh_namespace = single_token("HUB_MESH_NAMESPACE", v)?;
        }
        if let Some(v) = get("BOOTSTRAP_HUBS") {
            config.bootstrap_hubs = parse_hub_urls(&v)?;
        }
        if let Some(v) = get("AUTH_TOKEN") {
            // The token is never echoed back, not even in this error.
            if v.chars().any(char::is_control) {
                return Err(error("AUTH_TOKEN", "contains control characters"));
            }
            config.auth_token = Some(v);
        }
        if let Some(v) = get("MAX_MESSAGE_SIZE") {
            config.max_message_size = parse_number("MAX_MESSAGE_SIZE", &v, 1024, 1 << 30)? as usize;
        }
        if let Some(v) = get("PEER_TIMEOUT_SECS") {
            config.peer_timeout = Duration::from_secs(parse_number("PEER_TIMEOUT_SECS", &v, 1, 86_400)?);
        }
        if let Some(v) = get("CLEANUP_INTERVAL_SECS") {
            config.cleanup_interval = Duration::from_secs(parse_number("CLEANUP_INTERVAL_SECS", &v, 1, 86_400)?);
        }
        if let Some(v) = get("HANDSHAKE_TIMEOUT_SECS") {
            config.handshake_timeout = Duration::from_secs(parse_number("HANDSHAKE_TIMEOUT_SECS", &v, 1, 3_600)?);
        }
        if let Some(v) = get("MAX_QUEUED_BYTES") {
            config.max_queued_bytes = parse_number("MAX_QUEUED_BYTES", &v, 64 * 1024, 1 << 34)? as usize;
        }
        if let Some(v) = get("MAX_PEER_DATA_BYTES") {
            config.max_peer_data_bytes = parse_number("MAX_PEER_DATA_BYTES", &v, 64, 1 << 20)? as usize;
        }
        if let Some(v) = get("MAX_MESSAGES_PER_SEC") {
            config.max_messages_per_sec = parse_number("MAX_MESSAGES_PER_SEC", &v, 1, 1_000_000)? as u32;
        }
        if let Some(v) = get("MESSAGE_BURST") {
            config.message_burst = parse_number("MESSAGE_BURST", &v, 1, 1_000_000)? as u32;
        }
        if let Some(v) = get("HUB_HEARTBEAT_SECS") {
            config.hub_heartbeat = Duration::from_secs(parse_number("HUB_HEARTBEAT_SECS", &v, 1, 3_600)?);
        }
        if let Some(v) = get("HUB_MAX_HOPS") {
            config.hub_max_hops = parse_number("HUB_MAX_HOPS", &v, 1, 255)? as u32;
        }
        if let Some(v) = get("MAX_PENDING_HANDSHAKES") {
            config.max_pending_handshakes = parse_number("MAX_PENDING_HANDSHAKES", &v, 1, 1_000_000)? as usize;
        }
        if let Some(v) = get("MAX_THREADS") {
            config.max_threads = parse_number("MAX_THREADS", &v, 0, 10_000_000)? as usize;
        }
        if let Some(v) = get("LOG_LEVEL") {
            config.log_level = Level::parse(&v)
                .ok_or_else(|| error("LOG_LEVEL", format!("expected error, warn, info or debug, got {v:?}")))?;
        }
        Ok(config)
    }
}

fn error(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { variable, problem: problem.into() }
}

fn parse_number(variable: &'static str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let out_of_range = || error(variable, format!("expected a whole number from {min} to {max}, got {value:?}"));
    let number: u64 = value.trim().parse().map_err(|_| out_of_range())?;
    if (min..=max).contains(&number) { Ok(number) } else { Err(out_of_range()) }
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(error(variable, format!("expected true or false, got {value:?}"))),
    }
}

/// A value that ends up in a header, a log line or a JSON field: trimmed, no whitespace inside.
fn single_token(variable: &'static str, value: String) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(error(variable, format!("must not contain spaces or control characters, got {value:?}")));
    }
    Ok(value.to_string())
}

fn parse_hub_urls(value: &str) -> Result<Vec<String>, ConfigError> {
    let mut urls = Vec::new();
    for url in value.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        if !url.starts_with("ws://") || url.len() <= "ws://".len() {
            return Err(error(
                "BOOTSTRAP_HUBS",
                format!(
                    "expected comma-separated ws://host:port URLs, got {url:?} (wss:// needs a TLS proxy in front)"
                ),
            ));
        }
        urls.push(url.to_string());
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_env_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_reference_server() {
        let config = from(&[]).unwrap();
        assert_eq!((config.host.as_str(), config.port, config.max_connections), ("localhost", 3000, 1000));
        assert_eq!(config.cors_origin, "*");
        assert!(!config.is_hub);
        assert_eq!(config.hub_mesh_namespace, "pigeonhub-mesh");
        assert!(config.bootstrap_hubs.is_empty() && config.auth_token.is_none());
        assert_eq!(config.max_message_size, 1 << 20);
        assert_eq!(config.peer_timeout, Duration::from_secs(300));
        assert_eq!(config.cleanup_interval, Duration::from_secs(30));
    }

    #[test]
    fn reads_every_variable() {
        let config = from(&[
            ("PORT", "8080"),
            ("HOST", "0.0.0.0"),
            ("MAX_CONNECTIONS", "12000"),
            ("CORS_ORIGIN", "https://example.org"),
            ("IS_HUB", "true"),
            ("HUB_MESH_NAMESPACE", "my-mesh"),
            ("BOOTSTRAP_HUBS", "ws://a:3000, ws://b:3001/ws"),
            ("AUTH_TOKEN", "s3cret"),
            ("MAX_MESSAGE_SIZE", "2048"),
            ("PEER_TIMEOUT_SECS", "60"),
            ("CLEANUP_INTERVAL_SECS", "5"),
            ("HANDSHAKE_TIMEOUT_SECS", "3"),
            ("PORT_RETRIES", "0"),
            ("MAX_QUEUED_BYTES", "1048576"),
            ("LOG_LEVEL", "debug"),
            ("MAX_PENDING_HANDSHAKES", "99"),
            ("HUB_HEARTBEAT_SECS", "2"),
            ("HUB_MAX_HOPS", "4"),
            ("MAX_MESSAGES_PER_SEC", "5"),
            ("MESSAGE_BURST", "7"),
            ("MAX_PEER_DATA_BYTES", "100"),
            ("MAX_THREADS", "500"),
        ])
        .unwrap();
        assert_eq!((config.host.as_str(), config.port, config.max_connections), ("0.0.0.0", 8080, 12000));
        assert_eq!(config.cors_origin, "https://example.org");
        assert!(config.is_hub);
        assert_eq!(config.hub_mesh_namespace, "my-mesh");
        assert_eq!(config.bootstrap_hubs, vec!["ws://a:3000", "ws://b:3001/ws"]);
        assert_eq!(config.auth_token.as_deref(), Some("s3cret"));
        assert_eq!(config.max_message_size, 2048);
        assert_eq!(config.peer_timeout, Duration::from_secs(60));
        assert_eq!(config.cleanup_interval, Duration::from_secs(5));
        assert_eq!(config.handshake_timeout, Duration::from_secs(3));
        assert_eq!(config.port_retries, 0);
        assert_eq!(config.max_queued_bytes, 1 << 20);
        assert_eq!(config.log_level, Level::Debug);
        assert_eq!(config.max_pending_handshakes, 99);
        assert_eq!((config.hub_heartbeat, config.hub_max_hops), (Duration::from_secs(2), 4));
        assert_eq!((config.max_messages_per_sec, config.message_burst), (5, 7));
        assert_eq!(config.max_peer_data_bytes, 100);
        assert_eq!(config.max_threads, 500);
    }

    #[test]
    fn empty_values_mean_unset() {
        let config = from(&[("PORT", ""), ("AUTH_TOKEN", "  ")]).unwrap();
        assert_eq!(config.port, 3000);
        assert!(config.auth_token.is_none());
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (name, value) in [
            ("PORT", "abc"),
            ("PORT", "70000"),
            ("MAX_CONNECTIONS", "-1"),
            ("MAX_CONNECTIONS", "0"),
            ("IS_HUB", "maybe"),
            ("BOOTSTRAP_HUBS", "http://a:3000"),
            ("CORS_ORIGIN", "a b"),
            ("PEER_TIMEOUT_SECS", "0"),
            ("LOG_LEVEL", "loud"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name);
            assert!(err.to_string().starts_with(&format!("invalid {name}: ")), "{err}");
        }
    }

    #[test]
    fn auth_token_is_not_echoed_in_errors() {
        let err = from(&[("AUTH_TOKEN", "abc\u{7}def")]).unwrap_err();
        assert!(!err.to_string().contains("abc"));
    }
}
