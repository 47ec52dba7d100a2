//! User-space cost of the initiator's per-I/O work, without the kernel: building and encoding a
//! command capsule, framing a 4 KiB C2HData + CapsuleResp pair, recording a latency, choosing an
//! LBA, and the --verify pattern. `cargo bench -p bench-harness --bench hot_path`.

use std::hint::black_box;

use bench_harness::pattern::Pattern;
use bench_harness::rng::WyRand;
use bench_harness::stats::IoStats;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nvme_proto::tcp::{
    encode_c2h_data, encode_capsule_cmd, encode_capsule_resp, parse_pdu, C2HData, PduConfig, Role,
};
use nvme_proto::{Cid, Cqe, Nsid, SglDescriptor, Sqe, Status};

fn io_path(c: &mut Criterion) {
    let host = PduConfig {
        max_c2h_data: 1 << 20,
        ..PduConfig::initial(Role::Host)
    };
    let ctrl = PduConfig::initial(Role::Controller);
    // What a target sends back for one 4 KiB read.
    let data = vec![0xa5u8; 4096];
    let mut rx = vec![0u8; 8192];
    let h = C2HData {
        cccid: Cid(7),
        datao: 0,
        datal: 4096,
        last: true,
        success: false,
    };
    let n1 = encode_c2h_data(&h, &data, &ctrl, &mut rx).expect("c2h");
    let n2 = encode_capsule_resp(&Cqe::new(Cid(7), Status::SUCCESS), false, &mut rx[n1..])
        .expect("resp");
    rx.truncate(n1 + n2);
    let mut slot = vec![0u8; 4096];
    let mut sbuf = vec![0u8; 512];
    let mut rng = WyRand::new(1);
    let mut stats = IoStats::new();

    c.bench_function("encode_read_capsule", |b| {
        b.iter(|| {
            let sqe = Sqe::read(
                Cid(7),
                Nsid(1),
                black_box(8),
                8,
                SglDescriptor::tcp_transport(4096),
            )
            .expect("sqe");
            let n = encode_capsule_cmd(&sqe, &[], &host, &mut sbuf).expect("encode");
            black_box(&sbuf[..n]);
        })
    });
    c.bench_function("frame_c2h_4k_and_resp_no_copy", |b| {
        b.iter(|| {
            let mut off = 0;
            while let Ok(Some(v)) = parse_pdu(black_box(&rx[off..]), &host) {
                black_box(v.header);
                off += v.len;
            }
        })
    });
    c.bench_function("read_4k_user_space_per_io", |b| {
        b.iter(|| {
            let lba = rng.below(262_144) * 8;
            let sqe = Sqe::read(Cid(7), Nsid(1), lba, 8, SglDescriptor::tcp_transport(4096))
                .expect("sqe");
            let n = encode_capsule_cmd(&sqe, &[], &host, &mut sbuf).expect("encode");
            black_box(&sbuf[..n]);
            let mut off = 0;
            while let Ok(Some(v)) = parse_pdu(&rx[off..], &host) {
                if !v.data.is_empty() {
                    slot.copy_from_slice(v.data);
                }
                off += v.len;
            }
            stats.record_read(4096, black_box(12_345));
        })
    });
}

fn verify_pattern(c: &mut Criterion) {
    let p = Pattern::new(42, 512);
    let mut buf = vec![0u8; 4096];
    let mut g = c.benchmark_group("verify_pattern_4k");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("fill", |b| b.iter(|| p.fill(black_box(1000), &mut buf)));
    p.fill(1000, &mut buf);
    g.bench_function("check", |b| {
        b.iter(|| assert!(p.check(black_box(1000), &buf).is_none()))
    });
    g.finish();
}

/// The kernel floor under the initiator: one empty non-blocking `read` (what a poll that finds
/// nothing costs), and a busy-polled loopback round trip shaped like a 4 KiB read (a 72-byte
/// capsule out, 4096 + 48 bytes back) between two threads.
fn kernel_floor(c: &mut Criterion) {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let client = TcpStream::connect(addr).expect("connect");
    let (server, _) = l.accept().expect("accept");
    for s in [&client, &server] {
        s.set_nodelay(true).expect("nodelay");
        s.set_nonblocking(true).expect("nonblocking");
    }
    let mut buf = vec![0u8; 65536];
    c.bench_function("empty_nonblocking_read", |b| {
        b.iter(|| {
            let r = (&client).read(&mut buf);
            assert!(matches!(r, Err(ref e) if e.kind() == ErrorKind::WouldBlock));
        })
    });

    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let responder = std::thread::spawn(move || {
        let reply = vec![0x5au8; 4096 + 48];
        let mut b = vec![0u8; 4096];
        let mut got = 0;
        while !st.load(Ordering::Relaxed) {
            match (&server).read(&mut b) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    while got >= 72 {
                        got -= 72;
                        let mut off = 0;
                        while off < reply.len() {
                            match (&server).write(&reply[off..]) {
                                Ok(n) => off += n,
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                                Err(_) => return,
                            }
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    });
    let cmd = [0u8; 72];
    c.bench_function("loopback_round_trip_72b_out_4k_back", |b| {
        b.iter(|| {
            (&client).write_all(&cmd).expect("send");
            let mut need = 4096 + 48;
            while need > 0 {
                match (&client).read(&mut buf[..need]) {
                    Ok(n) => need -= n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("recv: {e}"),
                }
            }
        })
    });
    stop.store(true, Ordering::Relaxed);
    drop(client);
    let _ = responder.join();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(20);
    targets = io_path, verify_pattern, kernel_floor
}
criterion_main!(benches);
