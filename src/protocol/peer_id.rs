//! The 40-hex-digit peer identifier every connection presents in `?peerId=`.
//!
//! Kept as the exact characters the client sent, so that it is echoed back as sent, but compared and
//! hashed without regard to case: `AB…` and `ab…` name the same 160-bit id, so an upper-case twin of
//! a connected peer is a duplicate, not a second peer **(safer: the reference compares the strings)**.
//! Stored inline so the type is `Copy` and cheap to hash.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Number of hex digits in a peer id (a 160-bit id, as the PeerPigeon client generates).
pub const PEER_ID_LEN: usize = 40;

/// A validated peer id: exactly 40 ASCII hex digits, either case (docs/protocol.md §1).
#[derive(Clone, Copy)]
pub struct PeerId([u8; PEER_ID_LEN]);

impl PeerId {
    /// The digits in lower case: what equality, hashing and ordering look at.
    fn folded(&self) -> [u8; PEER_ID_LEN] {
        self.0.map(|b| b.to_ascii_lowercase())
    }
}

impl PartialEq for PeerId {
    fn eq(&self, other: &PeerId) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for PeerId {}

impl Hash for PeerId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.folded().hash(state);
    }
}

impl PartialOrd for PeerId {
    fn partial_cmp(&self, other: &PeerId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PeerId {
    fn cmp(&self, other: &PeerId) -> Ordering {
        self.folded().cmp(&other.folded())
    }
}

impl PeerId {
    /// Parses `text` as a peer id; `None` unless it is exactly 40 hex digits.
    pub fn parse(text: &str) -> Option<PeerId> {
        let bytes: [u8; PEER_ID_LEN] = text.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_hexdigit).then_some(PeerId(bytes))
    }

    /// A fresh random id, as a hub generates for itself at start (docs/protocol.md §5).
    pub fn random() -> PeerId {
        let raw: [u8; PEER_ID_LEN / 2] = rand::random();
        let mut digits = [0u8; PEER_ID_LEN];
        // Encoding 20 bytes into a 40-byte buffer cannot fail.
        hex::encode_to_slice(raw, &mut digits).unwrap_or_default();
        PeerId(digits)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored (see `parse` and `random`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The first eight digits, enough to tell peers apart in logs and thread names.
    pub fn short(&self) -> &str {
        &self.as_str()[..8]
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.as_str())
    }
}

impl serde::Serialize for PeerId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_forty_hex_digits_of_either_case() {
        let id = "0123456789abcdefABCDEF0123456789abcdef01";
        assert_eq!(PeerId::parse(id).map(|p| p.to_string()), Some(id.to_string()));
    }

    #[test]
    fn ids_differing_only_in_case_are_the_same_id_but_keep_their_spelling() {
        use std::collections::HashSet;
        let lower = PeerId::parse("0123456789abcdef0123456789abcdef01234567").unwrap();
        let upper = PeerId::parse("0123456789ABCDEF0123456789ABCDEF01234567").unwrap();
        assert_eq!(lower, upper);
        assert_eq!(HashSet::from([lower, upper]).len(), 1);
        assert_eq!(upper.as_str(), "0123456789ABCDEF0123456789ABCDEF01234567");
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        for bad in [
            "",
            "abc",
            "0123456789abcdef0123456789abcdef0123456",   // 39
            "0123456789abcdef0123456789abcdef012345678", // 41
            "0123456789abcdef0123456789abcdef0123456g",  // non-hex
            "0123456789abcdef0123456789abcdef012345é",   // 40 bytes, not ASCII
        ] {
            assert!(PeerId::parse(bad).is_none(), "accepted {bad:?}");
        }
    }

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let a = PeerId::random();
        let b = PeerId::random();
        assert!(PeerId::parse(a.as_str()).is_some());
        assert_ne!(a, b);
        assert_eq!(a.short().len(), 8);
    }
}
