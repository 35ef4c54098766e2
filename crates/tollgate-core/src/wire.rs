//! Typed fields over JSON objects that keep everything else as it came.
//!
//! Reading takes a modeled field out of the object unless it is absent, `null` or its type's empty
//! value (`""` is not empty, `[]` is): those stay in the object, so writing puts back exactly what
//! came, `null` and `[]` included. Writing starts from what is left and lays every non-empty
//! typed field over it.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::JsonMap;

/// Takes `key` out of `object` as a `T`, unless it is absent, `null` or `T`'s empty value, which
/// stay in `object` as they came (and `T::default()` is returned).
///
/// The value is moved out, not copied: an answer's text is read once. An empty value is put back
/// as its type writes it, which is how it came (`""`, `[]`).
pub(crate) fn take<T: Serialize + DeserializeOwned + Default + PartialEq>(
    object: &mut JsonMap,
    key: &str,
) -> Result<T, String> {
    match object.get(key) {
        None | Some(Value::Null) => return Ok(T::default()),
        Some(_) => {}
    }
    let value = object.remove(key).expect("just looked it up");
    let typed: T = serde_json::from_value(value).map_err(|e| format!("{key}: {e}"))?;
    if typed == T::default() {
        let empty = serde_json::to_value(&typed).expect("modeled fields serialize");
        object.insert(key.to_owned(), empty);
    }
    Ok(typed)
}

/// Takes `key` out of `object` as a JSON object, leaving a `null` or absent one as it is.
pub(crate) fn take_object(object: &mut JsonMap, key: &str) -> Result<Option<JsonMap>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(_)) => match object.remove(key) {
            Some(Value::Object(inner)) => Ok(Some(inner)),
            _ => unreachable!("just matched an object"),
        },
        Some(other) => Err(format!("{key}: expected an object, got {other}")),
    }
}

/// Lays `value` over `object` under `key`, unless it is `T`'s empty value (then whatever `object`
/// holds for `key` stands).
pub(crate) fn put<T: Serialize + Default + PartialEq>(object: &mut JsonMap, key: &str, value: &T) {
    if *value != T::default() {
        let value = serde_json::to_value(value).expect("modeled fields serialize");
        object.insert(key.to_owned(), value);
    }
}
