//! The submission side both io_uring backends share (`uring` with 64-byte entries, `uring-cmd`
//! with 128-byte entries and 32-byte completions): one reactor's ring, the entries waiting for
//! room in it, how many are in the kernel, one `io_uring_enter` per poll, reaping and quiescing.
//! [`OpSlab`] holds the operations the entries belong to (their index is the entry's user data),
//! the finished ones waiting for the next poll, and the count in flight. What an entry means and
//! what its result does stays with the backend.
//!
//! Threading: owned by one reactor's queue, used through `&mut` only. The completion ring never
//! overflows: at most `cq_cap` entries are in the kernel at once, the rest wait in `backlog`.
#![allow(unsafe_code)]

use std::collections::VecDeque;

use io_uring::{cqueue, squeue, IoUring};

use super::{BdevError, DoneQueue};

/// One reactor's io_uring and its backlog.
pub(crate) struct RingCore<S: squeue::EntryMarker, C: cqueue::EntryMarker> {
    /// None when the ring could not be created on this reactor.
    ring: Option<IoUring<S, C>>,
    /// Entries waiting for room in the submission ring (or under the completion ring's size).
    backlog: VecDeque<S>,
    /// Entries pushed to the submission ring and not completed yet (at most `cq_cap`).
    kernel: usize,
    cq_cap: usize,
    /// `(user_data, result)` of the last reap.
    cqes: Vec<(u64, i32)>,
    /// The ring polls the device (IOPOLL): every poll with entries out must enter the kernel.
    iopoll: bool,
    /// For the one line about a failing `io_uring_enter`.
    what: String,
    said_error: bool,
}

impl<S: squeue::EntryMarker, C: cqueue::EntryMarker> RingCore<S, C> {
    /// Wraps `ring` (None: every submission fails); `depth` sizes the backlog, `what` names the
    /// backend and device in log lines.
    pub(crate) fn new(ring: Option<IoUring<S, C>>, depth: usize, what: String) -> Self {
        let cq_cap = ring
            .as_ref()
            .map_or(0, |r| r.params().cq_entries() as usize);
        let iopoll = ring.as_ref().is_some_and(|r| r.params().is_setup_iopoll());
        RingCore {
            ring,
            backlog: VecDeque::with_capacity(depth),
            kernel: 0,
            cq_cap,
            cqes: Vec::with_capacity(cq_cap),
            iopoll,
            what,
            said_error: false,
        }
    }

    /// Whether there is a ring at all.
    pub(crate) fn is_up(&self) -> bool {
        self.ring.is_some()
    }

    /// Queues `e`: into the submission ring when it and the completion ring have room and
    /// nothing waits before it, else into the backlog. Submitted by the next [`enter`](Self::enter).
    ///
    /// # Safety
    /// Every buffer `e` points at must stay valid (and, for reads, unused by anyone else) until
    /// its completion is returned by [`reap`](Self::reap): the kernel and the device write it
    /// until then.
    pub(crate) unsafe fn push(&mut self, e: S) {
        if self.backlog.is_empty() && self.kernel < self.cq_cap {
            if let Some(r) = self.ring.as_mut() {
                // SAFETY: the caller's contract above.
                if unsafe { r.submission().push(&e) }.is_ok() {
                    self.kernel += 1;
                    return;
                }
            }
        }
        self.backlog.push_back(e);
    }

    /// A poll's kernel work: the backlog into the ring, then one `io_uring_enter` if needed.
    pub(crate) fn kick(&mut self) {
        self.fill();
        self.enter(false);
    }

    /// For quiescing: the backlog into the ring, then wait for one completion.
    pub(crate) fn wait_one(&mut self) {
        self.fill();
        self.enter(true);
    }

    /// Moves backlog entries into the submission ring while both rings have room.
    pub(crate) fn fill(&mut self) {
        let Some(r) = self.ring.as_mut() else { return };
        let mut sq = r.submission();
        while self.kernel < self.cq_cap {
            let Some(e) = self.backlog.front() else { break };
            // SAFETY: entries reach the backlog only through `push`, whose caller vouched for
            // their memory until completion.
            if unsafe { sq.push(e) }.is_err() {
                break;
            }
            self.backlog.pop_front();
            self.kernel += 1;
        }
    }

    /// One `io_uring_enter` when there is something to submit, completion work to run, or (with
    /// IOPOLL) entries at the device to poll for; `wait` blocks for one completion (quiesce
    /// only, never on the fast path).
    pub(crate) fn enter(&mut self, wait: bool) {
        let Some(r) = self.ring.as_mut() else { return };
        let sq = r.submission();
        let needed =
            !sq.is_empty() || sq.taskrun() || sq.cq_overflow() || (self.iopoll && self.kernel > 0);
        drop(sq);
        let res = if wait {
            r.submit_and_wait(1)
        } else if needed {
            r.submit()
        } else {
            return;
        };
        if let Err(e) = res {
            // EAGAIN/EBUSY: kernel short of resources or completions to reap first; EINTR: a
            // signal. All retried at the next poll.
            if !matches!(
                e.raw_os_error(),
                Some(libc::EAGAIN | libc::EBUSY | libc::EINTR)
            ) && !self.said_error
            {
                self.said_error = true;
                eprintln!("ringside-tgt: {}: io_uring_enter failed: {e}", self.what);
            }
        }
    }

    /// Reaps every completion; returns their `(user_data, result)`. Give the vector back with
    /// [`give_back`](Self::give_back) so the next reap does not allocate.
    pub(crate) fn reap(&mut self) -> Vec<(u64, i32)> {
        let mut out = std::mem::take(&mut self.cqes);
        out.clear();
        if let Some(r) = self.ring.as_mut() {
            for c in r.completion() {
                let c: cqueue::Entry = c.into();
                out.push((c.user_data(), c.result()));
            }
        }
        self.kernel -= out.len();
        out
    }

    /// Returns the vector [`reap`](Self::reap) handed out.
    pub(crate) fn give_back(&mut self, v: Vec<(u64, i32)>) {
        self.cqes = v;
    }

    /// Whether entries are in the kernel or waiting for it.
    pub(crate) fn busy(&self) -> bool {
        self.ring.is_some() && (self.kernel > 0 || !self.backlog.is_empty())
    }
}

/// The `poll`, `in_flight` and `quiesce` of a `BdevQueue` on a [`RingCore`] (`self.rq`) and an
/// [`OpSlab`] (`self.ops`) whose type has a `reap(&mut self)` advancing operations by their
/// completions: one kick of the ring per poll, then reap, then the finished results.
macro_rules! ring_queue_poll {
    () => {
        fn poll(&mut self, done: &mut dyn FnMut(u64, Result<(), BdevError>)) -> usize {
            self.rq.kick();
            self.reap();
            self.ops.drain(done)
        }

        fn in_flight(&self) -> usize {
            self.ops.in_flight()
        }

        fn quiesce(&mut self) {
            while self.rq.busy() {
                self.rq.wait_one();
                self.reap();
            }
        }
    };
}
pub(crate) use ring_queue_poll;

/// One queue's operations: slots indexed by `u32` (the ring entries' user data), the results
/// waiting for the next poll, and how many operations were accepted and not reported yet.
pub(crate) struct OpSlab<T> {
    ops: Vec<T>,
    free: Vec<u32>,
    ready: DoneQueue,
    outstanding: usize,
}

impl<T> OpSlab<T> {
    pub(crate) fn new(depth: usize) -> Self {
        OpSlab {
            ops: Vec::with_capacity(depth),
            free: Vec::with_capacity(depth),
            ready: DoneQueue::new(depth),
            outstanding: 0,
        }
    }

    /// Counts an operation the caller submitted (in flight until its result is drained).
    pub(crate) fn accept(&mut self) {
        self.outstanding += 1;
    }

    /// A slot for `op`; beyond the depth the reactor announced the slab grows (rare, amortised).
    pub(crate) fn alloc(&mut self, op: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.ops[i as usize] = op;
                i
            }
            None => {
                self.ops.push(op);
                (self.ops.len() - 1) as u32
            }
        }
    }

    /// The operation in slot `i`, if there is such a slot (a completion's user data).
    pub(crate) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.ops.get_mut(i as usize)
    }

    /// Reports `tag` with `r` at the next poll.
    pub(crate) fn report(&mut self, tag: u64, r: Result<(), BdevError>) {
        self.ready.push(tag, r);
    }

    /// Frees slot `i` and reports its operation `tag` with `r` at the next poll.
    pub(crate) fn finish(&mut self, i: u32, tag: u64, r: Result<(), BdevError>) {
        self.ready.push(tag, r);
        self.free.push(i);
    }

    /// Hands the waiting results to `done`; returns how many.
    pub(crate) fn drain(&mut self, done: &mut dyn FnMut(u64, Result<(), BdevError>)) -> usize {
        let n = self.ready.drain(done);
        self.outstanding -= n;
        n
    }

    /// Operations accepted and not reported yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.outstanding
    }
}

impl<T> std::ops::Index<u32> for OpSlab<T> {
    type Output = T;
    fn index(&self, i: u32) -> &T {
        &self.ops[i as usize]
    }
}

impl<T> std::ops::IndexMut<u32> for OpSlab<T> {
    fn index_mut(&mut self, i: u32) -> &mut T {
        &mut self.ops[i as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_results_drain_in_order() {
        let mut s: OpSlab<&str> = OpSlab::new(2);
        s.accept();
        s.accept();
        s.accept();
        let a = s.alloc("a");
        let b = s.alloc("b");
        assert_ne!(a, b);
        s[b] = "b2";
        assert_eq!(s[b], "b2");
        s.finish(a, 10, Ok(()));
        s.report(11, Err(BdevError::OutOfRange));
        assert_eq!(s.alloc("c"), a, "a freed slot is taken again");
        assert_eq!(s.alloc("d"), 2, "beyond the depth the slab grows");
        assert!(s.get_mut(3).is_none());
        let mut got = Vec::new();
        assert_eq!(s.drain(&mut |t, r| got.push((t, r))), 2);
        assert_eq!(got, vec![(10, Ok(())), (11, Err(BdevError::OutOfRange))]);
        assert_eq!(s.in_flight(), 1, "three accepted, two reported");
    }
}
