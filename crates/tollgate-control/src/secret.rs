//! How a key is stored (its SHA-256 digest, never the key) and made.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

/// How a stored key's digest is written: `sha256:` and 64 hex digits.
pub const HASH_PREFIX: &str = "sha256:";

/// What new keys start with, so a leaked one is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "tg-";

/// A key's SHA-256 digest: what is stored and looked up, never the key.
pub type Digest = [u8; 32];

/// The line stored for `key`: `sha256:` and its digest in hex.
///
/// ```
/// let hash = tollgate_control::hash_key("tg-example");
/// assert!(hash.starts_with("sha256:") && hash.len() == 7 + 64);
/// ```
pub fn hash_key(key: &str) -> String {
    let mut hash = String::with_capacity(HASH_PREFIX.len() + 64);
    hash.push_str(HASH_PREFIX);
    for byte in digest(key) {
        let _ = write!(hash, "{byte:02x}");
    }
    hash
}

/// A new key: [`KEY_PREFIX`] and 32 random bytes from the operating system, in hex.
///
/// # Errors
///
/// When the operating system gives no randomness.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let mut key = String::from(KEY_PREFIX);
    for byte in bytes {
        let _ = write!(key, "{byte:02x}");
    }
    Ok(key)
}

/// `key`'s digest.
pub fn digest(key: &str) -> Digest {
    Sha256::digest(key.as_bytes()).into()
}

/// Reads a `sha256:<hex>` line back into the digest, or says what is wrong with it.
///
/// # Errors
///
/// When the line is not `sha256:` and 64 hex digits.
pub fn parse_hash(hash: &str) -> Result<Digest, String> {
    let Some(hex) = hash.strip_prefix(HASH_PREFIX) else {
        return Err(format!(
            "expected `{HASH_PREFIX}` and 64 hex digits, as `tollgate keys hash` prints"
        ));
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "expected 64 hex digits after `{HASH_PREFIX}`, as `tollgate keys hash` prints"
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

/// A random identifier: `prefix` and 16 hex digits (64 bits).
#[cfg(feature = "database")]
pub(crate) fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    // Identifiers need only be unique; a failing entropy source would already have failed the
    // key's own secret.
    let _ = getrandom::fill(&mut bytes);
    let mut id = String::from(prefix);
    for byte in bytes {
        let _ = write!(id, "{byte:02x}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_reads_back_to_the_digest_it_was_written_from() {
        let key = new_key().unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64);
        assert_eq!(parse_hash(&hash_key(&key)).unwrap(), digest(&key));
        assert!(parse_hash("sha256:abc").is_err());
        assert!(parse_hash("md5:00").is_err());
        #[cfg(feature = "database")]
        assert_ne!(new_id("key_"), new_id("key_"));
    }
}
