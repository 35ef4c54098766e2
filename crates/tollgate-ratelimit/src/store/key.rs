//! A key's text and the target a call names: what a shard's table is keyed by.

/// One (scope, key) a call is checked against, with its hash computed once.
#[derive(Clone, Copy, Default)]
pub(crate) struct Target<'a> {
    pub(crate) scope: u32,
    pub(crate) key: &'a str,
    pub(super) hash: u64,
}

impl Target<'_> {
    /// Whether `scope` and `key` name this target (a wait queue's, or a key's counts).
    pub(super) fn is(&self, scope: u32, key: &str) -> bool {
        self.scope == scope && self.key == key
    }
}

/// A key's text: inline when short (most tenant, user and API-key ids), so the common lookup
/// touches one cache line and a key costs no allocation of its own.
pub(super) enum KeyText {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<str>),
}

const INLINE_KEY: usize = 22;

impl KeyText {
    pub(super) fn new(key: &str) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key.as_bytes());
            Self::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(key.into())
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(key) => key.as_bytes(),
        }
    }

    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("copied from a str")
    }
}
