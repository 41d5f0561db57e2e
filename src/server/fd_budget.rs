//! How the server shares its open-file limit, so that running out of
//! descriptors never silences it: a fixed reserve for what is not a
//! connection (listener, logs, state files, the runtime, a `/health`
//! answer), a bounded number of refusals in flight, and the rest split
//! between sessions and pending connections. When the configured
//! CCX_MAX_SESSIONS and CCX_MAX_PENDING do not fit, both are lowered to
//! what does, and the server says so at start.

/// Descriptors kept for everything but connections: the listener, logs,
/// the runtime, signal handling, state files, cgroup directories.
pub const RESERVED: u64 = 64;
/// Descriptors a session may hold at its peak: its socket, and its
/// command's pipes (two ends each while spawning), pidfd, cgroup
/// directory and `cgroup.events`, readiness set.
pub const PER_SESSION: u64 = 9;
/// Descriptors a pending connection holds: its socket, and the spare that
/// carries a `503` if it is evicted.
pub const PER_PENDING: u64 = 2;
/// Evicted connections that may linger at once to deliver their `503`
/// cleanly (one descriptor each); past it a refusal is written and the
/// socket closed at once.
pub const REFUSING: u64 = 16;
/// Never fewer pending connections than this, whatever the limit.
const MIN_PENDING: usize = 8;

/// The caps in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    pub max_sessions: usize,
    pub max_pending: usize,
    /// The open-file limit they were fitted to (`None`: unlimited).
    pub limit: Option<u64>,
}

impl FdBudget {
    /// Fits `max_sessions` and `max_pending` to the open-file `limit`. When
    /// they do not fit, the room left after the reserve is split in half
    /// between sessions and pending connections (at least one session and
    /// [`MIN_PENDING`] pending connections, never more than configured).
    pub fn fit(max_sessions: usize, max_pending: usize, limit: Option<u64>) -> FdBudget {
        let Some(limit) = limit else {
            return FdBudget {
                max_sessions,
                max_pending,
                limit,
            };
        };
        let room = limit.saturating_sub(RESERVED + REFUSING);
        let half = room / 2;
        let fits = needed(max_sessions, max_pending) <= limit;
        let (sessions, pending) = if fits {
            (max_sessions, max_pending)
        } else {
            let sessions = to_usize(half / PER_SESSION).clamp(1, max_sessions.max(1));
            let pending = max_pending.min(to_usize(half / PER_PENDING).max(MIN_PENDING));
            (sessions, pending)
        };
        FdBudget {
            max_sessions: sessions,
            max_pending: pending,
            limit: Some(limit),
        }
    }

    /// What to tell the operator at start when the configuration was
    /// lowered; `None` when it fits.
    pub fn lowered_warning(&self, max_sessions: usize, max_pending: usize) -> Option<String> {
        let limit = self.limit?;
        if self.max_sessions == max_sessions && self.max_pending == max_pending {
            return None;
        }
        Some(format!(
            "the open-file limit ({limit}) fits {} session(s) and {} pending connection(s): \
             CCX_MAX_SESSIONS lowered from {max_sessions} to {}, CCX_MAX_PENDING from \
             {max_pending} to {}; raise `ulimit -n` to at least {} for the configured values",
            self.max_sessions,
            self.max_pending,
            self.max_sessions,
            self.max_pending,
            needed(max_sessions, max_pending),
        ))
    }
}

/// The open-file limit that `max_sessions` and `max_pending` need.
pub fn needed(max_sessions: usize, max_pending: usize) -> u64 {
    RESERVED
        + REFUSING
        + (max_sessions as u64).saturating_mul(PER_SESSION)
        + (max_pending as u64).saturating_mul(PER_PENDING)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_limit_keeps_the_configuration() {
        let b = FdBudget::fit(256, 512, Some(1 << 20));
        assert_eq!((b.max_sessions, b.max_pending), (256, 512));
        assert_eq!(b.lowered_warning(256, 512), None);
        let b = FdBudget::fit(256, 512, None);
        assert_eq!((b.max_sessions, b.max_pending), (256, 512));
    }

    #[test]
    fn a_small_limit_lowers_both_and_says_so() {
        // 256 - 64 - 16 = 176; 88 for sessions at 9, 88 for pending at 2.
        let b = FdBudget::fit(256, 512, Some(256));
        assert_eq!((b.max_sessions, b.max_pending), (9, 44));
        let used = RESERVED
            + REFUSING
            + b.max_sessions as u64 * PER_SESSION
            + b.max_pending as u64 * PER_PENDING;
        assert!(used <= 256, "{used}");
        let warning = b.lowered_warning(256, 512).unwrap();
        assert!(
            warning.contains("CCX_MAX_SESSIONS lowered from 256 to 9"),
            "{warning}"
        );
        assert!(warning.contains(&needed(256, 512).to_string()), "{warning}");
    }

    #[test]
    fn never_below_one_session_and_eight_pending_nor_above_the_configuration() {
        let b = FdBudget::fit(256, 512, Some(16));
        assert_eq!((b.max_sessions, b.max_pending), (1, 8));
        let b = FdBudget::fit(2, 4, Some(100));
        assert_eq!((b.max_sessions, b.max_pending), (1, 4));
    }
}
