//! What is kept of an answer for its retries, and how it is written to Redis.

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// A SHA-256 digest: where a key's answer is kept, or what a call asked.
pub(super) type Digest = [u8; 32];

/// An answer as it went to its caller: its status, the headers that describe it, its body to the
/// byte (a stream's every event), and the digest of the call that got it.
#[derive(Debug)]
pub(crate) struct Record {
    /// The digest of the route and body the answer is for.
    pub(super) fingerprint: Digest,
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// What Redis holds under a key: a call's answer, or a call under way somewhere.
#[derive(Debug)]
pub(super) enum Held {
    Answer(Record),
    /// A call with this fingerprint is under way.
    Pending(Digest),
}

/// The header a replayed answer carries.
pub(super) const REPLAY: HeaderName = HeaderName::from_static("x-tollgate-idempotent-replay");

impl Record {
    /// The answer again, as it went the first time, saying it is a replay.
    pub(super) fn replay(&self) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
            .headers_mut()
            .insert(REPLAY, HeaderValue::from_static("true"));
        response
    }

    /// Bytes it holds on the heap: its body, its headers, and the record.
    pub(super) fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 64)
            .sum();
        std::mem::size_of::<Self>() + self.body.len() + headers
    }
}

/// The first bytes of everything this module writes to Redis, then `R` (an answer) or `P` (a call
/// under way).
const MAGIC: &[u8] = b"tollgate-idem/1";

/// `MAGIC`, `P`, the fingerprint, and the token of the process whose call it is.
pub(super) fn encode_pending(fingerprint: &Digest, token: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + 32 + 16);
    out.extend_from_slice(MAGIC);
    out.push(b'P');
    out.extend_from_slice(fingerprint);
    out.extend_from_slice(token);
    out
}

/// `MAGIC`, `R`, the fingerprint, the status (2 bytes), the number of headers (2 bytes), each
/// header's name and value with their lengths (2 bytes each), the body's length (4 bytes) and
/// the body; numbers big-endian. `None` for an answer whose lengths do not fit (none the gateway
/// writes).
pub(super) fn encode(record: &Record) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(MAGIC.len() + 48 + record.weight());
    out.extend_from_slice(MAGIC);
    out.push(b'R');
    out.extend_from_slice(&record.fingerprint);
    out.extend_from_slice(&record.status.as_u16().to_be_bytes());
    let count = u16::try_from(record.headers.len()).ok()?;
    out.extend_from_slice(&count.to_be_bytes());
    for (name, value) in &record.headers {
        for part in [name.as_str().as_bytes(), value.as_bytes()] {
            let len = u16::try_from(part.len()).ok()?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    let len = u32::try_from(record.body.len()).ok()?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&record.body);
    Some(out)
}

/// What `bytes` hold, or why they are no value this module wrote.
pub(super) fn decode(bytes: &[u8]) -> Result<Held, &'static str> {
    let mut read = Reader(bytes.strip_prefix(MAGIC).ok_or("bad magic")?);
    let kind = read.take(1)?[0];
    let fingerprint: Digest = read.take(32)?.try_into().expect("32 bytes");
    match kind {
        b'P' => {
            read.take(16)?;
            read.end()?;
            Ok(Held::Pending(fingerprint))
        }
        b'R' => {
            let status = StatusCode::from_u16(read.u16()?).map_err(|_| "bad status")?;
            let count = read.u16()?;
            let mut headers = HeaderMap::with_capacity(usize::from(count));
            for _ in 0..count {
                let len = usize::from(read.u16()?);
                let name = HeaderName::from_bytes(read.take(len)?).map_err(|_| "bad header")?;
                let len = usize::from(read.u16()?);
                let value = HeaderValue::from_bytes(read.take(len)?).map_err(|_| "bad header")?;
                headers.append(name, value);
            }
            let len = read.take(4)?.try_into().map(u32::from_be_bytes).expect("4");
            let body = Bytes::copy_from_slice(read.take(len as usize)?);
            read.end()?;
            Ok(Held::Answer(Record {
                fingerprint,
                status,
                headers,
                body,
            }))
        }
        _ => Err("bad kind"),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn end(&self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("padded")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        headers.append("x-tollgate-moves", HeaderValue::from_static("0"));
        Record {
            fingerprint: [7; 32],
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(b"data: {\"a\":1}\n\ndata: [DONE]\n\n"),
        }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let bytes = encode(&record()).unwrap();
        let Ok(Held::Answer(back)) = decode(&bytes) else {
            panic!("an answer")
        };
        assert_eq!(
            (back.fingerprint, back.status, &back.headers, &back.body),
            (
                record().fingerprint,
                StatusCode::OK,
                &record().headers,
                &record().body
            )
        );
        assert_eq!(decode(&bytes[..bytes.len() - 1]).unwrap_err(), "truncated");
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(decode(&padded).unwrap_err(), "padded");
        assert_eq!(decode(b"SET by someone else").unwrap_err(), "bad magic");
        let pending = encode_pending(&[9; 32], &[1; 16]);
        assert!(matches!(decode(&pending), Ok(Held::Pending(f)) if f == [9; 32]));
        assert_eq!(
            decode(&pending[..pending.len() - 1]).unwrap_err(),
            "truncated"
        );
    }
}
