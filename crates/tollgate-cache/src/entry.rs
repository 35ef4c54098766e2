//! What a cache keeps of an answer, and how the file store writes it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tollgate_core::{Choice, LlmResponse, SharedMap, Usage};

use crate::packed::{self, Answer, Parts};

/// A stored answer, whole: every choice with its tool calls, refusal and reasoning, the original
/// usage with its details (a hit reports the tokens the first call cost, so cost reports stay
/// honest about what the answer was worth), and every field of the answer tollgate does not model.
///
/// The provider's headers are not kept: they describe one HTTP exchange (request ids, rate-limit
/// state), and replaying them on a hit would mislead whoever reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResponse {
    /// The model that answered.
    pub model: String,
    /// The answers, as the provider gave them.
    pub choices: Vec<Choice>,
    /// Tokens the original call consumed.
    pub usage: Usage,
    /// Every other field of the answer, as it came.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub extra: SharedMap,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_at_ms: u64,
    /// When it stops being served, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

impl CachedResponse {
    /// What to keep of `response`, stored at `now_ms` for `ttl_ms`.
    pub fn from_response(response: &LlmResponse, now_ms: u64, ttl_ms: u64) -> Self {
        Self {
            model: response.model.clone(),
            choices: response.choices.clone(),
            usage: response.usage,
            extra: response.extra.clone(),
            stored_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        }
    }

    /// The answer as a response (without the cache's marks).
    pub fn to_response(&self) -> LlmResponse {
        let mut response = LlmResponse::with_choices(self.model.clone(), self.choices.clone())
            .with_usage(self.usage);
        response.extra.clone_from(&self.extra);
        response
    }

    /// The answer as a response (without the cache's marks), its parts moved rather than copied.
    pub fn into_response(self) -> LlmResponse {
        let mut response =
            LlmResponse::with_choices(self.model, self.choices).with_usage(self.usage);
        response.extra = self.extra;
        response
    }

    /// Whether it is past its time at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// Bytes it holds, as the [`MemoryStore`](crate::MemoryStore) keeps it: the answer packed into
    /// one allocation (its text, and every field tollgate does not model, each with its length:
    /// about its JSON's length) and the entry's fixed part. Counted from the typed values, with
    /// nothing written out. The memory store adds
    /// [`MEMORY_ENTRY_OVERHEAD`](crate::store::MEMORY_ENTRY_OVERHEAD) for its own bookkeeping.
    pub fn weight(&self) -> usize {
        packed::weight(self.parts())
    }

    pub(crate) fn parts(&self) -> Parts<'_> {
        Parts {
            model: &self.model,
            choices: &self.choices,
            usage: self.usage,
            extra: &self.extra,
        }
    }

    /// An entry of `answer`, stored at `stored_at_ms` until `expires_at_ms`.
    pub(crate) fn from_answer(answer: Answer, stored_at_ms: u64, expires_at_ms: u64) -> Self {
        let Answer {
            model,
            choices,
            usage,
            extra,
        } = answer;
        Self {
            model,
            choices,
            usage,
            extra,
            stored_at_ms,
            expires_at_ms,
        }
    }
}

fn is_empty(map: &SharedMap) -> bool {
    map.is_empty()
}

/// The file format: a fixed header, then the entry as JSON.
///
/// ```text
/// tollgate-cache v2\n
/// <expires_at_ms> <body length> <sha-256 of body, hex>\n
/// <body: the entry as JSON>
/// ```
///
/// A file whose header, length or checksum does not match is corrupt (a crash mid-write on a
/// file system without atomic rename, a truncated copy, a disk error): the store treats it as a
/// miss and removes it.
pub(crate) const MAGIC: &str = "tollgate-cache v2\n";

pub(crate) fn encode(entry: &CachedResponse) -> Vec<u8> {
    let body = serde_json::to_vec(entry).expect("an entry always serializes");
    let digest = Sha256::digest(&body);
    let mut out = Vec::with_capacity(body.len() + 128);
    out.extend_from_slice(MAGIC.as_bytes());
    out.extend_from_slice(
        format!(
            "{} {} {}\n",
            entry.expires_at_ms,
            body.len(),
            crate::CacheKey(digest.into()).to_hex()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

/// The entry in `bytes`, or why it is corrupt.
pub(crate) fn decode(bytes: &[u8]) -> Result<CachedResponse, &'static str> {
    let rest = bytes.strip_prefix(MAGIC.as_bytes()).ok_or("bad magic")?;
    let newline = rest.iter().position(|&b| b == b'\n').ok_or("no header")?;
    let header = std::str::from_utf8(&rest[..newline]).map_err(|_| "header not UTF-8")?;
    let body = &rest[newline + 1..];
    let mut fields = header.split(' ');
    let (Some(expires), Some(length), Some(checksum), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("malformed header");
    };
    let expires: u64 = expires.parse().map_err(|_| "bad expiry")?;
    let length: usize = length.parse().map_err(|_| "bad length")?;
    if body.len() != length {
        return Err("truncated or padded body");
    }
    if crate::CacheKey(Sha256::digest(body).into()).to_hex() != checksum {
        return Err("checksum mismatch");
    }
    let entry: CachedResponse = serde_json::from_slice(body).map_err(|_| "body is not an entry")?;
    if entry.expires_at_ms != expires {
        return Err("header and body disagree");
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CachedResponse {
        CachedResponse::from_response(
            &LlmResponse::new("m", "hello").with_usage(Usage::new(3, 4)),
            1_000,
            60_000,
        )
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let bytes = encode(&entry());
        assert_eq!(decode(&bytes), Ok(entry()));
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err("truncated or padded body")
        );
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        assert_eq!(decode(&flipped), Err("checksum mismatch"));
        assert_eq!(decode(b"garbage"), Err("bad magic"));
    }
}
