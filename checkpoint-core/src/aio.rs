//! AIO rings (io_setup(2)): the ring the kernel maps into the task (`/[aio] (deleted)`),
//! whose address is the context id the task passes to io_submit/io_getevents.
//!
//! The dump saves the ring's pages with the task's memory and an `aios` entry in its mm image
//! (CRIU's AioRingEntry: the context id, a request count that gives a ring of the same size,
//! the ring's length). The restore ([`crate::restore`]'s puppet) maps an ordinary area there
//! for the pages, makes a new context with io_setup, moves the kernel's idea of the ring's
//! tail to the saved one (by completing that many one-byte writes to /dev/null, which finish
//! at once), copies the saved header's head and the saved events into the new ring, and moves
//! the ring over the saved address with mremap (which the kernel follows: the context id is the
//! old one again). Completed events not yet reaped are kept; requests still in flight when the
//! dump ran cannot be (the kernel shows them nowhere), as with CRIU.

use std::io;

/// struct aio_ring's magic.
pub const RING_MAGIC: u32 = 0xa10a_10a1;
/// sizeof(struct aio_ring) (the header before the events) and sizeof(struct io_event).
pub const HEADER_LEN: u64 = 32;
pub const EVENT_LEN: u64 = 32;

/// The fields of an AIO ring's header a restore needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// How many events the ring holds.
    pub nr: u32,
    pub head: u32,
    pub tail: u32,
    pub magic: u32,
}

impl Header {
    /// The header at the start of a ring's bytes (struct aio_ring: id, nr, head, tail, magic...).
    pub fn parse(b: &[u8; 32]) -> Header {
        let u = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
        Header {
            nr: u(4),
            head: u(8),
            tail: u(12),
            magic: u(16),
        }
    }

    /// Refuses a header that is not a ring's of `len` bytes (head and tail inside it).
    pub fn check(&self, len: u64) -> Result<(), String> {
        let nr = (len.saturating_sub(HEADER_LEN)) / EVENT_LEN;
        if self.magic != RING_MAGIC || u64::from(self.nr) != nr || self.head >= self.nr || self.tail >= self.nr {
            return Err(format!(
                "not an AIO ring of {len} bytes (magic {:#x}, {} events, head {}, tail {})",
                self.magic, self.nr, self.head, self.tail
            ));
        }
        Ok(())
    }
}

/// The request count io_setup(2) takes to make a ring of `len` bytes (a whole number of
/// pages): the kernel doubles the count and adds two events, so the largest count whose ring
/// still fits in those pages.
pub fn nr_req_for(len: u64) -> u32 {
    let events = len / EVENT_LEN; // the ring's pages hold this many 32-byte slots
    ((events.saturating_sub(1 + 2)) / 2).min(u64::from(u32::MAX)) as u32
}

/// The ring of the AIO context mapped at `start..end` in `pid`, read through /proc/PID/mem.
pub fn header_of(pid: i32, start: u64, end: u64) -> io::Result<Header> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut b = [0u8; 32];
    mem.read_exact_at(&mut b, start)?;
    let h = Header::parse(&b);
    h.check(end - start)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_give_rings_of_the_same_size() {
        // The kernel's sizing: (2 * nr + 2) events of 32 bytes after a 32-byte header, in pages.
        let pages = |nr: u64| (HEADER_LEN + EVENT_LEN * (2 * nr.max(8) + 2)).div_ceil(4096);
        for p in 1..=64u64 {
            let n = u64::from(nr_req_for(p * 4096));
            assert_eq!(pages(n), p, "{p} pages");
        }
        let mut h = [0u8; 32];
        h[4..8].copy_from_slice(&383u32.to_ne_bytes());
        h[8..12].copy_from_slice(&5u32.to_ne_bytes());
        h[12..16].copy_from_slice(&9u32.to_ne_bytes());
        h[16..20].copy_from_slice(&RING_MAGIC.to_ne_bytes());
        let hd = Header::parse(&h);
        assert_eq!((hd.nr, hd.head, hd.tail), (383, 5, 9));
        assert!(hd.check(3 * 4096).is_ok());
        assert!(hd.check(2 * 4096).is_err());
    }
}
