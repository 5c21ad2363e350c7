//! States this crate does not save are refused by name, and the socket is left alone.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};

use common::*;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};
use tcp_repair::{Error, CLOSE, SYN_SENT};

/// A connection the peer reset: CLOSE.
#[test]
fn reset_connection_is_refused() {
    private_netns();
    let (mut a, b) = pair(false);
    socket::setsockopt(
        &b,
        sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
    drop(b);
    let mut buf = [0u8; 1];
    let e = a.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(state(&a), CLOSE);
    tcp_repair::set_repair(a.as_fd(), true).unwrap();
    match tcp_repair::save(a.as_fd()) {
        Err(Error::State { state, name }) => assert_eq!((state, name), (CLOSE, "CLOSE")),
        r => panic!("save of a reset connection: {r:?}"),
    }
}

/// A connection whose SYN gets no answer: SYN_SENT.
#[test]
fn syn_sent_is_refused() {
    private_netns();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = l.local_addr().unwrap();
    let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).unwrap();
    socket::bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from("127.0.0.1:0".parse::<SocketAddr>().unwrap()),
    )
    .unwrap();
    let from: SocketAddr = socket::getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .unwrap()
        .as_sockaddr_in()
        .map(|a| SocketAddr::V4((*a).into()))
        .unwrap();
    let _rule = DropRule::new(from, to);
    let r = socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(to));
    assert_eq!(r, Err(nix::Error::EINPROGRESS));
    let s = TcpStream::from(fd);
    assert_eq!(state(&s), SYN_SENT);
    tcp_repair::set_repair(s.as_fd(), true).unwrap();
    assert!(matches!(
        tcp_repair::save(s.as_fd()),
        Err(Error::State {
            state: SYN_SENT,
            name: "SYN_SENT"
        })
    ));
    drop(l);
}

/// A restore of an unsupported state fails before touching the socket.
#[test]
fn restore_of_time_wait_is_refused() {
    let c = tcp_repair::Connection {
        state: tcp_repair::TIME_WAIT,
        ..Default::default()
    };
    let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    assert!(matches!(
        tcp_repair::restore(fd.as_fd(), &c),
        Err(Error::State { state: 6, .. })
    ));
}

/// Repair mode is refused on a listening socket (the kernel's rule).
#[test]
fn listener_cannot_be_repaired() {
    private_netns();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(matches!(
        tcp_repair::set_repair(l.as_fd(), true),
        Err(Error::Sys { ref source, .. }) if source.raw_os_error() == Some(libc::EPERM)
    ));
}
