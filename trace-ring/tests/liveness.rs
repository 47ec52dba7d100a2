//! A target dying in the middle of a read: what a reader sees of its mapped instance
//! (`TraceReader::liveness`) when the file is truncated, replaced by a new instance of the same
//! name, removed, marked exited, or left by a killed process; and that a truncated file is never
//! read again (a read past EOF of a mapping would raise SIGBUS).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::{description, layout};
use trace_ring::{Access, Clock, Liveness, TraceFile, TraceReader};

fn create(dir: &std::path::Path, name: &str, pid: u32) -> TraceFile {
    TraceFile::create(dir, name, pid, &description(1), &layout(1, 64)).expect("create")
}

#[test]
fn live_until_truncated_and_then_never_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = create(dir.path(), "trunc", std::process::id());
    let mut w = tf.take_reactor(0).expect("reactor");
    w.counters.poll(10, true, 5);
    let r = TraceReader::open(tf.path()).expect("open");
    assert_eq!(r.liveness(), Liveness::Live);
    assert_eq!(r.counters(0).expect("counters").totals.polls, 1);
    // Truncate under the reader (the producer never does; anyone with write access may).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(tf.path())
        .expect("open for write");
    f.set_len(4096).expect("truncate");
    assert_eq!(r.liveness(), Liveness::Truncated { len: 4096 });
    // No mapped page is touched any more: these would SIGBUS if they were.
    assert!(r.counters(0).is_none(), "counters of a truncated file");
    assert!(r.qpair_histogram(0, 0).is_none());
    assert!(!r.producer_exited());
    assert!(
        Liveness::Truncated { len: 4096 }
            .reason(1)
            .is_some_and(|s| s.contains("truncated")),
        "the reason names the truncation"
    );
    // Even growing it back does not make the reader trust it again.
    f.set_len(tf.header().file_size).expect("grow");
    assert!(r.counters(0).is_none());
    tf.abandon();
}

#[test]
fn a_new_file_at_the_same_name_is_a_replacement_and_a_removed_one_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = create(dir.path(), "repl", std::process::id());
    let r = TraceReader::open(tf.path()).expect("open");
    let path = tf.path().to_path_buf();
    // Another instance published at the same name (rename over it, as a reclaim would).
    let other = tempfile::tempdir().expect("tempdir");
    let tf2 = create(other.path(), "repl", std::process::id());
    std::fs::rename(tf2.path(), &path).expect("rename over");
    assert_eq!(r.liveness(), Liveness::Replaced);
    let r2 = TraceReader::open(&path).expect("open the new one");
    assert_ne!(r.identity(), r2.identity(), "two instances, two identities");
    assert_eq!(r2.liveness(), Liveness::Live);
    std::fs::remove_file(&path).expect("remove");
    assert_eq!(r2.liveness(), Liveness::Removed);
    tf.abandon();
    tf2.abandon();
}

#[test]
fn a_clean_exit_is_exited_and_a_killed_producer_is_dead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = create(dir.path(), "exit", std::process::id());
    let r = TraceReader::open(tf.path()).expect("open");
    drop(tf); // marks the file exited, then unlinks it
    assert_eq!(r.liveness(), Liveness::Exited);

    // A real process killed with SIGKILL while we map "its" file.
    let mut child = Command::new("sleep")
        .arg("600")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let tf = create(dir.path(), "killed", child.id());
    let r = TraceReader::open(tf.path()).expect("open");
    assert_eq!(r.liveness(), Liveness::Live);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(r.liveness(), Liveness::Dead);
    // Its counters stay readable (the pages are still there), the instance is just not live.
    assert!(r.counters(0).is_some());
    tf.abandon();
}

#[test]
fn access_sets_mode_and_group_and_the_default_is_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = create(dir.path(), "mode", std::process::id());
    let m = std::fs::metadata(tf.path()).expect("stat");
    assert_eq!(m.permissions().mode() & 0o777, 0o600, "default");
    let own_gid = {
        use std::os::unix::fs::MetadataExt;
        m.gid()
    };
    let tf2 = TraceFile::create_with_access(
        dir.path(),
        "mode2",
        std::process::id(),
        &description(1),
        &layout(1, 64),
        Clock::calibrated(),
        Access {
            mode: 0o640,
            gid: Some(own_gid),
        },
    )
    .expect("create with access");
    let m = std::fs::metadata(tf2.path()).expect("stat");
    assert_eq!(m.permissions().mode() & 0o777, 0o640);
}
