//! `poll(2)`, which std does not offer: wait until any of several sockets can take more bytes.
//!
//! The flusher (`peer/flusher.rs`) writes for every peer whose socket was full when its sender
//! tried; one thread waits on all of those sockets at once instead of one blocked thread per peer.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// What became of one socket waited on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Nothing yet.
    Waiting,
    /// It can be read from (`readable`) or written to (`writable`), or it failed or hung up.
    Ready,
}

/// Waits until `readable` (if any) has something to read or any of `writable` can take bytes (or
/// has failed or hung up: a write will then tell why), at most `limit`. Returns one [`Readiness`]
/// for `readable`, then one per `writable`, in order.
pub(crate) fn wait(
    readable: Option<&impl AsRawFd>,
    writable: &[&impl AsRawFd],
    limit: Duration,
) -> io::Result<Vec<Readiness>> {
    let mut fds = Vec::with_capacity(writable.len() + 1);
    // poll skips a negative descriptor, and reports nothing for it.
    let fd = readable.map_or(-1, |readable| readable.as_raw_fd());
    fds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
    fds.extend(writable.iter().map(|socket| libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    }));
    let timeout = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures that outlives the call; the
    // descriptors belong to the callers' sockets, which outlive it too.
    let result = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if result < 0 {
        let err = io::Error::last_os_error();
        // A signal arrived: report nothing ready, the caller waits again.
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(vec![Readiness::Waiting; fds.len()])
        } else {
            Err(err)
        };
    }
    Ok(fds.iter().map(|fd| if fd.revents != 0 { Readiness::Ready } else { Readiness::Waiting }).collect())
}

#[cfg(test)]
mod tests {
    use super::{Readiness, wait};
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    #[test]
    fn reports_a_writable_socket_and_a_readable_waker() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut wake, waker) = UnixStream::pair().unwrap();
        // An empty socket can take bytes; the waker has nothing to read.
        assert_eq!(
            wait(Some(&waker), &[&socket], Duration::from_secs(5)).unwrap(),
            [Readiness::Waiting, Readiness::Ready]
        );
        wake.write_all(b"!").unwrap();
        assert_eq!(wait(Some(&waker), &[] as &[&TcpStream], Duration::from_secs(5)).unwrap(), [Readiness::Ready]);
    }
}
