//! A session follows its target by name through the lifecycle (waiting, attached, gone,
//! reattached) over real trace files in a temporary directory: the snapshots say the state,
//! carry nothing of a gone instance, and a new instance starts a new analyzer.

use std::time::Duration;

use agent::attach::AttachArgs;
use agent::session::{Session, SessionOptions};
use agent_core::lifecycle::TargetState;
use trace_ring::description::ReactorDesc;
use trace_ring::{Description, Layout, TraceFile};

fn desc(core: u32) -> Description {
    Description {
        reactors: vec![ReactorDesc {
            index: 0,
            core,
            ..ReactorDesc::default()
        }],
        ..Description::default()
    }
}

fn create(dir: &std::path::Path, name: &str, core: u32) -> TraceFile {
    let layout = Layout {
        reactors: 1,
        ring_records: 64,
        qpair_slots: 4,
        stages: 0,
    };
    TraceFile::create(dir, name, std::process::id(), &desc(core), &layout).expect("create")
}

fn open(dir: &std::path::Path, name: &str) -> Session {
    let attach = AttachArgs {
        name: Some(name.into()),
        shm_dir: dir.to_path_buf(),
        ..AttachArgs::default()
    };
    let opts = SessionOptions {
        window: Duration::from_millis(100),
        kernel: false,
        ..SessionOptions::default()
    };
    Session::open(&attach, &opts).expect("open waits for a missing target")
}

fn state(s: &Session) -> TargetState {
    s.snapshot()
        .lifecycle
        .expect("a followed session has a lifecycle")
        .state
}

#[test]
fn waits_attaches_goes_and_reattaches_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), "follow");
    assert_eq!(state(&s), TargetState::Waiting);
    assert!(
        s.tick().is_none() && s.last_sample().is_none(),
        "nothing sampled"
    );

    let first = create(dir.path(), "follow", 0);
    s.tick();
    assert_eq!(
        state(&s),
        TargetState::Attached,
        "attached on the next tick"
    );
    assert!(s.last_sample().is_some(), "sampled once attached");
    std::thread::sleep(Duration::from_millis(120));
    assert!(s.tick().is_some(), "a window closes");
    let snap = s.snapshot();
    assert!(snap.window.is_some() && snap.windows_seen >= 1);
    assert_eq!(snap.target.reactors[0].core, 0);

    drop(first); // clean exit: marked exited and removed
    assert!(s.tick().is_none());
    let snap = s.snapshot();
    let life = snap.lifecycle.clone().expect("lifecycle");
    assert_eq!(life.state, TargetState::Gone);
    assert!(life.reason.contains("exited"), "{life:?}");
    assert!(
        snap.window.is_none() && snap.history.is_empty() && snap.findings.is_empty(),
        "nothing of the gone instance is served: {snap:?}"
    );
    assert_eq!(snap.target.name, "follow");

    // A new instance on another core: a new analyzer describing it.
    let _second = create(dir.path(), "follow", 1);
    s.tick();
    let snap = s.snapshot();
    let life = snap.lifecycle.clone().expect("lifecycle");
    assert_eq!((life.state, life.attachments), (TargetState::Reattached, 2));
    assert_eq!(snap.windows_seen, 0, "windows start again");
    assert_eq!(
        snap.target.reactors[0].core, 1,
        "the new instance's reactors"
    );
}

#[test]
fn a_truncated_file_is_gone_and_a_replacement_is_reattached_without_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = create(dir.path(), "cut", 0);
    let mut s = open(dir.path(), "cut");
    assert_eq!(state(&s), TargetState::Attached);
    std::fs::OpenOptions::new()
        .write(true)
        .open(first.path())
        .expect("open")
        .set_len(4096)
        .expect("truncate");
    s.tick();
    let life = s.snapshot().lifecycle.expect("lifecycle");
    assert_eq!(life.state, TargetState::Gone);
    assert!(life.reason.contains("truncated"), "{life:?}");
    first.abandon();

    // A new file renamed over the old name while attached: picked up on the same tick.
    let other = tempfile::tempdir().expect("tempdir");
    let dir2 = tempfile::tempdir().expect("tempdir");
    let a = create(dir2.path(), "swap", 0);
    let mut s = open(dir2.path(), "swap");
    assert_eq!(state(&s), TargetState::Attached);
    let b = create(other.path(), "swap", 2);
    std::fs::rename(b.path(), a.path()).expect("rename over");
    s.tick();
    let snap = s.snapshot();
    assert_eq!(state(&s), TargetState::Reattached);
    assert_eq!(snap.target.reactors[0].core, 2, "reading the new instance");
    a.abandon();
    b.abandon();
}
