//! The spawn floor: what starting `/bin/sh -c 'echo x'` and reading its
//! output costs with `std::process::Command` and nothing else, sequentially
//! (latency) and from 16 threads at once (throughput). No server can answer
//! a command faster than this.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::error::BenchError;
use crate::load::{new_histogram, Throughput};

fn spawn_once() -> Result<(), BenchError> {
    let out = Command::new("/bin/sh")
        .args(["-c", "echo x"])
        .output()
        .map_err(|e| BenchError::Floor(format!("cannot start /bin/sh: {e}")))?;
    if out.stdout != b"x\n" || !out.status.success() {
        return Err(BenchError::Floor(format!(
            "/bin/sh -c 'echo x' printed {:?} and ended with {}",
            String::from_utf8_lossy(&out.stdout),
            out.status
        )));
    }
    Ok(())
}

/// `runs` sequential spawns after a short warm-up: their latencies.
pub fn sequential(runs: usize, limit: Duration) -> Result<Histogram<u64>, BenchError> {
    for _ in 0..10 {
        spawn_once()?;
    }
    let mut hist = new_histogram();
    let end = Instant::now() + limit;
    for _ in 0..runs {
        let t0 = Instant::now();
        spawn_once()?;
        let _ = hist.record(t0.elapsed().as_nanos() as u64);
        if Instant::now() > end {
            break;
        }
    }
    Ok(hist)
}

/// `threads` threads spawning back to back for `duration`: spawns a second.
pub fn parallel(threads: usize, duration: Duration) -> Result<Throughput, BenchError> {
    let start = Instant::now();
    let end = start + duration;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            thread::spawn(move || -> Result<u64, BenchError> {
                let mut done = 0;
                while Instant::now() < end {
                    spawn_once()?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut count = 0;
    for handle in handles {
        count += handle
            .join()
            .map_err(|_| BenchError::Floor("a spawning thread panicked".into()))??;
    }
    Ok(Throughput {
        count,
        elapsed: start.elapsed(),
    })
}
