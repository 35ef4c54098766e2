//! The real `tollgate` binary, started on a free port with a configuration file, and stopped
//! when dropped.

use std::{
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct GatewayProcess {
    pub url: String,
    pub config: PathBuf,
    pub logs: PathBuf,
    child: Child,
}

#[allow(dead_code)] // each test binary uses some
impl GatewayProcess {
    /// Starts `tollgate serve` on `yaml`; panics with its logs if it does not come up.
    pub async fn start(yaml: &str) -> Self {
        Self::start_with(yaml, &[]).await
    }

    /// [`start`](Self::start), with more arguments to `serve` (`--log-level debug`).
    pub async fn start_with(yaml: &str, args: &[&str]) -> Self {
        Self::start_in(yaml, args, &[]).await
    }

    /// [`start_with`](Self::start_with), with these environment variables set for the process
    /// (an upstream's API key).
    pub async fn start_in(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "gateway-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("tollgate.yaml");
        std::fs::write(&config, yaml).unwrap();
        let logs = dir.join("logs.txt");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&logs).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let url = match first {
            Ok(Ok(Some(line))) => line
                .strip_prefix("tollgate listening on ")
                .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
                .to_owned(),
            _ => panic!(
                "the gateway did not start: {}",
                std::fs::read_to_string(&logs).unwrap_or_default()
            ),
        };
        // Keep reading so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            url,
            config,
            logs,
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends `signal` (`HUP`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Rewrites the configuration file and sends SIGHUP.
    pub fn reload(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).unwrap();
        self.signal("HUP");
    }

    /// The most memory the process has held resident so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib * 1024
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.logs).unwrap_or_default()
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the gateway exits in time")
            .unwrap()
    }
}
