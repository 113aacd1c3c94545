//! Bad input on every listener of the real binary: each is refused and counted, the server
//! keeps serving, and memory stays within the documented limits.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use crate::harness::{eventually, free_port, peng, Peng};

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        })
        .unwrap_or(0)
}

fn gelf(token: &str, msg: &str) -> String {
    format!(
        r#"{{"version":"1.1","host":"fuzz","short_message":"{msg}","_ingest_token":"{token}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_listener_refuses_and_counts_bad_input_and_keeps_serving() {
    let tmp = crate::harness::open_tempdir();
    let (http_port, gelf_port) = (free_port(), free_port());
    let server = Peng::start(&tmp.path().join("data"), http_port, gelf_port).await;
    let url = server.url();
    let admin = server.admin_token();
    let team = peng(&url, &admin, &["team", "create", "books", "--json"]).await;
    let team: serde_json::Value = serde_json::from_str(&team.stdout).expect("team json");
    let ingest = team["ingest_token"].as_str().expect("ingest").to_string();
    let gelf_addr = format!("127.0.0.1:{gelf_port}");
    let pid = server.pid();
    let rss_before = vm_hwm_kib(pid);

    // UDP: garbage, invalid JSON, a truncated chunk header, a decompression bomb, chunks with
    // a bad sequence, and a flood of chunk sets that never complete.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let send = |b: &[u8]| {
        udp.send_to(b, &gelf_addr).expect("send");
    };
    send(b"\x00\x01\x02 not gelf at all");
    send(b"{\"version\":\"1.1\",\"host\":");
    send(&[0x1e, 0x0f, 1, 2, 3]);
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; 32 << 20]).expect("gzip");
    let bomb = bomb.finish().expect("gzip");
    assert!(
        bomb.len() < 60_000,
        "the bomb fits a datagram: {}",
        bomb.len()
    );
    send(&bomb);
    let mut bad_seq = vec![0x1e, 0x0f];
    bad_seq.extend_from_slice(&[9; 8]);
    bad_seq.extend_from_slice(&[5, 2]);
    bad_seq.extend_from_slice(b"xx");
    send(&bad_seq);
    let filler = vec![b'a'; 8000];
    for id in 0u64..12_000 {
        let mut chunk = vec![0x1e, 0x0f];
        chunk.extend_from_slice(&id.to_be_bytes());
        chunk.extend_from_slice(&[0, 2]);
        chunk.extend_from_slice(&filler);
        send(&chunk);
        if id % 500 == 0 {
            // Let the listener keep up; this is a flood, not a measurement of socket buffers.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // TCP: invalid JSON, a frame far over the frame limit, then a good message on the same
    // connection, which must still be accepted.
    let mut tcp = TcpStream::connect(&gelf_addr).expect("tcp");
    tcp.write_all(b"{broken json\0").expect("write");
    tcp.write_all(&vec![b'x'; 3 << 20]).expect("write");
    tcp.write_all(b"\0").expect("write");
    tcp.write_all(gelf(&ingest, "tcpsurvivor").as_bytes())
        .expect("write");
    tcp.write_all(b"\0").expect("write");
    drop(tcp);

    // HTTP: invalid JSON, an unknown encoding, a body over the limit, no token.
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let post = |body: Vec<u8>, enc: Option<&'static str>| {
        let mut req = http
            .post(format!("{url}/gelf"))
            .header("x-peng-ingest-token", ingest.clone())
            .body(body);
        if let Some(e) = enc {
            req = req.header("content-encoding", e);
        }
        req.send()
    };
    let r = post(b"{nope".to_vec(), None).await.expect("post");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json error body");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("json"),
        "{body}"
    );
    assert_eq!(
        post(gelf(&ingest, "x").into_bytes(), Some("br"))
            .await
            .expect("post")
            .status(),
        400
    );
    // A body over the limit is refused from its declared length, before it is sent (a client
    // that keeps writing after the answer may see the connection closed).
    let mut raw = TcpStream::connect(server.http).expect("connect http");
    let head = format!(
        "POST /gelf HTTP/1.1\r\nHost: peng\r\nContent-Length: {}\r\nX-Peng-Ingest-Token: {ingest}\r\n\r\n",
        9 << 20
    );
    raw.write_all(head.as_bytes()).expect("write head");
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = [0u8; 64];
    let n = std::io::Read::read(&mut raw, &mut answer).expect("read answer");
    let status = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    drop(raw);
    let anon = http
        .post(format!("{url}/gelf"))
        .body(r#"{"version":"1.1","host":"h","short_message":"m"}"#)
        .send()
        .await;
    assert_eq!(anon.expect("post").status(), 401);

    // Everything was counted where an operator looks.
    let metrics = eventually(
        "the rejections to be counted",
        Duration::from_secs(30),
        || async {
            let text = http
                .get(format!("{url}/metrics"))
                .bearer_auth(&admin)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let d = |component: &str, reason: &str| {
                metric(
                    &text,
                    "peng_component_discarded_events_total",
                    &[("component", component), ("reason", reason)],
                )
            };
            let evicted_or_expired =
                d("gelf_udp", "chunk_evicted") + d("gelf_udp", "chunk_timeout");
            (d("gelf_udp", "invalid_json") >= 2
                && d("gelf_udp", "chunk_truncated") >= 1
                && d("gelf_udp", "too_large") >= 1
                && d("gelf_udp", "chunk_bad_sequence") >= 1
                && evicted_or_expired >= 1
                && d("gelf_tcp", "invalid_json") >= 1
                && d("gelf_tcp", "frame_too_long") >= 1
                && d("gelf_http", "invalid_json") >= 1
                && d("gelf_http", "bad_encoding") >= 1
                && d("gelf_http", "no_token") >= 1)
                .then_some(text)
        },
    )
    .await;
    eprintln!(
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("discarded"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Admins see the same counters and the refused messages in the web UI; teams do not.
    let platform = |token: String| {
        http.get(format!("{url}/platform"))
            .header("cookie", format!("peng_token={token}"))
            .send()
    };
    let page = platform(admin.clone()).await.expect("platform page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("peng_component_discarded_events_total") && html.contains("chunk_truncated"),
        "{html}"
    );
    let team_token = team["token"].as_str().expect("team token").to_string();
    assert_eq!(
        platform(team_token).await.expect("platform page").status(),
        403
    );

    // The listeners still work: a good message on each transport is stored.
    send(gelf(&ingest, "udpsurvivor").as_bytes());
    let ok = http
        .post(format!("{url}/gelf"))
        .header("x-peng-ingest-token", &ingest)
        .body(gelf(&ingest, "httpsurvivor"))
        .send()
        .await;
    assert_eq!(ok.expect("post").status(), 202);
    for word in ["udpsurvivor", "tcpsurvivor", "httpsurvivor"] {
        crate::wait_found(&url, &admin, word, word).await;
    }

    // Incomplete chunk sets are bounded (64 MiB by default): 12,000 × 8 KB sent must not all
    // have been kept.
    let rss_after = vm_hwm_kib(pid);
    eprintln!("peak RSS {rss_before} KiB before, {rss_after} KiB after the flood");
    assert!(
        rss_after < rss_before + 200 * 1024,
        "memory grew beyond the limits: {rss_before} -> {rss_after} KiB"
    );
    let log = server.server_log();
    server.stop().await;
    assert!(!log.contains("panicked"), "peng serve panicked:\n{log}");
}
