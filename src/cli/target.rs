//! Which server a client command (`exec`, `stress`, `doctor`) talks to
//! when no `--url` names one: the address of CCX_HOST/CCX_PORT (or their
//! cc_executor names) when set, else the background server recorded in the
//! state directory's pid file (as `ccx serve` left it, whatever its port),
//! else the default address. The choice says where it came from, so a
//! command can tell the user which server it chose.

use crate::config::{Config, Source};
use crate::lifecycle::{Probe, StateDir};

/// The server chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub url: String,
    /// Where the URL came from, for a note such as `using URL (WHY)`.
    pub why: String,
    /// True when the state directory's background server was chosen.
    pub background: bool,
}

impl Chosen {
    /// The line a command prints (on stderr) about its choice.
    pub fn note(&self, command: &str) -> String {
        format!("ccx {command}: using {} ({})", self.url, self.why)
    }
}

/// The server of a command run without `--url`.
pub fn choose(config: &Config) -> Chosen {
    let named = |field| match config.source_of(field) {
        Source::Default => None,
        Source::Env(name) | Source::Flag(name) => Some(name),
    };
    if let Some(name) = named("port").or_else(|| named("host")) {
        return Chosen {
            url: config.ws_url(),
            why: format!("from {name}"),
            background: false,
        };
    }
    let state = StateDir::new(&config.state_dir);
    if let Ok(Probe::Ours(record)) = state.probe() {
        if let Some(url) = record.url {
            return Chosen {
                url,
                why: format!(
                    "the background server of {}, pid {}",
                    state.dir.display(),
                    record.pid
                ),
                background: true,
            };
        }
    }
    Chosen {
        url: config.ws_url(),
        why: format!(
            "the default address: no background server runs for {}",
            state.dir.display()
        ),
        background: false,
    }
}
