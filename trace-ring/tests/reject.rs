//! A reader given a bad file gets a clear error, never a crash; a producer never clobbers a live
//! or foreign file and reclaims stale ones.

mod common;

use std::mem::offset_of;
use std::path::{Path, PathBuf};

use common::{description, layout};
use trace_ring::layout::Header;
use trace_ring::{Error, Start, TraceFile, TraceReader};

/// A valid trace file copied to `dir/name` (the producer is dropped, so the copy is stable).
fn valid_copy(dir: &Path, name: &str) -> PathBuf {
    let src = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(
        src.path(),
        "src",
        std::process::id(),
        &description(2),
        &layout(2, 64),
    )
    .expect("create");
    let dst = dir.join(name);
    std::fs::copy(tf.path(), &dst).expect("copy");
    dst
}

fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let mut data = std::fs::read(path).expect("read");
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).expect("write");
}

#[test]
fn valid_copy_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid_copy(dir.path(), "ringside.ok");
    let r = TraceReader::open(&p).expect("a byte-exact copy is valid");
    assert_eq!(r.reactors(), 2);
}

#[test]
fn other_major_version_names_both_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid_copy(dir.path(), "ringside.v2");
    patch(&p, offset_of!(Header, abi_major), &2u16.to_le_bytes());
    patch(&p, offset_of!(Header, abi_minor), &7u16.to_le_bytes());
    let e = TraceReader::open(&p).expect_err("major 2 must be refused");
    assert!(
        matches!(
            e,
            Error::Version {
                found_major: 2,
                found_minor: 7,
                supported_major: 1,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("2.7") && msg.contains(&format!("1.{}", trace_ring::layout::ABI_MINOR)),
        "message names both versions: {msg}"
    );
}

#[test]
fn newer_minor_version_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid_copy(dir.path(), "ringside.minor");
    patch(&p, offset_of!(Header, abi_minor), &9u16.to_le_bytes());
    let r = TraceReader::open(&p).expect("same major, newer minor");
    assert_eq!(r.header().abi_minor, 9);
}

#[test]
fn truncated_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid_copy(dir.path(), "ringside.trunc");
    let len = std::fs::metadata(&p).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open");
    f.set_len(len - 4096).expect("truncate");
    let e = TraceReader::open(&p).expect_err("truncated");
    assert!(
        matches!(e, Error::Truncated { expected, actual, .. } if expected == len && actual == len - 4096),
        "{e:?}"
    );
}

#[test]
fn zero_length_and_short_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("ringside.empty");
    std::fs::write(&p, b"").expect("write");
    let e = TraceReader::open(&p).expect_err("empty");
    assert!(matches!(e, Error::TooSmall { len: 0, .. }), "{e:?}");
    assert!(e.to_string().contains("too small"), "{e}");
    std::fs::write(&p, b"RINGSIDE").expect("write");
    assert!(matches!(
        TraceReader::open(&p),
        Err(Error::TooSmall { len: 8, .. })
    ));
}

#[test]
fn garbage_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("ringside.garbage");
    let junk: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&p, &junk).expect("write");
    let e = TraceReader::open(&p).expect_err("garbage");
    assert!(matches!(e, Error::BadMagic { .. }), "{e:?}");
    // Right magic, garbage after it.
    let mut junk2 = junk.clone();
    junk2[..8].copy_from_slice(b"RINGSIDE");
    std::fs::write(&p, &junk2).expect("write");
    let e = TraceReader::open(&p).expect_err("garbage after the magic");
    assert!(
        matches!(
            e,
            Error::Endian { .. } | Error::Version { .. } | Error::Corrupt { .. }
        ),
        "{e:?}"
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let e = TraceReader::open("/nonexistent/ringside.x").expect_err("missing");
    assert!(matches!(e, Error::Io { op: "open", .. }), "{e:?}");
}

fn expect_corrupt(field_offset: usize, value: &[u8], needle: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid_copy(dir.path(), "ringside.bad");
    patch(&p, field_offset, value);
    match TraceReader::open(&p) {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(
                reason.contains(needle),
                "reason {reason:?} should mention {needle:?}"
            )
        }
        other => panic!("expected a corrupt-header error mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn offsets_pointing_outside_are_refused() {
    expect_corrupt(
        offset_of!(Header, rings_offset),
        &(1u64 << 40).to_le_bytes(),
        "rings",
    );
    expect_corrupt(
        offset_of!(Header, counters_offset),
        &(1u64 << 40).to_le_bytes(),
        "counters",
    );
    expect_corrupt(
        offset_of!(Header, counters_stride),
        &u64::MAX.to_le_bytes(),
        "counters",
    );
    expect_corrupt(
        offset_of!(Header, ring_stride),
        &(u64::MAX - 7).to_le_bytes(),
        "overflow",
    );
    expect_corrupt(
        offset_of!(Header, desc_len),
        &(1u64 << 20).to_le_bytes(),
        "description",
    );
    expect_corrupt(
        offset_of!(Header, desc_offset),
        &0u64.to_le_bytes(),
        "overlaps",
    );
    expect_corrupt(
        offset_of!(Header, ring_records),
        &1000u64.to_le_bytes(),
        "ring size",
    );
    expect_corrupt(
        offset_of!(Header, ring_records),
        &(1u64 << 14).to_le_bytes(),
        "ring stride",
    );
    expect_corrupt(
        offset_of!(Header, reactors),
        &0u32.to_le_bytes(),
        "reactor count",
    );
    expect_corrupt(
        offset_of!(Header, record_size),
        &48u32.to_le_bytes(),
        "record size",
    );
    expect_corrupt(
        offset_of!(Header, hist_buckets),
        &100u32.to_le_bytes(),
        "histogram",
    );
    expect_corrupt(
        offset_of!(Header, file_size),
        &100u64.to_le_bytes(),
        "file size",
    );
    expect_corrupt(
        offset_of!(Header, qpair_slots),
        &1000u32.to_le_bytes(),
        "counters",
    );
}

#[test]
fn wrong_endian_tag_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid_copy(dir.path(), "ringside.be");
    patch(
        &p,
        offset_of!(Header, endian_tag),
        &0x0A0B_0C0Du32.to_be_bytes(),
    );
    assert!(matches!(TraceReader::open(&p), Err(Error::Endian { .. })));
}

#[test]
fn corrupt_description_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid_copy(dir.path(), "ringside.desc");
    patch(&p, 4096, b"X");
    let e = TraceReader::open(&p).expect_err("checksum");
    assert!(
        matches!(e, Error::Description { .. }) && e.to_string().contains("checksum"),
        "{e}"
    );
}

/// A pid that existed and is gone (a reaped child).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    assert!(
        !trace_ring::pid_alive(pid),
        "reaped child {pid} still alive?"
    );
    pid
}

#[test]
fn stale_file_of_dead_process_is_reclaimed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = dead_pid();
    let crashed = TraceFile::create(dir.path(), "stale", dead, &description(1), &layout(1, 16))
        .expect("create as the dead pid");
    let path = crashed.path().to_path_buf();
    crashed.abandon(); // as if it crashed: file left behind, state running
    assert!(path.exists());
    let listed = TraceReader::list_in(dir.path()).expect("list");
    assert_eq!(listed.len(), 1);
    assert!(
        !listed[0].alive,
        "a dead producer's file is listed as not alive"
    );

    let me = std::process::id();
    let tf = TraceFile::create(dir.path(), "stale", me, &description(1), &layout(1, 32))
        .expect("stale file is reclaimed");
    assert_eq!(tf.reclaimed_stale_pid(), Some(dead));
    let r = TraceReader::open(tf.path()).expect("open new");
    assert_eq!(r.header().pid, me);
    assert_eq!(
        r.geometry().ring_records,
        32,
        "the new file, not the stale one"
    );
    drop(tf);
    assert!(!path.exists());
}

#[test]
fn live_file_is_not_clobbered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let me = std::process::id();
    let first =
        TraceFile::create(dir.path(), "live", me, &description(1), &layout(1, 16)).expect("create");
    let e = TraceFile::create(dir.path(), "live", me, &description(1), &layout(1, 16))
        .expect_err("a live owner keeps its file");
    assert!(matches!(e, Error::InUse { pid, .. } if pid == me), "{e:?}");
    assert!(e.to_string().contains("running process"), "{e}");
    // The first producer's file is intact.
    TraceReader::open(first.path()).expect("still valid");
    // Once it exits cleanly the name is free again.
    drop(first);
    TraceFile::create(dir.path(), "live", me, &description(1), &layout(1, 16)).expect("re-create");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        names.is_empty(),
        "no temporary files left behind: {names:?}"
    );
}

#[test]
fn foreign_file_is_not_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("ringside.foreign");
    std::fs::write(&p, b"someone else's data").expect("write");
    let e = TraceFile::create(
        dir.path(),
        "foreign",
        std::process::id(),
        &description(1),
        &layout(1, 16),
    )
    .expect_err("foreign");
    assert!(matches!(e, Error::Foreign { .. }), "{e:?}");
    assert_eq!(std::fs::read(&p).expect("read"), b"someone else's data");
}

#[test]
fn hostile_ring_heads_do_not_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid_copy(dir.path(), "ringside.heads");
    let g = *TraceReader::open(&p).expect("open").geometry();
    let head0 = g.rings_offset as usize;
    let head1 = (g.rings_offset + g.ring_stride) as usize;
    patch(&p, head0, &u64::MAX.to_le_bytes());
    patch(&p, head1, &(1u64 << 40).to_le_bytes());
    let r = TraceReader::open(&p).expect("heads are runtime data, not validated at open");
    for reactor in 0..2 {
        let mut c = r.cursor(reactor, Start::Oldest).expect("cursor");
        let mut out = Vec::new();
        let st = c.poll(&mut out);
        assert!(
            out.len() < g.ring_records as usize,
            "at most one ring's worth: {st:?}"
        );
        // The head cannot be trusted to move forward; further polls stay quiet and bounded.
        out.clear();
        assert_eq!(c.poll(&mut out).records, 0);
    }
}
