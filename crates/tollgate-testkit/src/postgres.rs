//! A real PostgreSQL server for one test: `initdb` into a private temporary directory, `pg_ctl`
//! on a free loopback port, stopped and removed when dropped.

use std::{
    io,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::process::free_port;

/// The environment variable that turns a missing PostgreSQL from a skip into a failure.
pub const REQUIRE_POSTGRES: &str = "TOLLGATE_REQUIRE_POSTGRES";

/// The role and database a [`TestPostgres`] serves (trusted: no password).
const USER: &str = "tollgate";

/// A PostgreSQL server of its own: its data in a temporary directory, listening on a free
/// loopback port, with the trusted role `tollgate` and the database `postgres`.
///
/// PostgreSQL refuses to run as root; as root (CI) the server runs as the `postgres` user that
/// Debian's package creates, through `runuser`.
///
/// ```no_run
/// let Some(postgres) = tollgate_testkit::TestPostgres::start() else { return }; // skipped
/// println!("postgres at {}", postgres.url());
/// ```
#[derive(Debug)]
pub struct TestPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl TestPostgres {
    /// Starts a server, or `None` (with a printed reason) when PostgreSQL is not installed and
    /// `TOLLGATE_REQUIRE_POSTGRES=1` is not set; with it set, a missing PostgreSQL panics.
    ///
    /// # Panics
    ///
    /// When the server is installed but does not start.
    pub fn start() -> Option<Self> {
        let required = std::env::var(REQUIRE_POSTGRES).is_ok_and(|v| v == "1");
        let Some(bin) = binaries() else {
            assert!(
                !required,
                "PostgreSQL (initdb, pg_ctl) not installed but {REQUIRE_POSTGRES}=1; install it \
                 (apt-get install postgresql)"
            );
            eprintln!(
                "skipped: PostgreSQL (initdb, pg_ctl) not installed (set {REQUIRE_POSTGRES}=1 to fail instead)"
            );
            return None;
        };
        Some(Self::init(bin).unwrap_or_else(|e| panic!("PostgreSQL did not start: {e}")))
    }

    fn init(bin: PathBuf) -> io::Result<Self> {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-postgres-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            checked(Command::new("chown").arg("postgres:").arg(&dir).output()?)?;
        }
        let mut server = Self {
            bin,
            dir,
            port: free_port()?,
            running: false,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        server.start_again()?;
        Ok(server)
    }

    /// `postgres://tollgate@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`), keeping its data.
    ///
    /// # Panics
    ///
    /// When `pg_ctl` fails.
    pub fn kill(&mut self) {
        if self.running {
            let data = self.data();
            self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
                .expect("pg_ctl stop");
            self.running = false;
        }
    }

    /// Starts the server again on the same port and data.
    ///
    /// # Panics
    ///
    /// When it does not start.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again().expect("PostgreSQL restarts");
    }

    fn start_again(&mut self) -> io::Result<()> {
        let (data, log) = (self.data(), self.dir.join("log").display().to_string());
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-t", "60", "-w", "start",
            ],
        )?;
        self.running = true;
        // `-w` waits for the server to accept connections; a connect makes sure of it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other("PostgreSQL did not listen within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs, as the `postgres` user when this process is root.
    fn run(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        checked(command.output()?)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn checked(output: Output) -> io::Result<Output> {
    if output.status.success() {
        return Ok(output);
    }
    Err(io::Error::other(format!(
        "{}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}

/// Where `initdb` and `pg_ctl` are: on the `PATH`, or in Debian's versioned directory (the
/// newest one).
fn binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|dir| has_both(dir))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}
