//! Server configuration: the `Config` struct, its defaults, and reading it from environment variables.
//!
//! Everything the server can be told lives here and is validated once, at start. The rest of the crate
//! receives a finished `Config` and never reads the environment itself.

use std::fmt;
use std::time::Duration;

use log::LevelFilter;

use crate::peer::rate_limit::Limits;

/// Everything a server needs to know before it starts. `Config::default()` matches the JavaScript
/// reference server's defaults; [`Config::from_env_vars`] reads the variables listed in [`SETTINGS`].
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
    /// The secret the hubs of one mesh share (`HUB_TOKEN`): only a connection that presents it may
    /// become a hub link; unset, only loopback connections may. Never logged.
    pub hub_token: Option<String>,
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
    /// Messages (frames of any kind) a peer may send per second, on average (`MAX_MESSAGES_PER_SEC`).
    pub max_messages_per_sec: u32,
    /// Messages a peer may send at once before the rate applies (`MESSAGE_BURST`).
    pub message_burst: u32,
    /// Bytes a peer may send per second, on average (`MAX_BYTES_PER_SEC`); one largest message
    /// may always arrive at once.
    pub max_bytes_per_sec: u64,
    /// Messages a hub link may send per second (`HUB_LINK_MESSAGES_PER_SEC`; bursts of twice that).
    pub link_messages_per_sec: u32,
    /// Bytes a hub link may send per second (`HUB_LINK_BYTES_PER_SEC`; bursts of twice that).
    pub link_bytes_per_sec: u64,
    /// Bytes that may wait, unread, for all peers together (`MAX_TOTAL_QUEUED_BYTES`; see `outbox.rs`).
    pub max_total_queued_bytes: usize,
    /// In hub mode, how often this hub tells the mesh it is alive (`HUB_HEARTBEAT_SECS`); the peers
    /// of a hub not heard from for three of these are dropped.
    pub hub_heartbeat: Duration,
    /// Most hub-to-hub links a relayed message may cross (`HUB_MAX_HOPS`).
    pub hub_max_hops: u32,
    /// Most peers of other hubs known at once (`HUB_MAX_REMOTE_PEERS`); one link may introduce half.
    pub hub_max_remote_peers: usize,
    /// Most sockets still sending their request head at once (`MAX_PENDING_HANDSHAKES`). Each costs
    /// a thread until its head arrives or `handshake_timeout` passes; past the limit, new sockets are
    /// closed on accept.
    pub max_pending_handshakes: usize,
    /// Most of those from one source address (`MAX_PENDING_HANDSHAKES_PER_IP`), so that one host
    /// cannot take them all (see `handshakes.rs`).
    pub max_pending_handshakes_per_ip: usize,
    /// Most connection threads at once (`MAX_THREADS`); 0 means as many as the system's
    /// `vm.max_map_count` allows (see `thread_budget.rs`), and a larger value is lowered to that.
    pub max_threads: usize,
    /// Cluster mode: the Redis (or Valkey) the instances share (`CLUSTER_REDIS_URL`, `redis://` or
    /// `rediss://` for TLS, a password in the URL). Unset, the server runs alone. Never logged whole.
    pub cluster_redis_url: Option<String>,
    /// The certificate authority (PEM file) that signed a `rediss://` Redis's certificate
    /// (`CLUSTER_REDIS_CA_FILE`), when it is not one the public web trusts.
    pub cluster_redis_ca_file: Option<String>,
    /// Prefix of the cluster's keys and channels (`CLUSTER_NAMESPACE`), so that clusters can share
    /// one Redis.
    pub cluster_namespace: String,
    /// How long an instance not heard from counts as alive (`CLUSTER_INSTANCE_TTL_SECS`); it sends a
    /// heartbeat each third of it, and its peers are announced gone to the others when it is over.
    pub cluster_instance_ttl: Duration,
    /// Most messages waiting to go to Redis (`CLUSTER_QUEUE`); past it they are dropped and counted,
    /// and the instance publishes its peers again once the queue has room.
    pub cluster_queue: usize,
    /// Whether the status page at `/` shows hub ids and link URLs (`STATUS_DETAIL`); without it the
    /// page shows only counts.
    pub status_detail: bool,
    /// Whether `GET /metrics` answers (`METRICS`).
    pub metrics: bool,
    /// When set, `GET /metrics` must present this token (`METRICS_TOKEN`). Never logged.
    pub metrics_token: Option<String>,
    /// How much the server logs (`LOG_LEVEL`, or `RUST_LOG` when that is set and `LOG_LEVEL` is not).
    /// The library logs through the `log` facade; the binary installs the logger with this level.
    pub log_level: LevelFilter,
    /// How the binary writes log lines (`LOG_FORMAT`): text, or one JSON object per line.
    pub log_format: LogFormat,
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
            hub_token: None,
            max_message_size: 1 << 20,
            peer_timeout: Duration::from_secs(300),
            cleanup_interval: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_queued_bytes: 16 << 20,
            max_pending_handshakes: 1024,
            max_pending_handshakes_per_ip: 32,
            max_threads: 0,
            max_peer_data_bytes: 16 * 1024,
            max_messages_per_sec: 200,
            message_burst: 400,
            max_bytes_per_sec: 256 * 1024,
            link_messages_per_sec: 20_000,
            link_bytes_per_sec: 32 << 20,
            max_total_queued_bytes: 256 << 20,
            hub_heartbeat: Duration::from_secs(10),
            hub_max_hops: 16,
            hub_max_remote_peers: 100_000,
            cluster_redis_url: None,
            cluster_redis_ca_file: None,
            cluster_namespace: "peerpigeon".to_string(),
            cluster_instance_ttl: Duration::from_secs(6),
            cluster_queue: 65_536,
            status_detail: false,
            metrics: true,
            metrics_token: None,
            log_level: LevelFilter::Info,
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    /// The rate limits of a peer's connection (`rate_limit.rs`).
    pub(crate) fn peer_limits(&self) -> Limits {
        Limits {
            messages_per_sec: self.max_messages_per_sec,
            message_burst: self.message_burst,
            bytes_per_sec: self.max_bytes_per_sec,
            byte_burst: (self.max_message_size as u64 + 64 * 1024).max(2 * self.max_bytes_per_sec),
        }
    }

    /// The rate limits of a hub link: larger, since it carries many peers' traffic, but finite.
    pub(crate) fn link_limits(&self) -> Limits {
        Limits {
            messages_per_sec: self.link_messages_per_sec,
            message_burst: self.link_messages_per_sec.saturating_mul(2),
            bytes_per_sec: self.link_bytes_per_sec,
            byte_burst: (self.max_message_size as u64 + 64 * 1024).max(2 * self.link_bytes_per_sec),
        }
    }
}

/// One environment variable: its name, what it means, its default as shown to people, and how its
/// value is read into a [`Config`]. [`SETTINGS`] lists them all; parsing, `--help` and the README's
/// configuration table are all made from it (a test keeps the README in step).
pub struct Setting {
    /// The variable's name.
    pub name: &'static str,
    /// What it sets, in one line.
    pub meaning: &'static str,
    /// The setting's value in a configuration, as shown (secrets as `(set)`).
    show: fn(&Config) -> String,
    /// Reads a (non-empty) value into the config, or says what is wrong with it.
    read: fn(&mut Config, &str) -> Result<(), String>,
}

impl Setting {
    /// The default as `--help` and the README show it.
    pub fn default_text(&self) -> String {
        (self.show)(&Config::default())
    }

    /// The value in `config`, as the start-up log line shows it (secrets never shown).
    pub fn value_text(&self, config: &Config) -> String {
        (self.show)(config)
    }
}

/// Every setting the server reads, in the order `--help` and the README list them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "PORT",
        meaning: "first port to listen on; if busy, the next ones are tried and the one used is logged",
        show: |c| c.port.to_string(),
        read: |c, v| {
            c.port = number(v, 0, u16::MAX.into())? as u16;
            Ok(())
        },
    },
    Setting {
        name: "PORT_RETRIES",
        meaning: "how many ports above `PORT` to try",
        show: |c| c.port_retries.to_string(),
        read: |c, v| {
            c.port_retries = number(v, 0, 1000)? as u16;
            Ok(())
        },
    },
    Setting {
        name: "HOST",
        meaning: "interface to bind (`localhost` binds 127.0.0.1; `0.0.0.0` for all interfaces)",
        show: |c| c.host.clone(),
        read: |c, v| {
            c.host = single_token(v)?;
            Ok(())
        },
    },
    Setting {
        name: "MAX_CONNECTIONS",
        meaning: "most WebSocket peers at once; more are closed with 1008",
        show: |c| c.max_connections.to_string(),
        read: |c, v| {
            c.max_connections = number(v, 1, 1_000_000)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "CORS_ORIGIN",
        meaning: "`Access-Control-Allow-Origin` of the HTTP replies",
        show: |c| c.cors_origin.clone(),
        read: |c, v| {
            c.cors_origin = single_token(v)?;
            Ok(())
        },
    },
    Setting {
        name: "IS_HUB",
        meaning: "run as a hub of a mesh of servers (see Running a mesh of hubs)",
        show: |c| c.is_hub.to_string(),
        read: |c, v| {
            c.is_hub = boolean(v)?;
            Ok(())
        },
    },
    Setting {
        name: "HUB_MESH_NAMESPACE",
        meaning: "network name hubs announce into",
        show: |c| c.hub_mesh_namespace.clone(),
        read: |c, v| {
            c.hub_mesh_namespace = single_token(v)?;
            Ok(())
        },
    },
    Setting {
        name: "BOOTSTRAP_HUBS",
        meaning: "comma-separated `ws://host:port` URLs of hubs to link to",
        show: |c| {
            if c.bootstrap_hubs.is_empty() {
                "(none)".into()
            } else {
                c.bootstrap_hubs.iter().map(|url| url_for_display(url)).collect::<Vec<_>>().join(",")
            }
        },
        read: |c, v| {
            c.bootstrap_hubs = hub_urls(v)?;
            Ok(())
        },
    },
    Setting {
        name: "AUTH_TOKEN",
        meaning: "when set, peers must send `Authorization: Bearer <token>` or `?token=<token>`",
        show: |c| if c.auth_token.is_some() { "(set)".into() } else { "(none: no auth)".into() },
        read: |c, v| {
            c.auth_token = Some(secret(v)?);
            Ok(())
        },
    },
    Setting {
        name: "HUB_TOKEN",
        meaning: "hub mode: the secret of the mesh's hubs; only a connection presenting it may link as a hub (unset: only from this machine)",
        show: |c| if c.hub_token.is_some() { "(set)".into() } else { "(none: loopback links only)".into() },
        read: |c, v| {
            c.hub_token = Some(secret(v)?);
            Ok(())
        },
    },
    Setting {
        name: "MAX_MESSAGE_SIZE",
        meaning: "largest WebSocket message in bytes; larger ones close with 1009",
        show: |c| c.max_message_size.to_string(),
        read: |c, v| {
            c.max_message_size = number(v, 1024, 1 << 30)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "PEER_TIMEOUT_SECS",
        meaning: "close a peer from which nothing has arrived for this long",
        show: |c| c.peer_timeout.as_secs().to_string(),
        read: |c, v| {
            c.peer_timeout = seconds(v, 1, 86_400)?;
            Ok(())
        },
    },
    Setting {
        name: "CLEANUP_INTERVAL_SECS",
        meaning: "how often every peer is pinged and idle peers are swept",
        show: |c| c.cleanup_interval.as_secs().to_string(),
        read: |c, v| {
            c.cleanup_interval = seconds(v, 1, 86_400)?;
            Ok(())
        },
    },
    Setting {
        name: "HANDSHAKE_TIMEOUT_SECS",
        meaning: "time a new socket has to send its HTTP request head",
        show: |c| c.handshake_timeout.as_secs().to_string(),
        read: |c, v| {
            c.handshake_timeout = seconds(v, 1, 3_600)?;
            Ok(())
        },
    },
    Setting {
        name: "MAX_QUEUED_BYTES",
        meaning: "bytes that may wait for one peer that does not read before it is cut off",
        show: |c| c.max_queued_bytes.to_string(),
        read: |c, v| {
            c.max_queued_bytes = number(v, 64 * 1024, 1 << 34)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "MAX_TOTAL_QUEUED_BYTES",
        meaning: "bytes that may wait for all peers together; past half of it a peer may leave only 1 MiB unread, at it the peer a message is for is cut off",
        show: |c| c.max_total_queued_bytes.to_string(),
        read: |c, v| {
            c.max_total_queued_bytes = number(v, 1 << 20, 1 << 40)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "MAX_PEER_DATA_BYTES",
        meaning: "largest `data` a peer may announce (stored, and copied into every discovery of it)",
        show: |c| c.max_peer_data_bytes.to_string(),
        read: |c, v| {
            c.max_peer_data_bytes = number(v, 64, 1 << 20)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "MAX_MESSAGES_PER_SEC",
        meaning: "messages (any frame) a peer may send per second; over it: dropped with an `error`, and a 1008 close if it goes on for 3 s",
        show: |c| c.max_messages_per_sec.to_string(),
        read: |c, v| {
            c.max_messages_per_sec = number(v, 1, 1_000_000)? as u32;
            Ok(())
        },
    },
    Setting {
        name: "MESSAGE_BURST",
        meaning: "messages a peer may send at once before the rate applies",
        show: |c| c.message_burst.to_string(),
        read: |c, v| {
            c.message_burst = number(v, 1, 1_000_000)? as u32;
            Ok(())
        },
    },
    Setting {
        name: "MAX_BYTES_PER_SEC",
        meaning: "bytes a peer may send per second (one largest message may come at once); over it its reads are paused, then a 1008 close if it goes on",
        show: |c| c.max_bytes_per_sec.to_string(),
        read: |c, v| {
            c.max_bytes_per_sec = number(v, 1024, 1 << 40)?;
            Ok(())
        },
    },
    Setting {
        name: "HUB_LINK_MESSAGES_PER_SEC",
        meaning: "hub mode: messages a hub link may send per second (bursts of twice that)",
        show: |c| c.link_messages_per_sec.to_string(),
        read: |c, v| {
            c.link_messages_per_sec = number(v, 1, 10_000_000)? as u32;
            Ok(())
        },
    },
    Setting {
        name: "HUB_LINK_BYTES_PER_SEC",
        meaning: "hub mode: bytes a hub link may send per second (bursts of twice that)",
        show: |c| c.link_bytes_per_sec.to_string(),
        read: |c, v| {
            c.link_bytes_per_sec = number(v, 1024, 1 << 40)?;
            Ok(())
        },
    },
    Setting {
        name: "MAX_PENDING_HANDSHAKES",
        meaning: "most sockets still sending their HTTP request head at once; past it a newcomer replaces the oldest of the address holding the most",
        show: |c| c.max_pending_handshakes.to_string(),
        read: |c, v| {
            c.max_pending_handshakes = number(v, 1, 1_000_000)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "MAX_PENDING_HANDSHAKES_PER_IP",
        meaning: "most of those from one address; more from it are closed on accept (behind a reverse proxy, set it to `MAX_PENDING_HANDSHAKES`)",
        show: |c| c.max_pending_handshakes_per_ip.to_string(),
        read: |c, v| {
            c.max_pending_handshakes_per_ip = number(v, 1, 1_000_000)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "MAX_THREADS",
        meaning: "most connection threads (one per peer, 64 kept for HTTP); `0`: as many as `vm.max_map_count` allows",
        show: |c| c.max_threads.to_string(),
        read: |c, v| {
            c.max_threads = number(v, 0, 10_000_000)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "HUB_HEARTBEAT_SECS",
        meaning: "hub mode: how often a hub tells the mesh it is alive; three missed = its peers are dropped",
        show: |c| c.hub_heartbeat.as_secs().to_string(),
        read: |c, v| {
            c.hub_heartbeat = seconds(v, 1, 3_600)?;
            Ok(())
        },
    },
    Setting {
        name: "HUB_MAX_HOPS",
        meaning: "hub mode: most hub links a relayed message may cross",
        show: |c| c.hub_max_hops.to_string(),
        read: |c, v| {
            c.hub_max_hops = number(v, 1, 255)? as u32;
            Ok(())
        },
    },
    Setting {
        name: "HUB_MAX_REMOTE_PEERS",
        meaning: "most peers of other hubs (or cluster instances) known at once; one hub link may introduce half of them, more are ignored",
        show: |c| c.hub_max_remote_peers.to_string(),
        read: |c, v| {
            c.hub_max_remote_peers = number(v, 2, 100_000_000)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "CLUSTER_REDIS_URL",
        meaning: "cluster mode: `redis://[:password@]host:port[/db]` (or `rediss://` for TLS) of the Redis the instances share (see Running a cluster)",
        show: |c| c.cluster_redis_url.as_deref().map_or_else(|| "(none: runs alone)".into(), url_for_display),
        read: |c, v| {
            let url = single_token(v)?;
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                return Err(format!("expected a redis:// or rediss:// URL, got {:?}", url_for_display(&url)));
            }
            c.cluster_redis_url = Some(url);
            Ok(())
        },
    },
    Setting {
        name: "CLUSTER_REDIS_CA_FILE",
        meaning: "cluster mode: PEM file of the certificate authority of a `rediss://` Redis (unset: the public web's authorities)",
        show: |c| c.cluster_redis_ca_file.clone().unwrap_or_else(|| "(none)".into()),
        read: |c, v| {
            c.cluster_redis_ca_file = Some(v.trim().to_string());
            Ok(())
        },
    },
    Setting {
        name: "CLUSTER_NAMESPACE",
        meaning: "cluster mode: prefix of the cluster's Redis keys and channels (clusters sharing a Redis need different ones)",
        show: |c| c.cluster_namespace.clone(),
        read: |c, v| {
            c.cluster_namespace = single_token(v)?;
            Ok(())
        },
    },
    Setting {
        name: "CLUSTER_INSTANCE_TTL_SECS",
        meaning: "cluster mode: an instance not heard from for this long is taken for dead and its peers for gone",
        show: |c| c.cluster_instance_ttl.as_secs().to_string(),
        read: |c, v| {
            c.cluster_instance_ttl = seconds(v, 2, 300)?;
            Ok(())
        },
    },
    Setting {
        name: "CLUSTER_QUEUE",
        meaning: "cluster mode: most messages waiting to go to Redis; more are dropped (and the peers published again later)",
        show: |c| c.cluster_queue.to_string(),
        read: |c, v| {
            c.cluster_queue = number(v, 64, 10_000_000)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "STATUS_DETAIL",
        meaning: "`true` for the status page at `/` to show hub ids and link URLs, not only counts",
        show: |c| c.status_detail.to_string(),
        read: |c, v| {
            c.status_detail = boolean(v)?;
            Ok(())
        },
    },
    Setting {
        name: "METRICS",
        meaning: "`false` to switch `GET /metrics` (Prometheus text format) off",
        show: |c| c.metrics.to_string(),
        read: |c, v| {
            c.metrics = boolean(v)?;
            Ok(())
        },
    },
    Setting {
        name: "METRICS_TOKEN",
        meaning: "when set, `GET /metrics` must send `Authorization: Bearer <token>` or `?token=<token>`",
        show: |c| if c.metrics_token.is_some() { "(set)".into() } else { "(none: open)".into() },
        read: |c, v| {
            c.metrics_token = Some(secret(v)?);
            Ok(())
        },
    },
    Setting {
        name: "LOG_LEVEL",
        meaning: "`error`, `warn`, `info` or `debug` (per-peer events are `debug`); unset, `RUST_LOG` is read the same way",
        show: |c| c.log_level.as_str().to_ascii_lowercase(),
        read: |c, v| {
            c.log_level = level(v)?;
            Ok(())
        },
    },
    Setting {
        name: "LOG_FORMAT",
        meaning: "`text`, or `json` for one JSON object per line",
        show: |c| c.log_format.as_str().into(),
        read: |c, v| {
            c.log_format = match v.trim().to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(format!("expected text or json, got {v:?}")),
            };
            Ok(())
        },
    },
];

/// The settings as `peerpigeon --help` lists them: name, meaning, and the default in brackets.
pub fn env_help() -> String {
    let width = SETTINGS.iter().map(|s| s.name.len()).max().unwrap_or(0);
    SETTINGS
        .iter()
        .map(|s| format!("  {:width$}  {} [{}]", s.name, s.meaning.replace('`', ""), s.default_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

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
        let mut config = Config::default();
        // RUST_LOG, as other Rust programs read it, when LOG_LEVEL is not set: a level, or the
        // level given for `peerpigeon` among comma-separated `target=level` items.
        let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        if set("LOG_LEVEL").is_none()
            && let Some(rust_log) = set("RUST_LOG")
            && let Some(level) = rust_log_level(&rust_log)
        {
            config.log_level = level;
        }
        for setting in SETTINGS {
            if let Some(value) = lookup(setting.name).filter(|value| !value.trim().is_empty()) {
                (setting.read)(&mut config, &value)
                    .map_err(|problem| ConfigError { variable: setting.name, problem })?;
            }
        }
        config.check_modes().map_err(|problem| ConfigError { variable: "CLUSTER_REDIS_URL", problem })?;
        Ok(config)
    }

    /// Hub mode and cluster mode are not combined (yet): a server is either a hub of a mesh or an
    /// instance of a cluster.
    pub fn check_modes(&self) -> Result<(), String> {
        if self.is_hub && self.cluster_redis_url.is_some() {
            return Err("cluster mode cannot be combined with IS_HUB=true: run either a mesh of hubs or a \
                        cluster of instances sharing a Redis (several instances behind one address)"
                .to_string());
        }
        Ok(())
    }
}

/// How the binary writes log lines (`LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `<time> <LEVEL> <message>`.
    Text,
    /// One JSON object per line: `{"time","level","target","message"}`.
    Json,
}

impl LogFormat {
    /// The name `LOG_FORMAT` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `url` as logs and HTTP replies may show it: scheme, host and port only. A URL may carry a
/// credential in its user part (`redis://:<password>@host`), its path or its query
/// (`ws://hub/mesh/<HUB_TOKEN>`, `?token=`), and neither the logs nor an HTTP caller may see it.
pub fn url_for_display(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let rest = &url[after_scheme..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..authority_end].rsplit_once('@').map_or(&rest[..authority_end], |(_, host)| host);
    let hidden = if rest.len() > authority_end + 1 { "/…" } else { "" };
    format!("{}{host}{hidden}", &url[..after_scheme])
}

/// The settings with the values of `config`, as one line for the start-up log (secrets redacted).
pub fn effective(config: &Config) -> String {
    SETTINGS.iter().map(|s| format!("{}={}", s.name, s.value_text(config))).collect::<Vec<_>>().join(" ")
}

fn level(value: &str) -> Result<LevelFilter, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(LevelFilter::Error),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        "off" => Ok(LevelFilter::Off),
        _ => Err(format!("expected error, warn, info or debug, got {value:?}")),
    }
}

/// The level `RUST_LOG` gives this program, if it gives one it can read.
fn rust_log_level(value: &str) -> Option<LevelFilter> {
    let mut found = None;
    for item in value.split(',').map(str::trim) {
        match item.split_once('=') {
            Some((target, lvl)) if target.trim() == "peerpigeon" => return level(lvl).ok(),
            Some(_) => {}
            None => found = level(item).ok().or(found),
        }
    }
    found
}

fn number(value: &str, min: u64, max: u64) -> Result<u64, String> {
    let out_of_range = || format!("expected a whole number from {min} to {max}, got {value:?}");
    let number: u64 = value.trim().parse().map_err(|_| out_of_range())?;
    if (min..=max).contains(&number) { Ok(number) } else { Err(out_of_range()) }
}

fn seconds(value: &str, min: u64, max: u64) -> Result<Duration, String> {
    number(value, min, max).map(Duration::from_secs)
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("expected true or false, got {value:?}")),
    }
}

/// A value that ends up in a header, a log line or a JSON field: trimmed, no whitespace inside.
fn single_token(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("must not contain spaces or control characters, got {value:?}"));
    }
    Ok(value.to_string())
}

/// A secret: kept as given, never echoed back, not even in this error.
fn secret(value: &str) -> Result<String, String> {
    if value.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(value.to_string())
}

fn hub_urls(value: &str) -> Result<Vec<String>, String> {
    let mut urls = Vec::new();
    for url in value.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        if !url.starts_with("ws://") || url.len() <= "ws://".len() {
            return Err(format!(
                "expected comma-separated ws://host:port URLs, got {url:?} (wss:// needs a TLS proxy in front)"
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
        assert_eq!(config.log_level, LevelFilter::Debug);
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
    fn urls_are_shown_without_what_may_carry_a_credential() {
        assert_eq!(url_for_display("ws://hub:3000/mesh/s3cret"), "ws://hub:3000/…");
        assert_eq!(url_for_display("ws://hub:3000?token=s3cret"), "ws://hub:3000/…");
        assert_eq!(url_for_display("ws://hub:3000"), "ws://hub:3000");
        assert_eq!(url_for_display("ws://hub:3000/"), "ws://hub:3000");
        assert_eq!(url_for_display("rediss://:s3cret@redis:6380"), "rediss://redis:6380");
        assert_eq!(url_for_display("redis://user:s3cret@redis:6379/2"), "redis://redis:6379/…");
        let config =
            from(&[("BOOTSTRAP_HUBS", "ws://a:1/mesh/k3y,ws://b:2"), ("HUB_TOKEN", "k3y"), ("AUTH_TOKEN", "t0k")])
                .unwrap();
        let line = effective(&config);
        assert!(!line.contains("k3y") && !line.contains("t0k"), "{line}");
        assert!(line.contains("BOOTSTRAP_HUBS=ws://a:1/…,ws://b:2"), "{line}");
    }

    #[test]
    fn auth_token_is_not_echoed_in_errors() {
        let err = from(&[("AUTH_TOKEN", "abc\u{7}def")]).unwrap_err();
        assert!(!err.to_string().contains("abc"));
    }
}
