//! The official clients, run by a Python interpreter that has them.

use std::path::{Path, PathBuf};

use super::{ALICE, GatewayProcess};

/// An interpreter that has the official clients, or `None` (and a note) when there is none.
///
/// The packages come from `clients/requirements.txt`; `.ci/run` installs them into a virtual
/// environment and points `TOLLGATE_PYTHON` at its interpreter. Without them the tests are
/// skipped, unless `TOLLGATE_REQUIRE_CLIENTS=1` (as in CI), when they fail.
pub fn python() -> Option<PathBuf> {
    let interpreter =
        std::env::var_os("TOLLGATE_PYTHON").map_or_else(|| "python3".into(), PathBuf::from);
    let has_packages = std::process::Command::new(&interpreter)
        .args(["-c", "import openai, anthropic, prometheus_client"])
        .output()
        .is_ok_and(|out| out.status.success());
    if has_packages {
        return Some(interpreter);
    }
    let required = std::env::var("TOLLGATE_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "TOLLGATE_REQUIRE_CLIENTS=1 but {} cannot import openai, anthropic and prometheus_client \
         (pip install -r crates/tollgate-gateway/tests/clients/requirements.txt)",
        interpreter.display()
    );
    eprintln!("skipped: no Python with the official clients (set TOLLGATE_PYTHON)");
    None
}

/// Runs `scenario` of `clients/<script>` against `gateway` as alice and returns what it printed;
/// panics with what the client said if it fails.
pub async fn run_scenario(
    python: &Path,
    gateway: &GatewayProcess,
    script: &str,
    scenario: &str,
) -> String {
    run_scenario_as(python, gateway, script, ALICE, &[scenario]).await
}

/// Runs `clients/<script>` with `args` as `key`; its standard output, or a panic with what the
/// client and the gateway said when it fails.
pub async fn run_scenario_as(
    python: &Path,
    gateway: &GatewayProcess,
    script: &str,
    key: &str,
    args: &[&str],
) -> String {
    let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .env("TOLLGATE_URL", &gateway.url)
        .env("TOLLGATE_KEY", key)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}:\n{stdout}\n{}\ngateway logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gateway.logs()
    );
    stdout
}
