//! Starting and stopping: port probing, graceful shutdown, and the `peerpigeon` binary itself
//! (configuration errors, `--help`, SIGTERM / Ctrl-C).

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::process::{binary, run_binary, wait_exit};
use common::{Client, start_with};
use peerpigeon::{Config, Error, Server};

#[test]
fn a_busy_port_is_probed_upward() {
    let blocker = common::test_listener();
    let busy = blocker.local_addr().unwrap().port();
    let server = start_with(|c| c.port = busy);
    let used = server.local_addr().port();
    assert!(used > busy && used <= busy + 10, "busy {busy}, used {used}");
}

#[test]
fn no_free_port_within_the_retries_is_an_error() {
    let blocker = common::test_listener();
    let busy = blocker.local_addr().unwrap().port();
    let config = Config { host: "127.0.0.1".into(), port: busy, port_retries: 0, ..Config::default() };
    match Server::start(config) {
        Err(Error::PortsBusy { first, last, .. }) => assert_eq!((first, last), (busy, busy)),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("bound a busy port"),
    }
}

#[test]
fn shutdown_closes_every_peer_with_1001_promptly() {
    let server = start_with(|_| {});
    let addr = server.local_addr();
    let mut peers: Vec<Client> = (0..5).map(|_| Client::join(addr, "n")).collect();
    // One client that never reads again: shutdown must not wait on it for long.
    let _deaf = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let closer = std::thread::spawn(move || server.shutdown());
    for peer in &mut peers {
        let frame = peer.expect_close().expect("a close frame");
        assert_eq!(u16::from(frame.code), 1001);
    }
    closer.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
    // The port is released.
    assert!(TcpStream::connect(addr).is_err() || TcpListener::bind(addr).is_ok());
}

/// `--help` and the READMEs' configuration tables are all made from `peerpigeon::SETTINGS`: every
/// setting, with the same default, in each.
#[test]
fn help_and_readme_list_every_setting_with_its_default() {
    let output = binary().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for setting in peerpigeon::SETTINGS {
        let line = help
            .lines()
            .find(|l| l.split_whitespace().next() == Some(setting.name))
            .unwrap_or_else(|| panic!("{} missing from --help:\n{help}", setting.name));
        assert!(line.ends_with(&format!("[{}]", setting.default_text())), "{} default: {line}", setting.name);
    }
    // One column for names, one for meanings, each starting at the same place on every row.
    let rows: Vec<&str> =
        help.lines().filter(|l| peerpigeon::SETTINGS.iter().any(|s| l.trim_start().starts_with(s.name))).collect();
    let meaning_at = |row: &str| {
        let name_end = 2 + row[2..].find(' ').unwrap_or(0);
        name_end + row[name_end..].len() - row[name_end..].trim_start().len()
    };
    for row in &rows {
        assert!(row.starts_with("  ") && !row.starts_with("   "), "indent of {row:?}");
        assert_eq!(meaning_at(row), meaning_at(rows[0]), "column of {row:?}");
    }
    for (name, default) in [("PORT", "3000"), ("HOST", "localhost"), ("MAX_CONNECTIONS", "1000"), ("CORS_ORIGIN", "*")]
    {
        let setting = peerpigeon::SETTINGS.iter().find(|s| s.name == name).unwrap();
        assert_eq!(setting.default_text(), default, "the reference's default for {name}");
    }

    let expected: Vec<String> = peerpigeon::SETTINGS
        .iter()
        .map(|s| {
            let default = s.default_text();
            let default = if default.starts_with('(') { default } else { format!("`{default}`") };
            format!("| `{}` | {default} | {} |", s.name, s.meaning)
        })
        .collect();
    for readme in ["README.md", "README.zh-CN.md"] {
        let text = std::fs::read_to_string(format!("{}/{readme}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("| variable | default |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(table, expected, "{readme}'s configuration table should read:\n{}", expected.join("\n"));
    }
}

#[test]
fn an_invalid_variable_exits_2_with_one_line_naming_it() {
    for (name, value) in [
        ("PORT", "abc"),
        ("MAX_CONNECTIONS", "-1"),
        ("IS_HUB", "perhaps"),
        ("BOOTSTRAP_HUBS", "nope"),
        ("HOST", "no-such-host.invalid"),
    ] {
        let output = binary().env(name, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name) && !stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn sigterm_and_ctrl_c_close_peers_with_1001_and_exit_0_within_two_seconds() {
    for signal in ["TERM", "INT"] {
        let (child, addr, _log) = run_binary(&[("PORT", &common::test_port().to_string())]);
        let mut peer = Client::join(addr, "n");
        let started = Instant::now();
        let killed = Command::new("kill")
            .args([format!("-{signal}"), child.0.as_ref().map_or(0, Child::id).to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let frame = peer.expect_close().expect("a close frame");
        assert_eq!(u16::from(frame.code), 1001, "SIG{signal}");
        let status = wait_exit(child, Duration::from_secs(3)).expect("the server exits");
        assert!(started.elapsed() < Duration::from_secs(2), "SIG{signal}: exit took {:?}", started.elapsed());
        assert_eq!(status.code(), Some(0), "SIG{signal}");
    }
}

#[test]
fn the_binary_logs_the_port_it_moved_to() {
    let blocker = common::test_listener();
    let busy = blocker.local_addr().unwrap().port();
    let (_running, addr, _log) = run_binary(&[("PORT", &busy.to_string())]);
    assert!(addr.port() > busy && addr.port() <= busy + 10, "busy {busy}, logged {addr}");
}

#[test]
fn healthcheck_says_whether_the_server_on_port_answers() {
    let (running, addr, _log) = run_binary(&[("PORT", &common::test_port().to_string())]);
    let check = |port: u16| binary().arg("--healthcheck").env("PORT", port.to_string()).output().unwrap();
    assert!(check(addr.port()).status.success());
    drop(running);
    let blocker = common::test_listener();
    let closed = blocker.local_addr().unwrap().port();
    drop(blocker);
    let failed = check(closed);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("cannot reach"));
}

/// The thread ids of process `pid`'s threads whose name `matches`.
fn threads_named(pid: u32, matches: impl Fn(&str) -> bool) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let named = |tid: &String| std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok();
    tasks
        .filter_map(|task| task.ok()?.file_name().into_string().ok())
        .filter(|tid| named(tid).is_some_and(|comm| matches(comm.trim())))
        .collect()
}

/// The thread id of process `pid`'s one thread named `acceptor`, once there is exactly one and it
/// is not `previous`; waits for it at most `common::WAIT`. A thread names itself when it first
/// runs, which may be just after the server says it listens, and a fresh acceptor likewise.
fn the_acceptor(pid: u32, previous: Option<&str>, what: &str) -> String {
    let deadline = Instant::now() + common::WAIT;
    loop {
        let acceptors = threads_named(pid, |name| name == "acceptor");
        if let [one] = acceptors.as_slice()
            && previous != Some(one.as_str())
        {
            return one.clone();
        }
        assert!(Instant::now() < deadline, "{what}: acceptor threads {acceptors:?}, before {previous:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The slice (`se.slice`, in ns) the kernel reports for thread `tid` of process `pid`, if it says.
fn slice_of(pid: u32, tid: &str) -> Option<u64> {
    let sched = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/sched")).ok()?;
    let line = sched.lines().find(|line| line.starts_with("se.slice"))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

/// A peer's reader keeps the short time slice the door's threads ask for (`platform/time_slice.rs`):
/// all of the server's threads take short turns. Where the kernel grants no short slice (before
/// Linux 6.12, or with `PEERPIGEON_WITHOUT=time_slice`) the acceptor's is the default one, and so is
/// the reader's.
#[test]
fn a_peers_reader_takes_the_same_short_turns_as_the_acceptor() {
    let (running, addr, _log) = run_binary(&[("PORT", &common::test_port().to_string())]);
    let pid = running.pid();
    let mut peer = Client::join(addr, "n");
    peer.send(serde_json::json!({"type": "ping", "data": {}}));
    peer.wait_for("pong", |message| message["type"] == "pong");
    // The reader has answered the ping, so it serves its peer by now; it is named after its peer.
    let readers = threads_named(pid, |name| name.ends_with("-reader"));
    let [reader] = readers.as_slice() else { panic!("one reader expected: {readers:?}") };
    let acceptor = the_acceptor(pid, None, "one acceptor");
    assert_eq!(slice_of(pid, reader), slice_of(pid, &acceptor), "the reader's slice and the acceptor's");
}

/// The accept loop moves to a fresh thread once a burst of connections is over, even a burst of
/// one (`accept/listener.rs`, `QUIET`). Fails with `PEERPIGEON_WITHOUT=fresh_after_burst`.
#[test]
fn once_a_burst_of_connections_is_over_a_fresh_acceptor_waits_for_the_next() {
    let (running, addr, _log) = run_binary(&[("PORT", &common::test_port().to_string())]);
    let first = the_acceptor(running.pid(), None, "one acceptor at start");
    assert_eq!(common::http_get(addr, "/health").status, 200);
    the_acceptor(running.pid(), Some(&first), "a fresh acceptor after one connection");
    assert_eq!(common::http_get(addr, "/health").status, 200);
}

/// Every 64 connections, without a pause between them, the accept loop moves to a fresh thread
/// (the relief after a burst is left out, so that this one is what is tested). Fails with
/// `PEERPIGEON_WITHOUT=fresh_thread`.
#[test]
fn after_a_connection_storm_a_fresh_acceptor_takes_over_and_the_server_goes_on() {
    let port = common::test_port().to_string();
    let (running, addr, _log) = run_binary(&[("PORT", &port), ("PEERPIGEON_WITHOUT", "fresh_after_burst")]);
    let first = the_acceptor(running.pid(), None, "one acceptor at start");
    // 300 connections: the work moves to a new thread every 64, and the old thread ends.
    for _ in 0..300 {
        assert_eq!(common::http_get(addr, "/health").status, 200);
    }
    the_acceptor(running.pid(), Some(&first), "a fresh acceptor after 300 connections");
    // The new acceptor serves HTTP and WebSocket alike, and the server still shuts down promptly.
    assert_eq!(common::http_get(addr, "/health").status, 200);
    let mut peer = Client::join(addr, "n");
    running.signal("TERM");
    assert!(peer.expect_close().is_some(), "peers are told the server goes away");
    let status = wait_exit(running, Duration::from_secs(10)).expect("the server exits");
    assert!(status.success(), "{status:?}");
}
