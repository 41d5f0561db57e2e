//! Starting a command's shell with clone3(2), born inside its cgroup.
//!
//! Moving a running process into a cgroup v2 (a write to `cgroup.procs`)
//! takes the write side of the kernel's `cgroup_threadgroup_rwsem`: after a
//! pause it waits for an RCU grace period (measured 15–20 ms on a 2-core
//! host), and under load it stalls every fork and exit on the host. A child
//! created with `CLONE_INTO_CGROUP` is born in its cgroup: no move, no write
//! lock. Measured with a C loop of `/bin/true` spawns here: 0.88 ms each
//! with or without `CLONE_INTO_CGROUP`, and no outlier after a 10 ms pause,
//! where a self-move peaked at 41 ms.
//!
//! The child shares the server's memory until it execs (`CLONE_VM |
//! CLONE_VFORK`, as glibc's posix_spawn does), so a spawn costs no copy of
//! the server's page tables. That child runs on a stack of its own and may
//! only make raw system calls: everything it needs (paths, argv, envp,
//! descriptors) is built here beforehand, and it reports a failed exec
//! through shared memory. `CLONE_PIDFD` gives a descriptor that becomes
//! readable when the child exits, which is how its status is awaited.
//! (Its exit signal of 0 lasts only until exec, which resets it to
//! SIGCHLD: see `sigchld` for how the server keeps that signal cheap.)
//!
//! Only on x86_64 Linux; [`spawn`] says [`Clone3Error::Unsupported`]
//! elsewhere, and when the kernel or a seccomp filter (Docker's default
//! profile answers ENOSYS) refuses clone3: the caller then uses
//! `std::process`.
//!
//! One of the crate's two modules with `unsafe` code (with `sigchld`): the
//! system call, the child's code, and taking ownership of the pidfd.
#![allow(unsafe_code)]

mod strings;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use thiserror::Error;
use tokio::io::unix::AsyncFd;

use super::readiness::Readiness;

use strings::{c_string, StringBlock};

/// The child's stack until it execs: a few frames of raw system calls.
const CHILD_STACK: usize = 64 * 1024;

/// One 16-byte unit of a child stack: the x86-64 ABI wants the stack
/// pointer 16-byte aligned at a call, and a `Box<[u8]>` promises only 1.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct StackUnit([u8; 16]);

thread_local! {
    /// The stack this thread's children run on until they exec.
    static CHILD_STACKS: std::cell::Cell<Option<Box<[StackUnit]>>> = const { std::cell::Cell::new(None) };
}

/// What the shell is started with.
pub struct Launch<'a> {
    /// The program to exec (a path; no PATH lookup happens in the child).
    pub program: &'a Path,
    pub args: &'a [&'a OsStr],
    pub env: &'a [(&'a OsStr, &'a OsStr)],
    pub cwd: Option<&'a Path>,
    /// The cgroup (a directory descriptor) the child is born in.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// Where the read ends of its stdout and stderr are watched from before
    /// it starts.
    pub output: &'a Readiness,
}

/// A started child: its pid, the read ends of its stdout and stderr, and
/// the pidfd that tells when it exits.
#[derive(Debug)]
pub struct Cloned {
    pub pid: u32,
    /// The pipes' read ends, non-blocking.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub exit: Pidfd,
}

#[derive(Debug, Error)]
pub enum Clone3Error {
    /// clone3 is not available in this process (kernel, architecture or
    /// seccomp filter): it will not be tried again.
    #[error("clone3 is not available: {0}")]
    Unsupported(io::Error),
    /// clone3 refused this child (a cgroup it may not enter, a resource
    /// limit): another way may still start it.
    #[error("clone3 refused the child: {0}")]
    Refused(io::Error),
    /// The program could not be started (not found, not executable, no
    /// such working directory), or a descriptor could not be made.
    #[error(transparent)]
    Spawn(#[from] io::Error),
}

/// Starts `launch.program` with stdin from /dev/null, stdout and stderr on
/// new pipes, in a new process group; inside `launch.cgroup` when given.
pub fn spawn(launch: &Launch) -> Result<Cloned, Clone3Error> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Err(Clone3Error::Unsupported(io::Error::from(
            io::ErrorKind::Unsupported,
        )));
    }
    let program = c_string(launch.program.as_os_str())?;
    let mut args = StringBlock::default();
    args.push(&[program.as_bytes()])?;
    for arg in launch.args {
        args.push(&[arg.as_bytes()])?;
    }
    let mut env = StringBlock::default();
    for (k, v) in launch.env {
        env.push(&[k.as_bytes(), b"=", v.as_bytes()])?;
    }
    let cwd = launch.cwd.map(|d| c_string(d.as_os_str())).transpose()?;
    let argv = args.pointers();
    let envp = env.pointers();

    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    launch.output.watch(out_r.as_fd(), err_r.as_fd())?;
    // All the child needs is ready before it exists; only the parent's
    // side (the reactor) is set up once it runs.
    let null = dev_null()?;

    let context = ChildContext {
        program: program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        stdio: [null, out_w.as_raw_fd(), err_w.as_raw_fd()],
        error: AtomicI32::new(0),
    };
    // This thread's child stack, reused: the thread is suspended while a
    // child runs on it (CLONE_VFORK), so one per thread is enough, and no
    // command pays for a fresh zeroed 64 KiB.
    let mut stack = CHILD_STACKS
        .take()
        .unwrap_or_else(|| vec![StackUnit([0; 16]); CHILD_STACK / 16].into_boxed_slice());
    let mut pidfd: RawFd = -1;
    let mut flags =
        (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64 | CLONE_CLEAR_SIGHAND;
    if launch.cgroup.is_some() {
        flags |= CLONE_INTO_CGROUP;
    }
    let mut clone_args = CloneArgs {
        flags,
        pidfd: &mut pidfd as *mut RawFd as u64,
        // No exit signal while the child is ours: a child whose exec failed
        // exits unseen by the orphan reaper (waitid(P_ALL) sees such a
        // child only with __WALL). exec resets it to SIGCHLD, so a command
        // does send SIGCHLD when it exits (see `sigchld`); its status is
        // awaited on the pidfd.
        exit_signal: 0,
        stack: stack.as_mut_ptr() as u64,
        stack_size: std::mem::size_of_val(&*stack) as u64,
        cgroup: launch.cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    let ret = with_signals_blocked(|| {
        // SAFETY: `clone_args` describes a stack of our own, 16-byte aligned,
        // that outlives the child's use of it (CLONE_VFORK: this thread is
        // suspended until the child execs or exits), and `context` points
        // to strings and arrays that live until this call returns.
        unsafe { clone3_vfork(&mut clone_args, &context) }
    })
    .map_err(Clone3Error::Refused)?;
    CHILD_STACKS.set(Some(stack));
    drop((out_w, err_w));
    if ret < 0 {
        let error = io::Error::from_raw_os_error((-ret) as i32);
        return Err(match (-ret) as i32 {
            libc::ENOSYS | libc::E2BIG => Clone3Error::Unsupported(error),
            _ => Clone3Error::Refused(error),
        });
    }
    let pid = ret as u32;
    // SAFETY: with CLONE_PIDFD the kernel stored a new descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let failed = context.error.load(Ordering::Acquire);
    if failed != 0 {
        // The child exited with 127 without running anything: reap it.
        let _ = waitid(
            Id::PIDFd(pidfd.as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::__WALL,
        );
        return Err(Clone3Error::Spawn(io::Error::from_raw_os_error(failed)));
    }
    // The child runs; what is left is the parent's side: the pidfd and the
    // pipes' read ends go into the reactor.
    // SAFETY: an OwnedFd keeps its descriptor open, unchanged, for as long
    // as the AsyncFd owns it.
    let registered = match unsafe { AsyncFd::register(pidfd) } {
        Ok(exit) => match reader(out_r).and_then(|out| Ok((out, reader(err_r)?))) {
            Ok((stdout, stderr)) => Ok((Pidfd(exit), stdout, stderr)),
            Err(cause) => Err((exit.into_inner(), cause)),
        },
        Err(e) => Err(e.into_parts()),
    };
    let (exit, stdout, stderr) = match registered {
        Ok(parts) => parts,
        Err((pidfd, cause)) => {
            // Cannot await it: end it now rather than leave a child nobody
            // reaps or reads.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = waitid(
                Id::PIDFd(pidfd.as_fd()),
                WaitPidFlag::WEXITED | WaitPidFlag::__WALL,
            );
            return Err(Clone3Error::Spawn(cause));
        }
    };
    Ok(Cloned {
        pid,
        stdout,
        stderr,
        exit,
    })
}

/// A child's pidfd: readable once the child has exited.
#[derive(Debug)]
pub struct Pidfd(AsyncFd<OwnedFd>);

impl Pidfd {
    /// Waits for the child to exit and reaps it.
    pub async fn wait(&self) -> io::Result<ExitStatus> {
        loop {
            let mut ready = self.0.readable().await?;
            match waitid(
                Id::PIDFd(self.0.get_ref().as_fd()),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL,
            ) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::from_raw(code << 8)),
                Ok(WaitStatus::Signaled(_, signal, core)) => {
                    return Ok(ExitStatus::from_raw(
                        signal as i32 | if core { 0x80 } else { 0 },
                    ))
                }
                Ok(_) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// `CLONE_INTO_CGROUP` (Linux 5.7), as the kernel's 64-bit flag.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `CLONE_CLEAR_SIGHAND` (Linux 5.5): every signal the parent catches has
/// its default disposition in the child (ignored ones stay ignored). The
/// child would otherwise ask for each of the 64 signals in turn, as glibc's
/// posix_spawn does: measured 18–20 µs here, on every command's path.
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// `struct clone_args` of the kernel (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Everything the child reads, prepared by the parent.
struct ChildContext {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    /// Descriptors for fds 0, 1 and 2, all above 2.
    stdio: [RawFd; 3],
    /// The errno of the step that failed, written by the child.
    error: AtomicI32,
}

/// The child, on its own stack and in the parent's memory: only raw
/// system calls, no allocation, no lock, no panic.
///
/// # Safety
///
/// Only as the entry point of a child made by [`clone3_vfork`]: `context`
/// points to a live [`ChildContext`] whose pointers are NUL-terminated
/// strings and NULL-terminated arrays of them, and the parent is suspended
/// (CLONE_VFORK) until this child execs or exits.
unsafe extern "C" fn child_main(context: *const ChildContext) -> ! {
    // SAFETY: the caller's contract: `context` is live for the child's life.
    let c = unsafe { &*context };
    // Handlers are the parent's code: none may run here. CLONE_CLEAR_SIGHAND
    // gave the child default dispositions for every caught signal (as exec
    // would); SIGPIPE, which Rust ignores, is a command's default again.
    // SAFETY: a zeroed sigaction is a valid one (no handler, empty mask).
    let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
    default.sa_sigaction = libc::SIG_DFL;
    // SAFETY: raw system calls on our own descriptors and on the strings of
    // `c` (see the contract above); none allocates or takes a lock.
    unsafe {
        libc::sigaction(libc::SIGPIPE, &default, std::ptr::null_mut());
        for (target, &fd) in c.stdio.iter().enumerate() {
            if libc::dup2(fd, target as i32) < 0 {
                fail(c);
            }
        }
        // Only 0, 1 and 2 reach the command: every other descriptor of the
        // server (sockets, the cgroup directories, one it inherited) is
        // closed here, whether or not it is close-on-exec. (A kernel
        // without close_range, before 5.9, relies on
        // [`close_on_exec_above_stdio`].)
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        if libc::setpgid(0, 0) < 0 {
            fail(c);
        }
        if !c.cwd.is_null() && libc::chdir(c.cwd) < 0 {
            fail(c);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(c.program, c.argv, c.envp);
        fail(c)
    }
}

/// Reports the errno of the step that failed to the parent, and exits.
///
/// # Safety
///
/// Only in the child of [`clone3_vfork`], before exec: it exits at once,
/// without running the parent's exit handlers.
unsafe fn fail(c: &ChildContext) -> ! {
    // SAFETY: errno is this thread's; `_exit` ends the child only.
    unsafe {
        c.error.store(*libc::__errno_location(), Ordering::Release);
        libc::_exit(127)
    }
}

/// clone3 with the child running `child_main(context)` on `args.stack`;
/// returns the child's pid, or `-errno`.
///
/// # Safety
///
/// `args.stack` and `args.stack_size` describe memory of the caller's,
/// 16-byte aligned, that no one else uses until this returns; `args.flags`
/// include CLONE_VM and CLONE_VFORK (the child shares this memory, and this
/// thread waits until it execs or exits); `context` is as
/// [`child_main`] requires; every signal is blocked in this thread.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
unsafe fn clone3_vfork(args: &mut CloneArgs, context: &ChildContext) -> i64 {
    let ret: i64;
    // SAFETY: the caller's contract; the child never returns into this
    // frame (it calls `child_main`, which execs or exits), and the parent
    // resumes here with only rax, rcx and r11 changed.
    unsafe {
        // The kernel starts the child at the instruction after `syscall` with
        // rsp at the top of its stack and every other register as the parent
        // had it; rax is 0 there. r12/r13 carry the context and entry point.
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") context as *const ChildContext,
            in("r13") child_main as unsafe extern "C" fn(*const ChildContext) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
unsafe fn clone3_vfork(_: &mut CloneArgs, _: &ChildContext) -> i64 {
    -(libc::ENOSYS as i64)
}

/// Runs `f` with every signal blocked in this thread (the child starts with
/// this mask and clears it just before exec). Fails, without running `f`,
/// when the mask cannot be set: the child could then run a handler.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> io::Result<T> {
    let old = SigSet::all()
        .thread_swap_mask(SigmaskHow::SIG_SETMASK)
        .map_err(|e| io::Error::other(format!("cannot block signals around clone3: {e}")))?;
    let result = f();
    if let Err(e) = old.thread_set_mask() {
        tracing::error!("cannot restore this thread's signal mask after clone3: {e}");
    }
    Ok(result)
}

/// Marks every descriptor above 2 close-on-exec, so that none this process
/// inherited without the flag (`ccx serve 9<secret`) reaches a command,
/// whichever way the command is started. Call once at server start.
pub fn close_on_exec_above_stdio() -> io::Result<()> {
    // SAFETY: close_range only changes descriptor flags.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if done == 0 {
        return Ok(());
    }
    // Before Linux 5.11: one by one, from /proc/self/fd.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in open {
        // The directory's own descriptor is closed by now: EBADF is fine.
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    Ok(())
}

/// A close-on-exec pipe whose ends are both above fd 2 (the child dup2s
/// onto 0, 1 and 2 in order and must not clobber a source), both blocking:
/// (read end, write end).
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// A pipe's read end, made non-blocking. Done once the child runs: the
/// child needs none of it, so it is not on the path to the command's start.
fn reader(r: OwnedFd) -> io::Result<OwnedFd> {
    // A new pipe's read end has no status flag set: one F_SETFL, no
    // F_GETFL, and no fstat to prove it is a pipe (tokio's checked
    // constructor does both).
    nix::fcntl::fcntl(
        r.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    )?;
    Ok(r)
}

/// /dev/null, opened once for every child's stdin.
fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let fd = above_stdio(std::fs::File::open("/dev/null")?.into())?;
    Ok(NULL.get_or_init(|| fd).as_raw_fd())
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    match fd.as_raw_fd() {
        0..=2 => fd.try_clone(), // F_DUPFD_CLOEXEC from 3
        _ => Ok(fd),
    }
}
