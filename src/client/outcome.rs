//! What a command run through the client produced: its events, and the
//! collected [`RunOutcome`] (stdout, stderr, completion).

use super::*;

/// A process event, as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started(ProcessStatus),
    Output(Output),
    /// `process.paused`, `process.resumed` or `process.canceled`.
    Control(ProcessStatus),
    Completed(Completed),
    /// Any other notification (kept, not interpreted).
    Other(Frame),
}

/// Everything a command produced, collected by [`Client::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub started: ProcessStatus,
    pub stdout: String,
    pub stderr: String,
    pub lossy: bool,
    pub truncated: bool,
    pub completed: Completed,
}

/// Output gathered chunk by chunk until the completion arrives; shared by
/// [`Client::run`] and the no-server runner of `ccx stress --direct`.
#[derive(Debug, Clone, Default)]
pub struct OutputCollector {
    pub(super) stdout: String,
    pub(super) stderr: String,
    pub(super) lossy: bool,
    pub(super) truncated: bool,
}

impl OutputCollector {
    pub fn add(&mut self, output: Output) {
        self.lossy |= output.lossy;
        // Every chunk of a long line but its last says `truncated`: the line
        // continues in the next message (concatenation rebuilds it), nothing
        // was dropped.
        self.truncated |= output.truncated && !continues(&output);
        match output.stream {
            StreamKind::Stdout => self.stdout.push_str(&output.data),
            StreamKind::Stderr => self.stderr.push_str(&output.data),
        }
    }

    pub fn finish(self, started: ProcessStatus, completed: Completed) -> RunOutcome {
        RunOutcome {
            started,
            stdout: self.stdout,
            stderr: self.stderr,
            lossy: self.lossy,
            truncated: self.truncated,
            completed,
        }
    }
}

/// Whether this output message is a chunk of a long line that the next
/// message continues (cc_executor marks such chunks `truncated`).
pub fn continues(output: &Output) -> bool {
    matches!((output.chunk_index, output.total_chunks), (Some(i), Some(n)) if i + 1 < n)
}
