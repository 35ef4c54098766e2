//! The Bedrock test server (`tests/bedrock_server.py`), run by a Python interpreter that has
//! botocore, whose SigV4 signer checks every call's signature.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use serde_json::Value;

pub(crate) const ACCESS_KEY: &str = "AKIDEXAMPLE";
pub(crate) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub(crate) const REGION: &str = "us-east-1";

/// An interpreter that has botocore, or `None` (and a note) when there is none.
///
/// It comes from `TOLLGATE_PYTHON` (CI's virtual environment of
/// `crates/tollgate-gateway/tests/clients/requirements.txt`), else `python3`. Without botocore
/// the tests are skipped, unless `TOLLGATE_REQUIRE_CLIENTS=1` (as in CI), when they fail.
pub(crate) fn python() -> Option<PathBuf> {
    let interpreter =
        std::env::var_os("TOLLGATE_PYTHON").map_or_else(|| "python3".into(), PathBuf::from);
    let has_botocore = Command::new(&interpreter)
        .args(["-c", "import botocore.auth"])
        .output()
        .is_ok_and(|out| out.status.success());
    if has_botocore {
        return Some(interpreter);
    }
    let required = std::env::var("TOLLGATE_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "TOLLGATE_REQUIRE_CLIENTS=1 but {} cannot import botocore \
         (pip install -r crates/tollgate-gateway/tests/clients/requirements.txt)",
        interpreter.display()
    );
    eprintln!("skipped: no Python with botocore (set TOLLGATE_PYTHON)");
    None
}

/// The server, on a free loopback port; stopped when dropped.
pub(crate) struct Server {
    pub(crate) url: String,
    child: Child,
    control: reqwest::Client,
}

/// Starts the server expecting the test credentials (with `session_token`, and accepting
/// `api_key` as a bearer key when given); `None` when there is no Python with botocore.
pub(crate) fn start(session_token: Option<&str>, api_key: Option<&str>) -> Option<Server> {
    let python = python()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bedrock_server.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .args([
            "--access-key",
            ACCESS_KEY,
            "--secret",
            SECRET,
            "--region",
            REGION,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(token) = session_token {
        command.args(["--session-token", token]);
    }
    if let Some(key) = api_key {
        command.args(["--api-key", key]);
    }
    let mut child = command.spawn().expect("the test server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the server says its port");
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .unwrap_or_else(|| panic!("the server said {line:?}"));
    Some(Server {
        url: format!("http://127.0.0.1:{port}"),
        child,
        control: reqwest::Client::new(),
    })
}

impl Server {
    /// Queues `reply` as the answer to the next model call.
    pub(crate) async fn script(&self, reply: Value) {
        let status = self
            .control
            .post(format!("{}/_script", self.url))
            .body(reply.to_string())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
    }

    /// What the model calls carried: path, headers, body, and why the signature was refused
    /// (`null` when it was botocore's).
    pub(crate) async fn seen(&self) -> Vec<Value> {
        let body = self
            .control
            .get(format!("{}/_seen", self.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
