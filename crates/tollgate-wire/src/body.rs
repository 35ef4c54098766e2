//! A request body read once and kept as it came: its top-level fields' values, and where each
//! lies in the bytes, so a pass-through sends the caller's own bytes with only what the stack
//! settled written over them.

use std::{fmt, ops::Range};

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value, value::RawValue};

use crate::refusal::Refusal;

/// A body's top-level fields read as values, and where each value lies in `body`, in order.
pub(crate) type Located = (Map<String, Value>, Vec<(String, Range<usize>)>);

/// Reads `body`'s top-level JSON object: each field's value, and where it lies.
///
/// # Errors
///
/// A [`Refusal`] when the body is no JSON object, has more after it, or gives a field twice.
pub(crate) fn read_object(body: &Bytes) -> Result<Located, Refusal> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let TopLevel(fields) = TopLevel::deserialize(&mut reader)
        .map_err(|e| Refusal::json(format!("the request body is not a JSON object: {e}")))?;
    reader.end().map_err(|e| {
        Refusal::json(format!(
            "the request body has more after its JSON object: {e}"
        ))
    })?;
    let start = body.as_ptr() as usize;
    let mut object = Map::new();
    let mut kept = Vec::with_capacity(fields.len());
    for (name, raw) in fields {
        if object.contains_key(&name) {
            return Err(Refusal::field(&name, "given twice"));
        }
        let value: Value = serde_json::from_str(raw.get())
            .map_err(|e| Refusal::field(&name, &format!("not JSON: {e}")))?;
        let at = raw.get().as_ptr() as usize - start;
        kept.push((name.clone(), at..at + raw.get().len()));
        object.insert(name, value);
    }
    Ok((object, kept))
}

/// `body` (a JSON object) with `replaced` values written over the caller's (each a field's
/// value's range and what goes there) and the `added` fields put in before its closing brace, in
/// order: the caller's bytes but for what the stack settled.
pub(crate) fn rewritten(
    body: &[u8],
    mut replaced: Vec<(Range<usize>, Vec<u8>)>,
    added: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    replaced.sort_by_key(|(range, _)| range.start);
    let mut out = Vec::with_capacity(body.len() + 96);
    let mut at = 0;
    for (range, value) in replaced {
        out.extend_from_slice(&body[at..range.start]);
        out.extend_from_slice(&value);
        at = range.end;
    }
    let end = body.iter().rposition(|b| *b == b'}').unwrap_or(body.len());
    out.extend_from_slice(&body[at..end]);
    let mut empty = body[..end]
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    for (name, value) in added {
        if !empty {
            out.push(b',');
        }
        empty = false;
        out.extend_from_slice(&json_bytes(name));
        out.push(b':');
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&body[end..]);
    out
}

/// `value` as JSON bytes.
pub(crate) fn json_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value serializes")
}

/// A body's top level: each field's name and where its value lies, in order.
struct TopLevel<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = TopLevel<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(field);
                }
                Ok(TopLevel(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}
