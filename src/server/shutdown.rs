//! How a serving process is told to stop: a drain token (finish what runs,
//! take nothing new) and a shutdown token (stop now), and what cancels them:
//! SIGTERM, SIGINT, and the lifeline (stdin from a parent closing). Shared by
//! `ccx serve` and `ccx mcp`, so both react to signals the same way.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The two ways a server stops; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancelled first on SIGTERM: readiness fails, new sessions are
    /// refused, running commands may finish (CCX_DRAIN_PERIOD).
    pub drain: CancellationToken,
    /// Cancelled on SIGINT, on a second signal, or when the drain is over:
    /// every process group is ended now.
    pub now: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// One token for both: for a process with nothing to drain (`ccx mcp`),
    /// any signal stops it.
    pub fn without_drain() -> Shutdown {
        let token = CancellationToken::new();
        Shutdown {
            drain: token.clone(),
            now: token,
        }
    }

    /// SIGTERM (what `docker stop`, Kubernetes and `ccx stop` send) drains;
    /// SIGINT (Ctrl-C in a terminal) and any second signal stop at once.
    /// The handlers are in place when this returns (call it inside a tokio
    /// runtime, before announcing readiness); each signal is logged.
    pub fn stop_on_signals(&self) {
        let (Ok(term), Ok(int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install SIGTERM/SIGINT handlers");
            return;
        };
        tokio::spawn(self.clone().on_signals(term, int));
    }

    async fn on_signals(self, mut term: Signal, mut int: Signal) {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = self.now.cancelled() => return,
        };
        if name == "SIGTERM" {
            tracing::info!("{name} received: shutting down");
            self.drain.cancel();
        } else {
            tracing::info!("{name} received: shutting down now");
            self.now.cancel();
            return;
        }
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = self.now.cancelled() => return,
        };
        tracing::info!("second signal ({name}) received: ending the drain now");
        self.now.cancel();
    }

    /// The lifeline: stdin is a pipe from the process that started this one;
    /// when it closes (that process died, even by SIGKILL), stop now. A plain
    /// thread, since a blocking read cannot be cancelled and must not hold up
    /// the runtime's shutdown.
    pub fn stop_when_stdin_closes(&self) {
        let now = self.now.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            if !now.is_cancelled() {
                tracing::warn!(
                    "the process that started this server is gone (--lifeline closed): shutting down"
                );
                now.cancel();
            }
        });
    }
}
