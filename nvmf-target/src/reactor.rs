//! The reactor: one pinned thread per core, polling its connections and its backend queues in
//! a single run-to-completion loop.
//!
//! Ownership: a reactor owns its poll group outright — the connections placed on it (each with
//! its preallocated request pool and buffers), one backend queue per bdev, its epoll set and its
//! statistics (it is their only writer). Nothing on the I/O path is shared with other threads,
//! so the loop takes no lock and makes no blocking call. Other threads reach it only through its
//! message queue (new connections from the acceptor) and its eventfd (wake-ups); both are
//! checked once per iteration with a non-blocking try. Cross-reactor effects on controllers
//! (teardown of an association whose admin queue lives elsewhere) come through the controller's
//! `failed` flag, checked at the timer tick (every `keep_alive.check_interval_ms` / 10, at most
//! 10 ms).
//!
//! One iteration: drain messages; find readable sockets (`epoll_wait` with zero timeout, or a
//! plain non-blocking `recv` on each connection when the reactor has few, see `SocketPoll`); let
//! each readable connection parse and execute every complete PDU in its receive buffer; reap
//! backend completions and turn them into responses; flush each connection's batched output in
//! one write; account the iteration as busy or idle.

use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::{epoll, Timespec};
use rustix::fd::OwnedFd;

use crate::config::{IdlePolicy, SocketPoll};
use crate::pollgroup::{Ctx, ReqTag};
use crate::shared::{Msg, Shared};
use crate::tcp::Conn;
use crate::trace::{Tracer, TP_POLL_BUSY, TP_QPAIR_DESTROY};

/// Up to this many connections, `SocketPoll::Auto` polls with recv instead of epoll.
const DIRECT_RECV_MAX: usize = 8;

/// epoll user data of the wake eventfd (connection slots are < 65536).
const WAKE_TOKEN: u64 = u64::MAX;

pub(crate) struct Reactor {
    index: usize,
    rx: Receiver<Msg>,
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
    conns: Vec<Option<Conn>>,
    gens: Vec<u32>,
    free: Vec<usize>,
    /// Occupied slots, so the per-iteration sweep touches live connections only.
    active: Vec<usize>,
    ctx: Ctx,
    shared: Arc<Shared>,
    events: Vec<epoll::Event>,
    completions: Vec<(u64, Result<(), crate::backend::BdevError>)>,
    /// The wake eventfd fired: drain the message queue on the next iteration.
    woken: bool,
    /// NVMe/RDMA connections (they take their slots from `free` too).
    #[cfg(feature = "rdma")]
    rdma: crate::rdma::ReactorRdma,
}

impl Reactor {
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        rx: Receiver<Msg>,
        trace: Option<trace_ring::ReactorWriters>,
    ) -> std::io::Result<Reactor> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = shared.links[index].wake.clone();
        epoll::add(
            &epoll,
            &*wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN,
        )?;
        let depth = shared.config.limits.max_queue_depth as usize * 4;
        let bdevs = shared
            .bdevs
            .iter()
            .map(|b| b.clone().open_queue(depth))
            .collect();
        let max = shared.config.limits.max_connections_per_reactor as usize;
        let core = shared.config.cores.get(index).map_or(0, |c| c.0);
        Ok(Reactor {
            index,
            rx,
            epoll,
            wake,
            conns: (0..max).map(|_| None).collect(),
            gens: vec![0; max],
            free: (0..max).rev().collect(),
            active: Vec::with_capacity(max),
            ctx: Ctx::new(shared.env.clone(), core, bdevs, Tracer::new(trace)),
            shared,
            events: Vec::with_capacity(256),
            completions: Vec::with_capacity(1024),
            woken: false,
            #[cfg(feature = "rdma")]
            rdma: crate::rdma::ReactorRdma::new(),
        })
    }

    pub fn run(&mut self) {
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let tick = Duration::from_millis(
            u64::from(self.shared.config.keep_alive.check_interval_ms / 10).clamp(1, 10),
        );
        let idle = self.shared.config.idle;
        let socket_poll = self.shared.config.socket_poll;
        let mut next_tick = Instant::now() + tick;
        let mut idle_polls: u32 = 0;
        let mut iter: u32 = 0;
        let mut last = Instant::now();
        if let Some(core) = self.shared.config.cores.get(self.index) {
            self.ctx.trace.attach(core.0 as u32);
        }
        let mut last_tsc = self.ctx.trace.refresh();
        loop {
            self.ctx.now = last;
            iter = iter.wrapping_add(1);
            let mut work = false;
            if self.shared.is_shutting_down() {
                break;
            }
            // Messages (new connections, bdevs) are rare: look every few iterations, the
            // channel's try_recv is a visible share of an idle iteration otherwise.
            // (At once after the wake eventfd fired in epoll, so a sleeping reactor adopts a new
            // connection before it sleeps again.)
            if iter % crate::tcp::SLOW_POLL_EVERY == 0 || std::mem::take(&mut self.woken) {
                work |= self.drain_messages();
            }

            // Sleep in epoll only under the sleep policy, after enough empty polls.
            let timeout = match idle {
                IdlePolicy::Sleep {
                    after_idle_polls,
                    max_sleep_us,
                } if idle_polls >= after_idle_polls => Timespec {
                    tv_sec: 0,
                    tv_nsec: i64::from(max_sleep_us.min(999_999)) * 1000,
                },
                _ => zero,
            };
            let sleeping = timeout.tv_nsec != 0;
            let direct = !sleeping
                && match socket_poll {
                    SocketPoll::Recv => true,
                    SocketPoll::Epoll => false,
                    SocketPoll::Auto => self.active.len() <= DIRECT_RECV_MAX,
                };
            if direct {
                // Few connections: a recv on each costs less than epoll_wait + recv (admin
                // queues and handshakes less often, see `Conn::poll_due`).
                for i in 0..self.active.len() {
                    let slot = self.active[i];
                    if let Some(c) = self.conns[slot].as_mut() {
                        if c.poll_due(iter) {
                            work |= c.on_readable(&mut self.ctx);
                        }
                    }
                }
            } else {
                work |= self.poll_epoll(&timeout);
            }

            #[cfg(feature = "rdma")]
            {
                work |= self.rdma.poll(&mut self.free, &mut self.ctx);
            }
            work |= self.poll_backends();

            // The clock only feeds millisecond timers (keep-alive, handshake and drain
            // deadlines, the tick): while polling, read it every SLOW_POLL_EVERY-th iteration
            // (microseconds stale at most; `clock_gettime` is ~58 ns, a tenth of an idle
            // iteration), and after every iteration that may have slept in epoll.
            let now = if sleeping || iter % crate::tcp::SLOW_POLL_EVERY == 0 {
                Instant::now()
            } else {
                last
            };
            let ticking = now >= next_tick;
            if ticking {
                next_tick = now + tick;
                #[cfg(feature = "rdma")]
                self.rdma.tick(&mut self.ctx);
            }
            let mut i = 0;
            while i < self.active.len() {
                let slot = self.active[i];
                let mut closed = false;
                if let Some(c) = self.conns[slot].as_mut() {
                    if c.wants_flush() {
                        work |= c.flush(&mut self.ctx);
                    }
                    if ticking {
                        c.tick(&mut self.ctx);
                    }
                    closed = c.is_closed();
                }
                if closed {
                    self.remove(slot);
                } else {
                    i += 1;
                }
            }

            // One TSC read per iteration: it closes this one and stamps the next one's records.
            let tsc = self.ctx.trace.refresh();
            let ticks = tsc.wrapping_sub(last_tsc);
            self.ctx.trace.with(|w| {
                w.counters().poll(tsc, work, ticks);
                if work {
                    w.tp(TP_POLL_BUSY, trace_ring::NO_QPAIR, 0, ticks, 0);
                }
            });
            last_tsc = tsc;
            if work {
                idle_polls = 0;
            } else {
                idle_polls = idle_polls.saturating_add(1);
            }
            last = now;
        }
        // Shutdown: close every connection (controllers are torn down by their admin queue's
        // close), then drop the backend queues.
        while let Some(&slot) = self.active.last() {
            if let Some(c) = self.conns[slot].as_mut() {
                c.shutdown(&mut self.ctx);
            }
            self.remove(slot);
        }
        #[cfg(feature = "rdma")]
        self.rdma.shutdown(&mut self.free, &mut self.ctx);
        // The counters batched since the last poll (trace-ring stores them once per poll).
        self.ctx.trace.counters(|c| c.flush());
        let _ = self.index;
    }

    fn poll_epoll(&mut self, timeout: &Timespec) -> bool {
        let mut work = false;
        self.events.clear();
        if epoll::wait(&self.epoll, spare_capacity(&mut self.events), Some(timeout)).is_err() {
            self.events.clear();
        }
        for i in 0..self.events.len() {
            let token = self.events[i].data.u64();
            if token == WAKE_TOKEN {
                let mut b = [0u8; 8];
                let _ = rustix::io::read(&*self.wake, &mut b);
                self.woken = true;
                work = true;
                continue;
            }
            let slot = token as usize;
            if let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) {
                work |= c.on_readable(&mut self.ctx);
            }
        }
        work
    }

    fn drain_messages(&mut self) -> bool {
        let mut work = false;
        loop {
            match self.rx.try_recv() {
                Ok(Msg::NewConnection { stream, peer, id }) => {
                    if !work {
                        // Consume the wake-up so a sleeping epoll_wait is not woken for it again.
                        let mut b = [0u8; 8];
                        let _ = rustix::io::read(&*self.wake, &mut b);
                    }
                    work = true;
                    self.adopt(stream, peer, id);
                }
                #[cfg(feature = "rdma")]
                Ok(Msg::Rdma(m)) => {
                    if !work {
                        let mut b = [0u8; 8];
                        let _ = rustix::io::read(&*self.wake, &mut b);
                    }
                    work = true;
                    self.rdma.on_msg(m, &mut self.free, &mut self.ctx);
                }
                Ok(Msg::AddBdev { bdev, index, done }) => {
                    if self.ctx.bdevs.len() == index {
                        let depth = self.shared.config.limits.max_queue_depth as usize * 4;
                        self.ctx.bdevs.push(bdev.0.open_queue(depth));
                    }
                    let _ = done.send(());
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return work,
            }
        }
    }

    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr, id: u64) {
        let Some(slot) = self.free.pop() else {
            // Full: refuse by closing; the host sees a reset and may retry elsewhere.
            self.ctx
                .trace
                .counters(|c| c.error(trace_ring::ErrorClass::Transport));
            drop(stream);
            return;
        };
        if epoll::add(
            &self.epoll,
            &stream,
            epoll::EventData::new_u64(slot as u64),
            epoll::EventFlags::IN,
        )
        .is_err()
        {
            self.free.push(slot);
            return;
        }
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        let conn = Conn::new(stream, peer, id, slot as u16, self.gens[slot], &self.ctx);
        self.ctx.trace.counters(|c| {
            c.connection_opened();
            // Identity 0 until the Fabrics Connect names the controller and queue.
            c.qpair_bind(slot as u16, 0);
        });
        self.conns[slot] = Some(conn);
        self.active.push(slot);
    }

    fn remove(&mut self, slot: usize) {
        if let Some(pos) = self.active.iter().position(|&s| s == slot) {
            self.active.swap_remove(pos);
        }
        if let Some(mut c) = self.conns[slot].take() {
            c.release(&mut self.ctx);
            let _ = epoll::delete(&self.epoll, c.stream());
            self.ctx.trace.counters(|c| {
                c.qpair_unbind(slot as u16);
                c.connection_closed();
            });
            self.ctx
                .trace
                .tp(TP_QPAIR_DESTROY, slot as u16, 0, c.ident(), 0);
            self.gens[slot] = self.gens[slot].wrapping_add(1);
            self.free.push(slot);
        }
    }

    fn poll_backends(&mut self) -> bool {
        let mut n = 0;
        for q in self.ctx.bdevs.iter_mut() {
            if q.in_flight() == 0 {
                continue;
            }
            let done = &mut self.completions;
            n += q.poll(&mut |tag, r| done.push((tag, r)));
        }
        if !self.completions.is_empty() {
            // Completions get their own instant (the backend ran after the poll began).
            self.ctx.trace.refresh();
        }
        for i in 0..self.completions.len() {
            let (tag, r) = self.completions[i];
            self.ctx.trace.counters(|c| c.backend_complete());
            let (gen, slot, req) = match ReqTag::decode(tag) {
                ReqTag::Tcp { gen, slot, req } => (gen, usize::from(slot), req),
                #[cfg(feature = "rdma")]
                ReqTag::Rdma { gen, req } => {
                    self.rdma.on_backend_done(gen, req, r, &mut self.ctx);
                    continue;
                }
                #[cfg(not(feature = "rdma"))]
                ReqTag::Rdma { .. } => continue,
            };
            if self.gens.get(slot).map(|&g| ReqTag::gen_bits(g)) != Some(gen) {
                continue; // the connection went away meanwhile
            }
            if let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) {
                c.on_backend_done(req, r, &mut self.ctx);
            }
        }
        self.completions.clear();
        n > 0
    }
}
