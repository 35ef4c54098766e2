//! Test support for tollgate's own tests (not published).
//!
//! [`RedisServer`] starts a real `redis-server` on a free loopback port in a private temporary
//! directory and stops it when dropped. When `redis-server` is not installed the fixture skips the
//! test with a printed reason, unless `TOLLGATE_REQUIRE_REDIS=1` is set (as CI sets it), in which
//! case it fails the test instead: a missing Redis must never turn into a silently green run.
//!
//! ```no_run
//! use tollgate_testkit::RedisServer;
//!
//! let Some(redis) = RedisServer::start() else { return }; // skipped: no redis-server
//! redis.command(&["SET", "k", "v"]).unwrap();
//! assert_eq!(redis.command(&["GET", "k"]).unwrap(), tollgate_testkit::Reply::Bulk(b"v".to_vec()));
//! println!("redis at {}", redis.url());
//! ```

use std::{
    io,
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

/// The environment variable that turns a missing `redis-server` from a skip into a failure.
pub const REQUIRE_REDIS: &str = "TOLLGATE_REQUIRE_REDIS";

/// A `redis-server` child process on a free loopback port, stopped and cleaned up on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server, or returns `None` (after printing why) when `redis-server` is not
    /// installed and `TOLLGATE_REQUIRE_REDIS` is not `1`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing and required, or installed but fails to start.
    pub fn start() -> Option<Self> {
        let required = std::env::var(REQUIRE_REDIS).is_ok_and(|v| v == "1");
        if !binary_on_path("redis-server") {
            assert!(
                !required,
                "redis-server is not installed but {REQUIRE_REDIS}=1; install it (apt-get install redis-server)"
            );
            eprintln!(
                "skipped: redis-server is not installed (set {REQUIRE_REDIS}=1 to fail instead)"
            );
            return None;
        }
        // A freed port can be taken by someone else before redis binds it; try a few.
        let mut last_error = None;
        for _ in 0..5 {
            match Self::try_start() {
                Ok(server) => return Some(server),
                Err(err) => last_error = Some(err),
            }
        }
        panic!("redis-server did not start: {}", last_error.expect("tried"));
    }

    fn try_start() -> io::Result<Self> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "tollgate-redis-{}-{}-{port}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let child = spawn(port, &dir)?;
        let mut server = Self { child, port, dir };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Reply::Status(pong)) = self.command(&["PING"]) {
                if pong == "PONG" {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.try_wait()? {
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

    /// Kills the server as a crash would (SIGKILL), keeping its port for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, with empty memory, and waits until it answers.
    ///
    /// # Panics
    ///
    /// When it does not start.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, &self.dir).expect("redis-server restarts");
        self.wait_ready().expect("restarted redis-server answers");
    }

    /// The port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL for clients.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends one command on a fresh connection (redis-rs's blocking client) and returns its
    /// reply; a reply that is a Redis error is `Ok(Reply::Error)` (for fixtures: seeding,
    /// corrupting or flushing state behind a client's back).
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or the connection fails.
    pub fn command(&self, args: &[&str]) -> io::Result<Reply> {
        let (name, rest) = args.split_first().expect("a command has a name");
        let client = redis::Client::open(self.url()).map_err(io::Error::other)?;
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(io::Error::other)?;
        connection
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io::Error::other)?;
        match redis::cmd(name)
            .arg(rest)
            .query::<redis::Value>(&mut connection)
        {
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
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A reply to [`RedisServer::command`], in RESP2's shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`-style status.
    Status(String),
    /// `-ERR ...` error.
    Error(String),
    /// `:n` integer.
    Integer(i64),
    /// `$n` bulk string.
    Bulk(Vec<u8>),
    /// `$-1` / `*-1`.
    Nil,
    /// `*n` array.
    Array(Vec<Reply>),
}

impl From<redis::Value> for Reply {
    fn from(value: redis::Value) -> Self {
        match value {
            redis::Value::Nil => Self::Nil,
            redis::Value::Int(n) => Self::Integer(n),
            redis::Value::BulkString(bytes) => Self::Bulk(bytes),
            redis::Value::Array(items) | redis::Value::Set(items) => {
                Self::Array(items.into_iter().map(Self::from).collect())
            }
            redis::Value::SimpleString(status) => Self::Status(status),
            redis::Value::Okay => Self::Status("OK".into()),
            redis::Value::ServerError(error) => Self::Error(format!("{error:?}")),
            // RESP3 shapes this fixture's RESP2 connection never receives.
            other => Self::Status(format!("{other:?}")),
        }
    }
}

fn spawn(port: u16, dir: &std::path::Path) -> io::Result<Child> {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn binary_on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}
