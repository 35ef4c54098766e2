//! Virtual keys: how the gateway finds the key a call presents, and what it may use. How a key
//! is stored (its SHA-256 digest, never the key) and made is `tollgate_control`'s.

use std::{collections::HashMap, sync::Arc};

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
    pub(crate) tenant: Arc<str>,
    /// The roles it may name; `None` for every role.
    pub(crate) roles: Option<Vec<String>>,
    /// The `provider/model` names it may use directly (`provider/*` for any of a provider's).
    pub(crate) models: Vec<String>,
    /// Whether it opens the admin API (a record key made with `admin: true`).
    pub(crate) admin: bool,
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
                tenant: "t".into(),
                roles: None,
                models: vec!["openai/*".into(), "local/llama".into()],
                admin: false,
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
