//! Fuzzes the decoder of peer and hub-link messages (`src/protocol.rs`): any text a client can send.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A WebSocket text frame is valid UTF-8 by the time the server decodes it.
    if let Ok(text) = std::str::from_utf8(data) {
        peerpigeon::fuzzing::client_message(text);
    }
});
