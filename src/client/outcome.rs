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
/// [`Client::run`] and the no-server runner of `ccx stress --direct`. It
/// gathers bytes, because batches may cut a character in two; they become
/// text at the end.
#[derive(Debug, Clone, Default)]
pub struct OutputCollector {
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
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
            StreamKind::Stdout => self.stdout.extend_from_slice(output.data.as_bytes()),
            StreamKind::Stderr => self.stderr.extend_from_slice(output.data.as_bytes()),
        }
    }

    pub fn finish(self, started: ProcessStatus, completed: Completed) -> RunOutcome {
        let mut lossy = self.lossy;
        let mut text = |bytes: Vec<u8>| {
            String::from_utf8(bytes).unwrap_or_else(|e| {
                lossy = true;
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            })
        };
        let (stdout, stderr) = (text(self.stdout), text(self.stderr));
        RunOutcome {
            started,
            stdout,
            stderr,
            lossy,
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
