//! A child process (this test binary re-executed) writes records and counters while the parent
//! maps the file read-only and reads them concurrently.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{check_of, description, layout, TP_SUBMIT};
use trace_ring::{Record, Start, TraceFile, TraceReader};

const CHILD_ENV: &str = "TRACE_RING_TWO_PROCESS_CHILD_DIR";
const TOTAL: u64 = 300_000;
const NAME: &str = "twoproc";
const READY: &str = "TRACE_RING_CHILD_READY";

fn record_for(i: u64) -> Record {
    Record {
        tsc: i + 1,
        tpoint: TP_SUBMIT,
        qpair: 1,
        cid: i as u32,
        arg0: i,
        arg1: check_of(i),
    }
}

/// The writer side, run in the child.
fn child(dir: &str) {
    let tf = TraceFile::create(
        std::path::Path::new(dir),
        NAME,
        std::process::id(),
        &description(1),
        &layout(1, 1024),
    )
    .expect("child: create");
    let mut w = tf.take_reactor(0).expect("child: reactor");
    w.ring.attach_current_thread(Some(0));
    // libtest may have printed "test name ... " on this line already: use a distinct marker.
    println!("{READY}");
    std::io::stdout().flush().expect("child: flush");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .expect("child: wait for go");
    for i in 0..TOTAL {
        w.ring.write(record_for(i));
        w.counters.poll(i, true, 1);
        if i % 4096 == 0 {
            std::thread::yield_now();
        }
    }
    // Dropping `tf` marks the file exited and unlinks it.
}

#[test]
fn two_process_child_writes_parent_reads() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut proc = Command::new(exe)
        .args([
            "--exact",
            "two_process_child_writes_parent_reads",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut stdout = BufReader::new(proc.stdout.take().expect("child stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        let n = stdout.read_line(&mut line).expect("read child stdout");
        assert!(n > 0, "child exited before creating its trace file");
        if line.contains(READY) {
            break;
        }
    }
    let r = TraceReader::find_in(dir.path(), NAME).expect("parent: find the child's file");
    assert_eq!(r.header().pid, proc.id(), "the file names the child's pid");
    assert!(r.producer_alive());
    let (tid, core) = r.writer_thread(0).expect("child attached its thread");
    assert!(
        std::path::Path::new(&format!("/proc/{}/task/{tid}", proc.id())).exists(),
        "writer tid {tid} is a thread of the child"
    );
    assert_eq!(core, Some(0));
    let mut cursor = r.cursor(0, Start::Oldest).expect("cursor");
    proc.stdin
        .take()
        .expect("child stdin")
        .write_all(b"go\n")
        .expect("send go");

    let (mut received, mut lost, mut next) = (0u64, 0u64, 0u64);
    let mut out = Vec::new();
    let mut last_polls = 0;
    loop {
        let exited = r.producer_exited();
        out.clear();
        let st = cursor.poll(&mut out);
        lost += st.lost;
        next += st.lost;
        for rec in &out {
            assert_eq!(*rec, record_for(next), "record {next} torn or out of order");
            next += 1;
        }
        received += out.len() as u64;
        let polls = r.counters(0).expect("counters").totals.polls;
        assert!(polls >= last_polls, "counters went backwards");
        last_polls = polls;
        if exited && cursor.backlog() == 0 {
            break;
        }
        if let Some(status) = proc.try_wait().expect("try_wait") {
            assert!(status.success(), "child failed: {status}");
            assert!(
                r.producer_exited(),
                "a cleanly exited child marks the file exited"
            );
        }
    }
    let status = proc.wait().expect("wait child");
    assert!(status.success(), "child failed: {status}");
    assert_eq!(
        received + lost,
        TOTAL,
        "every record received or counted lost"
    );
    assert!(received > 0, "the parent read nothing");
    assert_eq!(r.counters(0).expect("counters").totals.polls, TOTAL);
    assert!(
        !dir.path().join(format!("ringside.{NAME}")).exists(),
        "the child removed its file on clean exit"
    );
    eprintln!("two-process: received {received}, lost {lost}");
}
