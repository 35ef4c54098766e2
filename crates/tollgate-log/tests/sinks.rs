//! The log through its public API: every record reaches every sink, a file rotates by size and
//! by day and keeps only so many, and what a sink cannot take is dropped and counted exactly.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tollgate_core::{ErrorKind, LlmError};
use tollgate_log::{CallLog, CallRecord, FileConfig, JsonLinesFile, Redactor, Sink, WriteFuture};

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-log-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn record(n: usize) -> CallRecord {
    let mut record = CallRecord::new(format!("req_{n:05}"), SystemTime::now());
    record.model = Some("sim-small".into());
    record
}

/// Every record in every file of `dir` whose name starts with `stem`, oldest file first.
fn ids_in(dir: &Path, stem: &str) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(stem))
        .collect();
    files.sort();
    let mut ids = Vec::new();
    for file in files {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let record: CallRecord = serde_json::from_str(line).unwrap();
            ids.push(record.request_id.to_string());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rotates_by_size_and_keeps_only_the_newest() {
    let dir = folder("size");
    let mut config = FileConfig::new(dir.join("calls.jsonl"));
    config.max_bytes = 2_000;
    config.keep = 3;
    let log = CallLog::builder()
        .batch(5)
        .sink("file", JsonLinesFile::open(config).unwrap())
        .build()
        .unwrap();
    for n in 0..200 {
        log.record(record(n));
    }
    log.flush().await;
    assert_eq!(log.stats()[0].written, 200);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 4, "the active file and three rotated ones");
    for file in &files {
        let len = file.as_ref().unwrap().metadata().unwrap().len();
        assert!(len <= 2_000, "{len}");
    }
    // What is left is the newest records, in order, with none missing among them.
    let ids = ids_in(&dir, "calls");
    let first: usize = ids[0][4..].parse().unwrap();
    let expected: Vec<String> = (first..200).map(|n| format!("req_{n:05}")).collect();
    assert_eq!(ids, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

static NOW: AtomicU64 = AtomicU64::new(0);

fn fake_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rotates_at_midnight_utc() {
    let dir = folder("daily");
    // 2026-12-05 23:59:59 UTC.
    NOW.store(1_796_515_199, Ordering::Relaxed);
    let file = JsonLinesFile::open(FileConfig::new(dir.join("calls.jsonl")))
        .unwrap()
        .with_clock(fake_now);
    let log = CallLog::builder().sink("file", file).build().unwrap();
    log.record(record(1));
    log.flush().await;
    NOW.fetch_add(1, Ordering::Relaxed);
    log.record(record(2));
    log.flush().await;
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["calls.20261206T000000.000Z.jsonl", "calls.jsonl"]);
    let rotated = std::fs::read_to_string(dir.join(&names[0])).unwrap();
    assert!(rotated.contains("req_00001") && !rotated.contains("req_00002"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_cannot_be_written_drops_exactly_what_it_misses() {
    let dir = folder("full");
    let path = dir.join("calls.jsonl");
    let log = CallLog::builder()
        .batch(10)
        .sink("file", JsonLinesFile::open(FileConfig::new(&path)).unwrap())
        .build()
        .unwrap();
    for n in 0..50 {
        log.record(record(n));
    }
    log.flush().await;
    // The file is moved away (as logrotate does) and its path now names a full disk.
    std::fs::rename(&path, dir.join("calls.moved.jsonl")).unwrap();
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    for n in 50..80 {
        log.record(record(n));
    }
    log.flush().await;
    std::fs::remove_file(&path).unwrap();
    for n in 80..100 {
        log.record(record(n));
    }
    log.flush().await;
    let stats = &log.stats()[0];
    let kept = ids_in(&dir, "calls");
    assert_eq!((stats.written, stats.dropped), (70, 30));
    assert_eq!(kept.len() as u64, stats.written);
    assert!(!kept.contains(&"req_00060".to_owned()));
    assert!(kept.contains(&"req_00099".to_owned()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A sink that takes `open` records, then fails every batch.
struct Failing {
    open: usize,
    kept: Arc<Mutex<Vec<String>>>,
}

impl Sink for Failing {
    fn write<'a>(&'a mut self, batch: &'a [Arc<CallRecord>]) -> WriteFuture<'a> {
        let mut kept = self.kept.lock().unwrap();
        if kept.len() + batch.len() > self.open {
            return Box::pin(async { Err(LlmError::new(ErrorKind::Unavailable, "down")) });
        }
        kept.extend(batch.iter().map(|r| r.request_id.to_string()));
        Box::pin(async { Ok(()) })
    }
}

/// A sink that never finishes a write.
struct Stuck;

impl Sink for Stuck {
    fn write<'a>(&'a mut self, _: &'a [Arc<CallRecord>]) -> WriteFuture<'a> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sink_costs_the_others_nothing_and_its_losses_are_counted() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let healthy = Arc::new(Mutex::new(Vec::new()));
    let log = CallLog::builder()
        .queue(100)
        .batch(10)
        .sink("stuck", Stuck)
        .sink(
            "failing",
            Failing {
                open: 30,
                kept: kept.clone(),
            },
        )
        .sink(
            "healthy",
            Failing {
                open: usize::MAX,
                kept: healthy.clone(),
            },
        )
        .build()
        .unwrap();
    let settled = |log: &CallLog, sink: usize, given: u64| {
        let stats = &log.stats()[sink];
        stats.written + stats.dropped == given && stats.queued == 0
    };
    for n in 0..1_000 {
        log.record(record(n));
        // Calls spread over time: the working writers keep up.
        if n % 10 == 9 {
            tokio::time::timeout(Duration::from_secs(60), async {
                while !(settled(&log, 1, n as u64 + 1) && settled(&log, 2, n as u64 + 1)) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("the working sinks keep up");
        }
    }
    let stats = log.stats();
    // The stuck sink's writer holds one batch (at most 10), its queue 100: the rest are dropped.
    assert_eq!(stats[0].written, 0);
    assert!(stats[0].dropped >= 1_000 - 100 - 10, "{:?}", stats[0]);
    // The failing sink kept what it took before it failed, and counted every other record.
    let taken = kept.lock().unwrap().len() as u64;
    assert!(taken > 0 && taken <= 30, "{taken}");
    assert_eq!((stats[1].written, stats[1].dropped), (taken, 1_000 - taken));
    assert_eq!((stats[2].written, stats[2].dropped), (1_000, 0));
    assert_eq!(healthy.lock().unwrap().len(), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_redacted_before_any_sink_sees_them() {
    let dir = folder("bodies");
    let path = dir.join("calls.jsonl");
    let log = CallLog::builder()
        .redactor(Redactor::new(&[r"ACCT-\d+".to_owned()]).unwrap())
        .sink("file", JsonLinesFile::open(FileConfig::new(&path)).unwrap())
        .build()
        .unwrap();
    let mut with_bodies = record(1);
    with_bodies.prompt = Some("my key is sk-live0123456789abcdef and ACCT-991".into());
    with_bodies.answer = Some("noted: Bearer abc.def.ghi".into());
    log.record(with_bodies);
    log.record(record(2));
    log.flush().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("sk-live0123456789abcdef") && !text.contains("ACCT-991"));
    assert!(!text.contains("abc.def.ghi"));
    // A record with bodies takes the redacting task's path, so it may be written after a
    // later one without.
    let first: CallRecord = text
        .lines()
        .map(|line| serde_json::from_str::<CallRecord>(line).unwrap())
        .find(|record| &*record.request_id == "req_00001")
        .unwrap();
    assert_eq!(
        first.prompt.as_deref(),
        Some("my key is [redacted] and [redacted]")
    );
    assert_eq!(first.answer.as_deref(), Some("noted: Bearer [redacted]"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mistakes_in_the_settings_are_refused_by_name() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let error = CallLog::builder().queue(0).build().unwrap_err();
    assert_eq!(error.path(), "queue");
    let error = CallLog::builder()
        .sink("a", Stuck)
        .sink("a", Stuck)
        .build()
        .unwrap_err();
    assert_eq!(error.path(), "sinks[1]");
    let error = JsonLinesFile::open(FileConfig::new("")).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    let unknown: Result<FileConfig, _> =
        serde_json::from_str(r#"{ "path": "a.jsonl", "rotate": "daily" }"#);
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `rotate`")
    );
}
