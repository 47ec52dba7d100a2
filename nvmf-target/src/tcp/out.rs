//! A connection's output queue: PDU headers and small payloads are encoded into one byte
//! buffer; read data stays in its request's buffer and is referenced, so a poll's whole output
//! leaves in one `writev` without copying the data (zero-copy from user space).
//!
//! Owned by one connection on one reactor. A request whose data is referenced is not returned to
//! the pool until its last segment has been written; its index is then reported through
//! [`Out::take_freed`]. The host cannot reuse the slot earlier: it learns that the command is done
//! only from bytes that follow the data in this same queue.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::TcpStream;

use crate::nvm::Response;

/// Most iovecs handed to one `writev`.
const MAX_IOV: usize = 256;
/// `Seg::req` value meaning "the byte buffer".
const BUF: u16 = u16::MAX;

#[derive(Clone, Copy, Debug)]
struct Seg {
    req: u16,
    start: u32,
    end: u32,
    /// Writing this segment completes the request's output: free it then.
    last_of_req: bool,
}

/// The output queue.
#[derive(Debug)]
pub(super) struct Out {
    buf: Vec<u8>,
    segs: VecDeque<Seg>,
    /// Bytes of the front segment already written.
    front_done: usize,
    pending: usize,
    freed: Vec<u16>,
    /// Bytes ever queued / written: positions in the connection's output stream.
    queued_total: u64,
    written_total: u64,
    /// Responses (stream position of their last byte, cid, what closes their accounting) not
    /// yet fully written: the trace's `tcp.response_sent` fires, and the command is counted
    /// done, when the write carrying that byte returns.
    ends: VecDeque<(u64, u16, Response)>,
}

impl Out {
    pub(super) fn new() -> Out {
        Out {
            buf: Vec::with_capacity(64 * 1024),
            segs: VecDeque::with_capacity(1024),
            front_done: 0,
            pending: 0,
            freed: Vec::with_capacity(256),
            queued_total: 0,
            written_total: 0,
            ends: VecDeque::with_capacity(1024),
        }
    }

    /// Marks the end of response `resp` for command `cid`: everything queued so far belongs
    /// to it.
    pub(super) fn mark_end(&mut self, cid: u16, resp: Response) {
        self.ends.push_back((self.queued_total, cid, resp));
    }

    /// Whether some marked response has been fully written.
    pub(super) fn has_sent(&self) -> bool {
        self.ends
            .front()
            .is_some_and(|&(pos, _, _)| pos <= self.written_total)
    }

    /// The next marked response fully written, if any: its cid and what it was marked with.
    pub(super) fn pop_sent(&mut self) -> Option<(u16, Response)> {
        if self.has_sent() {
            self.ends.pop_front().map(|(_, cid, resp)| (cid, resp))
        } else {
            None
        }
    }

    /// Bytes queued and not yet written.
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    pub(super) fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Space for up to `max` bytes at the end of the byte buffer; write into it, then call
    /// [`commit`](Self::commit) with the number of bytes used.
    pub(super) fn reserve(&mut self, max: usize) -> &mut [u8] {
        let start = self.buf.len();
        self.buf.resize(start + max, 0);
        &mut self.buf[start..]
    }

    /// Keeps `used` bytes of the last reservation (`max` bytes long) and queues them.
    pub(super) fn commit(&mut self, max: usize, used: usize) {
        let start = self.buf.len() - max;
        self.buf.truncate(start + used);
        self.push_buf(start, start + used);
    }

    /// Copies `bytes` into the byte buffer and queues them.
    pub(super) fn push_bytes(&mut self, bytes: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.push_buf(start, self.buf.len());
    }

    fn push_buf(&mut self, start: usize, end: usize) {
        if end == start {
            return;
        }
        self.pending += end - start;
        self.queued_total += (end - start) as u64;
        if let Some(last) = self.segs.back_mut() {
            if last.req == BUF && last.end as usize == start {
                last.end = end as u32;
                return;
            }
        }
        self.segs.push_back(Seg {
            req: BUF,
            start: start as u32,
            end: end as u32,
            last_of_req: false,
        });
    }

    /// Queues `buf[start..end]` of request `req` without copying it.
    pub(super) fn push_req(&mut self, req: u16, start: usize, end: usize, last_of_req: bool) {
        self.pending += end - start;
        self.queued_total += (end - start) as u64;
        self.segs.push_back(Seg {
            req,
            start: start as u32,
            end: end as u32,
            last_of_req,
        });
    }

    /// Requests whose output has been fully written since the last call.
    pub(super) fn take_freed(&mut self) -> std::vec::Drain<'_, u16> {
        self.freed.drain(..)
    }

    /// Writes as much as the socket takes. `req_buf(i)` gives request `i`'s buffer.
    /// Returns bytes written; `Ok(0)` with output pending means the socket is full.
    pub(super) fn write_to<'a>(
        &mut self,
        stream: &TcpStream,
        req_buf: impl Fn(u16) -> &'a [u8],
    ) -> std::io::Result<usize> {
        let mut total = 0;
        while !self.segs.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            let mut want = 0;
            for (i, s) in self.segs.iter().take(MAX_IOV).enumerate() {
                let skip = if i == 0 { self.front_done } else { 0 };
                let (a, b) = (s.start as usize + skip, s.end as usize);
                let bytes = if s.req == BUF {
                    &self.buf[a..b]
                } else {
                    &req_buf(s.req)[a..b]
                };
                iov[n] = IoSlice::new(bytes);
                want += bytes.len();
                n += 1;
            }
            let wrote = if want == 0 {
                0 // only empty markers (request frees) at the front
            } else {
                // writev as a plain syscall (rustix), without glibc's cancellation wrapper.
                match rustix::io::writev(stream, &iov[..n]).map_err(std::io::Error::from) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(w) => w,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(total),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            total += wrote;
            self.pending -= wrote;
            self.written_total += wrote as u64;
            let mut left = wrote;
            while let Some(front) = self.segs.front().copied() {
                let rem = (front.end - front.start) as usize - self.front_done;
                if left < rem {
                    self.front_done += left;
                    break;
                }
                left -= rem;
                self.front_done = 0;
                self.segs.pop_front();
                if front.last_of_req {
                    self.freed.push(front.req);
                }
            }
            if self.segs.is_empty() {
                self.buf.clear();
            }
            if wrote < want {
                return Ok(total); // the socket buffer is full
            }
        }
        Ok(total)
    }
}
