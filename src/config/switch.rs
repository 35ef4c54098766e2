//! `Switch<T>`: a layer's section that is either turned off or holds its settings.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, value::MapAccessDeserializer},
};

/// A layer's section: `false` turns the layer off, `true` (or `{}`) turns it on with its defaults,
/// and a mapping turns it on with those settings.
///
/// ```
/// use tollgate::{Switch, retry::RetryConfig};
///
/// let off: Switch<RetryConfig> = serde_yaml_ng::from_str("false").unwrap();
/// assert!(off.get().is_none());
/// let on: Switch<RetryConfig> = serde_yaml_ng::from_str("max_retries: 5").unwrap();
/// assert_eq!(on.get().unwrap().max_retries, 5);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Switch<T> {
    /// The layer is left out of the stack.
    Off,
    /// The layer is in the stack with these settings.
    On(T),
}

impl<T> Switch<T> {
    /// The settings when the layer is on.
    pub fn get(&self) -> Option<&T> {
        match self {
            Self::Off => None,
            Self::On(settings) => Some(settings),
        }
    }

    /// Whether the layer is on.
    pub fn is_on(&self) -> bool {
        matches!(self, Self::On(_))
    }

    /// A section turned off (the default of `caching` and `rate_limiting`, which need settings to
    /// mean anything).
    pub fn off() -> Self {
        Self::Off
    }
}

impl<T: Default> Default for Switch<T> {
    /// On, with the layer's defaults.
    fn default() -> Self {
        Self::On(T::default())
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Switch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de> + Default> de::Visitor<'de> for Visitor<T> {
            type Value = Switch<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("false (the layer off), true (on, with its defaults) or its settings")
            }

            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Switch<T>, E> {
                Ok(if on {
                    Switch::On(T::default())
                } else {
                    Switch::Off
                })
            }

            fn visit_unit<E: de::Error>(self) -> Result<Switch<T>, E> {
                // `retry:` with nothing after it: on, with the defaults.
                Ok(Switch::On(T::default()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Switch<T>, A::Error> {
                // The same map access goes on into the settings, so error paths stay whole.
                T::deserialize(MapAccessDeserializer::new(map)).map(Switch::On)
            }
        }

        deserializer.deserialize_any(Visitor(PhantomData))
    }
}
