//! Keys: which bucket, breaker or health record a request belongs to.

use std::{borrow::Borrow, fmt, hash, sync::Arc};

use crate::LlmRequest;

/// The name of a limiter bucket, breaker or health component, e.g. `acme` or `openai|gpt-4o`.
///
/// Cheap to clone and hash. Built-in extractors hand out the request's own `Arc<str>` fields, so
/// keying by tenant or provider does not allocate.
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Key {
    /// The key every request shares under [`Global`].
    pub const GLOBAL: Self = Self(Repr::Static("*"));

    /// The key used when the field a key is built from is missing (e.g. a request with no tenant).
    pub const NONE: Self = Self(Repr::Static("-"));

    /// A key from a static string.
    pub const fn from_static(key: &'static str) -> Self {
        Self(Repr::Static(key))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(key) => key,
            Repr::Shared(key) => key,
        }
    }
}

impl From<&str> for Key {
    fn from(key: &str) -> Self {
        Self(Repr::Shared(key.into()))
    }
}

impl From<String> for Key {
    fn from(key: String) -> Self {
        Self(Repr::Shared(key.into()))
    }
}

impl From<Arc<str>> for Key {
    fn from(key: Arc<str>) -> Self {
        Self(Repr::Shared(key))
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl hash::Hash for Key {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        // Must hash exactly like `str` so maps keyed by `Key` can be queried with `&str`.
        self.as_str().hash(state);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maps a request to the [`Key`] a layer keeps its state under.
///
/// Built-ins: [`Global`], [`ByTenant`], [`ByPrincipal`], [`ByProvider`], [`ByModel`], [`ByRole`];
/// tuples of extractors join their keys with `|` (`(ByProvider, ByModel)` → `openai|gpt-4o`);
/// any `Fn(&LlmRequest) -> Key` closure works too.
///
/// ```
/// use tollgate_core::{ByModel, ByTenant, Key, KeyExtractor, LlmRequest, Message};
///
/// let req = LlmRequest::new("gpt-4o", vec![Message::user("hi")]).with_tenant("acme");
/// assert_eq!(ByTenant.extract(&req), "acme");
/// assert_eq!((ByTenant, ByModel).extract(&req), "acme|gpt-4o");
///
/// let by_prompt_size = |req: &LlmRequest| -> Key {
///     if req.messages.len() > 10 { "long".into() } else { "short".into() }
/// };
/// assert_eq!(by_prompt_size.extract(&req), "short");
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key for `request`.
    fn extract(&self, request: &LlmRequest) -> Key;
}

/// A layer's per-key state, found for each call: one state for every call, held directly so a
/// call costs no lookup, or one state per key an extractor gives, looked up in a bounded table.
/// The circuit breaker and the health statistics share it.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_core::{ByTenant, Global, Key, LlmRequest, Message, key::{Keyed, extractor}};
///
/// let request = LlmRequest::new("m", vec![Message::user("hi")]).with_tenant("acme");
/// let one = Keyed::new(extractor(Global), || Arc::new(0_u32));
/// let (key, found) = one.find(&request, |_| unreachable!("one state: no lookup")).unwrap();
/// assert_eq!((key, *one.get(&found)), (Key::GLOBAL, 0));
///
/// let by_tenant: Keyed<u32> = Keyed::new(extractor(ByTenant), || unreachable!());
/// let (key, found) = by_tenant.find(&request, |key| Some(Arc::new(key.as_str().len() as u32))).unwrap();
/// assert_eq!((key.as_str(), *by_tenant.get(&found)), ("acme", 4));
/// // A full table has no state for a new key: the call goes on unwatched.
/// assert!(by_tenant.find(&request, |_| None).is_none());
/// ```
pub enum Keyed<T> {
    /// One state for every call (the [`Global`] key).
    One(Arc<T>),
    /// A state per key.
    By(Box<dyn KeyExtractor>),
}

/// The state one call found in a [`Keyed`]: read it with [`Keyed::get`].
#[derive(Debug)]
pub struct Found<T>(Option<Arc<T>>);

/// `extractor` as a layer's builder keeps it for [`Keyed::new`]: `None` for [`Global`], whose
/// one state is held directly rather than looked up per call.
pub fn extractor<E: KeyExtractor>(extractor: E) -> Option<Box<dyn KeyExtractor>> {
    (std::any::TypeId::of::<E>() != std::any::TypeId::of::<Global>())
        .then(|| Box::new(extractor) as Box<dyn KeyExtractor>)
}

impl<T> Keyed<T> {
    /// A state per key `extractor` gives, or, without one, the state `one` makes, for every call.
    pub fn new(extractor: Option<Box<dyn KeyExtractor>>, one: impl FnOnce() -> Arc<T>) -> Self {
        match extractor {
            Some(extractor) => Self::By(extractor),
            None => Self::One(one()),
        }
    }

    /// The key of `request` and the state it goes to, found by `lookup` for a keyed call; `None`
    /// when `lookup` has no state for the key (its table is full).
    pub fn find(
        &self,
        request: &LlmRequest,
        lookup: impl FnOnce(&Key) -> Option<Arc<T>>,
    ) -> Option<(Key, Found<T>)> {
        match self {
            Self::One(_) => Some((Key::GLOBAL, Found(None))),
            Self::By(extract) => {
                let key = extract.extract(request);
                let state = lookup(&key)?;
                Some((key, Found(Some(state))))
            }
        }
    }

    /// The state a call found.
    pub fn get<'a>(&'a self, found: &'a Found<T>) -> &'a T {
        match (&found.0, self) {
            (Some(state), _) | (None, Self::One(state)) => state,
            (None, Self::By(_)) => unreachable!("find gives a keyed call a state of its own"),
        }
    }
}

impl<T> fmt::Debug for Keyed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::One(_) => "Keyed::One",
            Self::By(_) => "Keyed::By",
        })
    }
}

impl<F> KeyExtractor for F
where
    F: Fn(&LlmRequest) -> Key + Send + Sync + 'static,
{
    fn extract(&self, request: &LlmRequest) -> Key {
        self(request)
    }
}

/// One key for every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl KeyExtractor for Global {
    fn extract(&self, _: &LlmRequest) -> Key {
        Key::GLOBAL
    }
}

fn optional(field: &Option<Arc<str>>) -> Key {
    field.clone().map_or(Key::NONE, Key::from)
}

/// The request's tenant, or [`Key::NONE`] when it has none (so tenant-less requests share a key
/// rather than escaping a limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct ByTenant;

impl KeyExtractor for ByTenant {
    fn extract(&self, request: &LlmRequest) -> Key {
        optional(&request.meta.tenant)
    }
}

/// The request's principal (user, API key, agent), or [`Key::NONE`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ByPrincipal;

impl KeyExtractor for ByPrincipal {
    fn extract(&self, request: &LlmRequest) -> Key {
        optional(&request.meta.principal)
    }
}

/// The request's provider, or [`Key::NONE`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ByProvider;

impl KeyExtractor for ByProvider {
    fn extract(&self, request: &LlmRequest) -> Key {
        optional(&request.provider)
    }
}

/// The request's role, or [`Key::NONE`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ByRole;

impl KeyExtractor for ByRole {
    fn extract(&self, request: &LlmRequest) -> Key {
        optional(&request.meta.role)
    }
}

/// The request's model (without allocating: the key shares the request's `Arc<str>`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ByModel;

impl KeyExtractor for ByModel {
    fn extract(&self, request: &LlmRequest) -> Key {
        Key::from(request.model.clone())
    }
}

macro_rules! tuple_extractor {
    ($($name:ident),+) => {
        impl<$($name: KeyExtractor),+> KeyExtractor for ($($name,)+) {
            #[allow(non_snake_case)]
            fn extract(&self, request: &LlmRequest) -> Key {
                let ($($name,)+) = self;
                let parts = [$($name.extract(request)),+];
                let mut key = String::with_capacity(parts.iter().map(|p| p.as_str().len() + 1).sum());
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        key.push('|');
                    }
                    key.push_str(part.as_str());
                }
                Key::from(key)
            }
        }
    };
}

tuple_extractor!(A, B);
tuple_extractor!(A, B, C);
tuple_extractor!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn built_ins_read_the_right_fields() {
        let mut req = LlmRequest::new("m1", vec![Message::user("x")])
            .with_tenant("t1")
            .with_provider("p1")
            .with_role("r1");
        req.meta.principal = Some("u1".into());
        assert_eq!(Global.extract(&req), "*");
        assert_eq!(ByTenant.extract(&req), "t1");
        assert_eq!(ByPrincipal.extract(&req), "u1");
        assert_eq!(ByProvider.extract(&req), "p1");
        assert_eq!(ByModel.extract(&req), "m1");
        assert_eq!(ByRole.extract(&req), "r1");
        assert_eq!((ByProvider, ByModel, ByTenant).extract(&req), "p1|m1|t1");
    }

    #[test]
    fn missing_fields_share_one_key() {
        let req = LlmRequest::new("m", vec![Message::user("x")]);
        assert_eq!(ByTenant.extract(&req), Key::NONE);
        assert_eq!((ByTenant, ByModel).extract(&req), "-|m");
    }

    #[test]
    fn keys_look_up_by_str() {
        let mut map = std::collections::HashMap::new();
        map.insert(Key::from("acme"), 1);
        assert_eq!(map.get("acme"), Some(&1));
    }
}
