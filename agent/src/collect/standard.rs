//! The standard set of system collectors for a target process, in the order they run after the
//! trace-ring collector: procfs (resolves reactor thread ids for the others), perf, netdev,
//! rdma (ports under `/sys/class/infiniband`), block, numa_maps.

use super::block::BlockCollector;
use super::netdev::NetdevCollector;
use super::numa_maps::NumaMapsCollector;
use super::perf::PerfCollector;
use super::procfs::ProcfsCollector;
use super::rdma::RdmaCollector;
use super::Collector;

/// procfs, perf, netdev, rdma, block and numa_maps collectors for process `pid`.
pub fn standard(pid: u32) -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(ProcfsCollector::new(pid)),
        Box::new(PerfCollector::new(pid)),
        Box::new(NetdevCollector::new()),
        Box::new(RdmaCollector::new()),
        Box::new(BlockCollector::new()),
        Box::new(NumaMapsCollector::new(pid)),
    ]
}
