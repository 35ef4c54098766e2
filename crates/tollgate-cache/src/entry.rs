//! What a cache keeps of an answer, and how the file store writes it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tollgate_core::{FinishReason, LlmResponse, Usage};

/// A stored answer: the text, the model, why it stopped, and the original usage (a hit reports
/// the tokens the first call cost, so cost reports stay honest about what the answer was worth).
///
/// The provider's headers are not kept: they describe one HTTP exchange (request ids, rate-limit
/// state), and replaying them on a hit would mislead whoever reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResponse {
    /// The generated text.
    pub content: String,
    /// The model that answered.
    pub model: String,
    /// Why generation stopped, as the provider said it.
    pub finish_reason: Option<String>,
    /// Tokens the original call consumed.
    pub usage: Usage,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_at_ms: u64,
    /// When it stops being served, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

impl CachedResponse {
    /// What to keep of `response`, stored at `now_ms` for `ttl_ms`.
    pub fn from_response(response: &LlmResponse, now_ms: u64, ttl_ms: u64) -> Self {
        Self {
            content: response.content.clone(),
            model: response.model.clone(),
            finish_reason: response
                .finish_reason
                .as_ref()
                .map(|r| r.as_str().to_owned()),
            usage: response.usage,
            stored_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        }
    }

    /// The answer as a response (without the cache's marks).
    pub fn to_response(&self) -> LlmResponse {
        let mut response =
            LlmResponse::new(self.model.clone(), self.content.clone()).with_usage(self.usage);
        response.finish_reason = self
            .finish_reason
            .as_deref()
            .map(FinishReason::from_provider);
        response
    }

    /// Whether it is past its time at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// Bytes it holds (what the stores weigh).
    pub fn weight(&self) -> usize {
        self.content.len()
            + self.model.len()
            + self.finish_reason.as_ref().map_or(0, String::len)
            + std::mem::size_of::<Self>()
    }
}

/// The file format: a fixed header, then the entry as JSON.
///
/// ```text
/// tollgate-cache v1\n
/// <expires_at_ms> <body length> <sha-256 of body, hex>\n
/// <body: the entry as JSON>
/// ```
///
/// A file whose header, length or checksum does not match is corrupt (a crash mid-write on a
/// file system without atomic rename, a truncated copy, a disk error): the store treats it as a
/// miss and removes it.
pub(crate) const MAGIC: &str = "tollgate-cache v1\n";

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
