//! `poll(2)`, which std does not offer: wait until any of several sockets can take more bytes, or
//! has something to read.
//!
//! The flusher (`peer/flusher.rs`) writes for every peer whose socket was full when its sender
//! tried; one thread waits on all of those sockets at once instead of one blocked thread per peer.
//! The acceptor (`accept/listener.rs`) waits on the listening socket and on the connections it
//! accepted before their first bytes arrived.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
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
    poll_all(&mut fds, Some(limit))
}

/// Waits until any of `sockets` has something to read (or has failed or hung up: a read will then
/// tell), at most `limit` (`None`: for as long as it takes). Returns one [`Readiness`] per socket,
/// in order.
pub(crate) fn wait_readable(sockets: &[BorrowedFd<'_>], limit: Option<Duration>) -> io::Result<Vec<Readiness>> {
    let mut fds: Vec<_> = sockets
        .iter()
        .map(|socket| libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 })
        .collect();
    poll_all(&mut fds, limit)
}

fn poll_all(fds: &mut [libc::pollfd], limit: Option<Duration>) -> io::Result<Vec<Readiness>> {
    // Rounded up: a wait cut short by rounding down would wake the caller just before its deadline.
    let timeout = limit.map_or(-1, |limit| i32::try_from(limit.as_micros().div_ceil(1000)).unwrap_or(i32::MAX));
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
    use super::{Readiness, wait, wait_readable};
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;
    use std::time::Instant;

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

    #[test]
    fn reports_which_sockets_have_something_to_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut quiet = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut talking = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (quiet_end, _) = listener.accept().unwrap();
        let (talking_end, _) = listener.accept().unwrap();
        let started = Instant::now();
        let nothing =
            wait_readable(&[quiet_end.as_fd(), talking_end.as_fd()], Some(Duration::from_millis(30))).unwrap();
        assert_eq!(nothing, [Readiness::Waiting, Readiness::Waiting]);
        assert!(started.elapsed() >= Duration::from_millis(30), "waited the whole limit");
        talking.write_all(b"GET").unwrap();
        let both = [quiet_end.as_fd(), talking_end.as_fd(), listener.as_fd()];
        assert_eq!(wait_readable(&both, None).unwrap(), [Readiness::Waiting, Readiness::Ready, Readiness::Waiting]);
        // A connection waiting to be accepted makes the listener readable; a closed one its socket.
        let _third = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(wait_readable(&[listener.as_fd()], Some(Duration::from_secs(5))).unwrap(), [Readiness::Ready]);
        quiet.flush().unwrap();
        drop(quiet);
        assert_eq!(wait_readable(&[quiet_end.as_fd()], Some(Duration::from_secs(5))).unwrap(), [Readiness::Ready]);
    }
}
