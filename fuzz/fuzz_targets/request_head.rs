//! Fuzzes the HTTP request-head parser and classifier (`src/request_head.rs`, `src/auth.rs`):
//! any bytes a socket can send before the server decides between HTTP and WebSocket.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    peerpigeon::fuzzing::request_head(data);
});
