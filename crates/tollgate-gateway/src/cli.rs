//! The binary's record commands: `tollgate keys|teams|spend`, on the database the configuration's
//! `database` section names (the one `/admin/` works on), with `cli` as the audit log's actor.

use std::{io::BufRead, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Subcommand};
use serde::Serialize;
use tollgate_control::{Database, GroupBy, NewKey, NewTeam};
use tollgate_gateway::{GatewayConfig, hash_key, new_key};

/// Who the audit log says made a change from here.
const ACTOR: &str = "cli";

#[derive(Args)]
pub(crate) struct Records {
    /// The configuration file, whose `database` section names the database.
    #[arg(long, short)]
    config: PathBuf,
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Makes a new key and prints it with the hash to put in the configuration (`keys.<name>.hash`);
    /// with --stdin, prints the hash of the key read from standard input instead.
    Hash {
        /// Reads the key from standard input (one line) instead of making one.
        #[arg(long)]
        stdin: bool,
    },
    /// Makes a key in the database and prints it as JSON, with its secret (shown this once).
    Create {
        #[command(flatten)]
        records: Records,
        /// Its name.
        #[arg(long)]
        name: String,
        /// Its team, which must exist.
        #[arg(long)]
        team: String,
        /// A role it may name (repeat for more; none given: every role).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A `provider/model` (or `provider/*`) it may use directly (repeat for more).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Its own limits, as JSON: `{"per_minute": 60, "budgets": [{"limit": "50", "period": "month"}]}`.
        #[arg(long)]
        limits: Option<String>,
        /// Whether it opens the admin API.
        #[arg(long)]
        admin: bool,
    },
    /// Lists the database's keys as JSON (never a secret).
    List {
        #[command(flatten)]
        records: Records,
    },
    /// Revokes a key: every gateway refuses it within a second.
    Revoke {
        #[command(flatten)]
        records: Records,
        /// The key's id.
        id: String,
    },
    /// Gives a key a new secret, printed as JSON; the old one works for the grace period.
    Rotate {
        #[command(flatten)]
        records: Records,
        /// The key's id.
        id: String,
        /// How long the old secret keeps working.
        #[arg(long, default_value = "1h", value_parser = duration)]
        grace: Duration,
    },
}

#[derive(Subcommand)]
pub(crate) enum TeamsCommand {
    /// Makes a team.
    Create {
        #[command(flatten)]
        records: Records,
        /// Its name.
        name: String,
        /// Its limits, as JSON: `{"budgets": [{"limit": "500", "period": "month"}]}`.
        #[arg(long)]
        limits: Option<String>,
    },
    /// Lists the teams as JSON.
    List {
        #[command(flatten)]
        records: Records,
    },
    /// Deletes a team that has no keys.
    Delete {
        #[command(flatten)]
        records: Records,
        /// Its name.
        name: String,
    },
}

/// `tollgate spend`: the ledger grouped and totalled.
#[derive(Args)]
pub(crate) struct SpendCommand {
    #[command(flatten)]
    records: Records,
    /// key, team, model, provider or day.
    #[arg(long, default_value = "team")]
    group_by: String,
    /// The first UTC day, included (`2026-12-01`).
    #[arg(long)]
    from: Option<String>,
    /// The last UTC day, included.
    #[arg(long)]
    to: Option<String>,
    /// Prints CSV instead of JSON.
    #[arg(long)]
    csv: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    tollgate_core::duration::parse(text)
}

pub(crate) fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Hash { stdin } => keys_hash(stdin),
        KeysCommand::Create {
            records,
            name,
            team,
            roles,
            models,
            limits,
            admin,
        } => on(&records, async move |database| {
            let mut new = NewKey::new(name, team);
            new.roles = (!roles.is_empty()).then_some(roles);
            new.models = models;
            new.limits = limits.as_deref().map(parse_json).transpose()?;
            new.admin = admin;
            let made = database
                .create_key(ACTOR, new)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("The key (`key`) is shown this once: give it to its caller.");
            print(&made)
        }),
        KeysCommand::List { records } => on(&records, async |database| {
            print(&database.keys().await.map_err(|e| e.to_string())?)
        }),
        KeysCommand::Revoke { records, id } => on(&records, async move |database| {
            match database
                .revoke_key(ACTOR, &id)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(key) => print(&key),
                None => Err(format!("no key {id:?}")),
            }
        }),
        KeysCommand::Rotate { records, id, grace } => on(&records, async move |database| {
            match database
                .rotate_key(ACTOR, &id, grace)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(rotated) => print(&rotated),
                None => Err(format!("no key {id:?}")),
            }
        }),
    }
}

pub(crate) fn teams(command: TeamsCommand) -> ExitCode {
    match command {
        TeamsCommand::Create {
            records,
            name,
            limits,
        } => on(&records, async move |database| {
            let mut new = NewTeam::named(name);
            new.limits = limits.as_deref().map(parse_json).transpose()?;
            print(
                &database
                    .create_team(ACTOR, new)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        }),
        TeamsCommand::List { records } => on(&records, async |database| {
            print(&database.teams().await.map_err(|e| e.to_string())?)
        }),
        TeamsCommand::Delete { records, name } => {
            on(&records, async move |database| {
                match database
                    .delete_team(ACTOR, &name)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    true => Ok(()),
                    false => Err(format!("no team {name:?}")),
                }
            })
        }
    }
}

pub(crate) fn spend(command: SpendCommand) -> ExitCode {
    let SpendCommand {
        records,
        group_by,
        from,
        to,
        csv,
    } = command;
    on(&records, async move |database| {
        let grouping = GroupBy::parse(&group_by).map_err(|e| e.message().to_owned())?;
        let report = database
            .spend(grouping, from.as_deref(), to.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        if csv {
            print!("{}", report.to_csv(&group_by));
            Ok(())
        } else {
            print(&report)
        }
    })
}

/// Runs `work` on the database `records` names; prints its error and fails if it does.
fn on(records: &Records, work: impl AsyncFnOnce(Database) -> Result<(), String>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime starts");
    let done = runtime.block_on(async {
        let config = GatewayConfig::load(&records.config).map_err(|errors| errors.to_string())?;
        let Some(database) = &config.database else {
            return Err(format!(
                "{}: no `database` section; the record commands work on the database it names",
                records.config.display()
            ));
        };
        let database = Database::open(database).await.map_err(|e| e.to_string())?;
        let done = work(database.clone()).await;
        database.close().await;
        done
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|error| format!("--limits: {error}"))
}

fn print(value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn keys_hash(from_stdin: bool) -> ExitCode {
    if from_stdin {
        let mut key = String::new();
        if let Err(error) = std::io::stdin().lock().read_line(&mut key) {
            eprintln!("cannot read a key from standard input: {error}");
            return ExitCode::FAILURE;
        }
        let key = key.trim();
        if key.is_empty() {
            eprintln!("standard input held no key");
            return ExitCode::FAILURE;
        }
        println!("{}", hash_key(key));
        return ExitCode::SUCCESS;
    }
    match new_key() {
        Ok(key) => {
            println!("key:  {key}");
            println!("hash: {}", hash_key(&key));
            eprintln!(
                "Give the key to its caller: it is stored nowhere. Put the hash in the \
                 configuration under keys.<name>.hash."
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("no randomness from the operating system: {error}");
            ExitCode::FAILURE
        }
    }
}
