//! The sockets still sending their HTTP request head, counted in total and per source address.
//!
//! Each costs a thread until its head arrives or `HANDSHAKE_TIMEOUT_SECS` passes, so both counts
//! are bounded. What happens at a bound:
//! - A source address already holding `MAX_PENDING_HANDSHAKES_PER_IP` gets its new socket closed
//!   on accept, so one host can take only its share.
//! - With `MAX_PENDING_HANDSHAKES` held in all, a newcomer takes the place of the oldest handshake
//!   of the address that holds the most (that socket is shut down; its thread sees the end and
//!   goes), unless the newcomer's own address is that one: then the newcomer is closed. So many
//!   hosts dribbling heads together cannot lock anyone else out either, a health check included.
//!
//! Behind a reverse proxy every peer comes from the proxy's address: raise the per-address bound
//! to the total there (the proxy reads request heads itself, so slow heads never reach us).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::Arc;

use parking_lot::Mutex;

/// Why a socket was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already holds its share.
    SourceFull,
    /// All places are taken, and its own address holds the most of them.
    Full,
}

/// The table of handshakes in progress (see the module docs).
pub struct PendingHandshakes {
    max_total: usize,
    max_per_source: usize,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Per source address, its handshakes oldest first: an id and a handle to shut the socket down.
    by_source: HashMap<IpAddr, VecDeque<(u64, TcpStream)>>,
    total: usize,
    next_id: u64,
}

/// A place in the table; dropping it (the head was read, or the attempt failed) frees the place.
pub struct Ticket {
    table: Arc<PendingHandshakes>,
    source: IpAddr,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.table.release(self.source, self.id);
    }
}

impl PendingHandshakes {
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<PendingHandshakes> {
        Arc::new(PendingHandshakes { max_total, max_per_source, table: Mutex::new(Table::default()) })
    }

    /// Admits `socket`, coming from `source`, or says why not. May shut down another address's
    /// oldest handshake to make room (see the module docs).
    pub fn admit(self: &Arc<Self>, source: IpAddr, socket: &TcpStream) -> Result<Ticket, Refusal> {
        // A handle to shut the socket down with, should it have to make room for someone else.
        let handle = socket.try_clone().map_err(|_| Refusal::Full)?;
        let mut table = self.table.lock();
        let held = table.by_source.get(&source).map_or(0, VecDeque::len);
        if held >= self.max_per_source {
            return Err(Refusal::SourceFull);
        }
        if table.total >= self.max_total {
            let biggest = table.by_source.iter().max_by_key(|(_, held)| held.len()).map(|(ip, held)| (*ip, held.len()));
            match biggest {
                Some((ip, most)) if most > held => table.evict_oldest(ip),
                _ => return Err(Refusal::Full),
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        table.by_source.entry(source).or_default().push_back((id, handle));
        table.total += 1;
        Ok(Ticket { table: self.clone(), source, id })
    }

    /// Handshakes in progress now.
    pub fn count(&self) -> usize {
        self.table.lock().total
    }

    fn release(&self, source: IpAddr, id: u64) {
        let mut table = self.table.lock();
        let Some(held) = table.by_source.get_mut(&source) else { return };
        let Some(at) = held.iter().position(|(held_id, _)| *held_id == id) else { return };
        held.remove(at);
        if held.is_empty() {
            table.by_source.remove(&source);
        }
        table.total -= 1;
    }
}

impl Table {
    /// Shuts down `source`'s oldest handshake and forgets it (its ticket then finds nothing to free).
    fn evict_oldest(&mut self, source: IpAddr) {
        let Some(held) = self.by_source.get_mut(&source) else { return };
        if let Some((_, socket)) = held.pop_front() {
            let _ = socket.shutdown(Shutdown::Both);
            self.total -= 1;
        }
        if held.is_empty() {
            self.by_source.remove(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair: (the client end, the server end the table holds).
    fn socket_pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_address_gets_only_its_share_and_frees_it_again() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let table = PendingHandshakes::new(10, 2);
        let pairs: Vec<_> = (0..3).map(|_| socket_pair(&listener)).collect();
        let first = table.admit(ip(2), &pairs[0].1).unwrap();
        let _second = table.admit(ip(2), &pairs[1].1).unwrap();
        assert_eq!(table.admit(ip(2), &pairs[2].1).err(), Some(Refusal::SourceFull));
        assert!(table.admit(ip(3), &pairs[2].1).is_ok(), "another address still gets in");
        drop(first);
        assert!(table.admit(ip(2), &pairs[2].1).is_ok());
    }

    #[test]
    fn when_full_a_newcomer_displaces_the_oldest_of_the_biggest_holder() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let table = PendingHandshakes::new(3, 4);
        let mut pairs: Vec<_> = (0..5).map(|_| socket_pair(&listener)).collect();
        let _held: Vec<Ticket> = (0..3).map(|i| table.admit(ip(2), &pairs[i].1).unwrap()).collect();
        // The biggest holder itself cannot displace its own.
        assert_eq!(table.admit(ip(2), &pairs[3].1).err(), Some(Refusal::Full));
        let _newcomer = table.admit(ip(9), &pairs[4].1).unwrap();
        assert_eq!(table.count(), 3);
        // The oldest of 127.0.0.2's sockets was shut down: its client sees the end.
        let mut byte = [0u8; 1];
        assert_eq!(pairs[0].0.read(&mut byte).unwrap(), 0);
    }
}
