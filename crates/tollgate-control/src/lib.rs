//! The control plane's records for tollgate: virtual keys, teams, the spend ledger, an audit
//! log, the call log and stored Responses API answers ([`StoredResponse`]), in a SQLite file or
//! a PostgreSQL server shared by several gateways.
//!
//! [`Database::open`] connects and brings the schema up to date (the migrations are in the
//! binary, and running them again changes nothing). Every change to a key or a team writes its
//! [`AuditEntry`] and moves [`Database::records_version`] in the same transaction, so a process
//! that polls the version learns of it. A key's secret is returned once, when it is made or
//! rotated, and stored nowhere: only its SHA-256 digest is.
//!
//! The records need the `database` feature (default); without it the crate is only how a key is
//! hashed and made ([`hash_key`], [`new_key`]), with no database client built.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::{Duration, SystemTime};
//! use tollgate_control::{Database, DatabaseConfig, GroupBy, Ledger, LedgerConfig, NewKey, NewTeam, SpendEntry};
//! use tollgate_core::{MicroUsd, Usage};
//!
//! # let dir = std::env::temp_dir().join(format!("tollgate-control-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("sqlite://{}", dir.join("tollgate.db").display());
//! let database = Database::open(&DatabaseConfig::url(url)).await.unwrap();
//! database.create_team("ops", NewTeam::named("search")).await.unwrap();
//! let made = database.create_key("ops", NewKey::new("search-backend", "search")).await.unwrap();
//! assert!(made.key.starts_with("tg-")); // shown once
//! assert_eq!(tollgate_control::hash_key(&made.key), made.record.hash);
//!
//! let ledger = Ledger::start(database.clone(), LedgerConfig::default());
//! let usage = Usage::new(1_000, 200);
//! ledger.record(SpendEntry::new(SystemTime::now(), made.record.id.as_str(), "search", "gpt-4o", "openai", usage, MicroUsd(4_500)));
//! ledger.flush().await.unwrap();
//! let by_team = database.spend(GroupBy::Team, None, None).await.unwrap();
//! assert_eq!(by_team.groups["search"].cost_micros, 4_500);
//!
//! let rotated = database.rotate_key("ops", &made.record.id, Duration::from_secs(3_600)).await.unwrap().unwrap();
//! assert_ne!(rotated.key, made.key);
//! assert_eq!(database.audit(10).await.unwrap()[0].action, "key.rotate");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # }
//! ```

#[cfg(feature = "database")]
mod audit;
#[cfg(feature = "database")]
mod calls;
#[cfg(feature = "database")]
mod database;
#[cfg(feature = "database")]
mod keys;
#[cfg(feature = "database")]
mod ledger;
#[cfg(feature = "database")]
mod responses;
#[cfg(feature = "database")]
mod row;
mod secret;
#[cfg(feature = "database")]
mod teams;

#[cfg(feature = "database")]
pub use audit::AuditEntry;
#[cfg(feature = "database")]
pub use calls::{CallFilter, CallTotals};
#[cfg(feature = "database")]
pub use database::{Backend, Database, DatabaseConfig};
#[cfg(feature = "database")]
pub use keys::{CreatedKey, KeyChange, KeyRecord, NewKey};
#[cfg(feature = "database")]
pub use ledger::{GroupBy, Ledger, LedgerConfig, SpendEntry, SpendReport, Totals};
#[cfg(feature = "database")]
pub use responses::StoredResponse;
pub use secret::{Digest, HASH_PREFIX, KEY_PREFIX, digest, hash_key, new_key, parse_hash};
#[cfg(feature = "database")]
pub use teams::{NewTeam, TeamChange, TeamRecord};
