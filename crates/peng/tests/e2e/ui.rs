//! The web UI in a real browser: headless Chromium driven by Python selenium
//! (`ui_browser.py`) against the real binary with the example applied.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::harness::{free_port, peng, Peng, Webhook};
use crate::{all_running, example_copy, health_ok, status_json, wait_found, LONG};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Fails (never skips) when the browser or selenium is missing.
async fn require_browser() {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: run scripts/test.sh, which installs the Debian packages \
             chromium and chromium-driver"
        );
    }
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    assert!(
        selenium,
        "the Python module selenium is missing: run scripts/test.sh, which installs it with pip"
    );
}

/// Kills the browser script's whole process group (python, chromedriver, chromium) when
/// dropped, in case the script could not quit the browser itself.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_ui_in_a_real_browser() {
    require_browser().await;
    let started = Instant::now();
    let tmp = crate::harness::open_tempdir();
    let data = tmp.path().join("data");
    let hook = Webhook::start().await;
    let app_dir = example_copy(tmp.path(), &hook.url);
    let file = app_dir.join("peng.yaml");
    let file = file.to_str().expect("utf8 path");
    let server = Peng::start(&data, free_port(), free_port()).await;
    let url = server.url();
    let admin = server.admin_token();

    let mut tokens = Vec::new();
    for team in ["books", "music"] {
        let out = peng(&url, &admin, &["team", "create", team, "--json"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        tokens.push(v["token"].as_str().expect("token").to_string());
    }
    let (token, other) = (&tokens[0], &tokens[1]);
    let apply = peng(&url, token, &["apply", "-f", file]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    crate::harness::eventually("3 instances running with healthy sensors", LONG, || async {
        let s = status_json(&url, token).await;
        (all_running(&s, 3) && health_ok(&s, 3)).then_some(())
    })
    .await;
    wait_found(&url, token, "listening", "bookshelf listening on 127.0.0.1").await;

    let shots = tmp.path().join("screenshots");
    std::fs::create_dir_all(&shots).expect("mkdir screenshots");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/ui_browser.py");
    let child = Command::new("python3")
        .arg(script)
        .args([url.as_str(), token, other, admin.as_str()])
        .arg(&shots)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("run python3");
    let _group = GroupGuard(child.id());
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the browser walk did not finish within 120s")
        .expect("wait for python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser walk failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.server_log()
    );
    assert!(stdout.contains("step: done"), "{stdout}");

    // Screenshots: kept for a look when PENG_UI_SCREENSHOTS names a directory.
    let png = std::fs::read(shots.join("service.png")).expect("service page screenshot");
    assert!(
        png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG ({} bytes)",
        png.len()
    );
    if let Some(keep) = std::env::var_os("PENG_UI_SCREENSHOTS") {
        std::fs::create_dir_all(&keep).expect("mkdir PENG_UI_SCREENSHOTS");
        for name in ["login", "services", "service", "logs", "costs"] {
            let f = format!("{name}.png");
            std::fs::copy(shots.join(&f), Path::new(&keep).join(&f)).expect("keep screenshot");
        }
    }

    let log = server.server_log();
    server.stop().await;
    assert!(!log.contains("panicked"), "peng serve panicked:\n{log}");
    eprintln!("the web UI walk took {:?}", started.elapsed());
}
