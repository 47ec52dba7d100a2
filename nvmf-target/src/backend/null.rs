//! The `null` backend: no storage; reads return zeros, writes are dropped, every operation
//! completes on the next poll. It measures the transport's ceiling. Each reactor's queue is
//! private; the bdev itself is immutable.

use std::sync::Arc;

use super::{check_range, check_ranges, Bdev, BdevError, BdevOp, BdevQueue, DoneQueue};
use crate::config::BackendKind;

/// A device of `num_blocks` blocks that stores nothing.
#[derive(Debug)]
pub struct NullBdev {
    block_size: u32,
    num_blocks: u64,
}

impl NullBdev {
    pub fn new(block_size: u32, num_blocks: u64) -> Self {
        NullBdev {
            block_size,
            num_blocks,
        }
    }
}

impl Bdev for NullBdev {
    fn kind(&self) -> BackendKind {
        BackendKind::Null
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
    fn open_queue(self: Arc<Self>, depth: usize) -> Box<dyn BdevQueue> {
        Box::new(NullQueue {
            bs: self.block_size,
            blocks: self.num_blocks,
            done: DoneQueue::new(depth),
        })
    }
}

struct NullQueue {
    bs: u32,
    blocks: u64,
    done: DoneQueue,
}

impl BdevQueue for NullQueue {
    fn submit(&mut self, tag: u64, op: BdevOp<'_>) {
        let r = match op {
            BdevOp::Read { lba, buf } => {
                check_range(self.bs, self.blocks, lba, buf.len()).map(|_| {
                    buf.fill(0);
                })
            }
            BdevOp::Write { lba, buf } => {
                check_range(self.bs, self.blocks, lba, buf.len()).map(|_| ())
            }
            BdevOp::Flush => Ok(()),
            BdevOp::WriteZeroes { lba, blocks } => match lba.checked_add(blocks) {
                Some(end) if end <= self.blocks => Ok(()),
                _ => Err(BdevError::OutOfRange),
            },
            BdevOp::Deallocate { ranges } => check_ranges(ranges, self.blocks),
        };
        self.done.push(tag, r);
    }

    fn poll(&mut self, done: &mut dyn FnMut(u64, Result<(), BdevError>)) -> usize {
        self.done.drain(done)
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }

    fn copies_on_submit(&self) -> bool {
        true
    }
}
