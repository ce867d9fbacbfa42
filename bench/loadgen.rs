//! Load generator for any PeerPigeon signaling server (PeerPigeon-rs or the JavaScript reference):
//! measures it from the outside, with WebSocket clients, and prints one line of JSON.
//!
//! ```text
//! cargo run --release -p peerpigeon-bench --bin loadgen -- connect --url ws://127.0.0.1:3000 --peers 1000 [--networks 1] [--pid PID]
//! cargo run --release -p peerpigeon-bench --bin loadgen -- relay   --url ws://127.0.0.1:3000 --peers 1000 --seconds 10 --inflight 4
//! cargo run --release -p peerpigeon-bench --bin loadgen -- relay   --url ws://127.0.0.1:3000 --peers 1000 --seconds 10 --rate 5000
//! cargo run --release -p peerpigeon-bench --bin loadgen -- churn   --url ws://127.0.0.1:3000 --workers 100 --seconds 10
//! cargo run --release -p peerpigeon-bench --bin loadgen -- hub     --url ws://127.0.0.1:3000 --url2 ws://127.0.0.1:3001 --peers 200 --rate 1000
//! cargo run --release -p peerpigeon-bench --bin loadgen -- connect --url ws://127.0.0.1:3001,ws://127.0.0.1:3002,ws://127.0.0.1:3003 --peers 1000
//! ```
//!
//! `--url` may list several servers, comma-separated (the instances of a cluster): `connect` and
//! `relay` spread each network's peers over them in turn; `/health` is asked of the first.
//!
//! - `connect`: all peers connect, then all announce at once; reports the time until every peer has
//!   been told of every other peer of its network (waiting at most `--discovery-limit` seconds, 60),
//!   and (with `--pid`) the server's RSS per peer.
//!   Meanwhile `GET /health` is polled every 100 ms, from a child process in a session of its own
//!   (as a monitoring agent would be, not one of the load generator's threads): its latency shows
//!   whether the server stays responsive (`health`: p50/p99/max ms, failures), beside how late the
//!   monitor itself woke and how long it waited for a CPU (`--monitor ordinary`, the default, or
//!   `realtime`).
//! - `relay`, closed loop (`--inflight W`): every peer keeps W offers of `--size` bytes (2 KB) in
//!   flight to random peers of its network, each answered by its target; reports signals per second.
//! - `relay`, open loop (`--rate R`): offers go out at R per second in total, each stamped with its
//!   send time; reports latency percentiles, and lost and duplicated offers after a drain.
//! - `churn`: workers keep connecting, announcing, signalling and leaving; reports connections/s.
//! - `hub`: half the peers on `--url`, half on `--url2`; cross-hub discovery time, then open-loop
//!   latency of offers sent from one hub's peers to the other's.
//!
//! With `--pid` the server's RSS, peak RSS and thread count are read from `/proc/PID/status`;
//! `connect` reads them again `--settle` seconds (1) after the last discovery. `connect --hold SECS`
//! prints its line and then keeps its peers connected that long, for looking inside the server.

mod system;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::{Message, Utf8Bytes};

/// Command-line options (every scenario reads the ones it needs).
#[derive(Clone, Debug)]
struct Options {
    scenario: String,
    url: String,
    url2: Option<String>,
    pid: Option<u32>,
    peers: usize,
    networks: usize,
    seconds: f64,
    rate: Option<f64>,
    inflight: usize,
    size: usize,
    workers: usize,
    senders: usize,
    settle: f64,
    /// How long `connect` waits for the full discovery before it counts the peers still missing
    /// some (`--discovery-limit`, seconds; 60).
    discovery_limit: f64,
    /// Whether the `/health` monitor asks for real-time scheduling (`--monitor realtime`) or runs
    /// as an ordinary process (`--monitor ordinary`, the default).
    realtime_monitor: bool,
    /// How long `connect` keeps its peers connected after printing its line (`--hold`, seconds; 0).
    hold: f64,
}

fn parse_options() -> Options {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| usage());
    let mut o = Options {
        scenario,
        url: "ws://127.0.0.1:3000".into(),
        url2: None,
        pid: None,
        peers: 1000,
        networks: 1,
        seconds: 10.0,
        rate: None,
        inflight: 4,
        size: 2048,
        workers: 100,
        senders: 4,
        settle: 1.0,
        discovery_limit: 60.0,
        realtime_monitor: false,
        hold: 0.0,
    };
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        let number = || value.parse::<f64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--url" => o.url = value.clone(),
            "--url2" => o.url2 = Some(value.clone()),
            "--pid" => o.pid = Some(number() as u32),
            "--peers" => o.peers = number() as usize,
            "--networks" => o.networks = (number() as usize).max(1),
            "--seconds" => o.seconds = number(),
            "--rate" => o.rate = Some(number()),
            "--inflight" => o.inflight = number() as usize,
            "--size" => o.size = number() as usize,
            "--workers" => o.workers = number() as usize,
            "--senders" => o.senders = (number() as usize).max(1),
            "--settle" => o.settle = number(),
            "--discovery-limit" => o.discovery_limit = number(),
            "--hold" => o.hold = number(),
            "--monitor" => {
                o.realtime_monitor = match value.as_str() {
                    "realtime" => true,
                    "ordinary" => false,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    o
}

fn usage() -> ! {
    eprintln!("usage: loadgen connect|relay|churn|hub --url ws://host:port [options]; see the source's doc comment");
    std::process::exit(2)
}

fn main() {
    let options = parse_options();
    // A thread per simulated peer: give the kernel's futex table room for them (see the server's
    // src/platform/futex_hash.rs), or the load generator itself stalls at thousands of peers.
    system::size_futex_hash_for_threads(options.peers.max(options.workers) + 64);
    system::raise_open_file_limit();
    let result = match options.scenario.as_str() {
        "connect" => connect_scenario(&options),
        "relay" => relay_scenario(&options),
        "churn" => churn_scenario(&options),
        "hub" => hub_scenario(&options),
        "health-poll" => health_poll_scenario(&options),
        _ => usage(),
    };
    println!("{result}");
}

// ------------------------------------------------------------------------------------------------
// Clients

/// Microseconds since the load generator started: the clock every stamp and latency uses.
fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// One half of a client's socket, shared (not duplicated) between the peer's reader and sender so
/// that a peer costs the load generator one descriptor. The reader's half drops writes once
/// `read_only` is set (tungstenite's automatic pong and close replies), so only the sender writes.
struct SocketHalf {
    stream: Arc<TcpStream>,
    read_only: bool,
}

impl Read for SocketHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.stream).read(buf)
    }
}

impl Write for SocketHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.read_only { Ok(buf.len()) } else { (&*self.stream).write(buf) }
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self.stream).flush()
    }
}

/// One connected peer, split into a reading half and a writing half.
struct Peer {
    id: String,
    network: String,
    reader: WebSocket<SocketHalf>,
    writer: WebSocket<SocketHalf>,
}

fn connect_peer(url: &str, network: &str) -> Result<Peer, String> {
    let id = hex::encode(rand::random::<[u8; 20]>());
    let stream = TcpStream::connect(host_of(url)).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let stream = Arc::new(stream);
    let writer_stream = SocketHalf { stream: stream.clone(), read_only: false };
    let request = format!("{url}/?peerId={id}");
    let (mut reader, _) = tungstenite::client::client_with_config(
        request,
        SocketHalf { stream, read_only: false },
        Some(client_config()),
    )
    .map_err(|e| format!("handshake: {e}"))?;
    reader.get_mut().read_only = true;
    let writer = WebSocket::from_raw_socket(writer_stream, Role::Client, Some(client_config()));
    Ok(Peer { id, network: network.to_string(), reader, writer })
}

/// A client's WebSocket settings: a 4 KiB read buffer. tungstenite zero-fills the free part of its
/// read buffer (128 KiB by default) before every read, which made `memset` an eighth of the whole
/// machine's time in a 10,000-peer discovery; signaling messages are far smaller, and a longer
/// frame still gets room for its whole length.
fn client_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}

/// The first of a comma-separated list of server URLs (the one `/health` is asked of).
fn first_url(url: &str) -> &str {
    url.split(',').next().unwrap_or(url)
}

/// The `host:port` of a `ws://host:port/...` URL.
fn host_of(url: &str) -> &str {
    url.trim_start_matches("ws://").split('/').next().unwrap_or_default()
}

fn send(writer: &mut WebSocket<SocketHalf>, message: &Value) -> bool {
    writer.send(Message::Text(Utf8Bytes::from(message.to_string()))).is_ok()
}

/// Reads the next text message; `None` on timeout or a closed connection.
fn next_text(reader: &mut WebSocket<SocketHalf>) -> Option<Value> {
    loop {
        match reader.read() {
            Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
            Ok(Message::Close(_)) => return None,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Connects `count` peers spread over `networks` networks of server `url`, in parallel. `url` may
/// list several servers, comma-separated (the instances of a cluster): peer `i` goes to the
/// `i % n`-th, so that consecutive peers of a network are on different servers.
fn connect_many(url: &str, count: usize, networks: usize, prefix: &str) -> (Vec<Peer>, usize) {
    let urls: Vec<&str> = url.split(',').collect();
    let threads = CLIENT_THREADS.min(count.max(1));
    let peers = Mutex::new(Vec::with_capacity(count));
    let failures = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (peers, failures, urls) = (&peers, &failures, &urls);
            scope.spawn(move || {
                for i in (t..count).step_by(threads) {
                    let network = format!("{prefix}{}", i % networks);
                    match connect_peer(urls[(i / networks) % urls.len()], &network) {
                        Ok(peer) => peers.lock().unwrap_or_else(|e| e.into_inner()).push((i, peer)),
                        Err(why) => {
                            if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("loadgen: peer {i} could not connect: {why}");
                            }
                        }
                    }
                }
            });
        }
    });
    let mut peers = peers.into_inner().unwrap_or_else(|e| e.into_inner());
    peers.sort_by_key(|(i, _)| *i);
    (peers.into_iter().map(|(_, p)| p).collect(), failures.load(Ordering::Relaxed) as usize)
}

fn process_stats(pid: Option<u32>) -> Value {
    let Some(pid) = pid else { return Value::Null };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    json!({"rssKiB": field("VmRSS"), "peakRssKiB": field("VmHWM"), "threads": field("Threads")})
}

// ------------------------------------------------------------------------------------------------
// connect

/// Every peer announces at once; then each peer counts discoveries until it has seen its whole
/// network. Returns the peers (for later phases), the time it took, and the messages received.
///
/// The peers are served by [`CLIENT_THREADS`] threads, each waiting on its share of the sockets
/// with `poll`, not by a thread per peer: 10,000 client threads started at once on the server's
/// cores, in the server's scheduling group, are not what a server meets from clients on other
/// machines, and they delayed its answers by up to 300 ms (docs/performance.md, "The load
/// generator's herd").
fn announce_and_discover(
    peers: Vec<Peer>,
    expected: impl Fn(&Peer) -> usize + Sync,
    limit: Duration,
) -> (Vec<Peer>, Value) {
    let threads = CLIENT_THREADS.min(peers.len().max(1));
    let barrier = Barrier::new(threads + 1);
    let received = AtomicU64::new(0);
    let incomplete = AtomicU64::new(0);
    let latest_done = AtomicU64::new(0);
    let started = AtomicU64::new(0);
    let mut shares: Vec<Vec<Peer>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, peer) in peers.into_iter().enumerate() {
        shares[i % threads].push(peer);
    }
    let peers = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let (barrier, received, incomplete, latest_done, expected) =
                    (&barrier, &received, &incomplete, &latest_done, &expected);
                scope.spawn(move || {
                    let wants: Vec<usize> = share.iter().map(expected).collect();
                    barrier.wait();
                    let deadline = Instant::now() + limit;
                    let mut share = share;
                    for peer in &mut share {
                        let announce =
                            json!({"type": "announce", "networkName": peer.network, "data": {"peerId": peer.id}});
                        send(&mut peer.writer, &announce);
                    }
                    let seen = discover(&mut share, &wants, deadline, received, latest_done);
                    let short = seen.iter().zip(&wants).filter(|(seen, want)| seen < want).count();
                    incomplete.fetch_add(short as u64, Ordering::Relaxed);
                    share
                })
            })
            .collect();
        started.store(now_us(), Ordering::Relaxed);
        barrier.wait();
        handles.into_iter().filter_map(|h| h.join().ok()).flatten().collect::<Vec<Peer>>()
    });
    let elapsed_ms =
        (latest_done.load(Ordering::Relaxed).saturating_sub(started.load(Ordering::Relaxed))) as f64 / 1000.0;
    let summary = json!({
        "fullDiscoveryMs": elapsed_ms,
        "messagesReceived": received.load(Ordering::Relaxed),
        "incompletePeers": incomplete.load(Ordering::Relaxed),
    });
    (peers, summary)
}

/// Threads that serve the clients of the `connect` phase and of the discovery.
const CLIENT_THREADS: usize = 16;

/// Reads the peers' messages, waiting on all their sockets at once (one epoll set per thread, so
/// a wake-up costs the sockets that are ready, not all of them), until each has been told of
/// `wants[i]` peers or `deadline` passes; returns how many each was told of. The sockets are
/// blocking again when it returns.
fn discover(
    peers: &mut [Peer],
    wants: &[usize],
    deadline: Instant,
    received: &AtomicU64,
    latest_done: &AtomicU64,
) -> Vec<usize> {
    use std::os::fd::AsRawFd;
    let mut seen = vec![0; peers.len()];
    let mut left = 0;
    // SAFETY: creates a descriptor this function owns and closes.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1: {}", io::Error::last_os_error());
    let watch = |op: i32, i: usize, peer: &Peer| {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        // SAFETY: both descriptors are open for the whole call; `event` outlives it.
        unsafe { libc::epoll_ctl(epoll, op, peer.reader.get_ref().stream.as_raw_fd(), &mut event) };
    };
    for (i, peer) in peers.iter().enumerate() {
        if wants[i] > 0 {
            let _ = peer.reader.get_ref().stream.set_nonblocking(true);
            watch(libc::EPOLL_CTL_ADD, i, peer);
            left += 1;
        }
    }
    let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    while left > 0 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let timeout = remaining.as_millis().clamp(1, 1000) as i32;
        // SAFETY: `ready` is a valid array of `ready.len()` events for the whole call.
        let count = unsafe { libc::epoll_wait(epoll, ready.as_mut_ptr(), ready.len() as i32, timeout) };
        for event in &ready[..count.max(0) as usize] {
            let i = event.u64 as usize;
            let ended = loop {
                match peers[i].reader.read() {
                    Ok(Message::Text(text)) => {
                        received.fetch_add(1, Ordering::Relaxed);
                        let message: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                        if message["type"] == "peer-discovered" {
                            seen[i] += 1;
                        }
                    }
                    Ok(Message::Close(_)) => break true,
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            if seen[i] >= wants[i] {
                latest_done.fetch_max(now_us(), Ordering::Relaxed);
            }
            // A peer is done once it has heard of everyone it expects, or its connection ended.
            if ended || seen[i] >= wants[i] {
                watch(libc::EPOLL_CTL_DEL, i, &peers[i]);
                left -= 1;
            }
        }
    }
    // SAFETY: `epoll` is this function's own descriptor.
    unsafe { libc::close(epoll) };
    for peer in peers.iter() {
        let _ = peer.reader.get_ref().stream.set_nonblocking(false);
    }
    seen
}

fn network_sizes(peers: &[Peer]) -> std::collections::HashMap<String, usize> {
    let mut sizes = std::collections::HashMap::new();
    for p in peers {
        *sizes.entry(p.network.clone()).or_insert(0) += 1;
    }
    sizes
}

fn connect_scenario(o: &Options) -> Value {
    let before = process_stats(o.pid);
    let monitor = HealthMonitor::start(first_url(&o.url), o.realtime_monitor);
    let (peers, failures) = connect_many(&o.url, o.peers, o.networks, "load-");
    let sizes = network_sizes(&peers);
    let limit = Duration::from_secs_f64(o.discovery_limit);
    let (peers, discovery) = announce_and_discover(peers, |p| sizes[&p.network] - 1, limit);
    let health = monitor.map_or(Value::Null, HealthMonitor::finish);
    // Let the server settle (queues drained, buffers returned) before reading its memory; with
    // `--settle` longer than the server's sweep interval, freed memory has been handed back too.
    std::thread::sleep(Duration::from_secs_f64(o.settle));
    let after = process_stats(o.pid);
    let per_peer = match (before["rssKiB"].as_u64(), after["rssKiB"].as_u64()) {
        (Some(b), Some(a)) if !peers.is_empty() => {
            json!(((a as f64 - b as f64) / peers.len() as f64 * 10.0).round() / 10.0)
        }
        _ => Value::Null,
    };
    let result = json!({"scenario": "connect", "peers": peers.len(), "networks": o.networks, "failures": failures,
           "fullDiscoveryMs": discovery["fullDiscoveryMs"], "messagesReceived": discovery["messagesReceived"],
           "incompletePeers": discovery["incompletePeers"], "rssPerPeerKiB": per_peer, "health": health,
           "serverBefore": before, "serverAfter": after});
    if o.hold > 0.0 {
        println!("{result}");
        let _ = io::stdout().flush();
        std::thread::sleep(Duration::from_secs_f64(o.hold));
        std::process::exit(0);
    }
    result
}

/// [`poll_health`] running in a child process (`loadgen health-poll`) in a session of its own.
///
/// A monitor is not one of the load generator's threads: in its own session the child is its own
/// scheduling group (Linux autogroup), as a monitoring agent on a server would be, so what it
/// measures is the server's answer, not how long the child waited behind the load generator's own
/// threads on the same two cores (up to 2 s when it was one of 10,000 client threads). It runs as an
/// ordinary process unless `--monitor realtime` asks for real-time scheduling (SCHED_FIFO, lowest
/// priority; granted to root only), which takes the monitor's own wake-up delays out of the figures.
/// The server under test is never given a priority. The report says which it was
/// (`monitorRealtime`) and how late the monitor woke (`wakeLate*`), to tell the server's delays
/// from the monitor's.
struct HealthMonitor(std::process::Child);

impl HealthMonitor {
    /// Starts polling `url`; `None` if the child could not be started.
    fn start(url: &str, realtime: bool) -> Option<HealthMonitor> {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        unsafe extern "C" {
            fn setsid() -> i32;
            fn sched_setscheduler(pid: i32, policy: i32, param: *const i32) -> i32;
        }
        const SCHED_FIFO: i32 = 1;
        let mut command = Command::new(std::env::current_exe().ok()?);
        command.args(["health-poll", "--url", url]).stdin(Stdio::piped()).stdout(Stdio::piped());
        // SAFETY: runs in the forked child before exec; setsid is async-signal-safe and touches no
        // memory of ours.
        unsafe {
            command.pre_exec(move || {
                setsid();
                if realtime {
                    // Refused without privileges: the monitor then runs as any process does.
                    let lowest_priority = 1;
                    sched_setscheduler(0, SCHED_FIFO, &lowest_priority);
                }
                Ok(())
            });
        }
        command.spawn().ok().map(HealthMonitor)
    }

    /// Stops polling (the child's input ends) and returns what the child reports.
    fn finish(mut self) -> Value {
        drop(self.0.stdin.take());
        let Ok(output) = self.0.wait_with_output() else { return Value::Null };
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }
}

/// `loadgen health-poll`: polls until its standard input ends, then prints its report.
fn health_poll_scenario(o: &Options) -> Value {
    // Named apart from the load generator, so that `top`, `ps` and traces tell the two apart.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes; this one outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"health-poll".as_ptr() as libc::c_ulong, 0, 0, 0) };
    let stop = Arc::new(AtomicBool::new(false));
    let stop_at_end_of_input = stop.clone();
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        stop_at_end_of_input.store(true, Ordering::Relaxed);
    });
    poll_health(first_url(&o.url), &stop)
}

/// Asks the server for `GET /health` every 100 ms (a fresh connection each time, as a monitor
/// would) until `stop`; reports how long the answers took and how many failed (5 s timeout).
///
/// It also reports how late the monitor itself woke from its sleeps between polls (`wakeLate*`):
/// a wait that has nothing to do with the server. Where slow answers come with late wake-ups,
/// the machine (its two cores, or the host under it) was not running the monitor, whatever the
/// server did. A wait the monitor spends runnable but not running (preempted, or woken by the
/// reply but not yet given a CPU) is not a late wake-up from a sleep; the kernel counts it for each
/// thread (`/proc/thread-self/schedstat`), and each answer carries the monitor's own such wait
/// (`ownWaitMaxMs` is the longest; `p99LessOwnWaitMs` the p99 of the answers less it, which is
/// what the server and the network took). `slowest` lists the five slowest answers as [seconds
/// since the start, ms until connected, until the first byte, until complete, of which the monitor
/// itself waited for a CPU], and `latestWakes` the five latest wake-ups as [seconds since the
/// start, ms late], to line the two up.
fn poll_health(url: &str, stop: &AtomicBool) -> Value {
    const PERIOD: Duration = Duration::from_millis(100);
    let host = host_of(url);
    let began = Instant::now();
    // Each answer and each wake-up, with when it happened (since `began`).
    let mut answers: Vec<(Duration, HealthTiming)> = Vec::new();
    let mut wakes: Vec<(Duration, Duration)> = Vec::new();
    let mut failures = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match health_ok(host) {
            Some(timing) => answers.push((started - began, timing)),
            None => failures += 1,
        }
        let pause = PERIOD.saturating_sub(started.elapsed());
        let asleep = Instant::now();
        std::thread::sleep(pause);
        wakes.push((asleep - began, asleep.elapsed().saturating_sub(pause)));
    }
    let totals: Vec<Duration> = answers.iter().map(|(_, timing)| timing.total).collect();
    let own_waits: Vec<Duration> = answers.iter().map(|(_, timing)| timing.own_wait).collect();
    let less_own: Vec<Duration> =
        answers.iter().map(|(_, timing)| timing.total.saturating_sub(timing.own_wait)).collect();
    let lates: Vec<Duration> = wakes.iter().map(|(_, late)| *late).collect();
    let slowest = longest(
        &answers,
        |timing| timing.total,
        |timing| {
            let phases = [timing.connected, timing.first_byte, timing.total, timing.own_wait];
            phases.map(|phase| json!(ms(phase))).to_vec()
        },
    );
    let latest_wakes = longest(&wakes, |late| *late, |late| vec![json!(ms(*late))]);
    json!({"polls": answers.len() + failures, "failures": failures, "monitorRealtime": runs_realtime(),
           "p50Ms": percentile_ms(&totals, 0.5), "p99Ms": percentile_ms(&totals, 0.99),
           "maxMs": percentile_ms(&totals, 1.0), "slowest": slowest,
           "ownWaitMaxMs": percentile_ms(&own_waits, 1.0), "p99LessOwnWaitMs": percentile_ms(&less_own, 0.99),
           "wakeLateP50Ms": percentile_ms(&lates, 0.5), "wakeLateP99Ms": percentile_ms(&lates, 0.99),
           "wakeLateMaxMs": percentile_ms(&lates, 1.0), "latestWakes": latest_wakes})
}

/// Whether this process runs with a real-time policy (see [`HealthMonitor`]).
fn runs_realtime() -> bool {
    unsafe extern "C" {
        fn sched_getscheduler(pid: i32) -> i32;
    }
    const SCHED_FIFO: i32 = 1;
    // SAFETY: only reads the calling process's policy.
    unsafe { sched_getscheduler(0) == SCHED_FIFO }
}

/// The `q` quantile (0 to 1) of `durations`, in ms.
fn percentile_ms(durations: &[Duration], q: f64) -> Option<f64> {
    let mut sorted = durations.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).map(|d| d.as_secs_f64() * 1000.0)
}

/// A duration in ms, to a tenth.
fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The five samples with the longest `key`, longest first, each as `[seconds since the start, the
/// fields `row` makes of it...]`.
fn longest<T>(samples: &[(Duration, T)], key: impl Fn(&T) -> Duration, row: impl Fn(&T) -> Vec<Value>) -> Value {
    let mut sorted: Vec<&(Duration, T)> = samples.iter().collect();
    sorted.sort_by_key(|(_, sample)| std::cmp::Reverse(key(sample)));
    let rows = sorted
        .iter()
        .take(5)
        .map(|(at, sample)| [vec![json!((at.as_secs_f64() * 10.0).round() / 10.0)], row(sample)].concat());
    rows.map(Value::from).collect()
}

/// How long one `/health` answer took, in its phases.
#[derive(Clone, Copy)]
struct HealthTiming {
    /// Until the connection was established (the kernel's handshake; the server's code not yet).
    connected: Duration,
    /// Until the first byte of the reply arrived.
    first_byte: Duration,
    /// Until the reply was complete (the server closed the connection).
    total: Duration,
    /// How long, meanwhile, the monitor itself was runnable but waiting for a CPU.
    own_wait: Duration,
}

/// How long the calling thread has spent runnable but waiting for a CPU since it started (the
/// kernel's schedstat); zero where the kernel does not say.
fn own_run_queue_wait() -> Duration {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let waited_ns = schedstat.split_whitespace().nth(1).and_then(|field| field.parse().ok()).unwrap_or(0);
    Duration::from_nanos(waited_ns)
}

/// One `GET /health` on a fresh connection: its timing if the answer was 200 OK within 5 s.
fn health_ok(host: &str) -> Option<HealthTiming> {
    let limit = Duration::from_secs(5);
    let waited_before = own_run_queue_wait();
    let started = Instant::now();
    let mut stream = TcpStream::connect(host).ok()?;
    let connected = started.elapsed();
    let _ = stream.set_read_timeout(Some(limit));
    let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = vec![0; 1];
    stream.read_exact(&mut reply).ok()?;
    let first_byte = started.elapsed();
    stream.read_to_end(&mut reply).ok()?;
    let total = started.elapsed();
    let own_wait = own_run_queue_wait().saturating_sub(waited_before);
    let timing = HealthTiming { connected, first_byte, total, own_wait };
    reply.starts_with(b"HTTP/1.1 200").then_some(timing)
}

// ------------------------------------------------------------------------------------------------
// relay

/// The payload every offer carries: send stamp, unique sequence number, padding to `size`.
fn offer(network: &str, target: &str, seq: u64, size: usize) -> Value {
    json!({"type": "offer", "networkName": network, "targetPeerId": target,
           "data": {"t": now_us(), "seq": seq, "pad": "x".repeat(size.saturating_sub(120))}})
}

fn relay_scenario(o: &Options) -> Value {
    let (peers, failures) = connect_many(&o.url, o.peers, o.networks, "relay-");
    let sizes = network_sizes(&peers);
    let (peers, _) = announce_and_discover(peers, |p| sizes[&p.network] - 1, Duration::from_secs(60));
    let mut result = match o.rate {
        None => closed_loop(peers, o),
        Some(rate) => open_loop(peers, None, rate, o),
    };
    result["scenario"] = json!("relay");
    result["connectFailures"] = json!(failures);
    result["server"] = process_stats(o.pid);
    result
}

/// Each peer keeps `inflight` offers out; each target answers; each answer releases a new offer.
fn closed_loop(peers: Vec<Peer>, o: &Options) -> Value {
    let ids_by_network = ids_by_network(&peers);
    let delivered = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let deadline = Duration::from_secs_f64(o.seconds);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for mut peer in peers {
            let (ids_by_network, delivered, stop) = (&ids_by_network, &delivered, &stop);
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn_scoped(scope, move || {
                    let others: Vec<&String> = ids_by_network[&peer.network].iter().filter(|id| **id != peer.id).collect();
                    if others.is_empty() {
                        return;
                    }
                    let _ = peer.reader.get_ref().stream.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut seq = 0;
                    for _ in 0..o.inflight {
                        let target = others[fastrand::usize(..others.len())];
                        seq += 1;
                        send(&mut peer.writer, &offer(&peer.network, target, seq, o.size));
                    }
                    while !stop.load(Ordering::Relaxed) {
                        let Some(m) = next_text(&mut peer.reader) else {
                            if peer.reader.can_read() {
                                continue;
                            }
                            return;
                        };
                        match m["type"].as_str() {
                            Some("offer") => {
                                delivered.fetch_add(1, Ordering::Relaxed);
                                let answer = json!({"type": "answer", "networkName": peer.network,
                                                    "targetPeerId": m["fromPeerId"], "data": {"seq": m["data"]["seq"]}});
                                send(&mut peer.writer, &answer);
                            }
                            Some("answer") => {
                                delivered.fetch_add(1, Ordering::Relaxed);
                                let target = others[fastrand::usize(..others.len())];
                                seq += 1;
                                send(&mut peer.writer, &offer(&peer.network, target, seq, o.size));
                            }
                            _ => {}
                        }
                    }
                })
                .expect("spawn a client thread");
        }
        std::thread::sleep(deadline);
        stop.store(true, Ordering::Relaxed);
    });
    let secs = started.elapsed().as_secs_f64().min(o.seconds);
    let total = delivered.load(Ordering::Relaxed);
    json!({"mode": "closed", "inflight": o.inflight, "sizeBytes": o.size, "seconds": o.seconds,
           "signalsDelivered": total, "signalsPerSec": (total as f64 / secs).round()})
}

fn ids_by_network(peers: &[Peer]) -> std::collections::HashMap<String, Vec<String>> {
    let mut map: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for p in peers {
        map.entry(p.network.clone()).or_default().push(p.id.clone());
    }
    map
}

/// Offers at `rate` per second in total, from `peers` to random peers of their network (or, with
/// `targets`, to random peers of those); receivers measure latency, loss and duplicates.
fn open_loop(peers: Vec<Peer>, targets: Option<Vec<Peer>>, rate: f64, o: &Options) -> Value {
    let (senders, receivers): (Vec<Peer>, Vec<Peer>) = match targets {
        Some(targets) => (peers, targets),
        None => {
            // Every peer both sends and receives: split each into its halves.
            let mut writers = Vec::new();
            let mut readers = Vec::new();
            for p in peers {
                let (id, network, reader, writer) = (p.id, p.network, p.reader, p.writer);
                writers.push((id.clone(), network.clone(), writer));
                readers.push((id, network, reader));
            }
            return run_open_loop(writers, readers, rate, o);
        }
    };
    let writers = senders.into_iter().map(|p| (p.id, p.network, p.writer)).collect();
    let readers = receivers.into_iter().map(|p| (p.id, p.network, p.reader)).collect();
    run_open_loop(writers, readers, rate, o)
}

type WriterHalf = (String, String, WebSocket<SocketHalf>);
type ReaderHalfOf = (String, String, WebSocket<SocketHalf>);

fn run_open_loop(writers: Vec<WriterHalf>, readers: Vec<ReaderHalfOf>, rate: f64, o: &Options) -> Value {
    let mut targets: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for (id, network, _) in &readers {
        targets.entry(network.clone()).or_default().push(id.clone());
    }
    let sent = AtomicU64::new(0);
    let received = AtomicU64::new(0);
    let duplicates = AtomicU64::new(0);
    let latencies = Mutex::new(Vec::<u64>::new());
    let sending_done = AtomicBool::new(false);
    let drained = AtomicBool::new(false);
    let per_thread = writers.len().div_ceil(o.senders).max(1);
    let mut groups: Vec<Vec<WriterHalf>> = Vec::new();
    let mut writers = writers;
    while !writers.is_empty() {
        let rest = writers.split_off(per_thread.min(writers.len()));
        groups.push(std::mem::replace(&mut writers, rest));
    }
    let group_rate = rate / groups.len().max(1) as f64;
    std::thread::scope(|scope| {
        for (_, _, mut reader) in readers {
            let (received, duplicates, latencies, drained) = (&received, &duplicates, &latencies, &drained);
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn_scoped(scope, move || {
                    let _ = reader.get_ref().stream.set_read_timeout(Some(Duration::from_millis(100)));
                    let mut seen = HashSet::new();
                    let mut mine = Vec::new();
                    while !drained.load(Ordering::Relaxed) {
                        let Some(m) = next_text(&mut reader) else { continue };
                        if m["type"] != "offer" {
                            continue;
                        }
                        let (Some(t), Some(seq)) = (m["data"]["t"].as_u64(), m["data"]["seq"].as_u64()) else {
                            continue;
                        };
                        if !seen.insert(seq) {
                            duplicates.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                        mine.push(now_us().saturating_sub(t));
                    }
                    latencies.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
                })
                .expect("spawn a reader thread");
        }
        let started = Instant::now();
        let mut senders = Vec::new();
        for (g, mut group) in groups.into_iter().enumerate() {
            let (targets, sent) = (&targets, &sent);
            senders.push(scope.spawn(move || {
                let interval = Duration::from_secs_f64(1.0 / group_rate.max(0.001));
                let mut next = Instant::now();
                let mut n: u64 = 0;
                while started.elapsed() < Duration::from_secs_f64(o.seconds) {
                    let slot = (n as usize) % group.len();
                    let (id, network, writer) = &mut group[slot];
                    let pool = &targets[network.as_str()];
                    let target = &pool[fastrand::usize(..pool.len())];
                    if target != id {
                        // Sequence numbers are unique across sender threads.
                        let seq = (g as u64) << 40 | n;
                        let m = json!({"type": "offer", "networkName": network, "targetPeerId": target,
                                       "data": {"t": now_us(), "seq": seq, "pad": "x".repeat(o.size.saturating_sub(120))}});
                        if send(writer, &m) {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    n += 1;
                    next += interval;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                group
            }));
        }
        let groups: Vec<_> = senders.into_iter().filter_map(|s| s.join().ok()).collect();
        sending_done.store(true, Ordering::Relaxed);
        // Drain: wait until everything sent has arrived, or two seconds of nothing new.
        let mut last = received.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        while received.load(Ordering::Relaxed) < sent.load(Ordering::Relaxed)
            && quiet_since.elapsed() < Duration::from_secs(2)
        {
            std::thread::sleep(Duration::from_millis(50));
            let now = received.load(Ordering::Relaxed);
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
        drained.store(true, Ordering::Relaxed);
        drop(groups);
    });
    let mut latencies = latencies.into_inner().unwrap_or_else(|e| e.into_inner());
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index.min(latencies.len() - 1)] as f64 / 1000.0
    };
    let (sent, received) = (sent.load(Ordering::Relaxed), received.load(Ordering::Relaxed));
    json!({"mode": "open", "rate": rate, "sizeBytes": o.size, "seconds": o.seconds, "sent": sent, "received": received,
           "lost": sent.saturating_sub(received), "duplicated": duplicates.load(Ordering::Relaxed),
           "latencyMs": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)}})
}

// ------------------------------------------------------------------------------------------------
// churn and hub

fn churn_scenario(o: &Options) -> Value {
    let connections = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let started = Instant::now();
    let limit = Duration::from_secs_f64(o.seconds);
    std::thread::scope(|scope| {
        for w in 0..o.workers {
            let (connections, errors) = (&connections, &errors);
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn_scoped(scope, move || {
                    while started.elapsed() < limit {
                        let network = format!("churn-{}", w % o.networks.max(1));
                        let mut peer = match connect_peer(first_url(&o.url), &network) {
                            Ok(peer) => peer,
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        };
                        connections.fetch_add(1, Ordering::Relaxed);
                        // The server's greeting proves the connection works (allow it 2 s); then
                        // announce and signal whoever is there (a quiet network is fine).
                        let _ = peer.reader.get_ref().stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let greeted = next_text(&mut peer.reader).is_some_and(|m| m["type"] == "connected");
                        let _ = peer.reader.get_ref().stream.set_read_timeout(Some(Duration::from_millis(50)));
                        let announced = send(&mut peer.writer, &json!({"type": "announce", "networkName": network}));
                        if !(greeted && announced) {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(m) = (0..3).find_map(|_| next_text(&mut peer.reader).filter(|m| m["type"] == "peer-discovered")) {
                            send(&mut peer.writer, &json!({"type": "offer", "networkName": network, "targetPeerId": m["data"]["peerId"], "data": {}}));
                        }
                        send(&mut peer.writer, &json!({"type": "goodbye"}));
                        let _ = peer.writer.close(None);
                    }
                })
                .expect("spawn a worker");
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let total = connections.load(Ordering::Relaxed);
    json!({"scenario": "churn", "workers": o.workers, "seconds": secs, "connections": total,
           "connectionsPerSec": (total as f64 / secs).round(), "errors": errors.load(Ordering::Relaxed), "server": process_stats(o.pid)})
}

fn hub_scenario(o: &Options) -> Value {
    let Some(url2) = &o.url2 else { usage() };
    let half = o.peers / 2;
    let (on_a, fail_a) = connect_many(&o.url, half, 1, "hub-");
    let (on_b, fail_b) = connect_many(url2, o.peers - half, 1, "hub-");
    let total = on_a.len() + on_b.len();
    let mut all = on_a;
    let split = all.len();
    all.extend(on_b);
    let (mut all, discovery) = announce_and_discover(all, |_| total - 1, Duration::from_secs(60));
    let on_b = all.split_off(split.min(all.len()));
    let mut result = open_loop(all, Some(on_b), o.rate.unwrap_or(1000.0), o);
    result["scenario"] = json!("hub");
    result["peers"] = json!(total);
    result["crossHubDiscoveryMs"] = discovery["fullDiscoveryMs"].clone();
    result["incompletePeers"] = discovery["incompletePeers"].clone();
    result["connectFailures"] = json!(fail_a + fail_b);
    result
}
