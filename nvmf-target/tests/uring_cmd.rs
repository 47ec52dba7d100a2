//! The `uring-cmd` backend's bad input on this host (it has no NVMe device; the backend's I/O is
//! proven in the lab guest by tests/tests/lab_nvme_uring_cmd.rs): a missing `/dev/ngXnY`, a block
//! device, a character device that is not an NVMe generic one, each one line naming the fix,
//! and the target's other namespaces still served.
#![forbid(unsafe_code)]

mod common;

use std::process::Command;

use nvme_proto::identify::cns;

#[test]
fn bad_uring_cmd_devices_are_one_line_each_and_the_rest_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A block device of this machine, when there is one (loop devices exist on CI and here).
    let block = std::fs::read_dir("/dev")
        .expect("/dev")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            use std::os::unix::fs::FileTypeExt;
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("loop"))
                && std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
        });
    let missing = "/dev/ng-ringside-test9n9";
    let mut args = vec![
        "--malloc",
        "1MiB",
        "--uring-cmd",
        missing,
        "--uring-cmd",
        "/dev/null",
    ];
    let block_s = block.as_ref().map(|b| b.display().to_string());
    if let Some(b) = &block_s {
        args.extend(["--uring-cmd", b.as_str()]);
    } else {
        eprintln!("no loop block device here: the block-device case is left to the unit test");
    }
    let (mut child, addr, startup, _rx) = common::spawn_tgt_startup(dir.path(), &args);
    let lines: Vec<&String> = startup
        .iter()
        .filter(|l| l.contains("not served"))
        .collect();
    let expect = 2 + usize::from(block.is_some());
    assert_eq!(lines.len(), expect, "one line per bad device: {startup:#?}");
    let has = |nsid: u32, words: &[&str]| {
        lines.iter().any(|l| {
            l.contains(&format!("nsid {nsid}: not served")) && words.iter().all(|w| l.contains(w))
        })
    };
    assert!(
        has(2, &[missing, "does not exist", "/dev/ngXnY"]),
        "{lines:#?}"
    );
    assert!(
        has(3, &["/dev/null", "not an NVMe generic character device"]),
        "{lines:#?}"
    );
    if block.is_some() {
        assert!(has(4, &["is a block device", "--uring"]), "{lines:#?}");
    }

    // The malloc namespace is served, alone.
    let mut admin = common::Host::open(addr);
    admin.icreq(false, false);
    let c = admin.connect(common::NQN, 0, 31, 30_000, 0xffff);
    assert!(c.status.is_success(), "admin connect: {:?}", c.status);
    let cntlid = c.dw0 as u16;
    admin.enable();
    let (c, list) = admin.identify(cns::ACTIVE_NS_LIST, 0);
    assert!(c.status.is_success());
    let ids: Vec<u32> = list
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .take_while(|&n| n != 0)
        .collect();
    assert_eq!(ids, vec![1], "only the malloc namespace is active");
    let mut io = common::Host::open(addr);
    io.icreq(false, false);
    assert!(io
        .connect(common::NQN, 1, 63, 0, cntlid)
        .status
        .is_success());
    let d = common::pattern(4096, 7);
    assert!(io.write(8, &d, false).status.is_success());
    let (c, r) = io.read(8, 4096);
    assert!(c.status.is_success());
    assert_eq!(r, d, "the malloc namespace reads back what was written");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    assert!(child.wait().expect("wait").success(), "clean exit");
}
