//! Starting `redis-server` processes (plain, cluster nodes, Sentinels) and talking to one.

use std::{
    io,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use crate::reply::Reply;

/// The environment variable that turns a missing `redis-server` from a skip into a failure.
pub const REQUIRE_REDIS: &str = "TOLLGATE_REQUIRE_REDIS";

/// Whether `redis-server` and `redis-cli` are installed; when they are not, prints why the test
/// is skipped, or panics under `TOLLGATE_REQUIRE_REDIS=1`.
pub(crate) fn installed() -> bool {
    let required = std::env::var(REQUIRE_REDIS).is_ok_and(|v| v == "1");
    let missing: Vec<&str> = ["redis-server", "redis-cli"]
        .into_iter()
        .filter(|name| !binary_on_path(name))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !required,
        "{} not installed but {REQUIRE_REDIS}=1; install them (apt-get install redis-server)",
        missing.join(" and ")
    );
    eprintln!(
        "skipped: {} not installed (set {REQUIRE_REDIS}=1 to fail instead)",
        missing.join(" and ")
    );
    false
}

/// One `redis-server` process (a server, a cluster node or a Sentinel) in its own directory.
#[derive(Debug)]
pub(crate) struct Node {
    child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
    args: Vec<String>,
}

impl Node {
    /// Starts a process on a free port whose cluster bus port (+10,000) is free too, with `args`
    /// (`{port}` and `{dir}` replaced), and waits until it answers `PING`.
    pub(crate) fn start(kind: &str, args: &[&str]) -> io::Result<Self> {
        let mut last = None;
        for _ in 0..8 {
            let port = free_port()?;
            let dir = fresh_dir(kind, port)?;
            let args = args
                .iter()
                .map(|a| {
                    a.replace("{port}", &port.to_string())
                        .replace("{dir}", &dir.display().to_string())
                })
                .collect();
            let mut node = Self {
                child: None,
                port,
                dir,
                args,
            };
            match node.spawn() {
                Ok(()) => return Ok(node),
                Err(error) => last = Some(error),
            }
        }
        Err(last.expect("tried"))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut command = Command::new("redis-server");
        let mut args = self.args.iter();
        // A configuration file (for a Sentinel) comes first, as redis-server wants it.
        if let Some(first) = self.args.first().filter(|a| a.ends_with(".conf")) {
            let path = Path::new(first);
            if !path.exists() {
                write(path, "");
            }
            command.arg(first);
            args.next();
        }
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "no"])
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(command.spawn()?);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Reply::Status(pong)) = command(self.port, &["PING"])
                && pong == "PONG"
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().expect("spawned").try_wait()? {
                return Err(io::Error::other(format!(
                    "redis-server exited with {status}"
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(
                    "redis-server did not answer PING within 10s",
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process as a crash would (SIGKILL), keeping its port and directory.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and directory, with empty memory.
    pub(crate) fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub(crate) fn command(&self, args: &[&str]) -> io::Result<Reply> {
        command(self.port, args)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one command to the process on `port` on a fresh connection (redis-rs's blocking
/// client); a Redis error reply is `Ok(Reply::Error)`.
pub(crate) fn command(port: u16, args: &[&str]) -> io::Result<Reply> {
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(io::Error::other)?;
    let mut connection = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(io::Error::other)?;
    connection
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io::Error::other)?;
    query(&mut connection, args)
}

/// Runs `args` on `connection`, a Redis error reply as `Ok(Reply::Error)`.
pub(crate) fn query(
    connection: &mut impl redis::ConnectionLike,
    args: &[&str],
) -> io::Result<Reply> {
    let (name, rest) = args.split_first().expect("a command has a name");
    match redis::cmd(name).arg(rest).query::<redis::Value>(connection) {
        Ok(value) => Ok(Reply::from(value)),
        Err(error)
            if error.is_io_error()
                || error.is_timeout()
                || error.is_connection_refusal()
                || error.is_connection_dropped() =>
        {
            Err(io::Error::other(error))
        }
        Err(error) => Ok(Reply::Error(error.to_string())),
    }
}

/// Waits up to `limit` for `ready`, checking every 50 ms.
///
/// # Panics
///
/// When `ready` is still false at the end, with `what`.
pub(crate) fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A free loopback port below 55,536, so its cluster bus port (+10,000) exists, with that bus
/// port free too.
pub(crate) fn free_port() -> io::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        if port < 55_536 && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port pair"))
}

fn fresh_dir(kind: &str, port: u16) -> io::Result<PathBuf> {
    static STARTED: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tollgate-{kind}-{}-{}-{port}",
        std::process::id(),
        STARTED.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("the fixture writes its configuration");
}

fn binary_on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}
