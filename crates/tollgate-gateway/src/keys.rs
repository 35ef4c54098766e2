//! Virtual keys: how a key is stored (its SHA-256 digest, never the key), made, and found.

use std::{collections::HashMap, fmt::Write as _, sync::Arc};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How a stored key's digest is written in the configuration: `sha256:` and 64 hex digits.
pub const HASH_PREFIX: &str = "sha256:";

/// What new keys start with, so a leaked one is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "tg-";

pub(crate) type Digest32 = [u8; 32];

/// The line to put in a key's `hash:` field for `key`.
///
/// ```
/// let hash = tollgate_gateway::hash_key("tg-example");
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

fn digest(key: &str) -> Digest32 {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `presented` hashes to `stored`, compared in constant time.
pub(crate) fn matches(stored: &Digest32, presented: &str) -> bool {
    bool::from(stored.ct_eq(&digest(presented)))
}

/// Reads a `sha256:<hex>` line back into the digest, or says what is wrong with it.
pub(crate) fn parse_hash(hash: &str) -> Result<Digest32, String> {
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

/// A key as the gateway knows it once it is found: who it is, and what it may use.
#[derive(Debug)]
pub(crate) struct VirtualKey {
    /// The key's name in the configuration: its principal in limits and logs.
    pub(crate) name: Arc<str>,
    pub(crate) tenant: Arc<str>,
    /// The roles it may name; `None` for every role.
    pub(crate) roles: Option<Vec<String>>,
    /// The `provider/model` names it may use directly (`provider/*` for any of a provider's).
    pub(crate) models: Vec<String>,
}

impl VirtualKey {
    pub(crate) fn may_use_role(&self, role: &str) -> bool {
        self.roles
            .as_ref()
            .is_none_or(|roles| roles.iter().any(|r| r == role))
    }

    pub(crate) fn may_use_model(&self, provider: &str, model: &str) -> bool {
        self.models.iter().any(|allowed| {
            allowed
                .split_once('/')
                .is_some_and(|(p, m)| p == provider && (m == "*" || m == model))
        })
    }
}

/// Every key, by digest.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    by_digest: HashMap<Digest32, Arc<VirtualKey>>,
}

impl KeyTable {
    pub(crate) fn insert(&mut self, digest: Digest32, key: VirtualKey) {
        self.by_digest.insert(digest, Arc::new(key));
    }

    /// The key `presented` is, if any. The secret is never compared: its digest is looked up, and
    /// the digest found is compared again in constant time, so how long this takes says nothing
    /// about how close a guess came.
    pub(crate) fn find(&self, presented: &str) -> Option<Arc<VirtualKey>> {
        let wanted = digest(presented);
        let (stored, key) = self.by_digest.get_key_value(&wanted)?;
        bool::from(stored.ct_eq(&wanted)).then(|| key.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.by_digest.len()
    }
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
    }

    #[test]
    fn only_the_key_itself_is_found() {
        let mut table = KeyTable::default();
        let key = new_key().unwrap();
        table.insert(
            parse_hash(&hash_key(&key)).unwrap(),
            VirtualKey {
                name: "a".into(),
                tenant: "t".into(),
                roles: None,
                models: vec!["openai/*".into(), "local/llama".into()],
            },
        );
        let found = table.find(&key).unwrap();
        assert_eq!(&*found.name, "a");
        assert!(table.find(&key[..key.len() - 1]).is_none());
        assert!(table.find("").is_none());
        assert!(found.may_use_model("openai", "gpt-4o") && found.may_use_model("local", "llama"));
        assert!(!found.may_use_model("local", "qwen") && found.may_use_role("anything"));
    }
}
