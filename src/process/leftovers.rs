//! The commands a server left running when it died without cleaning up
//! (SIGKILL, a crash): found by its command cgroups (`ccx.<pid>`, the
//! directory its pid file records) or by its marker
//! (`CCX_COMMAND_ID=<pid>.*`), SIGKILLed and listed, for `stop` and
//! `status` to report. Only for a server whose pid is no longer alive: a
//! live pid may be a new server's, whose commands carry the same marker.

use std::path::Path;

use nix::sys::signal::Signal;

use super::{procfs, tracking, Held};

/// The cgroup tree a server with `pid` made for its commands, if there is
/// one: `ccx.<pid>` under the server's own cgroup. Read while it runs, so
/// that the pid file can record it.
pub fn command_cgroups_of(pid: u32) -> Option<std::path::PathBuf> {
    let mount = procfs::cgroup2_mount()?;
    let own = procfs::cgroup_v2_of(pid)?;
    let dir = mount
        .join(own.trim_start_matches('/'))
        .join(format!("ccx.{pid}"));
    dir.is_dir().then_some(dir)
}

/// SIGKILLs what the dead server `pid` left: every process in `cgroups` (a
/// `ccx.<pid>` tree, which is then removed) and every process carrying
/// its marker. Returns their pids, sorted; none when `pid` is alive.
pub fn end_leftovers(pid: u32, cgroups: Option<&Path>) -> Vec<u32> {
    if procfs::is_alive(pid) {
        return Vec::new();
    }
    let mut ended = Vec::new();
    let expected = format!("ccx.{pid}");
    if let Some(dir) = cgroups.filter(|d| d.file_name().is_some_and(|n| n == expected.as_str())) {
        ended.extend(tracking::pids_in_tree(dir));
        tracking::remove_tree(dir, true);
    }
    let marker = format!("{}={pid}.", tracking::MARKER_VAR);
    for candidate in procfs::all_pids() {
        if !procfs::environ_has_prefix(candidate, &marker) {
            continue;
        }
        // Held first, then checked again: a pid reused meanwhile is not hit.
        let Ok(held) = Held::open(candidate) else {
            continue;
        };
        if procfs::environ_has_prefix(candidate, &marker) && held.signal(Signal::SIGKILL).is_ok() {
            ended.push(candidate);
        }
    }
    ended.sort_unstable();
    ended.dedup();
    ended
}
