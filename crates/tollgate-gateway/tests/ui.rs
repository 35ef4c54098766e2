//! The live page, `/ui`, in a real headless browser: Debian's Chromium driven by Selenium (from
//! `clients/requirements.txt`), against the real binary after real traffic. Without a browser
//! the test is skipped, unless `TOLLGATE_REQUIRE_BROWSER=1` (as in CI), when it fails.

mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use support::*;

const ADMIN: &str = "tg-admin-key";

/// An interpreter with Selenium and a chromedriver, or `None` (and a note).
fn browser() -> Option<PathBuf> {
    let interpreter =
        std::env::var_os("TOLLGATE_PYTHON").map_or_else(|| "python3".into(), PathBuf::from);
    let has_selenium = std::process::Command::new(&interpreter)
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|out| out.status.success());
    if has_selenium && std::path::Path::new("/usr/bin/chromedriver").exists() {
        return Some(interpreter);
    }
    let required = std::env::var("TOLLGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "TOLLGATE_REQUIRE_BROWSER=1 but {} cannot import selenium or /usr/bin/chromedriver is \
         missing (apt-get install chromium chromium-driver)",
        interpreter.display()
    );
    eprintln!("skipped: no Selenium and Chromium (set TOLLGATE_PYTHON, install chromium-driver)");
    None
}

async fn get(gateway: &GatewayProcess, path: &str, key: Option<&str>) -> (u16, String) {
    let mut request = client().get(format!("{}{path}", gateway.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn the_live_page_draws_the_traffic_and_refuses_without_the_key() {
    let upstream = Upstream::start().await;
    let yaml = config(
        &upstream,
        &format!(
            "caching: {{ store: memory }}\nrate_limiting: {{ tenants: {{ acme: {{ per_minute: 2, cost_per_day: \"5\" }} }} }}\ngateway: {{ admin_key_hash: \"{}\" }}\nlogs: {{ sinks: [ {{ kind: database }} ] }}",
            tollgate_gateway::hash_key(ADMIN)
        ),
    );
    let gateway = GatewayProcess::start(&yaml).await;

    // A miss, a hit, a miss, and a fourth call over acme's two a minute.
    for (text, status) in [("a", 200), ("a", 200), ("b", 200), ("c", 429)] {
        assert_eq!(
            chat(&gateway, ALICE, &ask(text)).await.status(),
            status,
            "{text}"
        );
    }
    // The JSON the page draws from, and the refusals.
    let (status, _) = get(&gateway, "/ui", None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&gateway, "/ui/data", Some(ALICE)).await;
    assert_eq!(status, 401, "a caller's key does not open the page");
    let (status, body) = get(&gateway, "/ui/data", Some(ADMIN)).await;
    assert_eq!(status, 200);
    let data: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(data["cache"], json!({ "hits": 1, "misses": 3 }));
    assert_eq!(data["tenants"]["acme"]["denials"], 1);
    assert_eq!(data["providers"]["up"]["calls"], 2);

    let Some(python) = browser() else {
        return;
    };
    // The team the page's form makes a key for.
    let made = client()
        .post(format!("{}/admin/teams", gateway.url))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "search" }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let metrics = scrape(&gateway).await;
    let (hits, misses) = (
        metric(&metrics, "tollgate_cache_hits"),
        metric(&metrics, "tollgate_cache_misses"),
    );
    let hit_rate = format!("{:.1}%", 100.0 * hits / (hits + misses));
    assert_eq!(hit_rate, "25.0%");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/ui.py");
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live-page.png");
    let out = tokio::process::Command::new(python)
        .args([script, &gateway.url, ADMIN, &hit_rate, r#"{"acme": 1}"#])
        .arg(&screenshot)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_embedded_demo_prints_the_live_pages_address_with_its_admin_key() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let page = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(page) = line.trim().strip_prefix("the live page: ") {
                return page.to_owned();
            }
        }
        panic!("the demo printed no live page");
    })
    .await
    .expect("the demo started");
    assert!(
        page.ends_with(&format!("/ui?key={}", tollgate_gateway::DEMO_ADMIN_KEY)),
        "{page}"
    );
    let response = client().get(&page).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("tollgate — live"));
    let data = page.replace("/ui?key=tg-demo-admin", "/ui/data");
    let response = client()
        .get(&data)
        .bearer_auth(tollgate_gateway::DEMO_ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client()
        .get(&data)
        .bearer_auth(tollgate_gateway::DEMO_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "the caller's demo key does not open it"
    );
    child.kill().await.unwrap();
}
