//! Cache keys: SHA-256 over a canonical, versioned encoding of everything that changes the answer.
//!
//! # Encoding (version 2)
//!
//! The hasher is fed, in order, with no intermediate string:
//!
//! 1. the tag `tollgate-cache-key/v2`;
//! 2. the scope: `T` and the tenant (`-` when the request has none), or `S` for a shared scope;
//!    then, for an operation other than chat, `O` and its name (`embeddings`);
//! 3. the provider (or nothing) and the model;
//! 4. the number of messages, then per message its role, its content and its other fields
//!    (`name`, `tool_calls`, `tool_call_id`, ...);
//! 5. `temperature`, `max_tokens` (under whichever name it came: the bound is the same), `top_p`,
//!    `stop`, `seed`, `n`, `best_of` and `top_logprobs`, each present or absent;
//! 6. the remaining parameters (`tools`, `response_format`, anything else), keys sorted; `stream`
//!    and `stream_options` are left out, as a stream and a whole answer are the same answer.
//!
//! Every string is written as its byte length (8 bytes, little-endian) then its bytes, and every
//! optional value, list and JSON value carries a tag first, so no two different requests encode
//! alike. JSON objects are written with their keys sorted (arrival order does not matter; array
//! order does). Text content is trimmed, and with whitespace collapsing every run of whitespace
//! inside it counts as one space. The request id, priority, cache control, principal, role and
//! extensions never enter the key: they do not change the answer.
//!
//! Version 2 read `n`, `best_of` and `top_logprobs` as typed numbers, where version 1 read them
//! among the remaining parameters: an entry stored under version 1 is not found again, and leaves
//! the store when its time is up.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tollgate_core::{Content, JsonMap, LlmRequest, Operation};

/// A SHA-256 cache key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The bytes are a SHA-256 output, already uniform: eight of them spread keys over a table
        // as well as all 32, at a quarter of the hashing (a store may hash a key three times per
        // miss). Equal keys still hash equally, and equality compares all 32 bytes.
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        state.write_u64(u64::from_le_bytes([a, b, c, d, e, f, g, h]));
    }
}

impl CacheKey {
    /// The key as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
        }
        out
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        let mut key = [0; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            key[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Self(key))
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Whose answers a request may share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Each tenant has its own entries (the default): an answer cached for one tenant is never
    /// served to another.
    #[default]
    Tenant,
    /// Every tenant shares entries. Choose it only when prompts carry nothing private.
    Shared,
}

/// Where the encoding goes: SHA-256 for a key, or a byte vector to look at.
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    /// A fixed-size piece (a tag, a length): most of a key's writes, worth a path without a
    /// variable-length copy.
    fn put_array<const N: usize>(&mut self, bytes: [u8; N]) {
        self.put(&bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Feeds SHA-256 through one buffer: a key is dozens of short fields, and one `update` per field
/// costs more than the hashing itself for a short prompt. A key that fits (most: a few hundred
/// bytes) is hashed in one call, exactly as if it had been written out first; a longer one
/// streams, with each piece too large for the buffer hashed where it lies.
struct Sha {
    sha: Sha256,
    buf: [u8; BUF],
    len: usize,
    // Whether anything went to `sha` yet: if not, the key is the hash of `buf` alone.
    spilled: bool,
}

const BUF: usize = 512;

impl Sha {
    fn new() -> Self {
        Self {
            sha: Sha256::new(),
            buf: [0; BUF],
            len: 0,
            spilled: false,
        }
    }

    fn finish(mut self) -> [u8; 32] {
        if !self.spilled {
            return Sha256::digest(&self.buf[..self.len]).into();
        }
        self.sha.update(&self.buf[..self.len]);
        self.sha.finalize().into()
    }

    #[cold]
    #[inline(never)]
    fn spill(&mut self, bytes: &[u8]) {
        self.spilled = true;
        self.sha.update(&self.buf[..self.len]);
        self.len = 0;
        if bytes.len() <= BUF {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
        } else {
            self.sha.update(bytes);
        }
    }
}

impl Sink for Sha {
    #[inline]
    fn put_array<const N: usize>(&mut self, bytes: [u8; N]) {
        if let Some(room) = self.buf.get_mut(self.len..self.len + N) {
            room.copy_from_slice(&bytes);
            self.len += N;
        } else {
            self.spill(&bytes);
        }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(room) => {
                room.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.spill(bytes),
        }
    }
}

/// Writes the canonical encoding of a request's parts into a [`Sink`].
struct Hasher<S> {
    sink: S,
}

impl<S: Sink> Hasher<S> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.sink.put(bytes);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.sink.put_array((bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    fn tag(&mut self, tag: u8) {
        self.sink.put_array([tag]);
    }

    fn opt_str(&mut self, value: Option<&str>) {
        match value {
            Some(text) => {
                self.tag(b'1');
                self.bytes(text.as_bytes());
            }
            None => self.tag(b'0'),
        }
    }

    fn opt_u64(&mut self, value: Option<u64>) {
        match value {
            Some(n) => {
                self.tag(b'1');
                self.sink.put_array(n.to_le_bytes());
            }
            None => self.tag(b'0'),
        }
    }

    fn opt_f64(&mut self, value: Option<f64>) {
        // Bit patterns: 0.7 and 0.70 are the same number; -0.0 and 0.0 are not worth merging.
        self.opt_u64(value.map(f64::to_bits));
    }

    /// Text, trimmed, optionally with inner whitespace runs collapsed to one space, streamed as
    /// length-prefixed segments followed by an end marker.
    fn text(&mut self, text: &str, collapse: bool) {
        let text = text.trim();
        self.tag(b't');
        if !collapse {
            self.bytes(text.as_bytes());
            return;
        }
        let mut words = text.split_whitespace();
        if let Some(first) = words.next() {
            self.bytes(first.as_bytes());
            for word in words {
                self.bytes(word.as_bytes());
            }
        }
        self.tag(b'e');
    }

    /// JSON with object keys sorted.
    fn json(&mut self, value: &Value, collapse: bool) {
        match value {
            Value::Null => self.tag(b'n'),
            Value::Bool(b) => self.tag(if *b { b'T' } else { b'F' }),
            Value::Number(n) => {
                self.tag(b'#');
                self.bytes(n.to_string().as_bytes());
            }
            Value::String(s) => {
                self.tag(b's');
                self.bytes(s.as_bytes());
            }
            Value::Array(items) => self.array(items, collapse),
            Value::Object(map) => self.object(map, &[], collapse),
        }
    }

    fn array(&mut self, items: &[Value], collapse: bool) {
        self.tag(b'[');
        self.sink.put_array((items.len() as u64).to_le_bytes());
        for item in items {
            self.json(item, collapse);
        }
    }

    /// `map` with its keys sorted, leaving out the keys in `omit`.
    fn object(&mut self, map: &JsonMap, omit: &[&str], collapse: bool) {
        let mut keys: Vec<&String> = map
            .keys()
            .filter(|key| !omit.contains(&key.as_str()))
            .collect();
        self.tag(b'{');
        self.sink.put_array((keys.len() as u64).to_le_bytes());
        if keys.is_empty() {
            return;
        }
        keys.sort_unstable();
        for key in keys {
            self.bytes(key.as_bytes());
            // A text part's text is normalized like plain content.
            match (&**key, &map[key]) {
                ("text", Value::String(text)) => self.text(text, collapse),
                (_, value) => self.json(value, collapse),
            }
        }
    }
}

/// The cache key of `request` under `scope`, with whitespace collapsed when `collapse` is set.
pub fn cache_key(request: &LlmRequest, scope: Scope, collapse: bool) -> CacheKey {
    let mut h = Hasher { sink: Sha::new() };
    encode(&mut h, request, scope, collapse);
    CacheKey(h.sink.finish())
}

/// The exact bytes [`cache_key`] hashes for `request`: the encoding above, for inspecting why two
/// requests share a key or not (and for the bench's floor, which hashes these same bytes).
///
/// ```
/// use sha2::{Digest, Sha256};
/// use tollgate_cache::{Scope, cache_key, key::canonical_bytes};
/// use tollgate_core::{LlmRequest, Message};
///
/// let request = LlmRequest::new("m", vec![Message::user("hi")]).with_tenant("acme");
/// let bytes = canonical_bytes(&request, Scope::Tenant, false);
/// assert!(bytes.starts_with(b"tollgate-cache-key/v2"));
/// assert_eq!(<[u8; 32]>::from(Sha256::digest(&bytes)), cache_key(&request, Scope::Tenant, false).0);
/// ```
pub fn canonical_bytes(request: &LlmRequest, scope: Scope, collapse: bool) -> Vec<u8> {
    let mut h = Hasher { sink: Vec::new() };
    encode(&mut h, request, scope, collapse);
    h.sink
}

fn encode<S: Sink>(h: &mut Hasher<S>, request: &LlmRequest, scope: Scope, collapse: bool) {
    h.write(b"tollgate-cache-key/v2");
    match scope {
        Scope::Tenant => {
            h.tag(b'T');
            h.bytes(request.meta.tenant.as_deref().unwrap_or("-").as_bytes());
        }
        Scope::Shared => h.tag(b'S'),
    }
    // Chat keys stay as they were before there were other operations.
    if request.meta.operation != Operation::Chat {
        h.tag(b'O');
        h.bytes(request.meta.operation.as_str().as_bytes());
    }
    h.opt_str(request.provider.as_deref());
    h.bytes(request.model.as_bytes());
    h.sink
        .put_array((request.messages.len() as u64).to_le_bytes());
    for message in request.messages.iter() {
        h.bytes(message.role.as_str().as_bytes());
        match &message.content {
            None => h.tag(b'0'),
            Some(Content::Text(text)) => h.text(text, collapse),
            Some(Content::Parts(parts)) => {
                h.tag(b'p');
                h.array(parts, collapse);
            }
        }
        h.object(&message.extra, &[], collapse);
    }
    let params = &request.params;
    h.opt_f64(params.temperature);
    h.opt_u64(params.max_tokens.map(u64::from));
    h.opt_f64(params.top_p);
    h.sink.put_array((params.stop.len() as u64).to_le_bytes());
    for stop in &params.stop {
        h.bytes(stop.as_bytes());
    }
    h.opt_u64(params.seed.map(|seed| seed as u64));
    for count in [params.n, params.best_of, params.top_logprobs] {
        h.opt_u64(count.map(u64::from));
    }
    // A stream and a whole answer are the same answer: how it is delivered is not in the key.
    h.object(&params.extra, &["stream", "stream_options"], collapse);
}

#[cfg(test)]
mod tests {
    use tollgate_core::Message;

    use super::*;

    /// The buffered hasher must hash exactly the canonical bytes, whether the key fits its buffer,
    /// fills it to the byte, or spills once or many times (long fields hashed where they lie).
    #[test]
    fn the_key_is_the_hash_of_the_canonical_bytes_at_every_length() {
        for len in [
            0, 1, 100, 300, 400, 450, 470, 480, 500, 511, 512, 513, 600, 1024, 5_000,
        ] {
            for collapse in [false, true] {
                let text = "word  ".repeat(len / 6 + 1)[..len].to_owned();
                let request = LlmRequest::new(
                    "m".repeat(len % 97),
                    vec![Message::system(text.clone()), Message::user(text.as_str())],
                )
                .with_tenant("t".repeat(len % 53))
                .with_temperature(0.5);
                for scope in [Scope::Tenant, Scope::Shared] {
                    let bytes = canonical_bytes(&request, scope, collapse);
                    assert_eq!(
                        cache_key(&request, scope, collapse).0,
                        <[u8; 32]>::from(Sha256::digest(&bytes)),
                        "length {len}, collapse {collapse}, {scope:?}"
                    );
                }
            }
        }
    }
}
