//! The 40-hex-digit peer identifier every connection presents in `?peerId=`.
//!
//! Kept as the exact characters the client sent (the reference compares ids as strings, so `AB..` and
//! `ab..` are two different peers), stored inline so the type is `Copy` and cheap to hash.

use std::fmt;

/// Number of hex digits in a peer id (a 160-bit id, as the PeerPigeon client generates).
pub const PEER_ID_LEN: usize = 40;

/// A validated peer id: exactly 40 ASCII hex digits, either case (docs/protocol.md §1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; PEER_ID_LEN]);

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
