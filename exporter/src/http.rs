//! The HTTP endpoint: `/metrics`, `/healthz`, `/snapshot.json`, and nothing else.
//!
//! Threading: one thread (`ringside-http`) owns the listener and every connection, and drives
//! them with `poll(2)` over non-blocking sockets. Responses are cheap to build (the agent's part
//! of `/metrics` and the snapshot JSON are rendered by [`crate::Exporter::update`] on the
//! sampling thread; a request only copies them), so one thread serves every client, and a
//! client that is slow to send or never reads costs a socket and a buffer, never a thread.
//!
//! Limits, all in [`ServeOptions`]: at most `max_connections` open (when full, a new connection
//! evicts the oldest one that has been sitting on an incomplete request for `evict_after`, or
//! else gets a 503 and is closed); a request head must arrive within `header_timeout` and fit in
//! `max_request_bytes` (else 408 / 431); a response must drain within `write_timeout`. Every
//! response closes the connection (`Connection: close`), after a short lingering read so the
//! client sees the response instead of a reset. Only GET and HEAD; 404 for other paths, 405 for
//! other methods, 400 for anything unparsable. Nothing here panics on input.
//!
//! [`ServerHandle`] stops the thread on [`ServerHandle::shutdown`] or drop (within ~100 ms).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::Exporter;

/// Server limits.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Connections open at once (reading, writing or lingering). Default 64.
    pub max_connections: usize,
    /// Time from accept to a complete request head. Default 5 s.
    pub header_timeout: Duration,
    /// Time to send a whole response. Default 10 s.
    pub write_timeout: Duration,
    /// Largest request head (request line + headers) in bytes. Default 8 KiB.
    pub max_request_bytes: usize,
    /// When the limit is reached, a connection that has been reading an incomplete request for
    /// this long may be evicted to make room. Default 1 s.
    pub evict_after: Duration,
    /// After a response, how long to read and discard what the client still sends before
    /// closing (avoids a reset that would destroy the response). Default 1 s.
    pub linger: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_request_bytes: 8 * 1024,
            evict_after: Duration::from_secs(1),
            linger: Duration::from_secs(1),
        }
    }
}

/// A running server. Dropping it stops the server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits for its thread; open connections are closed.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The loop never panics on input; a panic would be a bug, and there is nothing
            // better to do with it here than to stop.
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds `listen` and serves `shared` from a new thread.
pub fn serve(
    listen: SocketAddr,
    shared: Arc<Exporter>,
    opts: ServeOptions,
) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let opts = ServeOptions {
        max_connections: opts.max_connections.max(1),
        max_request_bytes: opts.max_request_bytes.max(256),
        ..opts
    };
    let mut server = Server {
        listener,
        exporter: shared,
        opts,
        conns: Vec::new(),
        accept_paused_until: None,
    };
    let s = Arc::clone(&stop);
    let thread = thread::Builder::new()
        .name("ringside-http".into())
        .spawn(move || server.run(&s))?;
    Ok(ServerHandle {
        addr,
        stop,
        thread: Some(thread),
    })
}

enum Phase {
    /// Collecting the request head.
    Reading { buf: Vec<u8> },
    /// Sending `out[sent..]`.
    Writing {
        out: Response,
        part: usize,
        sent: usize,
    },
    /// Response sent and write side shut: discarding input until EOF or the deadline.
    Lingering { discarded: usize },
}

struct Conn {
    stream: TcpStream,
    opened: Instant,
    deadline: Instant,
    phase: Phase,
}

enum Step {
    Keep,
    Close { clean: bool },
}

struct Server {
    listener: TcpListener,
    exporter: Arc<Exporter>,
    opts: ServeOptions,
    conns: Vec<Conn>,
    /// Set after accept failed for lack of resources (EMFILE…): the listener stays readable,
    /// so it is left out of the poll set for a moment instead of spinning.
    accept_paused_until: Option<Instant>,
}

const POLL_TICK: Duration = Duration::from_millis(100);
/// Most bytes discarded while lingering.
const LINGER_MAX_BYTES: usize = 64 * 1024;

impl Server {
    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            self.expire(now);
            let listen = self.accept_paused_until.is_none_or(|t| now >= t);
            if listen {
                self.accept_paused_until = None;
            }
            let wait = self
                .conns
                .iter()
                .map(|c| c.deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(POLL_TICK)
                .min(POLL_TICK);
            let revents = match self.wait(listen, wait) {
                Ok(r) => r,
                Err(_) => {
                    // EINTR, or ENOMEM under pressure: try again shortly.
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            let now = Instant::now();
            for i in (0..self.conns.len()).rev() {
                let r = revents.get(i + 1).copied().unwrap_or(PollFlags::empty());
                if r.is_empty() {
                    continue;
                }
                if let Step::Close { clean } = self.progress(i, now) {
                    if !clean {
                        self.exporter.http.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    self.conns.swap_remove(i);
                }
            }
            if listen && revents.first().is_some_and(|r| !r.is_empty()) {
                self.accept_all(now);
            }
            self.exporter
                .http
                .open
                .store(self.conns.len() as u64, Ordering::Relaxed);
        }
    }

    fn wait(&self, listen: bool, wait: Duration) -> io::Result<Vec<PollFlags>> {
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        fds.push(PollFd::new(
            &self.listener,
            if listen {
                PollFlags::IN
            } else {
                PollFlags::empty()
            },
        ));
        for c in &self.conns {
            let events = match c.phase {
                Phase::Writing { .. } => PollFlags::OUT,
                Phase::Reading { .. } | Phase::Lingering { .. } => PollFlags::IN,
            };
            fds.push(PollFd::new(&c.stream, events));
        }
        let ts = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait.subsec_nanos()).max(1_000_000),
        };
        poll(&mut fds, Some(&ts))?;
        Ok(fds.iter().map(|f| f.revents()).collect())
    }

    /// Closes connections past their deadline: a request that never completed gets a 408.
    fn expire(&mut self, now: Instant) {
        let exporter = &self.exporter;
        self.conns.retain_mut(|c| {
            if now < c.deadline {
                return true;
            }
            match c.phase {
                Phase::Reading { .. } => {
                    best_effort(&mut c.stream, &simple(408, "request timeout\n"));
                    exporter.http.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Phase::Writing { .. } => {
                    exporter.http.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Phase::Lingering { .. } => {}
            }
            false
        });
    }

    fn accept_all(&mut self, now: Instant) {
        // Bounded so a connect flood cannot starve the connections already open.
        for _ in 0..256 {
            match self.listener.accept() {
                Ok((stream, _peer)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(_) => {
                    // Out of descriptors or memory: stop accepting for a moment.
                    self.accept_paused_until = Some(now + POLL_TICK);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, now: Instant) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        if self.conns.len() >= self.opts.max_connections {
            let victim = self
                .conns
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    matches!(c.phase, Phase::Reading { .. })
                        && now.saturating_duration_since(c.opened) >= self.opts.evict_after
                })
                .min_by_key(|(_, c)| c.opened)
                .map(|(i, _)| i);
            match victim {
                Some(i) => {
                    let mut old = self.conns.swap_remove(i);
                    best_effort(&mut old.stream, &simple(408, "request timeout\n"));
                    self.exporter.http.dropped.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    best_effort(&mut stream, &simple(503, "too many connections\n"));
                    self.exporter.http.rejected.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        self.conns.push(Conn {
            stream,
            opened: now,
            deadline: now + self.opts.header_timeout,
            phase: Phase::Reading { buf: Vec::new() },
        });
    }

    fn progress(&mut self, i: usize, now: Instant) -> Step {
        let opts = &self.opts;
        let exporter = &self.exporter;
        let Some(c) = self.conns.get_mut(i) else {
            return Step::Close { clean: false };
        };
        loop {
            match &mut c.phase {
                Phase::Reading { buf } => {
                    let mut chunk = [0u8; 4096];
                    let n = match c.stream.read(&mut chunk) {
                        Ok(0) => {
                            return Step::Close {
                                clean: buf.is_empty(),
                            }
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Step::Close { clean: false },
                    };
                    let searched = buf.len().saturating_sub(3);
                    let room = opts.max_request_bytes.saturating_sub(buf.len());
                    buf.extend_from_slice(&chunk[..n.min(room)]);
                    let out = if let Some(end) = head_end(buf, searched) {
                        Some(respond(&buf[..end], exporter))
                    } else if n > room || buf.len() >= opts.max_request_bytes {
                        exporter.http.count("other", 431);
                        Some(simple(431, "request head too large\n"))
                    } else {
                        None
                    };
                    if let Some(out) = out {
                        c.phase = Phase::Writing {
                            out,
                            part: 0,
                            sent: 0,
                        };
                        c.deadline = now + opts.write_timeout;
                    }
                }
                Phase::Writing { out, part, sent } => {
                    let Some(bytes) = out.parts.get(*part).map(Part::bytes) else {
                        let _ = c.stream.shutdown(Shutdown::Write);
                        c.phase = Phase::Lingering { discarded: 0 };
                        c.deadline = now + opts.linger;
                        continue;
                    };
                    if *sent >= bytes.len() {
                        *part += 1;
                        *sent = 0;
                        continue;
                    }
                    match c.stream.write(&bytes[*sent..]) {
                        Ok(0) => return Step::Close { clean: false },
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Step::Close { clean: false },
                    }
                }
                Phase::Lingering { discarded } => {
                    let mut chunk = [0u8; 4096];
                    match c.stream.read(&mut chunk) {
                        Ok(0) => return Step::Close { clean: true },
                        Ok(n) => {
                            *discarded += n;
                            if *discarded > LINGER_MAX_BYTES {
                                return Step::Close { clean: true };
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Step::Close { clean: true },
                    }
                }
            }
        }
    }
}

/// Writes what fits without blocking, then drops the connection (used for 503/408 on
/// connections the server will not serve).
fn best_effort(stream: &mut TcpStream, out: &Response) {
    for p in &out.parts {
        match stream.write(p.bytes()) {
            Ok(n) if n == p.bytes().len() => {}
            _ => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Index just past the blank line ending the head, searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    if let Some(p) = tail.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some(from + p + 4);
    }
    // Tolerate bare-LF clients.
    tail.windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| from + p + 2)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A piece of a response: owned, or shared with other connections (a large `/metrics` body is
/// not copied per client).
enum Part {
    Owned(Vec<u8>),
    Shared(Arc<str>),
}

impl Part {
    fn bytes(&self) -> &[u8] {
        match self {
            Part::Owned(v) => v,
            Part::Shared(s) => s.as_bytes(),
        }
    }
}

/// A whole response: status line and headers, then the body parts.
struct Response {
    parts: Vec<Part>,
}

impl Response {
    #[cfg(test)]
    fn to_vec(&self) -> Vec<u8> {
        self.parts.iter().flat_map(|p| p.bytes().to_vec()).collect()
    }
}

fn response(
    code: u16,
    content_type: &str,
    extra: &str,
    body: Vec<Part>,
    head_only: bool,
) -> Response {
    let len: usize = body.iter().map(|p| p.bytes().len()).sum();
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Connection: close\r\nCache-Control: no-store\r\n{extra}\r\n",
        reason(code),
    );
    let mut parts = vec![Part::Owned(head.into_bytes())];
    if !head_only {
        parts.extend(body);
    }
    Response { parts }
}

fn text(s: &str) -> Vec<Part> {
    vec![Part::Owned(s.as_bytes().to_vec())]
}

fn simple(code: u16, body: &str) -> Response {
    response(code, "text/plain; charset=utf-8", "", text(body), false)
}

const INDEX: &str = "ringside exporter\n\n/metrics        Prometheus text exposition\n\
/healthz        200 while the target is attached, 503 and why otherwise\n/snapshot.json  the agent's latest snapshot\n";

/// Builds the response to one request head.
fn respond(head: &[u8], exporter: &Exporter) -> Response {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let Ok(line) = std::str::from_utf8(line) else {
        exporter.http.count("other", 400);
        return simple(400, "bad request line\n");
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        exporter.http.count("other", 400);
        return simple(400, "bad request line\n");
    };
    let method_ok =
        !method.is_empty() && method.len() <= 16 && method.bytes().all(|b| b.is_ascii_uppercase());
    if !method_ok || target.is_empty() || !version.starts_with("HTTP/") {
        exporter.http.count("other", 400);
        return simple(400, "bad request line\n");
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        exporter.http.count("other", 505);
        return simple(505, "only HTTP/1.0 and HTTP/1.1\n");
    }
    // Absolute form (`GET http://host/metrics`) is legal; keep the path only.
    let path = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let class = match path {
        "/metrics" => "metrics",
        "/healthz" => "healthz",
        "/snapshot.json" => "snapshot",
        "/" => "other",
        _ => {
            exporter.http.count("other", 404);
            return simple(404, "not found: try /metrics, /healthz or /snapshot.json\n");
        }
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            exporter.http.count(class, 405);
            return response(
                405,
                "text/plain; charset=utf-8",
                "Allow: GET, HEAD\r\n",
                text("only GET and HEAD\n"),
                false,
            );
        }
    };
    let plain = "text/plain; charset=utf-8";
    if class == "healthz" {
        if let Some(why) = exporter.unhealthy() {
            exporter.http.count(class, 503);
            return response(503, plain, "", text(&format!("{why}\n")), head_only);
        }
    }
    exporter.http.count(class, 200);
    match path {
        "/metrics" => {
            let (agent, own) = exporter.metrics_parts();
            let body = vec![Part::Shared(agent), Part::Owned(own.into_bytes())];
            response(200, prometheus::TEXT_FORMAT, "", body, head_only)
        }
        "/healthz" => response(200, plain, "", text("ok\n"), head_only),
        "/snapshot.json" => {
            let body = match exporter.snapshot_json() {
                Some(json) => vec![Part::Shared(json)],
                None => text("{\"snapshot\":null,\"note\":\"no snapshot yet\"}"),
            };
            response(200, "application/json", "", body, head_only)
        }
        _ => response(200, plain, "", text(INDEX), head_only),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(out: &[u8]) -> String {
        let s = String::from_utf8_lossy(out);
        s.lines().next().unwrap_or("").to_string()
    }

    #[test]
    fn routes_methods_and_garbage() {
        let e = Exporter::new();
        let cases: &[(&[u8], &str)] = &[
            (
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "HTTP/1.1 200 OK",
            ),
            (b"GET /healthz?x=1 HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK"),
            (b"HEAD /snapshot.json HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK"),
            (
                b"GET http://h:1/healthz HTTP/1.1\r\n\r\n",
                "HTTP/1.1 200 OK",
            ),
            (b"GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (
                b"POST /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (
                b"GET /metrics HTTP/2.0\r\n\r\n",
                "HTTP/1.1 505 HTTP Version Not Supported",
            ),
            (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (
                b"\xff\xfe\x00 / HTTP/1.1\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (b"get /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (
                b"GET  /metrics HTTP/1.1\r\n\r\n",
                "HTTP/1.1 400 Bad Request",
            ),
            (b"\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ];
        for (req, want) in cases {
            let out = respond(req, &e).to_vec();
            assert_eq!(
                status(&out),
                *want,
                "for {:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn head_sends_no_body_but_the_length() {
        let e = Exporter::new();
        let out = respond(b"HEAD /healthz HTTP/1.1\r\n\r\n", &e).to_vec();
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("Content-Length: 3\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\n"), "HEAD carries no body: {s:?}");
    }

    #[test]
    fn head_end_finds_crlf_and_bare_lf() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n", 0), None);
        assert_eq!(head_end(b"ab", 5), None);
    }
}
