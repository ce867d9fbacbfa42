//! The examples' connection helper (`examples/shared/connect.rs`) against a real server: server
//! URLs with their own path and query work, and a refusal reads as one line.

mod common;

#[path = "../examples/shared/connect.rs"]
mod connect;

use common::start_with;
use tungstenite::Message;

fn peer_id() -> String {
    common::new_peer_id()
}

#[test]
fn a_server_url_with_a_query_and_a_path_keeps_them() {
    let server = start_with(|c| c.auth_token = Some("s3cret &=".into()));
    let addr = server.local_addr();
    for base in
        [format!("ws://{addr}/?token=s3cret%20%26%3D"), format!("ws://{addr}/signal/room?token=s3cret%20%26%3D")]
    {
        let id = peer_id();
        let url = connect::peer_url(&base, &id).unwrap();
        assert_eq!(url.query_pairs().find(|(k, _)| k == "peerId").map(|(_, v)| v.into_owned()), Some(id.clone()));
        let mut socket = connect::connect(&base, &id).unwrap_or_else(|e| panic!("{base}: {e}"));
        let Message::Text(greeting) = socket.read().unwrap() else { panic!("no greeting") };
        let greeting: serde_json::Value = serde_json::from_str(greeting.as_str()).unwrap();
        assert_eq!(
            (greeting["type"].as_str(), greeting["data"]["peerId"].as_str()),
            (Some("connected"), Some(id.as_str()))
        );
    }
}

#[test]
fn a_refusal_is_one_readable_line() {
    let server = start_with(|c| c.auth_token = Some("right".into()));
    let addr = server.local_addr();
    let error = connect::connect(&format!("ws://{addr}/?token=wrong"), &peer_id()).expect_err("refused").to_string();
    assert!(error.contains("HTTP 401") && !error.contains('\n') && !error.contains("[123"), "{error}");
    let error = connect::connect(&format!("http://{addr}/"), &peer_id()).expect_err("refused").to_string();
    assert!(error.contains("ws://"), "{error}");
}
