//! AF_UNIX sockets: stream, datagram and seqpacket; pairs, names (paths and abstract),
//! socket files with their owner and mode, listeners with connections not accepted yet,
//! queued data and shutdowns.
//!
//! The dump side reads each socket's state from sock_diag (peer, name, pending connections,
//! queue length, shutdown) and its queue by peeking at it through a copy of the fd. The
//! restore side rebuilds every socket of the checkpoint in the controller, in an order that
//! works: listeners, bound datagram sockets, connections (pairs, accepted connections, pending
//! ones), then queued data and shutdowns; the tasks then pull their sockets like any file.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::image::pb::{FilePermsEntry, FownEntry, SkOptsEntry, SkShutdown, UnixSkEntry};
use crate::sys::{self, UnixDiag};

pub const TCP_ESTABLISHED: u32 = 1;
pub const TCP_CLOSE: u32 = 7;
pub const TCP_LISTEN: u32 = 10;
/// `uflags` of a socket outside the tree (a peer named only so it can be reconnected).
pub const USK_EXTERN: u32 = 1;

/// Every AF_UNIX socket of the network namespace, by inode.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub by_ino: BTreeMap<u32, UnixDiag>,
    /// Where the sockets' path names are: `/proc/PID/root` of a container, or ours.
    pub root: Option<String>,
}

impl Table {
    /// Asks sock_diag for every unix socket.
    pub fn query() -> io::Result<Table> {
        Ok(Table {
            by_ino: sys::unix_sockets()?.into_iter().map(|d| (d.ino, d)).collect(),
            root: None,
        })
    }

    /// The unix sockets of `pid`'s network namespace (sock_diag answers for the namespace
    /// of the asking socket: a container's are asked from inside it).
    pub fn query_in(pid: i32) -> io::Result<Table> {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        let mut table = sys::in_net_ns(&ns, Table::query)?;
        table.root = Some(format!("/proc/{pid}/root"));
        Ok(table)
    }

    /// The listener in whose queue client `ino` waits to be accepted, if any (sock_diag
    /// lists a listener's waiting clients).
    pub fn listener_of(&self, ino: u32) -> Option<&UnixDiag> {
        self.by_ino.values().find(|l| l.icons.contains(&ino))
    }

    /// The socket `d` is connected to, as a restore sees it: a waiting client's peer is the
    /// listener it waits in.
    pub fn peer_of(&self, d: &UnixDiag) -> u32 {
        match self.listener_of(d.ino) {
            Some(l) => l.ino,
            None => d.peer,
        }
    }
}

/// The image entry of socket `d` (its id is set by the caller), with options read from our
/// copy `fd` of it.
pub fn collect(table: &Table, d: &UnixDiag, flags: u32, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<UnixSkEntry> {
    let opt = |name| sys::sockopt(fd, libc::SOL_SOCKET, name).map(|v| v as u32);
    Ok(UnixSkEntry {
        id: 0,
        ino: d.ino,
        r#type: d.kind.into(),
        state: d.state.into(),
        flags,
        uflags: 0,
        backlog: if u32::from(d.state) == TCP_LISTEN { d.rqlen.1 } else { 0 },
        peer: table.peer_of(d),
        fown: FownEntry::default(),
        opts: SkOptsEntry {
            so_sndbuf: opt(libc::SO_SNDBUF)?,
            so_rcvbuf: opt(libc::SO_RCVBUF)?,
            so_passcred: Some(opt(libc::SO_PASSCRED)? != 0),
            ..Default::default()
        },
        name: d.name.clone().unwrap_or_default(),
        shutdown: (d.shutdown & 3 != 0).then_some(i32::from(d.shutdown & 3)),
        file_perms: file_perms(d, table.root.as_deref()),
        deleted: deleted(d, table.root.as_deref()).then_some(true),
        ..Default::default()
    })
}

/// The path a socket bound to a path name was bound at (under `root`, a container's, if
/// given); `None` for an unnamed or abstract socket.
fn bound_path(d: &UnixDiag, root: Option<&str>) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let name = addr(d.name.as_deref()?);
    if name.first().is_none_or(|&b| b == 0) {
        return None;
    }
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
    Some(match root {
        Some(r) => std::path::Path::new(r).join(path.strip_prefix("/").unwrap_or(path)),
        None => path.to_owned(),
    })
}

/// Whether a socket bound to a path no longer has its file there (removed, or the name now
/// holds another file): CRIU's `deleted`.
fn deleted(d: &UnixDiag, root: Option<&str>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Some(path), Some((_, ino))) = (bound_path(d, root), d.vfs) else {
        return false;
    };
    std::fs::symlink_metadata(path).map_or(true, |m| m.ino() != u64::from(ino))
}

/// Mode and owner of the socket file of a socket bound to a path (still there: the file
/// whose inode sock_diag gives), looked up under `root` (a container's) if given.
fn file_perms(d: &UnixDiag, root: Option<&str>) -> Option<FilePermsEntry> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(bound_path(d, root)?).ok()?;
    if d.vfs.is_some_and(|(_, ino)| u64::from(ino) != meta.ino()) {
        return None;
    }
    Some(FilePermsEntry {
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// An entry for a socket outside the tree that a datagram socket of the tree sends to.
pub fn external(d: &UnixDiag) -> UnixSkEntry {
    UnixSkEntry {
        ino: d.ino,
        r#type: d.kind.into(),
        state: d.state.into(),
        uflags: USK_EXTERN,
        name: d.name.clone().unwrap_or_default(),
        ..Default::default()
    }
}

fn is_stream(e: &UnixSkEntry) -> bool {
    e.r#type == libc::SOCK_STREAM as u32 || e.r#type == libc::SOCK_SEQPACKET as u32
}

/// A path name without its trailing NUL (abstract names, which start with NUL, are kept).
fn addr(name: &[u8]) -> &[u8] {
    match name {
        [0, ..] => name,
        _ => name.strip_suffix(&[0]).unwrap_or(name),
    }
}

fn what(e: &UnixSkEntry) -> String {
    let name = addr(&e.name);
    if name.is_empty() {
        format!("unix socket {}", e.ino)
    } else {
        format!(
            "unix socket {} ({})",
            e.ino,
            String::from_utf8_lossy(name).replace('\0', "@")
        )
    }
}

fn err(e: &UnixSkEntry, step: &str) -> impl FnOnce(io::Error) -> io::Error {
    let what = what(e);
    let step = step.to_owned();
    move |source| io::Error::new(source.kind(), format!("{what}: {step}: {source}"))
}

/// Binds `fd` to `e`'s name; a socket file left at that path by the dumped process goes.
fn bind(fd: &OwnedFd, e: &UnixSkEntry, bound: &mut Vec<std::path::PathBuf>) -> io::Result<()> {
    let name = addr(&e.name);
    let path = name.first().filter(|&&b| b != 0).map(|_| {
        use std::os::unix::ffi::OsStrExt;
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(name))
    });
    if let (Some(path), Some(true)) = (&path, e.deleted) {
        return bind_deleted(fd, e, path);
    }
    if let Some(path) = &path {
        use std::os::unix::fs::FileTypeExt;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            // Only a dead socket file (the dumped process's) is taken over: a name someone
            // answers on stays theirs, whatever the images say.
            let probe = sys::unix_socket(e.r#type as i32).map_err(err(e, "socket"))?;
            match sys::unix_connect(probe.as_fd(), name) {
                Err(x) if x.raw_os_error() == Some(libc::ECONNREFUSED) => {}
                Err(x) => return Err(err(e, "probing the existing socket file")(x)),
                Ok(()) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{}: a live socket already has this name", what(e)),
                    ))
                }
            }
            std::fs::remove_file(path).map_err(err(e, "removing the old socket file"))?;
        }
    }
    let (Some(path), Some(perms)) = (path, e.file_perms.as_ref()) else {
        return sys::unix_bind(fd.as_fd(), name).map_err(err(e, "bind"));
    };
    // The file is made with no permission bits (umask 0777, in a thread of its own), then
    // given its owner, then its mode: no one else can use it before it has both.
    sys::with_umask(0o777, || sys::unix_bind(fd.as_fd(), name)).map_err(err(e, "bind"))?;
    bound.push(path.clone());
    set_file_perms(fd, &path, perms).map_err(err(e, "owner and mode of the socket file"))
}

/// Binds `fd` to the name of `e`, a socket whose file was removed (or whose name now holds
/// another file): what holds the name now is moved aside for the moment, a directory that is
/// gone is made for the moment, the socket is bound, its file removed, and all put back. The
/// socket has its name, and the name is what it was.
fn bind_deleted(fd: &OwnedFd, e: &UnixSkEntry, path: &std::path::Path) -> io::Result<()> {
    let aside = match std::fs::symlink_metadata(path) {
        Ok(_) => {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(format!(".stasis-aside-{}", std::process::id()));
            let tmp = std::path::PathBuf::from(tmp);
            std::fs::rename(path, &tmp).map_err(err(e, "moving aside what holds its name now"))?;
            Some(tmp)
        }
        Err(_) => None,
    };
    let mut made = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err()) {
        made.push(d.to_owned());
        dir = d.parent();
    }
    let result = (|| {
        for d in made.iter().rev() {
            std::fs::create_dir(d).map_err(err(e, "making its directory for the moment"))?;
        }
        sys::unix_bind(fd.as_fd(), addr(&e.name)).map_err(err(e, "bind"))?;
        std::fs::remove_file(path).map_err(err(e, "removing its socket file"))
    })();
    for d in &made {
        let _ = std::fs::remove_dir(d);
    }
    if let Some(tmp) = aside {
        std::fs::rename(&tmp, path).map_err(err(e, "putting back what holds its name"))?;
    }
    result
}

/// Gives the socket file `path` just made by binding `fd` the owner, group and mode the
/// image records (CRIU's file_perms), on the file itself: a symlink or another file put in
/// its place meanwhile is refused, never followed.
fn set_file_perms(fd: &OwnedFd, path: &std::path::Path, perms: &FilePermsEntry) -> io::Result<()> {
    let file = sys::open_nofollow(path)?;
    let (mode, uid, _, ino) = sys::stat_fd(file.as_fd())?;
    let sock_ino = sys::stat_fd(fd.as_fd())?.3;
    let vfs_ino = sys::unix_sockets()?
        .into_iter()
        .find(|d| u64::from(d.ino) == sock_ino)
        .and_then(|d| d.vfs)
        .map(|(_, ino)| u64::from(ino));
    let ours = mode & libc::S_IFMT == libc::S_IFSOCK && uid == sys::euid() && vfs_ino == Some(ino);
    if !ours {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is no longer the socket file just bound", path.display()),
        ));
    }
    sys::chown_fd(file.as_fd(), perms.uid, perms.gid)?;
    sys::chmod_fd(file.as_fd(), perms.mode & 0o7777)
}

/// The socket files a restore made; removed when dropped unless [`Bound::keep`] (a failed
/// restore leaves none behind).
#[derive(Debug, Default)]
pub struct Bound(Vec<std::path::PathBuf>, Option<OwnedFd>);

impl Bound {
    /// The restore succeeded: the files are the restored sockets'.
    pub fn keep(mut self) {
        self.0.clear();
    }

    /// The names were bound inside a container whose root is `root`: they are removed
    /// there, resolved inside it, never on our side.
    pub fn inside(&mut self, root: OwnedFd) {
        self.1 = Some(root);
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        for p in &self.0 {
            match &self.1 {
                None => {
                    let _ = std::fs::remove_file(p);
                }
                Some(root) => {
                    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
                        continue;
                    };
                    let parent = sys::open_in_root(
                        root.as_fd(),
                        &parent.to_string_lossy(),
                        libc::O_PATH | libc::O_DIRECTORY,
                    );
                    if let Ok(dir) = parent {
                        use std::os::fd::AsRawFd;
                        let _ = std::fs::remove_file(
                            std::path::Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name),
                        );
                    }
                }
            }
        }
    }
}

/// Rebuilds every socket of `entries` (by files.img id) with `queues` (by the id of the
/// socket that reads them) in its receive queue. Returns our fd for each.
pub fn rebuild(
    entries: &[UnixSkEntry],
    queues: &BTreeMap<u32, Vec<Vec<u8>>>,
) -> io::Result<(BTreeMap<u32, OwnedFd>, Bound)> {
    let mut bound = Bound::default();
    let by_ino: BTreeMap<u32, &UnixSkEntry> = entries.iter().map(|e| (e.ino, e)).collect();
    let mut made: BTreeMap<u32, OwnedFd> = BTreeMap::new(); // by ino
    let kind = |e: &UnixSkEntry| e.r#type as i32;
    let inside = |e: &&UnixSkEntry| e.uflags & USK_EXTERN == 0;
    // Of two connected stream sockets, the accepted one carries its listener's name.
    let accepted = |e: &UnixSkEntry, p: &UnixSkEntry| {
        !e.name.is_empty() && (p.name.is_empty() || entries.iter().any(|l| l.state == TCP_LISTEN && l.name == e.name))
    };

    // 1. Listeners, then bound datagram sockets.
    for e in entries.iter().filter(inside).filter(|e| e.state == TCP_LISTEN) {
        let fd = sys::unix_socket(kind(e)).map_err(err(e, "socket"))?;
        bind(&fd, e, &mut bound.0)?;
        sys::listen(fd.as_fd(), e.backlog.max(1) as i32).map_err(err(e, "listen"))?;
        made.insert(e.ino, fd);
    }
    for e in entries
        .iter()
        .filter(inside)
        .filter(|e| !is_stream(e) && !e.name.is_empty())
    {
        let fd = sys::unix_socket(kind(e)).map_err(err(e, "socket"))?;
        bind(&fd, e, &mut bound.0)?;
        made.insert(e.ino, fd);
    }

    // 2. Connections.
    let mut gone_peers: BTreeMap<u32, OwnedFd> = BTreeMap::new();
    for e in entries.iter().filter(inside) {
        if made.contains_key(&e.ino) && (is_stream(e) || e.peer == 0) {
            continue;
        }
        let peer = by_ino.get(&e.peer).copied();
        match peer {
            // Both ends in the tree, each the other's peer, neither named: a socketpair.
            Some(p) if p.peer == e.ino && inside(&p) && e.name.is_empty() && p.name.is_empty() => {
                let (a, b) = sys::unix_pair(kind(e)).map_err(err(e, "socketpair"))?;
                made.insert(e.ino, a);
                made.insert(p.ino, b);
            }
            // A stream client waiting in a listener's queue.
            Some(l) if is_stream(e) && l.state == TCP_LISTEN => {
                let fd = sys::unix_socket(kind(e)).map_err(err(e, "socket"))?;
                if !e.name.is_empty() {
                    bind(&fd, e, &mut bound.0)?;
                }
                sys::unix_connect(fd.as_fd(), addr(&l.name)).map_err(err(e, "connect"))?;
                made.insert(e.ino, fd);
            }
            // An accepted stream connection: `e` is the accepted side (it carries the
            // listener's name), `p` the client. Through the listener, or one made for it.
            Some(p) if is_stream(e) && p.peer == e.ino && accepted(e, p) && !made.contains_key(&p.ino) => {
                let listener = entries
                    .iter()
                    .find(|l| l.state == TCP_LISTEN && l.name == e.name)
                    .and_then(|l| made.get(&l.ino));
                let temporary;
                let l = match listener {
                    Some(l) => l,
                    None => {
                        temporary = sys::unix_socket(kind(e)).map_err(err(e, "socket"))?;
                        bind(&temporary, e, &mut bound.0)?;
                        sys::listen(temporary.as_fd(), 1).map_err(err(e, "listen"))?;
                        &temporary
                    }
                };
                let client = sys::unix_socket(kind(p)).map_err(err(p, "socket"))?;
                if !p.name.is_empty() {
                    bind(&client, p, &mut bound.0)?;
                }
                sys::unix_connect(client.as_fd(), addr(&e.name)).map_err(err(p, "connect"))?;
                let server = sys::accept(l.as_fd()).map_err(err(e, "accept"))?;
                made.insert(e.ino, server);
                made.insert(p.ino, client);
            }
            // Made with its peer (before, or when the accepted side's turn comes).
            Some(p) if is_stream(e) && (made.contains_key(&p.ino) || (p.peer == e.ino && accepted(p, e))) => {}
            // A datagram socket connected to a named one (in the tree or outside).
            Some(p) if !is_stream(e) => {
                let fd = match made.remove(&e.ino) {
                    Some(fd) => fd,
                    None => sys::unix_socket(kind(e)).map_err(err(e, "socket"))?,
                };
                sys::unix_connect(fd.as_fd(), addr(&p.name)).map_err(err(e, "connect"))?;
                made.insert(e.ino, fd);
            }
            // A connection whose peer has closed: one end of a new pair whose other end sends
            // its queue again and is then closed, as the peer was.
            None if e.peer == 0 && is_stream(e) && e.state == TCP_ESTABLISHED => {
                let (a, gone) = sys::unix_pair(kind(e)).map_err(err(e, "socketpair"))?;
                made.insert(e.ino, a);
                gone_peers.insert(e.ino, gone);
            }
            None if e.peer == 0 => {
                made.insert(e.ino, sys::unix_socket(kind(e)).map_err(err(e, "socket"))?);
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{}: its peer {} is not in the checkpoint", what(e), e.peer),
                ))
            }
        }
    }

    // 3. Queued data, sent again by the peer (or, to a named datagram socket, by a stranger).
    let by_id: BTreeMap<u32, &UnixSkEntry> = entries.iter().map(|e| (e.id, e)).collect();
    for (id, messages) in queues {
        let e = by_id
            .get(id)
            .copied()
            .ok_or_else(|| io::Error::other(format!("sk-queues.img: no socket {id}")))?;
        let sender_ino = by_ino
            .get(&e.peer)
            .filter(|p| p.peer == e.ino && p.uflags & USK_EXTERN == 0)
            .map(|p| p.ino);
        let stranger;
        let (sender, to) = match sender_ino.and_then(|i| made.get(&i)).or_else(|| gone_peers.get(&e.ino)) {
            Some(fd) => (fd, None),
            None if !is_stream(e) && !e.name.is_empty() => {
                stranger = sys::unix_socket(kind(e)).map_err(err(e, "socket"))?;
                (&stranger, Some(addr(&e.name)))
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{}: queued data, but no peer to send it again", what(e)),
                ))
            }
        };
        for m in messages {
            sys::send_to(sender.as_fd(), m, to).map_err(err(e, "refilling its queue"))?;
        }
    }

    // The peers that had closed close now.
    drop(gone_peers);

    // 4. Shutdowns, buffer sizes and file flags.
    for e in entries.iter().filter(inside) {
        let fd = made
            .get(&e.ino)
            .ok_or_else(|| io::Error::other(format!("{} was not made", what(e))))?;
        let how = match e.shutdown.and_then(|s| SkShutdown::try_from(s).ok()) {
            Some(SkShutdown::Read) => Some(libc::SHUT_RD),
            Some(SkShutdown::Write) => Some(libc::SHUT_WR),
            Some(SkShutdown::Both) => Some(libc::SHUT_RDWR),
            _ => None,
        };
        if let Some(how) = how {
            sys::shutdown(fd.as_fd(), how).map_err(err(e, "shutdown"))?;
        }
        // Buffer sizes: the kernel reports twice what was asked for.
        let buffers = [
            (libc::SO_SNDBUFFORCE, e.opts.so_sndbuf, "SO_SNDBUF"),
            (libc::SO_RCVBUFFORCE, e.opts.so_rcvbuf, "SO_RCVBUF"),
        ];
        for (opt, size, name) in buffers.into_iter().filter(|b| b.1 != 0) {
            sys::set_sockopt(fd.as_fd(), libc::SOL_SOCKET, opt, (size / 2) as i32).map_err(err(e, name))?;
        }
        if e.opts.so_passcred == Some(true) {
            sys::set_sockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1).map_err(err(e, "SO_PASSCRED"))?;
        }
        sys::set_status_flags(fd.as_fd(), e.flags as i32 & libc::O_NONBLOCK).map_err(err(e, "flags"))?;
    }
    let fds = entries
        .iter()
        .filter(inside)
        .filter_map(|e| Some((e.id, made.remove(&e.ino)?)))
        .collect();
    Ok((fds, bound))
}
