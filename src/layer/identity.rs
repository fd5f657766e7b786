//! Identities made from a request header: what
//! [`identity_header`](super::ResumabilityLayer::identity_header) stores.

use sha2::{Digest, Sha256};

/// The stored identity of a request whose header `name` has `value`: the
/// header's name and the value's SHA-256 in hex, never the value itself.
pub(crate) fn hashed(name: &str, value: &[u8]) -> String {
    let digest = Sha256::digest(value);
    let mut out = String::with_capacity(name.len() + 8 + 2 * digest.len());
    out.push_str(name);
    out.push_str(":sha256:");
    for byte in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_the_values_sha256_and_never_the_value() {
        let identity = hashed("authorization", b"Bearer token-alice");
        assert!(identity.starts_with("authorization:sha256:"));
        assert_eq!(identity.len(), "authorization:sha256:".len() + 64);
        assert!(!identity.contains("token-alice"));
        // SHA-256 of "abc", the FIPS 180-2 example.
        assert_eq!(
            hashed("x", b"abc"),
            "x:sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(identity, hashed("authorization", b"Bearer token-bob"));
    }
}
