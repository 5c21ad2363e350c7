//! Half-closed connections on loopback, each test in its own network namespace: saved in
//! FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK and CLOSING with data in flight, made again,
//! and each side sees the other's bytes once, in order, then EOF exactly where it was.
//! `a` (the side that is saved) -> `b` is stream 1, `b` -> `a` stream 2.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;

use common::*;
use tcp_repair::{CLOSE_WAIT, CLOSING, FIN_WAIT1, FIN_WAIT2, LAST_ACK};

struct Conn {
    a: TcpStream,
    b: TcpStream,
    ab: Stream,
    ba: Stream,
}

/// `v6`: 0 IPv4, 1 IPv6, 2 IPv6 sockets with v4-mapped addresses.
fn setup(v6: u8) -> Conn {
    private_netns();
    let (a, b) = if v6 == 2 { pair_mapped() } else { pair(v6 == 1) };
    let mut c = Conn {
        a,
        b,
        ab: Stream::new(1),
        ba: Stream::new(2),
    };
    // Some traffic both ways first.
    c.ab.write(&mut c.a, 40_000);
    c.ab.read(&mut c.b, 40_000);
    c.ba.write(&mut c.b, 25_000);
    c.ba.read(&mut c.a, 25_000);
    c
}

fn drop_a_to_b(c: &Conn) -> DropRule {
    DropRule::new(c.a.local_addr().unwrap(), c.b.local_addr().unwrap())
}

fn write_fails(s: &mut TcpStream) {
    let e = s.write(b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
}

/// Peer closed its side, we have not read all: CLOSE_WAIT. After restore we read the rest,
/// then EOF, and can still write.
fn close_wait(v6: u8) {
    let mut c = setup(v6);
    c.ba.write(&mut c.b, 50_000);
    shut(&c.b);
    c.ba.read(&mut c.a, 10_000);
    wait_for("CLOSE_WAIT with 40000 unread", || {
        state(&c.a) == CLOSE_WAIT && queues(&c.a).0 == 40_000
    });
    let mut rule = drop_a_to_b(&c);
    c.ab.write_nonblocking(&mut c.a, 100_000);
    let (saved, mut a) = migrate(c.a);
    assert_eq!(saved.state, CLOSE_WAIT);
    assert_eq!(saved.inq.len(), 40_000);
    assert_eq!(saved.outq.len(), 100_000);
    rule.remove();
    c.ba.read_to_eof(&mut a);
    c.ab.write(&mut a, 30_000);
    shut(&a);
    c.ab.read_to_eof(&mut c.b);
}

/// We closed our side and the peer acknowledged it: FIN_WAIT2. The peer has read our EOF;
/// it keeps writing, we read everything and its EOF; we cannot write.
fn fin_wait2(v6: u8) {
    let mut c = setup(v6);
    shut(&c.a);
    c.ab.read_to_eof(&mut c.b);
    wait_for("FIN_WAIT2", || state(&c.a) == FIN_WAIT2);
    c.ba.write(&mut c.b, 60_000);
    c.ba.read(&mut c.a, 20_000);
    wait_for("40000 unread", || queues(&c.a).0 == 40_000);
    let (saved, mut a) = migrate(c.a);
    assert_eq!(saved.state, FIN_WAIT2);
    assert_eq!((saved.inq.len(), saved.outq.len()), (40_000, 0));
    c.ba.write(&mut c.b, 30_000);
    shut(&c.b);
    c.ba.read_to_eof(&mut a);
    write_fails(&mut a);
    // b saw our EOF once: nothing more comes.
    c.ab.read_to_eof(&mut c.b);
}

/// We wrote and closed, nothing of it acknowledged: FIN_WAIT1 with data and FIN in the
/// send queue. After restore the peer gets the data and then EOF.
fn fin_wait1(v6: u8) {
    let mut c = setup(v6);
    c.ba.write(&mut c.b, 30_000);
    c.ba.read(&mut c.a, 10_000);
    wait_for("20000 unread", || queues(&c.a).0 == 20_000);
    let mut rule = drop_a_to_b(&c);
    c.ab.write_nonblocking(&mut c.a, 80_000);
    shut(&c.a);
    assert_eq!(state(&c.a), FIN_WAIT1);
    let (saved, mut a) = migrate(c.a);
    assert_eq!(saved.state, FIN_WAIT1);
    assert_eq!((saved.inq.len(), saved.outq.len()), (20_000, 80_000));
    rule.remove();
    c.ab.read_to_eof(&mut c.b);
    c.ba.write(&mut c.b, 10_000);
    shut(&c.b);
    c.ba.read_to_eof(&mut a);
    write_fails(&mut a);
}

/// The peer closed, then we wrote and closed, unacknowledged: LAST_ACK.
fn last_ack(v6: u8) {
    let mut c = setup(v6);
    c.ba.write(&mut c.b, 30_000);
    shut(&c.b);
    c.ba.read(&mut c.a, 10_000);
    wait_for("CLOSE_WAIT with 20000 unread", || {
        state(&c.a) == CLOSE_WAIT && queues(&c.a).0 == 20_000
    });
    let mut rule = drop_a_to_b(&c);
    c.ab.write_nonblocking(&mut c.a, 80_000);
    shut(&c.a);
    assert_eq!(state(&c.a), LAST_ACK);
    let (saved, mut a) = migrate(c.a);
    assert_eq!(saved.state, LAST_ACK);
    assert_eq!((saved.inq.len(), saved.outq.len()), (20_000, 80_000));
    rule.remove();
    c.ab.read_to_eof(&mut c.b);
    c.ba.read_to_eof(&mut a);
    write_fails(&mut a);
}

/// Both closed at once, our FIN not acknowledged, the peer's received: CLOSING.
fn closing(v6: u8) {
    let mut c = setup(v6);
    c.ba.write(&mut c.b, 30_000);
    c.ba.read(&mut c.a, 10_000);
    let mut rule = drop_a_to_b(&c);
    c.ab.write_nonblocking(&mut c.a, 80_000);
    shut(&c.a);
    shut(&c.b);
    wait_for("CLOSING with 20000 unread", || {
        state(&c.a) == CLOSING && queues(&c.a).0 == 20_000
    });
    let (saved, mut a) = migrate(c.a);
    assert_eq!(saved.state, CLOSING);
    assert_eq!((saved.inq.len(), saved.outq.len()), (20_000, 80_000));
    rule.remove();
    c.ab.read_to_eof(&mut c.b);
    c.ba.read_to_eof(&mut a);
    write_fails(&mut a);
}

#[test]
fn close_wait_v4() {
    close_wait(0);
}
#[test]
fn close_wait_v6() {
    close_wait(1);
}
#[test]
fn fin_wait2_v4() {
    fin_wait2(0);
}
#[test]
fn fin_wait2_v6() {
    fin_wait2(1);
}
#[test]
fn fin_wait1_v4() {
    fin_wait1(0);
}
#[test]
fn fin_wait1_v6() {
    fin_wait1(1);
}
#[test]
fn last_ack_v4() {
    last_ack(0);
}
#[test]
fn last_ack_v6() {
    last_ack(1);
}
#[test]
fn closing_v4() {
    closing(0);
}
#[test]
fn closing_v6() {
    closing(1);
}

/// A dual-stack socket talking IPv4: the peer's FIN is made as an IPv4 packet.
#[test]
fn close_wait_v4_mapped() {
    close_wait(2);
}
#[test]
fn closing_v4_mapped() {
    closing(2);
}
