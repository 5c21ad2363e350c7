//! Established connections on loopback (IPv4 and IPv6), each test in its own network
//! namespace: saved with unread and unacknowledged data, the socket closed, made again, and
//! every byte of both directions arrives once and in order.

mod common;

use common::*;
use tcp_repair::{ESTABLISHED, TCPI_OPT_SACK, TCPI_OPT_TIMESTAMPS, TCPI_OPT_WSCALE};

/// `a` -> `b` is stream 1, `b` -> `a` stream 2.
fn established(v6: bool, unacked: usize, unread: usize) {
    private_netns();
    let (mut a, mut b) = pair(v6);
    set_buffers(&a, 4 * (unacked + unread) + (1 << 20));
    let (mut ab, mut ba) = (Stream::new(1), Stream::new(2));

    // Both ways, all read: the sequence numbers move off their start.
    ab.write(&mut a, 50_000);
    ab.read(&mut b, 50_000);
    ba.write(&mut b, 30_000 + unread);
    ba.read(&mut a, 30_000);
    wait_for("unread bytes at a", || queues(&a).0 as usize == unread);

    // a's packets to b are dropped: what a writes now stays unacknowledged; what b writes
    // still comes in (and is sent again by b, whose ACKs never come).
    let mut rule = DropRule::new(a.local_addr().unwrap(), b.local_addr().unwrap());
    ab.write_nonblocking(&mut a, unacked);
    ba.write(&mut b, 20_000);
    wait_for("b's bytes at a", || queues(&a).0 as usize == unread + 20_000);
    let (_, outq, unsent) = queues(&a);
    assert_eq!(outq as usize, unacked);

    let (c, mut a) = migrate(a);
    assert_eq!(c.state, ESTABLISHED);
    assert_eq!(c.inq.len(), unread + 20_000);
    ba.check(&c.inq, ba.read);
    assert_eq!(c.outq.len(), unacked);
    ab.check(&c.outq, ab.read);
    assert_eq!(c.unsq_len, unsent);
    let want = TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE;
    assert_eq!(c.opt_mask & want, want, "options {:#x}", c.opt_mask);
    assert!(c.snd_wscale > 0 && c.rcv_wscale > 0 && c.mss_clamp > 0, "{c:?}");
    assert!(c.window.is_some());
    eprintln!(
        "saved: inq {} outq {} unsent {} mss {} wscale {}/{} window {:?}",
        c.inq.len(),
        c.outq.len(),
        c.unsq_len,
        c.mss_clamp,
        c.snd_wscale,
        c.rcv_wscale,
        c.window
    );
    rule.remove();

    // Both go on: b gets a's old and new bytes, a gets its unread ones and b's new ones.
    let mut a2 = a.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        ab.write(&mut a2, 100_000);
        shut(&a2);
        ab
    });
    ba.write(&mut b, 100_000);
    shut(&b);
    ba.read_to_eof(&mut a);
    let mut ab = writer.join().unwrap();
    ab.read_to_eof(&mut b);
    assert_eq!(ab.read, 150_000 + unacked as u64);
    assert_eq!(ba.read, 150_000 + unread as u64);
}

#[test]
fn established_v4() {
    established(false, 200_000, 70_000);
}

#[test]
fn established_v6() {
    established(true, 200_000, 70_000);
}

/// More unacknowledged bytes than the congestion window lets out: part of the send queue
/// was never sent (unsq_len > 0), and more than one repair-mode send takes.
#[test]
fn large_queues_v4() {
    established(false, 4 << 20, 1 << 20);
}

#[test]
fn large_queues_v6() {
    established(true, 4 << 20, 1 << 20);
}

/// A connection whose data all went through: empty queues.
#[test]
fn empty_queues_v4() {
    established(false, 0, 0);
}
