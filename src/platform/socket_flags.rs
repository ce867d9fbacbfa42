//! `send(2)` and `recv(2)` with the flags std does not offer: without waiting (`MSG_DONTWAIT`),
//! looking without taking (`MSG_PEEK`), and held back to leave with what follows (`MSG_MORE`,
//! Linux only; elsewhere a plain write).
//!
//! A peer's socket is shared by its reader, which blocks in `read`, and whoever writes to it.
//! Switching the socket to non-blocking mode would switch the reader too (and costs two more
//! system calls), so a caller that wants only what the kernel can do at once asks for that on the
//! one call instead (see `peer/writer.rs`, `http_desk`).

use std::io;
use std::net::TcpStream;

mod sys {
    use std::os::fd::AsRawFd;

    pub(super) use libc::{MSG_DONTWAIT, MSG_PEEK};

    /// Held back to leave with what follows (Linux); elsewhere nothing.
    #[cfg(target_os = "linux")]
    pub(super) const MSG_MORE: i32 = libc::MSG_MORE;
    #[cfg(not(target_os = "linux"))]
    pub(super) const MSG_MORE: i32 = 0;

    /// No SIGPIPE for a write to a closed connection (Linux; elsewhere Rust ignores SIGPIPE).
    #[cfg(target_os = "linux")]
    const NO_SIGNAL: i32 = libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    const NO_SIGNAL: i32 = 0;

    /// One `send` on `socket`: how many bytes were taken.
    pub(super) fn send_with(socket: &std::net::TcpStream, bytes: &[u8], flags: i32) -> std::io::Result<usize> {
        // SAFETY: the descriptor belongs to `socket`, which outlives the call, and `bytes` is a
        // valid buffer of the length passed.
        let sent = unsafe { libc::send(socket.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), flags | NO_SIGNAL) };
        if sent < 0 { Err(std::io::Error::last_os_error()) } else { Ok(sent as usize) }
    }

    /// One `recv` on `socket`: how many bytes were copied into `buffer`.
    pub(super) fn recv_with(socket: &std::net::TcpStream, buffer: &mut [u8], flags: i32) -> std::io::Result<usize> {
        // SAFETY: the descriptor belongs to `socket`, which outlives the call, and `buffer` is
        // valid for writes of the length passed.
        let received = unsafe { libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), flags) };
        if received < 0 { Err(std::io::Error::last_os_error()) } else { Ok(received as usize) }
    }
}

/// Copies into `buffer` what has arrived on `socket`, leaving it there to be read. Returns how
/// many bytes were copied; `WouldBlock` when nothing has arrived.
pub(crate) fn peek_without_waiting(socket: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    sys::recv_with(socket, buffer, sys::MSG_PEEK | sys::MSG_DONTWAIT)
}

/// Reads what has arrived on `socket` into `buffer`; `WouldBlock` when nothing has.
pub(crate) fn read_without_waiting(socket: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    sys::recv_with(socket, buffer, sys::MSG_DONTWAIT)
}

/// Writes as much of `bytes` as the socket's send buffer takes right now. Returns how many bytes
/// were taken; `WouldBlock` when none could be.
pub(crate) fn write_without_waiting(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    sys::send_with(socket, bytes, sys::MSG_DONTWAIT)
}

/// Writes all of `bytes` as the last thing before the caller shuts the write side down: the kernel
/// holds them back (`MSG_MORE`) so that they leave together with the FIN, one segment and one
/// wake-up of the reader instead of two. Blocks as a plain write does.
pub(crate) fn write_all_before_fin(socket: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match sys::send_with(socket, bytes, sys::MSG_MORE) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(sent) => bytes = &bytes[sent..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_full_socket_takes_part_then_nothing_and_never_blocks() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut reader, _) = listener.accept().unwrap();
        let chunk = vec![7u8; 1 << 20];
        // Nobody reads, so the socket buffers fill up: some writes are partial, then none is taken.
        let mut taken = 0;
        let error = loop {
            match super::write_without_waiting(&writer, &chunk) {
                Ok(n) => taken += n,
                Err(err) => break err,
            }
            assert!(taken < 1 << 30, "the socket never filled up");
        };
        assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock);
        assert!(taken > 0);
        // What was taken arrives, in full.
        drop(writer);
        let mut received = Vec::new();
        reader.read_to_end(&mut received).unwrap();
        assert_eq!(received.len(), taken);
    }
}
