//! `stasis restore`: the puppet restore.
//!
//! The images are read and checked first ([`plan`]), then every file the task needs is opened
//! here, in the controller. Only then is the puppet forked at the dumped pid (clone3 set_tid):
//! a child stopped under ptrace that executes nothing but the single syscalls we inject
//! ([`puppet`]) — it drops our memory, takes the dumped layout, pulls its files from us with
//! pidfd_getfd, gets its registers back and is let go. Any failure kills the puppet.

pub mod plan;
pub mod puppet;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use parasite::Tracee;

use crate::image::{ImageDir, ImageError, ImageKind};
use crate::sys::{self, PuppetSetup};
use plan::{FdTarget, Plan};

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOpts {
    pub images: PathBuf,
    /// Return as soon as the task runs, instead of waiting for it to exit.
    pub detach: bool,
    /// Write the restored task's pid here.
    pub pid_file: Option<PathBuf>,
    /// Give the task the caller's terminal for the terminal fds it had, and keep it in the
    /// caller's session.
    pub shell_job: bool,
    /// `fd[N]:KEY`: use our fd N for the dumped file named KEY (a path).
    pub inherit_fds: Vec<(i32, String)>,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub pid: i32,
    pub elapsed: Duration,
    /// Wait status of the task, when the restore waited for it.
    pub exit_status: Option<i32>,
}

/// Why a restore failed; what it created was killed, and the images are untouched.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Remote(#[from] parasite::Error),
    #[error("{what}")]
    Invalid { what: String },
    #[error("pid {pid}: {what}")]
    Unsupported { pid: i32, what: String },
    #[error("pid {pid} is already in use: the restored process must get its dumped pid")]
    PidTaken { pid: i32 },
    #[error("pid {pid}: {object}: {source}")]
    Object {
        pid: i32,
        object: String,
        source: io::Error,
    },
    #[error("pid {pid}: fd {fd} was {what}, which is outside the dump: restore with --shell-job or --inherit-fd fd[N]:{what}")]
    External { pid: i32, fd: i32, what: String },
}

/// The objects the controller opened for the puppet.
pub struct Prepared {
    /// Target fd number, close-on-exec, and our open file (shared by fds of one file id).
    pub fds: Vec<(i32, bool, std::rc::Rc<OwnedFd>)>,
    /// Our fd for each mapped file, by VMA index.
    pub mapped: Vec<(usize, std::rc::Rc<File>)>,
    pub pages: File,
    pub exe: File,
    pub cwd: File,
}

fn object(pid: i32, what: impl Into<String>) -> impl FnOnce(io::Error) -> RestoreError {
    let object = what.into();
    move |source| RestoreError::Object { pid, object, source }
}

fn open_reg(pid: i32, path: &str, flags: u32) -> Result<File, RestoreError> {
    let keep = libc::O_ACCMODE
        | libc::O_APPEND
        | libc::O_NONBLOCK
        | libc::O_DIRECT
        | libc::O_NOATIME
        | libc::O_DIRECTORY
        | libc::O_PATH;
    let access = flags as i32 & libc::O_ACCMODE;
    OpenOptions::new()
        .read(access == libc::O_RDONLY || access == libc::O_RDWR)
        .write(access == libc::O_WRONLY || access == libc::O_RDWR)
        .custom_flags((flags as i32 & keep & !libc::O_ACCMODE) | libc::O_CLOEXEC)
        .open(path)
        .map_err(object(pid, format!("reopening {path}")))
}

fn prepare(dir: &ImageDir, plan: &Plan, opts: &RestoreOpts) -> Result<Prepared, RestoreError> {
    use std::collections::BTreeMap;
    use std::io::Seek;
    use std::rc::Rc;
    let pid = plan.pid;
    let mut by_id: BTreeMap<u32, Rc<OwnedFd>> = BTreeMap::new();
    let mut fds = Vec::with_capacity(plan.fds.len());
    for p in &plan.fds {
        let file = match by_id.get(&p.file_id) {
            Some(f) => f.clone(),
            None => {
                let key = match &p.target {
                    FdTarget::Reg { path, .. } | FdTarget::Tty { path } => path.clone(),
                    FdTarget::External { key } => key.clone(),
                };
                let inherited = opts.inherit_fds.iter().find(|(_, k)| *k == key).map(|&(n, _)| n);
                let owned: OwnedFd = match (&p.target, inherited) {
                    (_, Some(n)) => dup_ours(n).map_err(object(pid, format!("--inherit-fd fd[{n}]")))?,
                    (FdTarget::Reg { path, flags, pos, size }, None) => {
                        let mut f = open_reg(pid, path, *flags)?;
                        let now = f.metadata().map_err(object(pid, path.clone()))?;
                        if now.is_file() && now.len() < *pos {
                            return Err(RestoreError::Invalid {
                                what: format!(
                                    "pid {pid}: fd {}: {path} is now {} bytes, shorter than its offset {pos}",
                                    p.fd,
                                    now.len()
                                ),
                            });
                        }
                        if let Some(size) = size.filter(|&s| now.is_file() && s != now.len()) {
                            eprintln!(
                                "stasis: warning: {path} changed size since the dump ({size} -> {} bytes)",
                                now.len()
                            );
                        }
                        // An O_PATH fd has no offset.
                        if *flags as i32 & libc::O_PATH == 0 {
                            f.seek(io::SeekFrom::Start(*pos))
                                .map_err(object(pid, format!("seeking {path}")))?;
                        }
                        f.into()
                    }
                    (FdTarget::Tty { path }, None) if opts.shell_job => {
                        let ours = (0..3).find(|&n| sys::isatty(n)).ok_or_else(|| RestoreError::Invalid {
                            what: format!("pid {pid}: fd {} was the terminal {path}, but --shell-job found no terminal on our fds 0-2", p.fd),
                        })?;
                        dup_ours(ours).map_err(object(pid, format!("our terminal fd {ours}")))?
                    }
                    (FdTarget::Tty { path: what }, None) | (FdTarget::External { key: what }, None) => {
                        return Err(RestoreError::External {
                            pid,
                            fd: p.fd,
                            what: what.clone(),
                        });
                    }
                };
                let rc = Rc::new(owned);
                by_id.insert(p.file_id, rc.clone());
                rc
            }
        };
        fds.push((p.fd, p.cloexec, file));
    }
    let mut by_path: BTreeMap<&str, Rc<File>> = BTreeMap::new();
    let mut mapped = Vec::new();
    for (&i, path) in &plan.vma_paths {
        let v = &plan.mm.vmas[i];
        let shared_write =
            v.status & crate::image::pb::vma_status::FILE_SHARED != 0 && v.prot & libc::PROT_WRITE as u32 != 0;
        let file = match by_path.get(path.as_str()) {
            Some(f) if !shared_write => f.clone(),
            _ => {
                let flags = if shared_write { libc::O_RDWR } else { libc::O_RDONLY } as u32;
                let f = Rc::new(open_reg(pid, path, flags)?);
                if !shared_write {
                    by_path.insert(path, f.clone());
                }
                f
            }
        };
        mapped.push((i, file));
    }
    let pages_path = dir.image_path(ImageKind::Pages, plan.pagemap.pages_id.into());
    let pages = File::open(&pages_path).map_err(object(pid, pages_path.display().to_string()))?;
    let exe = open_reg(pid, &plan.exe, libc::O_RDONLY as u32)?;
    let cwd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(&plan.cwd)
        .map_err(object(pid, format!("cwd {}", plan.cwd)))?;
    Ok(Prepared {
        fds,
        mapped,
        pages,
        exe,
        cwd,
    })
}

/// A duplicate of our fd `fd` (named by the user with --inherit-fd, or our terminal).
fn dup_ours(fd: i32) -> io::Result<OwnedFd> {
    sys::dup_cloexec(fd)
}

/// Restores the process in `opts.images`.
pub fn restore(opts: &RestoreOpts) -> Result<RestoreReport, RestoreError> {
    let start = Instant::now();
    let dir = ImageDir::open(&opts.images)?;
    let plan = Plan::load(&dir)?;
    let prepared = prepare(&dir, &plan, opts)?;
    let pid = plan.pid;
    // A session leader gets its own session; a group leader its own group; a shell job
    // stays in ours.
    let setup = PuppetSetup {
        setsid: !opts.shell_job && plan.sid == pid as u32,
        setpgid: !opts.shell_job && plan.pgid == pid as u32,
    };
    let child = sys::fork_puppet(pid, setup).map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => RestoreError::PidTaken { pid },
        _ => RestoreError::Object {
            pid,
            object: "clone3 with set_tid".into(),
            source: e,
        },
    })?;
    let tracee = match Tracee::adopt_child(child) {
        Ok(t) => t,
        Err(e) => {
            let _ = parasite::sys::kill(child, libc::SIGKILL);
            let _ = parasite::sys::waitpid(child, libc::__WALL);
            return Err(e.into());
        }
    };
    let threads = match puppet::build(&tracee, &plan, &prepared) {
        Ok(threads) => threads,
        Err(e) => {
            tracee.kill(); // and every thread it already has
            return Err(e);
        }
    };
    for t in threads {
        t.detach()?;
    }
    tracee.detach()?;
    drop(prepared);
    if let Some(path) = &opts.pid_file {
        std::fs::write(path, format!("{pid}\n")).map_err(object(pid, format!("pid file {}", path.display())))?;
    }
    let elapsed = start.elapsed();
    let exit_status = if opts.detach {
        None
    } else {
        Some(sys::wait_exit(pid).map_err(object(pid, "waiting for the restored process"))?)
    };
    Ok(RestoreReport {
        pid,
        elapsed,
        exit_status,
    })
}
