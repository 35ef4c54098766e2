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
    io::{self, BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
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

    /// Sends one command on a fresh connection and reads its reply (for fixtures: seeding,
    /// corrupting or flushing state behind a client's back).
    ///
    /// # Errors
    ///
    /// I/O errors, or a reply that is not valid RESP.
    pub fn command(&self, args: &[&str]) -> io::Result<Reply> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out)?;
        read_reply(&mut BufReader::new(stream))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RESP2 reply.
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

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad RESP line {line:?}"),
        )
    };
    let (tag, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    match tag {
        "+" => Ok(Reply::Status(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => rest.parse().map(Reply::Integer).map_err(|_| bad()),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(Reply::Nil);
            };
            let mut buf = vec![0; len + 2];
            reader.read_exact(&mut buf)?;
            buf.truncate(len);
            Ok(Reply::Bulk(buf))
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            let Ok(len) = usize::try_from(len) else {
                return Ok(Reply::Nil);
            };
            (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<_>>()
                .map(Reply::Array)
        }
        _ => Err(bad()),
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
