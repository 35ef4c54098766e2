//! Virtual keys: how the gateway finds the key a call presents, and what it may use. How a key
//! is stored (its SHA-256 digest, never the key) and made is `tollgate_control`'s.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::AtomicU64},
};

use subtle::ConstantTimeEq;
pub(crate) use tollgate_control::{Digest as Digest32, digest, parse_hash};

/// Whether `presented` hashes to `stored`, compared in constant time.
pub(crate) fn matches(stored: &Digest32, presented: &str) -> bool {
    bool::from(stored.ct_eq(&digest(presented)))
}

/// A key as the gateway knows it once it is found: who it is, and what it may use.
#[derive(Debug)]
pub(crate) struct VirtualKey {
    /// The key's name in the configuration: its principal in limits and logs.
    pub(crate) name: Arc<str>,
    /// A record key's name (its `name` is its id), for the call log.
    pub(crate) label: Option<Arc<str>>,
    pub(crate) tenant: Arc<str>,
    /// The roles it may name; `None` for every role.
    pub(crate) roles: Option<Vec<String>>,
    /// The `provider/model` names it may use directly (`provider/*` for any of a provider's).
    pub(crate) models: Vec<String>,
    /// Whether it opens the admin API (a record key made with `admin: true`).
    pub(crate) admin: bool,
    /// When a call last used it, in seconds since the Unix epoch, until the next batch of last
    /// uses takes it (0: not since). One store per call, with no lock shared between calls.
    pub(crate) used: AtomicU64,
    /// When it stops working, in milliseconds since the Unix epoch (0: never): a record key's
    /// expiry, or the end of a rotated secret's grace. Checked at every lookup, so it holds to
    /// the millisecond even while the records cannot be read.
    pub(crate) until: u64,
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
    /// One copy of each tenant's name for all its keys: a lookup then touches a name that
    /// other calls keep in cache, not one of its own.
    tenants: HashMap<Arc<str>, ()>,
}

impl KeyTable {
    /// The table's shared copy of the tenant `name`.
    pub(crate) fn tenant(&mut self, name: &str) -> Arc<str> {
        if let Some((shared, ())) = self.tenants.get_key_value(name) {
            return shared.clone();
        }
        let shared: Arc<str> = name.into();
        self.tenants.insert(shared.clone(), ());
        shared
    }

    pub(crate) fn insert(&mut self, digest: Digest32, key: VirtualKey) {
        self.by_digest.insert(digest, Arc::new(key));
    }

    /// Every key (a rotated record key twice, during its grace).
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Arc<VirtualKey>> {
        self.by_digest.values()
    }

    /// The key whose digest is `wanted` (the presented key's, hashed once for every table), if
    /// any. The secret is never compared: its digest is looked up, and the digest found is
    /// compared again in constant time, so how long this takes says nothing about how close a
    /// guess came.
    pub(crate) fn find_digest(&self, wanted: &Digest32) -> Option<Arc<VirtualKey>> {
        let (stored, key) = self.by_digest.get_key_value(wanted)?;
        if key.until != 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(u64::MAX, |d| d.as_millis().try_into().unwrap_or(u64::MAX));
            if now >= key.until {
                return None;
            }
        }
        bool::from(stored.ct_eq(wanted)).then(|| key.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.by_digest.len()
    }
}

#[cfg(test)]
mod tests {
    use tollgate_control::{hash_key, new_key};

    use super::*;

    #[test]
    fn only_the_key_itself_is_found() {
        let mut table = KeyTable::default();
        let key = new_key().unwrap();
        table.insert(
            parse_hash(&hash_key(&key)).unwrap(),
            VirtualKey {
                name: "a".into(),
                label: None,
                tenant: "t".into(),
                roles: None,
                models: vec!["openai/*".into(), "local/llama".into()],
                admin: false,
                used: AtomicU64::new(0),
                until: 0,
            },
        );
        let find = |presented: &str| table.find_digest(&digest(presented));
        let found = find(&key).unwrap();
        assert_eq!(&*found.name, "a");
        assert!(find(&key[..key.len() - 1]).is_none());
        assert!(find("").is_none());
        assert!(found.may_use_model("openai", "gpt-4o") && found.may_use_model("local", "llama"));
        assert!(!found.may_use_model("local", "qwen") && found.may_use_role("anything"));
    }
}
