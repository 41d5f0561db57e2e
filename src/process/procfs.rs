//! Every read of /proc in ccx: a process's stat fields, command line and
//! environment, this process's own children, and who holds a listening
//! socket. Nothing else in the crate parses /proc.
//!
//! Readers return `None` (or an empty list) when the process is gone or
//! unreadable: a process can vanish between any two reads. Only
//! [`all_pids`] and [`socket_holders`] walk the whole host; they are for
//! one-shot diagnostics (`stop`, the doctor), never for a command's path.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

/// The fields of /proc/PID/stat that ccx uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// One letter: R, S, D, T, Z, X, …
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    /// Start time in clock ticks after boot: with the pid, it names one
    /// process for ever.
    pub start_ticks: u64,
}

impl Stat {
    /// Alive: exists and is neither a zombie nor dead.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Parses the text of /proc/PID/stat. The command name (field 2) may itself
/// contain spaces and parentheses, so fields are counted after its last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// /proc/PID/stat of one process.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether a process exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.is_alive())
}

/// The argument vector of a process (empty when gone or unreadable).
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the environment of `pid` holds exactly `entry` (`NAME=value`).
/// False when it cannot be read (gone, a zombie, another user's).
pub fn environ_contains(pid: u32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|raw| raw.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
        .unwrap_or(false)
}

/// The direct children of `pid` (alive or zombie), from its threads'
/// `children` files.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children: Vec<u32> = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    children.sort_unstable();
    children.dedup();
    children
}

/// Where descriptor `fd` of `pid` points: a path, `pipe:[INODE]`,
/// `socket:[INODE]`, `/dev/null`.
pub fn fd_target(pid: u32, fd: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|p| p.display().to_string())
}

/// The working directory of `pid`.
pub fn cwd(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The environment `pid` was started with (empty when unreadable).
pub fn environ(pid: u32) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    use std::os::unix::ffi::OsStrExt;
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter_map(|entry| {
            let at = entry.iter().position(|b| *b == b'=')?;
            Some((
                std::ffi::OsStr::from_bytes(&entry[..at]).to_os_string(),
                std::ffi::OsStr::from_bytes(&entry[at + 1..]).to_os_string(),
            ))
        })
        .collect()
}

/// Whether any live process other than `except` holds `target` (such as
/// `pipe:[123]`) open. A full walk: diagnostics only.
pub fn anyone_holds(target: &str, except: &[u32]) -> bool {
    all_pids()
        .into_iter()
        .filter(|p| !except.contains(p))
        .any(|pid| {
            is_alive(pid)
                && std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == target))
        })
}

/// This process's direct children (alive or zombie), from
/// /proc/self/task/*/children: the cost grows with this process's threads
/// and children, not with the number of processes on the host. Orphans
/// re-parented to a subreaper appear here too.
pub fn own_children() -> Vec<u32> {
    children_of(std::process::id())
}

/// Children of this process's main thread: where the kernel re-parents
/// orphans when this process is their subreaper (it hands them to the
/// first live thread, the main one while it lives). One read: cheap
/// enough for every command's end.
pub fn main_thread_children() -> Vec<u32> {
    static CHILDREN: OnceLock<Option<File>> = OnceLock::new();
    let file = CHILDREN.get_or_init(|| {
        File::open(format!("/proc/self/task/{}/children", std::process::id())).ok()
    });
    file.as_ref()
        .and_then(|f| reread(f).ok())
        .map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A /proc or sysfs file read from its start to its end with `pread`:
/// the kernel renders such a file anew for a read at offset 0, so one kept
/// open is read again with one system call instead of an open, a read and
/// a close; and no `fstat` sizes the buffer (`std::fs::read_to_string`
/// does one for a size these files do not report).
///
/// A read that fills less than half the buffer is the end: the kernel's
/// rendering (`seq_file`) hands out whole lines until the caller's buffer
/// or its own page-sized one is full, so it stops short only at the end or
/// before a line longer than what is left of its page, and the files read
/// here have short lines (pids, `name value`). That saves the second call
/// that would only return 0 for the small files read on every command.
pub(super) fn reread(file: &File) -> std::io::Result<String> {
    const BUF: usize = 4096;
    let mut text = Vec::new();
    let mut buf = [0u8; BUF];
    loop {
        match file.read_at(&mut buf, text.len() as u64) {
            Ok(0) => break,
            Ok(n) => {
                text.extend_from_slice(&buf[..n]);
                if n < BUF / 2 {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(text).map_err(std::io::Error::other)
}

/// Every pid on the host. A full walk: diagnostics only.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Inodes of LISTEN sockets on `port` in one /proc/net/tcp{,6} table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let port_hex = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            let (_, p) = local.rsplit_once(':')?;
            (p == port_hex && *state == "0A" && inode != 0).then_some(inode)
        })
        .collect()
}

/// Pids with a socket listening on `port` (any address), found through the
/// `socket:[inode]` links under /proc/*/fd. A full walk: diagnostics only.
pub fn socket_holders(port: u16) -> Vec<u32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    all_pids()
        .into_iter()
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd"))
            else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .map(|l| targets.iter().any(|t| l.as_os_str() == t.as_str()))
                    .unwrap_or(false)
            })
        })
        .collect()
}

/// The line of /proc/self/cgroup for the unified (v2) hierarchy: `0::PATH`.
pub fn own_cgroup_v2() -> Option<String> {
    cgroup_v2_in("/proc/self/cgroup")
}

/// The cgroup v2 path of `pid` (`0::PATH` of /proc/PID/cgroup), relative
/// to this process's cgroup namespace.
pub fn cgroup_v2_of(pid: u32) -> Option<String> {
    cgroup_v2_in(&format!("/proc/{pid}/cgroup"))
}

/// Whether the environment of `pid` holds an entry starting with `prefix`.
pub fn environ_has_prefix(pid: u32, prefix: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .any(|e| e.starts_with(prefix.as_bytes()))
        })
        .unwrap_or(false)
}

fn cgroup_v2_in(file: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo
/// (`/sys/fs/cgroup` on most systems, `/sys/fs/cgroup/unified` on hybrid ones).
pub fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_cgroup2_mount(&text)
}

/// The mount point of the first `cgroup2` line of a mountinfo text.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<std::path::PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount_point = left.split_whitespace().nth(4)?;
        Some(std::path::PathBuf::from(unescape_octal(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_parsed_after_a_name_with_spaces_and_parentheses() {
        let text = "42 (a (b) c) S 7 42 40 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let s = parse_stat(text).unwrap();
        assert_eq!((s.state, s.ppid, s.pgrp, s.session), ('S', 7, 42, 40));
        assert_eq!(s.start_ticks, 12345);
    }

    #[test]
    fn this_process_is_alive_and_its_child_is_listed() {
        let me = std::process::id();
        assert!(is_alive(me));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(own_children().contains(&child.id()));
        assert_eq!(stat(child.id()).unwrap().ppid, me);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_kept_file_longer_than_a_page_is_reread_to_its_end() {
        // A shell's `children` file with a thousand sleeping children (5 to
        // 7 bytes each) is longer than the 4 KiB the kernel renders at a
        // time, so reading must go on past a first full read. The children
        // are the shell's, in a process group of its own: this test
        // process adopts none (other tests look for adopted orphans).
        use std::os::unix::process::CommandExt;
        let mut shell = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 1000 ]; do sleep 30 & i=$((i+1)); done; wait",
            ])
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let path = format!("/proc/{0}/task/{0}/children", shell.id());
        let count = || {
            std::fs::read_to_string(&path)
                .map(|t| t.split_whitespace().count())
                .unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while count() < 1000 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let file = File::open(&path).unwrap();
        let listed = reread(&file).unwrap();
        let again = reread(&file).unwrap();
        let whole = std::fs::read_to_string(&path).unwrap();
        let group = nix::unistd::Pid::from_raw(shell.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = shell.wait();
        assert!(listed.len() > 4096, "{} bytes", listed.len());
        assert_eq!(listed.split_whitespace().count(), 1000);
        assert_eq!(listed, whole);
        assert_eq!(
            again, listed,
            "a second read renders the file anew from its start"
        );
    }

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid).unwrap(),
            Path::new("/sys/fs/cgroup/unified")
        );
        let spaced = "41 31 0:38 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(spaced).unwrap(),
            Path::new("/mnt/my cg")
        );
        assert!(parse_cgroup2_mount("31 23 0:28 / /x rw - tmpfs tmpfs rw\n").is_none());
    }

    #[test]
    fn listening_inodes_match_port_and_listen_state_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F43 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:1F43 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 100 0 0 10 0\n\
   2: 0100007F:1F44 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 8003), vec![4242]);
    }
}
