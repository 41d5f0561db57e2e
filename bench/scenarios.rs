//! The goal rows of issue 11, each measured side by side with its references
//! in the same run. Latency and throughput rows interleave ccx and its
//! references in rounds (the machine is shared and noisy: a slow minute then
//! hits both sides); memory and streaming rows each get a fresh server so
//! peak figures belong to that scenario alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::error::BenchError;
use crate::floor;
use crate::hostload::IdleProcesses;
use crate::load::{self, new_histogram, Throughput};
use crate::machine::{self, Machine};
use crate::report::{CurvePoint, Figure, Goal, Reference, Report, Row, Spec};
use crate::servers::{self, Server};
use crate::setup::{self, Peer};
use crate::Args;

/// Sizes and durations of a run.
struct Plan {
    mode: &'static str,
    rounds: usize,
    /// Sequential round trips per round (P1, and each half of P7).
    seq_runs: usize,
    seq_limit: Duration,
    /// Closed-loop duration per round (P2) and per curve point (P8).
    load_time: Duration,
    curve_time: Duration,
    /// One-shot exchanges per round (P3).
    one_shots: usize,
    /// Idle sessions (P5).
    sessions: usize,
    /// Bytes of the one long line (P6) and of the 100-byte lines (P9).
    line_bytes: u64,
    lines_bytes: u64,
    /// Idle processes on the host (P7).
    busy: usize,
}

const FULL: Plan = Plan {
    mode: "full",
    rounds: 3,
    seq_runs: 500,
    seq_limit: Duration::from_secs(20),
    load_time: Duration::from_secs(4),
    curve_time: Duration::from_secs(5),
    one_shots: 150,
    sessions: 1000,
    line_bytes: 100_000_000,
    lines_bytes: 100_000_000,
    busy: 4000,
};

const QUICK: Plan = Plan {
    mode: "quick",
    rounds: 1,
    seq_runs: 100,
    seq_limit: Duration::from_secs(5),
    load_time: Duration::from_secs(1),
    curve_time: Duration::from_secs(1),
    one_shots: 30,
    sessions: 1000,
    line_bytes: 10_000_000,
    lines_bytes: 10_000_000,
    busy: 1000,
};

/// Per-row failures become ERROR rows; the run goes on with the next row.
pub(crate) fn settle(specs: &[&Spec], result: Result<Vec<Row>, BenchError>) -> Vec<Row> {
    match result {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("bench: {}: {e}", specs[0].id);
            specs.iter().map(|s| Row::error(s, &e)).collect()
        }
    }
}

fn mb(bytes: u64) -> String {
    if bytes.is_multiple_of(1_000_000) {
        format!("{} MB", bytes / 1_000_000)
    } else {
        format!("{bytes} bytes")
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn list_rates(rates: &[f64]) -> String {
    let rates: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    format!("{} MB/s", rates.join(", "))
}

pub(crate) fn p(hist: &Histogram<u64>, q: f64) -> Figure {
    Figure::ms(hist.value_at_quantile(q))
}

pub(crate) fn reference(name: &str, figure: Figure) -> Option<Reference> {
    Some(Reference {
        name: name.into(),
        figure,
    })
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BenchError> + Send + 'static,
) -> Result<T, BenchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BenchError::Floor(format!("worker thread: {e}")))?
}

struct Context {
    plan: Plan,
    bin: PathBuf,
    logs: PathBuf,
    peer: Result<Peer, String>,
    websocketd: Result<PathBuf, String>,
}

impl Context {
    async fn start_peer(&self, label: &str) -> Result<Server, String> {
        let peer = self.peer.as_ref().map_err(Clone::clone)?;
        servers::start_peer(&peer.python, &peer.script, &self.logs, label)
            .await
            .map_err(|e| e.to_string())
    }
}

pub async fn run(args: Args) -> Result<Report, BenchError> {
    let started = Instant::now();
    let plan = if args.quick { QUICK } else { FULL };
    let mut machine = Machine::probe();
    let bin = args
        .server
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ccx")));
    if !bin.is_file() {
        return Err(BenchError::Start {
            what: "ccx".into(),
            reason: format!("no server binary at {}", bin.display()),
        });
    }
    // Absolute: P12 runs it from another working directory.
    let bin =
        std::fs::canonicalize(&bin).map_err(|e| BenchError::io(bin.display().to_string(), e))?;
    const IDS: [&str; 11] = [
        "P1", "P2", "P3", "P5", "P6", "P7", "P8", "P9", "P10", "P11", "P12",
    ];
    if let Some(bad) = args
        .only
        .iter()
        .find(|o| !IDS.iter().any(|id| id.eq_ignore_ascii_case(o)))
    {
        return Err(BenchError::Start {
            what: "the bench".into(),
            reason: format!("--only {bad:?}: the rows are {}", IDS.join(", ")),
        });
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench");
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| BenchError::io(logs.display().to_string(), e))?;
    let wants =
        |id: &str| args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(id));
    let install = !args.no_install;
    let mut notes = Vec::new();

    let needs_peer = ["P1", "P2", "P3", "P5", "P9"].iter().any(|id| wants(id));
    let peer = if needs_peer {
        blocking(move || Ok(setup::peer(install))).await?
    } else {
        Err("not needed for the selected rows".into())
    };
    if let (true, Err(e)) = (needs_peer, &peer) {
        eprintln!("bench: no FastAPI peer: {e}");
        notes.push(format!("FastAPI peer unavailable: {e}"));
    }
    let websocketd = if wants("P3") {
        blocking(move || Ok(setup::websocketd(install))).await?
    } else {
        Err("not needed for the selected rows".into())
    };
    if let (true, Err(e)) = (wants("P3"), &websocketd) {
        eprintln!("bench: no websocketd, P3 is skipped: {e}");
    }
    let ctx = Context {
        plan,
        bin,
        logs,
        peer,
        websocketd,
    };
    eprintln!(
        "bench: {} run of {} (logs in {})",
        ctx.plan.mode,
        ctx.bin.display(),
        ctx.logs.display()
    );

    let mut rows = Vec::new();
    let mut curve = Vec::new();
    if ["P1", "P2", "P3", "P7", "P8"].iter().any(|id| wants(id)) {
        let ccx = servers::start_ccx(&ctx.bin, &ctx.logs, "main")?;
        let peer = if ["P1", "P2", "P3"].iter().any(|id| wants(id)) {
            ctx.start_peer("main").await
        } else {
            Err("not needed".into())
        };
        if wants("P1") {
            rows.extend(p1(&ctx, &ccx, &peer).await);
        }
        if wants("P2") {
            rows.extend(p2(&ctx, &ccx, &peer).await);
        }
        if wants("P3") {
            rows.extend(p3(&ctx, &ccx, &peer).await);
        }
        if wants("P7") {
            rows.extend(p7(&ctx, &ccx).await);
        }
        if wants("P8") {
            rows.extend(p8(&ctx, &ccx, &mut curve).await);
        }
    }
    if wants("P5") {
        rows.extend(p5(&ctx).await);
    }
    if wants("P6") {
        rows.extend(p6(&ctx).await);
    }
    if wants("P9") {
        rows.extend(p9(&ctx).await);
    }
    if wants("P10") {
        let sdk = blocking(move || Ok(setup::mcp_sdk_peer(install))).await?;
        let sizes = crate::scenarios_mcp::Sizes {
            rounds: ctx.plan.rounds,
            runs: ctx.plan.seq_runs,
            limit: ctx.plan.seq_limit,
        };
        rows.extend(crate::scenarios_mcp::p10(&ctx.bin, &ctx.logs, &sdk, sizes).await);
    }
    if wants("P12") {
        let (bin, logs) = (ctx.bin.clone(), ctx.logs.clone());
        rows.extend(crate::scenarios_doctor::p12(bin, logs, ctx.plan.rounds * 2, install).await);
    }
    if wants("P11") {
        rows.extend(p11(&ctx).await);
    }
    rows.sort_by_key(|r| (r.id.len(), r.id));

    machine.load_end = machine::load_average();
    notes.push(format!(
        "the run took {:.0} s; MB = 10^6 bytes; figures are pooled over {} round(s)",
        started.elapsed().as_secs_f64(),
        ctx.plan.rounds
    ));
    let command = if args.quick {
        "cargo bench --bench goals -- --quick"
    } else {
        "cargo bench --bench goals"
    };
    let report = Report {
        schema: 1,
        mode: ctx.plan.mode,
        date: machine::utc_now(),
        command: command.into(),
        server: ctx.bin.display().to_string(),
        machine,
        rows,
        curve,
        notes,
    };
    println!("{}", report.render());
    let json_path = args.json.unwrap_or_else(|| root.join("goals.json"));
    let json = serde_json::to_string_pretty(&report).map_err(|e| BenchError::Start {
        what: "the JSON report".into(),
        reason: e.to_string(),
    })?;
    std::fs::write(&json_path, json + "\n")
        .map_err(|e| BenchError::io(json_path.display().to_string(), e))?;
    println!("JSON report: {}", json_path.display());
    Ok(report)
}

/// Turns the spawn floor and ccx take in each round of P1.
const P1_SLICES: usize = 5;

/// P1: one persistent session, sequential `echo x`, against the spawn floor.
async fn p1(ctx: &Context, ccx: &Server, peer: &Result<Server, String>) -> Vec<Row> {
    let spec = Spec::new(
        "P1",
        "persistent session, sequential `echo x`, p50",
        Goal::RatioAtMost(1.2),
        "≤ 1.2 × spawn floor",
    );
    eprintln!("bench: P1 …");
    let result = async {
        let plan = &ctx.plan;
        let (mut floor_h, mut ccx_h, mut peer_h) =
            (new_histogram(), new_histogram(), new_histogram());
        for _ in 0..plan.rounds {
            let (runs, limit) = (plan.seq_runs, plan.seq_limit);
            // The floor and ccx take turns in slices of a fifth of a round,
            // so that both see the machine in the same state: its
            // background load moves within seconds.
            let slice = (runs / P1_SLICES).max(1);
            for _ in 0..P1_SLICES {
                let _ = floor_h.add(blocking(move || floor::sequential(slice, limit)).await?);
                let target = ccx.target();
                let _ = ccx_h.add(
                    load::on_own_thread(move || async move {
                        load::sequential(&target, slice, limit).await
                    })
                    .await?,
                );
            }
            if let Ok(peer) = peer {
                let target = peer.target();
                let _ = peer_h.add(
                    load::on_own_thread(move || async move {
                        load::sequential(&target, runs, limit).await
                    })
                    .await?,
                );
            }
        }
        let mut note = format!(
            "p99 ccx {}, spawn floor {}; {} round trips each",
            p(&ccx_h, 0.99),
            p(&floor_h, 0.99),
            ccx_h.len()
        );
        match peer {
            Ok(_) => {
                note += &format!(
                    "; FastAPI peer p50 {} p99 {} ({:.2}× ccx)",
                    p(&peer_h, 0.5),
                    p(&peer_h, 0.99),
                    peer_h.value_at_quantile(0.5) as f64 / ccx_h.value_at_quantile(0.5) as f64
                )
            }
            Err(e) => note += &format!("; FastAPI peer not measured: {e}"),
        }
        Ok(vec![Row::measured(
            &spec,
            p(&ccx_h, 0.5),
            reference("spawn floor", p(&floor_h, 0.5)),
            note,
        )])
    }
    .await;
    settle(&[&spec], result)
}

/// P2: 16 persistent clients against 16 threads spawning and the peer.
async fn p2(ctx: &Context, ccx: &Server, peer: &Result<Server, String>) -> Vec<Row> {
    let floor_spec = Spec::new(
        "P2",
        "16 persistent clients, throughput",
        Goal::RatioAtLeast(0.8),
        "≥ 0.8 × 16-parallel spawn floor",
    );
    let peer_spec = Spec::new(
        "P2",
        "16 persistent clients, throughput",
        Goal::RatioAtLeast(3.0),
        "≥ 3 × FastAPI peer",
    );
    eprintln!("bench: P2 …");
    let result = async {
        let time = ctx.plan.load_time;
        let (mut floor_t, mut ccx_t, mut peer_t) = (
            Throughput::default(),
            Throughput::default(),
            Throughput::default(),
        );
        let mut ccx_h = new_histogram();
        for _ in 0..ctx.plan.rounds {
            floor_t.add(blocking(move || floor::parallel(16, time)).await?);
            let run = load::closed_loop(&ccx.target(), 16, time).await?;
            ccx_t.add(run.throughput);
            let _ = ccx_h.add(&run.latency);
            if let Ok(peer) = peer {
                peer_t.add(
                    load::closed_loop(&peer.target(), 16, time)
                        .await?
                        .throughput,
                );
            }
        }
        let ccx_fig = Figure::per_second(ccx_t.per_second());
        let note = format!(
            "ccx p50 {} p99 {} under this load; {} commands",
            p(&ccx_h, 0.5),
            p(&ccx_h, 0.99),
            ccx_t.count
        );
        let floor_row = Row::measured(
            &floor_spec,
            ccx_fig,
            reference(
                "16 threads spawning",
                Figure::per_second(floor_t.per_second()),
            ),
            note,
        );
        let peer_row = match peer {
            Ok(_) => Row::measured(
                &peer_spec,
                ccx_fig,
                reference("FastAPI peer", Figure::per_second(peer_t.per_second())),
                "",
            ),
            Err(e) => Row::skipped(&peer_spec, format!("FastAPI peer unavailable: {e}")),
        };
        Ok(vec![floor_row, peer_row])
    }
    .await;
    settle(&[&floor_spec, &peer_spec], result)
}

/// P3: connect + execute + completed + close, against websocketd running
/// `sh -c` per connection; ccx, websocketd and the peer take turns.
async fn p3(ctx: &Context, ccx: &Server, peer: &Result<Server, String>) -> Vec<Row> {
    let spec = Spec::new(
        "P3",
        "one-shot (connect + execute + completed + close), p50",
        Goal::RatioAtMost(1.0),
        "≤ websocketd",
    );
    eprintln!("bench: P3 …");
    let wsd = match &ctx.websocketd {
        Ok(bin) => match servers::start_websocketd(bin, &ctx.logs) {
            Ok(server) => Ok(server),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.clone()),
    };
    let result = async {
        let total = ctx.plan.one_shots * ctx.plan.rounds;
        let ccx_target = ccx.target();
        let wsd_target = wsd.as_ref().ok().map(Server::target);
        let peer_target = peer.as_ref().ok().map(Server::target);
        let (ccx_h, wsd_h, peer_h) = load::on_own_thread(move || async move {
            let (mut ccx_h, mut wsd_h, mut peer_h) =
                (new_histogram(), new_histogram(), new_histogram());
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..total + 5 {
                let record = i >= 5;
                let t = load::one_shot_mcp(&ccx_target).await?;
                if record {
                    let _ = ccx_h.record(t.as_nanos() as u64);
                }
                if let Some(wsd) = &wsd_target {
                    let t = load::one_shot_websocketd(wsd).await?;
                    if record {
                        let _ = wsd_h.record(t.as_nanos() as u64);
                    }
                }
                if let Some(peer) = &peer_target {
                    let t = load::one_shot_mcp(peer).await?;
                    if record {
                        let _ = peer_h.record(t.as_nanos() as u64);
                    }
                }
                if Instant::now() > deadline {
                    break;
                }
            }
            Ok((ccx_h, wsd_h, peer_h))
        })
        .await?;
        let mut note = format!(
            "p99 ccx {}; {} exchanges each",
            p(&ccx_h, 0.99),
            ccx_h.len()
        );
        if wsd.is_ok() {
            note += &format!("; websocketd p99 {}", p(&wsd_h, 0.99));
        }
        if peer.is_ok() {
            note += &format!(
                "; FastAPI peer p50 {} p99 {}",
                p(&peer_h, 0.5),
                p(&peer_h, 0.99)
            );
        }
        let row = match &wsd {
            Ok(_) => Row::measured(
                &spec,
                p(&ccx_h, 0.5),
                reference("websocketd", p(&wsd_h, 0.5)),
                note,
            ),
            Err(e) => {
                let mut row = Row::measured(&spec, p(&ccx_h, 0.5), None, "");
                row.note = format!("websocketd unavailable ({e}); {note}");
                row
            }
        };
        Ok(vec![row])
    }
    .await;
    settle(&[&spec], result)
}

/// P7: P1 again with many idle processes elsewhere on the host.
async fn p7(ctx: &Context, ccx: &Server) -> Vec<Row> {
    let n = ctx.plan.busy;
    let spec = Spec::new(
        "P7",
        format!("P1 with {n} idle processes on the host, p50"),
        Goal::RatioAtMost(1.1),
        "≤ 1.1 × P1 without them",
    );
    eprintln!("bench: P7 ({n} idle sleep processes) …");
    let result = async {
        let (runs, limit) = (ctx.plan.seq_runs, ctx.plan.seq_limit);
        let without = load::sequential(&ccx.target(), runs, limit).await?;
        let idle = blocking(move || IdleProcesses::start(n)).await?;
        let with = load::sequential(&ccx.target(), runs, limit).await;
        let floor_with = blocking(move || floor::sequential(200, limit)).await;
        let started = idle.len();
        blocking(move || {
            drop(idle);
            Ok(())
        })
        .await?;
        let (with, floor_with) = (with?, floor_with?);
        let note = format!(
            "{started} sleeps in one group, ended afterwards; with them: p99 {}, {} round trips (without: p99 {}); spawn floor p50 with them {}",
            p(&with, 0.99),
            with.len(),
            p(&without, 0.99),
            p(&floor_with, 0.5)
        );
        Ok(vec![Row::measured(
            &spec,
            p(&with, 0.5),
            reference("P1 without them", p(&without, 0.5)),
            note,
        )])
    }
    .await;
    settle(&[&spec], result)
}

/// P8: throughput and latency at 1, 4, 16 and 64 clients.
async fn p8(ctx: &Context, ccx: &Server, curve: &mut Vec<CurvePoint>) -> Vec<Row> {
    let spec = Spec::new(
        "P8",
        "p99 at 64 clients (vs at 16)",
        Goal::RatioAtMost(4.0),
        "≤ 4 × p99 at 16",
    );
    eprintln!("bench: P8 …");
    let result = async {
        let mut p99 = [0u64; 2];
        for clients in [1, 4, 16, 64] {
            let run = load::closed_loop(&ccx.target(), clients, ctx.plan.curve_time).await?;
            curve.push(CurvePoint {
                clients,
                throughput: Figure::per_second(run.throughput.per_second()),
                p50: p(&run.latency, 0.5),
                p99: p(&run.latency, 0.99),
            });
            match clients {
                16 => p99[0] = run.latency.value_at_quantile(0.99),
                64 => p99[1] = run.latency.value_at_quantile(0.99),
                _ => {}
            }
        }
        Ok(vec![Row::measured(
            &spec,
            Figure::ms(p99[1]),
            reference("p99 at 16", Figure::ms(p99[0])),
            "",
        )])
    }
    .await;
    settle(&[&spec], result)
}

/// P5: a fresh server's RSS idle, then with N idle sessions open.
async fn p5(ctx: &Context) -> Vec<Row> {
    let n = ctx.plan.sessions;
    let idle_spec = Spec::new("P5", "idle server, RSS", Goal::AtMost(10.0), "≤ 10 MB");
    let open_spec = Spec::new(
        "P5",
        format!("{n} idle sessions, server RSS"),
        Goal::AtMost(50.0),
        "≤ 50 MB",
    );
    eprintln!("bench: P5 ({n} idle sessions) …");
    async fn measure(server: &mut Server, n: usize) -> Result<(u64, u64), BenchError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = server.rss()?;
        let sessions = load::open_sessions(&server.target(), n).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let loaded = server.rss()?;
        server.check_alive()?;
        drop(sessions);
        Ok((idle, loaded))
    }
    let result = async {
        let mut ccx = servers::start_ccx(&ctx.bin, &ctx.logs, "p5")?;
        let (idle, loaded) = measure(&mut ccx, n).await?;
        drop(ccx);
        let per_session = loaded.saturating_sub(idle) as f64 / n as f64 / 1e3;
        let mut note = format!("ccx: {per_session:.1} KB a session");
        let peer = match ctx.start_peer("p5").await {
            Ok(mut peer) => {
                let (p_idle, p_loaded) = measure(&mut peer, n).await?;
                note += &format!(
                    "; FastAPI peer idle {}, with {n} sessions {} ({:.1} KB a session)",
                    Figure::megabytes(p_idle),
                    Figure::megabytes(p_loaded),
                    p_loaded.saturating_sub(p_idle) as f64 / n as f64 / 1e3
                );
                reference("FastAPI peer", Figure::megabytes(p_loaded))
            }
            Err(e) => {
                note += &format!("; FastAPI peer not measured: {e}");
                None
            }
        };
        Ok(vec![
            Row::measured(&idle_spec, Figure::megabytes(idle), None, ""),
            Row::measured(&open_spec, Figure::megabytes(loaded), peer, note),
        ])
    }
    .await;
    settle(&[&idle_spec, &open_spec], result)
}

/// P6: one long line on a fresh server: throughput and peak RSS.
async fn p6(ctx: &Context) -> Vec<Row> {
    let bytes = ctx.plan.line_bytes;
    let rate_spec = Spec::new(
        "P6",
        format!("one {} line, throughput", mb(bytes)),
        Goal::AtLeast(200.0),
        "≥ 200 MB/s",
    );
    let rss_spec = Spec::new(
        "P6",
        format!("one {} line, server peak RSS", mb(bytes)),
        Goal::AtMost(32.0),
        "≤ 32 MB",
    );
    eprintln!("bench: P6 …");
    let result = async {
        let ccx = servers::start_ccx(&ctx.bin, &ctx.logs, "p6")?;
        let command = format!("head -c {bytes} /dev/zero | tr '\\000' a; echo");
        let mut rates = Vec::new();
        let mut messages = 0;
        for _ in 0..ctx.plan.rounds {
            let got = load::stream(&ccx.target(), &command).await?;
            if got.bytes != bytes + 1 {
                return Err(BenchError::wire(
                    "ccx",
                    format!("the {bytes}-byte line arrived as {} bytes", got.bytes),
                ));
            }
            rates.push(got.bytes as f64 / got.elapsed.as_secs_f64() / 1e6);
            messages = got.messages;
        }
        let peak = ccx.peak_rss()?;
        let rate = median(&mut rates);
        let note = format!(
            "median of {} runs ({}); {messages} process.output messages a run",
            rates.len(),
            list_rates(&rates)
        );
        Ok(vec![
            Row::measured(&rate_spec, Figure::mb_per_second(rate), None, note),
            Row::measured(&rss_spec, Figure::megabytes(peak), None, ""),
        ])
    }
    .await;
    settle(&[&rate_spec, &rss_spec], result)
}

/// P9: many 100-byte lines (cc_executor's framing is one message a line).
async fn p9(ctx: &Context) -> Vec<Row> {
    let bytes = ctx.plan.lines_bytes;
    let lines = bytes / 100;
    let spec = Spec::new(
        "P9",
        format!("{} in 100-byte lines, throughput", mb(bytes)),
        Goal::AtLeast(100.0),
        "≥ 100 MB/s",
    );
    eprintln!("bench: P9 …");
    let command = format!("yes {} | head -n {lines}", "a".repeat(99));
    let result = async {
        let check = |server: &str, got: &load::Streamed| {
            if got.bytes == bytes {
                Ok(())
            } else {
                Err(BenchError::wire(
                    server,
                    format!("{bytes} bytes of lines arrived as {} bytes", got.bytes),
                ))
            }
        };
        let ccx = servers::start_ccx(&ctx.bin, &ctx.logs, "p9")?;
        let mut rates = Vec::new();
        let mut got = None;
        for _ in 0..ctx.plan.rounds {
            let run = load::stream(&ccx.target(), &command).await?;
            check("ccx", &run)?;
            rates.push(bytes as f64 / run.elapsed.as_secs_f64() / 1e6);
            got = Some(run);
        }
        drop(ccx);
        let got = got.ok_or_else(|| BenchError::wire("ccx", "no run"))?;
        let rate = median(&mut rates);
        let framing = if got.messages == lines {
            "one per line".to_string()
        } else {
            format!(
                "{:.1} lines a message: not yet one per line",
                lines as f64 / got.messages as f64
            )
        };
        let mut note = format!(
            "median of {} runs ({}); ccx sent {} process.output messages for {lines} lines ({framing})",
            rates.len(),
            list_rates(&rates),
            got.messages
        );
        // The peer runs at a few MB/s: a fifth of the volume measures its
        // rate as well and keeps the run short.
        let peer_bytes = bytes / 5;
        let peer_command = format!("yes {} | head -n {}", "a".repeat(99), peer_bytes / 100);
        let peer = match ctx.start_peer("p9").await {
            Ok(peer) => {
                let got = load::stream(&peer.target(), &peer_command).await?;
                if got.bytes != peer_bytes {
                    return Err(BenchError::wire(
                        "FastAPI peer",
                        format!("{peer_bytes} bytes of lines arrived as {} bytes", got.bytes),
                    ));
                }
                note += &format!(
                    "; the FastAPI peer streamed {} ({} messages)",
                    mb(peer_bytes),
                    got.messages
                );
                reference(
                    "FastAPI peer",
                    Figure::mb_per_second(peer_bytes as f64 / got.elapsed.as_secs_f64() / 1e6),
                )
            }
            Err(e) => {
                note += &format!("; FastAPI peer not measured: {e}");
                None
            }
        };
        Ok(vec![Row::measured(
            &spec,
            Figure::mb_per_second(rate),
            peer,
            note,
        )])
    }
    .await;
    settle(&[&spec], result)
}

/// P11: `ccx exec` of short lines to /dev/null, the batched framing ccx's
/// own client asks for (the whole client process is timed: start, connect,
/// stream, exit).
async fn p11(ctx: &Context) -> Vec<Row> {
    let bytes = ctx.plan.lines_bytes;
    let spec = Spec::new(
        "P11",
        format!("ccx exec of {} of `yes` lines to /dev/null", mb(bytes)),
        Goal::AtLeast(200.0),
        "≥ 200 MB/s",
    );
    eprintln!("bench: P11 …");
    let command = format!("yes | head -c {bytes}");
    let result = async {
        let ccx = servers::start_ccx(&ctx.bin, &ctx.logs, "p11")?;
        let url = ccx.target().url;
        let mut rates = Vec::new();
        for _ in 0..ctx.plan.rounds {
            let started = std::time::Instant::now();
            // `spawn`, not tokio's `output()`: that one pipes stdout whatever
            // was set, and the bench would read the 100 MB itself.
            let child = tokio::process::Command::new(&ctx.bin)
                .args(["exec", "--url", &url, "--", &command])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| BenchError::io("ccx exec", e))?;
            let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
                .await
                .map_err(|_| BenchError::wire("ccx exec", "did not finish within 120 s"))?
                .map_err(|e| BenchError::io("ccx exec", e))?;
            let elapsed = started.elapsed();
            if !out.status.success() {
                return Err(BenchError::wire(
                    "ccx exec",
                    format!(
                        "exited with {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
            rates.push(bytes as f64 / elapsed.as_secs_f64() / 1e6);
        }
        // How the same bytes are framed for ccx's own client.
        let framed = load::stream_batched(&ccx.target(), &command).await?;
        if framed.bytes != bytes {
            return Err(BenchError::wire(
                "ccx",
                format!("{bytes} bytes arrived as {} bytes", framed.bytes),
            ));
        }
        let rate = median(&mut rates);
        let note = format!(
            "median of {} runs ({}); batched framing: {} process.output messages for {} lines",
            rates.len(),
            list_rates(&rates),
            framed.messages,
            bytes / 2
        );
        Ok(vec![Row::measured(
            &spec,
            Figure::mb_per_second(rate),
            None,
            note,
        )])
    }
    .await;
    settle(&[&spec], result)
}
