//! The flusher: one thread that finishes the writes sockets would not take at once, and cuts
//! closed connections whose peer does not go.
//!
//! A turn that finds its peer's socket full is handed here (`writer.rs`) instead of blocking the
//! thread that queued the message. The flusher waits on all such sockets at once (`poll`) and
//! goes on with each one's turn when it can take more, so one slow socket never holds up another.
//! A socket that takes nothing for [`WRITE_TIMEOUT`] belongs to a peer that is gone: it is cut.
//! After a close frame has been written, the connection is cut [`CLOSE_GRACE`] later unless the
//! peer has gone by then.
//!
//! Its inbox is unbounded but holds at most one job per connection at a time: a peer is handed
//! over only by the holder of its turn, which it keeps until the flusher is done with it, and it
//! closes once.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::peer::queue::PeerShared;
use crate::peer::writer::{Turn, write_turn};
use crate::platform::poll::{self, Readiness};
use crate::util::threads::contain_panic;

/// A socket that takes nothing for this long means the peer is gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After a close frame, how long the peer has to close its end before the socket is cut.
pub const CLOSE_GRACE: Duration = Duration::from_millis(1000);
/// How often stalled sockets are looked at when nothing else wakes the flusher.
const STALL_CHECK: Duration = Duration::from_secs(1);
/// The flusher's stack: it formats frames and polls, nothing deep.
const FLUSHER_STACK: usize = 256 * 1024;

enum Job {
    /// Go on with this peer's turn when its socket can take more.
    Watch(Arc<PeerShared>),
    /// Cut this connection at this time, if it still exists.
    KillAt(Weak<PeerShared>, Instant),
}

/// The way to hand work to the flusher thread. The thread ends once every handle is gone.
pub(crate) struct Flusher {
    jobs: Sender<Job>,
    /// Written to after each job, so that the thread wakes from waiting on sockets.
    bell: UnixStream,
}

impl Flusher {
    /// Starts the flusher thread.
    pub(crate) fn start() -> io::Result<Arc<Flusher>> {
        let (jobs, inbox) = crossbeam_channel::unbounded();
        let (bell, ear) = UnixStream::pair()?;
        bell.set_nonblocking(true)?;
        ear.set_nonblocking(true)?;
        std::thread::Builder::new()
            .name("flusher".into())
            .stack_size(FLUSHER_STACK)
            .spawn(move || contain_panic("flusher", || run(&inbox, ear)))?;
        Ok(Arc::new(Flusher { jobs, bell }))
    }

    /// Hands over `peer`'s turn, blocked on a full socket.
    pub(crate) fn watch(&self, peer: Arc<PeerShared>) {
        self.send(Job::Watch(peer));
    }

    /// Cuts `peer` after [`CLOSE_GRACE`] unless it is gone by then.
    pub(crate) fn kill_later(&self, peer: Weak<PeerShared>) {
        self.send(Job::KillAt(peer, Instant::now() + CLOSE_GRACE));
    }

    fn send(&self, job: Job) {
        if self.jobs.send(job).is_ok() {
            // A full bell already has a ring waiting to be heard; nothing is lost.
            let _ = (&self.bell).write(&[1]);
        }
    }
}

/// A peer whose turn the flusher holds.
struct Watched {
    peer: Arc<PeerShared>,
    /// When its socket last took bytes (or when it was handed over).
    progressed: Instant,
}

fn run(inbox: &Receiver<Job>, ear: UnixStream) {
    let mut watched: Vec<Watched> = Vec::new();
    // Deadlines are all CLOSE_GRACE after their job, so they arrive in order.
    let mut kills: std::collections::VecDeque<(Weak<PeerShared>, Instant)> = Default::default();
    // Gone once every handle is: the flusher then finishes what it holds and ends.
    let mut ear = Some(ear);
    loop {
        loop {
            match inbox.try_recv() {
                Ok(Job::Watch(peer)) => watched.push(Watched { peer, progressed: Instant::now() }),
                Ok(Job::KillAt(peer, at)) => kills.push_back((peer, at)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    ear = None;
                    if watched.is_empty() {
                        // Nobody can close a connection any more: cut the ones still closing now.
                        kills.drain(..).filter_map(|(peer, _)| peer.upgrade()).for_each(|peer| peer.kill());
                        return;
                    }
                    break;
                }
            }
        }
        let now = Instant::now();
        while kills.front().is_some_and(|(_, at)| *at <= now) {
            if let Some((peer, _)) = kills.pop_front()
                && let Some(peer) = peer.upgrade()
            {
                peer.kill();
            }
        }
        let mut limit = kills.front().map_or(Duration::from_secs(3600), |(_, at)| at.saturating_duration_since(now));
        if !watched.is_empty() {
            limit = limit.min(STALL_CHECK);
        }
        let sockets: Vec<_> = watched.iter().map(|w| &w.peer.socket).collect();
        let readiness = match poll::wait(ear.as_ref(), &sockets, limit) {
            Ok(readiness) => readiness,
            Err(err) => {
                log::error!("the flusher cannot wait on sockets: {err}; cutting the connections it holds");
                for w in watched.drain(..) {
                    w.peer.kill();
                    write_turn(&w.peer);
                }
                std::thread::sleep(STALL_CHECK);
                continue;
            }
        };
        if readiness[0] == Readiness::Ready
            && let Some(mut ear) = ear.as_ref()
        {
            let mut rings = [0; 64];
            // Reading 0 means every handle is gone; the inbox then says so too.
            while matches!(ear.read(&mut rings), Ok(n) if n > 0) {}
        }
        let now = Instant::now();
        let mut index = 0;
        watched.retain_mut(|w| {
            index += 1;
            if readiness[index] == Readiness::Ready {
                match write_turn(&w.peer) {
                    Turn::Blocked { progress } => {
                        if progress {
                            w.progressed = now;
                        }
                    }
                    Turn::Closed => {
                        kills.push_back((Arc::downgrade(&w.peer), now + CLOSE_GRACE));
                        return false;
                    }
                    Turn::Done | Turn::Over => return false,
                }
            }
            if now.duration_since(w.progressed) >= WRITE_TIMEOUT {
                // Gone: cut it; the next turn fails, gives up and drops what was queued.
                w.peer.kill();
                write_turn(&w.peer);
                return false;
            }
            true
        });
    }
}
