//! The control plane's databases a test runs on: a fresh SQLite file, and a fresh real
//! PostgreSQL when one is installed (required where [`REQUIRE_POSTGRES`](crate::REQUIRE_POSTGRES)
//! is set).

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::TestPostgres;

/// Where one test's database lives, removed when dropped.
#[derive(Debug)]
pub enum TestDatabase {
    /// A directory holding a SQLite file, `tollgate.db`.
    File(PathBuf),
    /// A PostgreSQL server of the test's own.
    Server(TestPostgres),
}

impl TestDatabase {
    /// A fresh SQLite file under a name with `label` in it, then a fresh PostgreSQL when one
    /// is installed: every control-plane test runs on each.
    ///
    /// # Panics
    ///
    /// When the temporary directory cannot be made.
    pub fn each(label: &str) -> Vec<Self> {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-{label}-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut databases = vec![Self::File(dir)];
        databases.extend(TestPostgres::start().map(Self::Server));
        databases
    }

    /// Its URL: `sqlite://…/tollgate.db`, or `postgres://…`.
    pub fn url(&self) -> String {
        match self {
            Self::File(dir) => format!("sqlite://{}", dir.join("tollgate.db").display()),
            Self::Server(postgres) => postgres.url(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Self::File(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
