//! irq probe (root; skipped otherwise): loopback TCP traffic from a thread pinned to the
//! "reactor core" runs NET_RX softirqs there; only that core is accounted.

mod common;

use probes::{IrqKind, KernelEvent, ProbeConfig, ProbeKind, ProbeSet, StreamThresholds};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

const NET_RX_SOFTIRQ: u32 = 3;

#[test]
fn root_softirqs_on_the_reactor_core_are_timed_and_other_cores_ignored() {
    if !common::root_and_btf("root_softirqs_on_the_reactor_core_are_timed_and_other_cores_ignored")
    {
        return;
    }
    let cfg = ProbeConfig {
        probes: vec![ProbeKind::Irq],
        filter: probes::Filter {
            cores: vec![0],
            stream: StreamThresholds {
                irq_min_ns: Some(0),
                ..StreamThresholds::default()
            },
            ..probes::Filter::default()
        },
        ..ProbeConfig::default()
    };
    let (mut set, statuses) = ProbeSet::start(&cfg).expect("valid config");
    assert!(set.running().contains(&ProbeKind::Irq), "{statuses:?}");

    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("addr");
    let rx = thread::spawn(move || {
        common::pin_to(0);
        let (mut s, _) = l.accept().expect("accept");
        let mut buf = vec![0u8; 64 << 10];
        while s.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let tx = thread::spawn(move || {
        common::pin_to(0);
        let mut s = TcpStream::connect(addr).expect("connect");
        let chunk = vec![1u8; 64 << 10];
        for _ in 0..128 {
            s.write_all(&chunk).expect("write");
        }
    });
    tx.join().expect("sender");
    rx.join().expect("receiver");

    let events = set.poll(Duration::from_millis(200)).expect("poll");
    let agg = set.read_aggregates().expect("aggregates");
    for i in &agg.irq {
        println!(
            "cpu {} {:?} vector {}: n={} total={} ns max={} ns",
            i.cpu, i.kind, i.vector, i.time.count, i.time.total_ns, i.time.max_ns
        );
    }
    assert!(
        agg.irq.iter().all(|i| i.cpu == 0),
        "only core 0 is accounted"
    );
    let net_rx = agg
        .irq
        .iter()
        .find(|i| i.kind == IrqKind::Soft && i.vector == NET_RX_SOFTIRQ)
        .unwrap_or_else(|| panic!("no NET_RX softirq time on cpu 0: {:?}", agg.irq));
    assert!(
        net_rx.time.count > 0 && net_rx.time.total_ns > 0,
        "{net_rx:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            KernelEvent::IrqTime {
                cpu: 0,
                kind: IrqKind::Soft,
                ..
            }
        )),
        "with a zero threshold softirqs are streamed: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| matches!(e, KernelEvent::IrqTime { cpu: 0, .. })),
        "only IrqTime events on cpu 0"
    );
}
