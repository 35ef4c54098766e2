//! JSON objects for the fields tollgate does not model: [`JsonMap`], and [`SharedMap`], one
//! shared by clones.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// An insertion-ordered JSON object, used for fields tollgate does not model itself.
pub type JsonMap = serde_json::Map<String, Value>;

/// A [`JsonMap`] that clones share, not allocated until something is put in it: the fields
/// tollgate does not model, in a request ([`Params::extra`](crate::Params::extra)) and at every
/// level of an answer.
///
/// Most carry none, so an empty one holds no allocation and a clone of it counts no reference;
/// a full one is cloned by counting a reference, which is what makes a cache hit of a whole
/// answer cheap. It reads as the map itself, and [`make_mut`](Self::make_mut) changes it:
///
/// ```
/// use serde_json::json;
/// use tollgate_core::{LlmRequest, SharedMap};
///
/// let mut request = LlmRequest::new("gpt-4o-mini", vec![]);
/// assert!(request.params.extra.is_empty());
/// request.params.set_extra("user", json!("u-42"));
/// let clone = request.clone();
/// assert_eq!(clone.params.extra["user"], "u-42");
/// assert!(SharedMap::ptr_eq(&request.params.extra, &clone.params.extra));
/// ```
#[derive(Clone, Default)]
pub struct SharedMap(Option<Arc<JsonMap>>);

impl SharedMap {
    /// The map to change: allocated on the first change, and copied first if a clone shares it.
    pub fn make_mut(&mut self) -> &mut JsonMap {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }

    /// Whether `a` and `b` share one map (a request and its clone do), or are both still empty
    /// and unallocated.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        match (&a.0, &b.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::ops::Deref for SharedMap {
    type Target = JsonMap;

    fn deref(&self) -> &JsonMap {
        static EMPTY: std::sync::OnceLock<JsonMap> = std::sync::OnceLock::new();
        self.0
            .as_deref()
            .unwrap_or_else(|| EMPTY.get_or_init(JsonMap::new))
    }
}

impl From<JsonMap> for SharedMap {
    fn from(map: JsonMap) -> Self {
        Self((!map.is_empty()).then(|| Arc::new(map)))
    }
}

impl From<Arc<JsonMap>> for SharedMap {
    fn from(map: Arc<JsonMap>) -> Self {
        Self(Some(map))
    }
}

impl PartialEq for SharedMap {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SharedMap {}

impl fmt::Debug for SharedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for SharedMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        JsonMap::deserialize(deserializer).map(Self::from)
    }
}
