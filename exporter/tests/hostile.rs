//! The HTTP endpoint against hostile clients: slow readers, a connection flood, garbage, huge
//! headers, half-sent requests. Through all of it the server keeps answering `/healthz` and
//! `/metrics` in full, and its thread count and memory stay bounded.
//!
//! Everything runs in this process (the server is a thread here), so `/proc/self/status`
//! measures the server. The tests in this file take one lock so that thread counts are not
//! disturbed by each other.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use agent_core::sample::{ReactorInfo, TargetInfo};
use agent_core::window::{QpairWindow, ReactorWindow, Window};
use agent_core::{Hist, Snapshot};
use exporter::{Exporter, ServeOptions, ServerHandle};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A snapshot with `qpairs` busy qpairs (each with a latency histogram), so `/metrics` is large.
fn big_snapshot(qpairs: u16, end_s: u64) -> Snapshot {
    let mut lat = Hist::empty();
    for v in [900, 4_000, 20_000, 75_000, 300_000, 2_000_000] {
        lat.record(v);
    }
    let reactors = 4u32;
    Snapshot {
        t_ns: end_s * 1_000_000_000,
        target: TargetInfo {
            name: "hostile".into(),
            reactors: (0..reactors)
                .map(|i| ReactorInfo {
                    index: i,
                    core: i,
                    tid: None,
                })
                .collect(),
            ..TargetInfo::default()
        },
        window: Some(Window {
            start_ns: (end_s - 1) * 1_000_000_000,
            end_ns: end_s * 1_000_000_000,
            reactors: (0..reactors)
                .map(|i| ReactorWindow {
                    index: i,
                    core: i,
                    completions: 1000,
                    read_iops: 1000.0,
                    latency: lat.clone(),
                    ..ReactorWindow::default()
                })
                .collect(),
            qpairs: (0..qpairs)
                .map(|q| QpairWindow {
                    reactor: u32::from(q) % reactors,
                    slot: q,
                    completions: 10,
                    outstanding: 3,
                    latency: lat.clone(),
                    ..QpairWindow::default()
                })
                .collect(),
            ..Window::default()
        }),
        windows_seen: end_s,
        ..Snapshot::default()
    }
}

fn start(qpairs: u16) -> (Arc<Exporter>, ServerHandle) {
    let shared = Arc::new(Exporter::new());
    shared.update(&big_snapshot(qpairs, 10));
    let opts = ServeOptions {
        max_connections: 64,
        header_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(3),
        max_request_bytes: 8 * 1024,
        evict_after: Duration::from_millis(500),
        linger: Duration::from_millis(500),
    };
    let server = exporter::serve(
        "127.0.0.1:0".parse().expect("address"),
        Arc::clone(&shared),
        opts,
    )
    .expect("cannot start the server on 127.0.0.1:0");
    (shared, server)
}

/// `(status, body)` of one request; the whole response is read until the server closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no response head in {} bytes", out.len())))?;
    let status = std::str::from_utf8(&out[..head_end])
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("no status code"))?;
    let head = String::from_utf8_lossy(&out[..head_end]).to_string();
    let body = out[head_end + 4..].to_vec();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|l| l.trim().parse::<usize>().ok())
    {
        if len != body.len() {
            return Err(io::Error::other(format!(
                "Content-Length {len} but {} body bytes",
                body.len()
            )));
        }
    }
    Ok((status, body))
}

/// GET `path` until it is answered with something other than 503 (the server may be full of
/// hostile connections that are not yet old enough to evict); at most 200 tries.
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    let mut last = String::new();
    for _ in 0..200 {
        match exchange(addr, req.as_bytes()) {
            Ok((503, _)) => last = "503".into(),
            Ok(r) => return r,
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("GET {path} never answered (last: {last})");
}

fn assert_healthy(addr: SocketAddr, context: &str) {
    let (code, body) = get(addr, "/healthz");
    assert_eq!(code, 200, "/healthz {context}");
    assert_eq!(body, b"ok\n", "/healthz body {context}");
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "/metrics {context}");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("ringside_target_info{name=\"hostile\",kind=\"ringside\"} 1")
            && text.contains("ringside_exporter_connections_open "),
        "/metrics {context} is incomplete ({} bytes)",
        body.len()
    );
}

fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// The tests of this file: the test harness names each test's thread after it, and starts and
/// ends those threads while a test runs, so they are left out of [`threads`].
const TESTS: &[&str] = &[
    "slow_readers_and_a_connection_flood_leave_the_server_answering_with_bounded_threads_and_memory",
    "garbage_huge_headers_and_half_requests_get_an_error_and_the_server_lives_on",
    "shutdown_stops_the_thread_and_frees_the_port",
];

/// Names of this process's threads (`comm`: the first 15 bytes of each thread's name).
fn thread_names() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("read /proc/self/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim_end().to_string())
        .collect()
}

/// Threads named like the server's.
fn http_threads() -> usize {
    thread_names()
        .iter()
        .filter(|c| *c == "ringside-http")
        .count()
}

/// Threads of this process other than the test harness's per-test threads: the main thread
/// and whatever the server started (a thread per connection would show here).
fn threads() -> u64 {
    thread_names()
        .iter()
        .filter(|c| {
            !TESTS
                .iter()
                .any(|t| c.len() >= 15 && t.starts_with(c.as_str()))
        })
        .count() as u64
}

fn rss_kib() -> u64 {
    proc_status("VmRSS:")
}

/// Waits until the server has at most `n` connections open (hostile ones time out).
fn wait_open_at_most(shared: &Exporter, n: u64) {
    let until = Instant::now() + Duration::from_secs(60);
    while shared.http.open.load(Ordering::Relaxed) > n {
        assert!(
            Instant::now() < until,
            "the server still holds {} connections a minute later",
            shared.http.open.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn slow_readers_and_a_connection_flood_leave_the_server_answering_with_bounded_threads_and_memory()
{
    let _g = serial();
    // ~4096 qpair histograms: a /metrics body of several MB, more than a socket buffers.
    let (shared, server) = start(4096);
    let addr = server.local_addr();
    assert_healthy(addr, "at start");
    let body_len = get(addr, "/metrics").1.len();
    assert!(
        body_len > 4 << 20,
        "premise: the body ({body_len} bytes) must exceed socket buffers"
    );
    let threads_before = threads();
    let rss_before = rss_kib();

    // Slow readers: ask for /metrics, never read.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).expect("connect a slow reader");
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .expect("send the slow reader's request");
        slow.push(s);
    }
    // Keep updating meanwhile, as the sampling thread would.
    shared.update(&big_snapshot(4096, 11));
    assert_healthy(addr, "with 20 slow readers");
    assert!(
        threads() <= threads_before + 1,
        "threads grew from {threads_before} to {} with slow readers",
        threads()
    );

    // A flood: 200 connections at once that send nothing.
    let mut flood = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            flood.push(s);
        }
    }
    assert!(flood.len() >= 150, "only {} flood connections", flood.len());
    assert_healthy(addr, "with 200 idle connections open");
    let threads_during = threads();
    assert!(
        threads_during <= threads_before + 1,
        "threads grew from {threads_before} to {threads_during} under the flood"
    );
    assert!(
        shared.http.open.load(Ordering::Relaxed) <= 64,
        "more than 64 connections open"
    );
    let refused = shared.http.rejected.load(Ordering::Relaxed);
    let dropped = shared.http.dropped.load(Ordering::Relaxed);
    assert!(
        refused + dropped >= 136,
        "200 idle connections over a limit of 64: only {refused} refused + {dropped} evicted"
    );
    // The refused ones were told so (or closed), not left hanging.
    let mut told = 0;
    for s in flood.iter_mut().take(200) {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf) {
            let head = String::from_utf8_lossy(&buf[..n]);
            if head.starts_with("HTTP/1.1 503") || head.starts_with("HTTP/1.1 408") || n == 0 {
                told += 1;
            }
        } else {
            told += 1; // reset: closed
        }
    }
    assert!(
        told >= 136,
        "only {told} of the flood heard 503/408 or saw the close"
    );

    eprintln!(
        "flood: {} connected, {refused} refused, {dropped} evicted/timed out, {told} told; \
         threads {threads_before} -> {threads_during}",
        flood.len()
    );
    drop(flood);
    drop(slow);
    wait_open_at_most(&shared, 0);
    assert_healthy(addr, "after the hostile clients left");
    let threads_after = threads();
    let rss_after = rss_kib();
    assert!(
        threads_after <= threads_before + 1,
        "threads {threads_before} -> {threads_after}"
    );
    eprintln!("body {body_len} bytes; RSS {rss_before} -> {rss_after} KiB");
    // Generous: a few copies of the multi-MB body may be alive; a copy per connection (20 slow
    // readers x several MB) or a per-connection thread stack would exceed it.
    assert!(
        rss_after <= rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    server.shutdown();
}

#[test]
fn garbage_huge_headers_and_half_requests_get_an_error_and_the_server_lives_on() {
    let _g = serial();
    let (shared, server) = start(8);
    let addr = server.local_addr();
    assert_healthy(addr, "at start");
    let threads_before = threads();

    // Pseudo-random bytes with no line feed, so they never end a head by accident.
    let mut x: u32 = 0x1234_5678;
    let noise: Vec<u8> = (0..16 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match (x & 0xff) as u8 {
                b'\n' => b'x',
                b => b,
            }
        })
        .collect();
    let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    let many_headers = format!(
        "GET /metrics HTTP/1.1\r\n{}\r\n",
        "X-Filler: 0123456789abcdef\r\n".repeat(40_000)
    );
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("noise without a line end", noise.clone(), &[431]),
        (
            "noise with a blank line",
            [&noise[..100], b"\r\n\r\n"].concat(),
            &[400],
        ),
        ("nul bytes", [&[0u8; 50][..], b"\r\n\r\n"].concat(), &[400]),
        ("only a blank line", b"\r\n\r\n".to_vec(), &[400]),
        ("a 20 KB request line", long_line.into_bytes(), &[431]),
        ("1 MB of headers", many_headers.into_bytes(), &[431]),
        (
            "a TLS client hello",
            vec![
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
            ],
            &[408],
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            &[505],
        ),
        (
            "DELETE",
            b"DELETE /metrics HTTP/1.1\r\n\r\n".to_vec(),
            &[405],
        ),
        (
            "unknown path",
            b"GET /admin HTTP/1.1\r\n\r\n".to_vec(),
            &[404],
        ),
        (
            "half a request",
            b"GET /metrics HTTP/1.1\r\nHost:".to_vec(),
            &[408],
        ),
        (
            "pipelined requests (answered once)",
            b"GET /healthz HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n".to_vec(),
            &[200],
        ),
    ];
    for (what, payload, want) in cases {
        match exchange(addr, &payload) {
            Ok((code, body)) => {
                assert!(want.contains(&code), "{what}: got {code}, want {want:?}");
                if what.starts_with("pipelined") {
                    assert_eq!(body, b"ok\n", "{what}: exactly one response");
                }
            }
            // Writing 1 MB at a server that stopped reading after 8 KiB may end in a reset
            // before the 431 is read: acceptable, as long as the server lives on.
            Err(e) if what.starts_with("1 MB") || what.starts_with("noise without") => {
                eprintln!("{what}: connection ended with {e} (accepted)")
            }
            Err(e) => panic!("{what}: {e}"),
        }
        assert_healthy(addr, &format!("after {what}"));
    }
    // A client that vanishes mid-request.
    {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /met").expect("write");
    }
    assert_healthy(addr, "after a client vanished mid-request");

    let requests = shared.http.requests();
    assert!(
        requests.get(&("other", 431)).copied().unwrap_or(0) >= 1,
        "431s are counted: {requests:?}"
    );
    wait_open_at_most(&shared, 0);
    assert!(
        threads() <= threads_before + 1,
        "threads {threads_before} -> {}",
        threads()
    );
    server.shutdown();
}

#[test]
fn shutdown_stops_the_thread_and_frees_the_port() {
    let _g = serial();
    let (_shared, server) = start(1);
    let addr = server.local_addr();
    // The server thread names itself once it runs: wait for that before counting.
    let until = Instant::now() + Duration::from_secs(30);
    while http_threads() == 0 {
        assert!(Instant::now() < until, "no ringside-http thread after 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(http_threads(), 1, "one server thread");
    let before = threads();
    server.shutdown();
    // shutdown() joins the thread, but the kernel lists an exited thread in /proc/self/task a
    // little longer than the join takes (the join wakes on the thread's tid clear, before the
    // task is released): wait for it to go, bounded.
    let until = Instant::now() + Duration::from_secs(10);
    while http_threads() != 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(http_threads(), 0, "the server thread is gone");
    assert!(threads() < before, "no other thread took its place");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "nothing listens on {addr} after shutdown"
    );
}
