//! Reading a configuration: YAML, one section at a time so a mistake in one does not hide those in
//! the others, each value through serde with its path.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::{Mapping, Value};
use tollgate_core::ConfigError;

use serde::Deserialize;

use super::{
    errors::ConfigErrors,
    sections::{Config, PerProvider},
    switch::Switch,
};

impl Config {
    /// Parses each section on its own, so a mistake in one does not hide those in the others;
    /// then checks what parsed.
    pub(super) fn parse(text: &str) -> Result<Self, ConfigErrors> {
        ConfigDocument::parse(text)?.into_config()
    }
}

/// A YAML configuration read into its sections but not yet into a [`Config`]: for a program
/// whose file holds sections of its own beside the stack's (the gateway's `keys` and `gateway`),
/// which it takes out, read with the same paths in their mistakes, before the rest becomes the
/// stack's configuration.
///
/// ```
/// use tollgate::ConfigDocument;
///
/// let mut document = ConfigDocument::parse(r#"
/// providers: { local: { kind: simulated } }
/// roles: { default: { provider: local, model: sim-small } }
/// server: { port: 80 }
/// "#).unwrap();
/// let port: std::collections::BTreeMap<String, u16> = document.take_section("server").unwrap();
/// assert_eq!(port["port"], 80);
/// assert_eq!(document.names("providers"), ["local"]);
/// let config = document.into_config().unwrap();
/// assert!(config.providers.contains_key("local"));
/// ```
#[derive(Debug, Clone)]
pub struct ConfigDocument {
    sections: Mapping,
}

impl ConfigDocument {
    /// Reads `text` as YAML (merge keys applied) into its sections.
    ///
    /// # Errors
    ///
    /// YAML that does not parse, or a document that is not a mapping of sections.
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let mut document: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::new("", format!("not valid YAML: {e}")))?;
        document
            .apply_merge()
            .map_err(|e| ConfigError::new("", format!("not valid YAML: {e}")))?;
        let sections = match document {
            Value::Mapping(sections) => sections,
            Value::Null => Mapping::new(),
            _ => {
                return Err(ConfigError::new("", "expected a mapping of sections").into());
            }
        };
        Ok(Self { sections })
    }

    /// Takes section `name` out of the document, read as a `T`; its default when absent.
    ///
    /// # Errors
    ///
    /// The section's first mistake, with its path (`keys.backend.tenant`).
    pub fn take_section<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        name: &str,
    ) -> Result<T, ConfigError> {
        match self.sections.remove(name) {
            Some(value) => typed(value, name),
            None => Ok(T::default()),
        }
    }

    /// The names of the entries of section `name` as written (`providers`: each provider's), or
    /// none when it is not a mapping; readable whatever mistakes the section holds.
    pub fn names(&self, section: &str) -> Vec<String> {
        match self.sections.get(section) {
            Some(Value::Mapping(entries)) => entries
                .keys()
                .filter_map(|key| key.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The stack's configuration from the sections left, checked.
    ///
    /// # Errors
    ///
    /// Every mistake found, each with its path: unknown sections included.
    pub fn into_config(self) -> Result<Config, ConfigErrors> {
        let mut sections = self.sections;
        let mut errors = Vec::new();
        let known = [
            "providers",
            "roles",
            "routing",
            "pricing",
            "caching",
            "rate_limiting",
            "retry",
            "circuit_breaker",
            "health",
            "redis",
            "costs",
            "metrics",
        ];
        for (name, _) in sections.iter() {
            let name = name.as_str().unwrap_or("?");
            if !known.contains(&name) {
                errors.push(ConfigError::new(
                    name,
                    format!(
                        "unknown section `{name}`, expected one of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        let mut broken = BTreeSet::new();
        let mut read = Reader {
            sections: &mut sections,
            errors: &mut errors,
            broken: &mut broken,
        };
        let config = Config {
            providers: read.required("providers"),
            roles: read.required("roles"),
            routing: read.optional("routing").unwrap_or_default(),
            pricing: read.optional("pricing").unwrap_or_default(),
            caching: read.optional("caching").unwrap_or_else(Switch::off),
            rate_limiting: read.optional("rate_limiting").unwrap_or_else(Switch::off),
            retry: read.per_provider("retry", &[]),
            circuit_breaker: read.per_provider("circuit_breaker", &["max_keys", "idle_timeout"]),
            health: read.per_provider("health", &["max_components"]),
            redis: read.optional("redis"),
            costs: read.optional("costs").unwrap_or_default(),
            metrics: read.optional("metrics").unwrap_or_default(),
        };
        errors.extend(config.mistakes(&broken));
        ConfigErrors::check(errors)?;
        Ok(config)
    }
}

/// Deserializes each section on its own, recording a mistake (with its path) instead of stopping.
struct Reader<'a> {
    sections: &'a mut Mapping,
    errors: &'a mut Vec<ConfigError>,
    broken: &'a mut BTreeSet<&'static str>,
}

impl Reader<'_> {
    fn optional<T: serde::de::DeserializeOwned>(&mut self, name: &'static str) -> Option<T> {
        let value = self.sections.remove(name)?;
        match typed(value, name) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                self.errors.push(error);
                self.broken.insert(name);
                None
            }
        }
    }

    /// A section each provider may change, read piece by piece so that every mistake in it has
    /// its own path.
    fn per_provider<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        name: &'static str,
        section_only: &[&str],
    ) -> Switch<PerProvider<T>> {
        let Some(value) = self.sections.remove(name) else {
            return Switch::default();
        };
        let (read, errors) = match serde_json::to_value(value) {
            Ok(serde_json::Value::Object(section)) => {
                let (read, errors) = PerProvider::read(section, name, section_only);
                (read.map(Switch::On), errors)
            }
            Ok(other) => match from_json::<Switch<T>>(other, name) {
                Ok(switch) => (
                    Some(match switch {
                        Switch::On(defaults) => Switch::On(PerProvider {
                            defaults,
                            providers: BTreeMap::new(),
                        }),
                        Switch::Off => Switch::Off,
                    }),
                    Vec::new(),
                ),
                Err(e) => (None, vec![e]),
            },
            Err(e) => (
                None,
                vec![ConfigError::new(name, format!("cannot be read: {e}"))],
            ),
        };
        if !errors.is_empty() {
            self.errors.extend(errors);
            self.broken.insert(name);
        }
        read.unwrap_or_default()
    }

    fn required<T: serde::de::DeserializeOwned + Default>(&mut self, name: &'static str) -> T {
        if !self.sections.contains_key(name) {
            self.errors.push(ConfigError::new(name, "missing"));
            self.broken.insert(name);
        }
        self.optional(name).unwrap_or_default()
    }
}

/// `value` as a `T`, or the mistake with its path under `at`.
///
/// The YAML goes through JSON's data model first: serde_yaml reads an enum only from a YAML tag
/// (`!count 50`), while people (and every layer's documentation) write `{ count: 50 }`.
pub(super) fn typed<T: serde::de::DeserializeOwned>(
    value: Value,
    at: &str,
) -> Result<T, ConfigError> {
    let json = serde_json::to_value(value)
        .map_err(|e| ConfigError::new(at, format!("cannot be read: {e}")))?;
    from_json(json, at)
}

/// `json` as a `T`, or the mistake with its path under `at`.
pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    json: serde_json::Value,
    at: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize::<_, T>(json).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            at.to_owned()
        } else {
            format!("{at}.{path}")
        };
        ConfigError::new(path, e.into_inner().to_string())
    })
}

impl<T: serde::de::DeserializeOwned> PerProvider<T> {
    /// Reads a section's mapping: what parsed, and each mistake with its path under `at`. A
    /// provider whose settings do not parse is left out; the others are kept, so that the checks
    /// after parsing still see them. `section_only` names the fields a provider may not change.
    pub(super) fn read(
        mut section: serde_json::Map<String, serde_json::Value>,
        at: &str,
        section_only: &[&str],
    ) -> (Option<Self>, Vec<ConfigError>) {
        use serde_json::Value as Json;

        let providers = section.remove("providers");
        let defaults = match from_json::<T>(Json::Object(section.clone()), at) {
            Ok(defaults) => defaults,
            Err(e) => return (None, vec![e]),
        };
        let mut read = Self {
            defaults,
            providers: BTreeMap::new(),
        };
        let providers = match providers {
            None | Some(Json::Null) => return (Some(read), Vec::new()),
            Some(Json::Object(providers)) => providers,
            Some(_) => {
                let error = ConfigError::new(
                    under(at, "providers"),
                    "expected a mapping of provider names to false or the settings they change",
                );
                return (Some(read), vec![error]);
            }
        };
        let mut errors = Vec::new();
        for (name, own) in providers {
            let at = under(at, &format!("providers.{name}"));
            let fields = match own {
                Json::Bool(false) => {
                    read.providers.insert(name, Switch::Off);
                    continue;
                }
                Json::Bool(true) | Json::Null => serde_json::Map::new(),
                Json::Object(fields) => fields,
                _ => {
                    errors.push(ConfigError::new(
                        at,
                        "expected false (the layer off) or the settings it changes",
                    ));
                    continue;
                }
            };
            if let Some(field) = section_only.iter().find(|f| fields.contains_key(**f)) {
                errors.push(ConfigError::new(
                    under(&at, field),
                    "set for the whole section only: it bounds every provider together",
                ));
                continue;
            }
            // Its own fields alone first, so that a mistake in them is named where it was made;
            // then over the section's, which fill in the rest.
            let mut merged = section.clone();
            merged.extend(fields.clone());
            match from_json::<T>(Json::Object(fields), &at)
                .and_then(|_| from_json(Json::Object(merged), &at))
            {
                Ok(settings) => {
                    read.providers.insert(name, Switch::On(settings));
                }
                Err(e) => errors.push(e),
            }
        }
        (Some(read), errors)
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for PerProvider<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let section = serde_json::Map::deserialize(deserializer)?;
        match Self::read(section, "", &[]) {
            (Some(read), errors) if errors.is_empty() => Ok(read),
            (_, errors) => Err(serde::de::Error::custom(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }
}

/// `path` under `at`, or `path` alone when `at` is the root.
pub(super) fn under(at: &str, path: &str) -> String {
    if at.is_empty() {
        path.to_owned()
    } else {
        format!("{at}.{path}")
    }
}
