//! Message-plane benchmark: round trip of a small patch (send → durable → acknowledged) and
//! acknowledged throughput with 1 and 8 agents, over real Zenoh sessions on a Unix socket.
//! Prints a Markdown section. Run with `cargo run --release -p jit-plane --example bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use jit_kernel::agents;
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::repo::InitOptions;
use jit_kernel::Repository;
use jit_plane::agent::{Agent, AgentOptions};
use jit_plane::server::{Plane, PlaneOptions};

fn patch(agent: &str, n: usize) -> Patch {
    Patch {
        id: format!("{agent}-{n}"),
        author: agent.into(),
        ts: n as u64,
        ops: vec![PatchOp::Put {
            path: format!("{agent}/f{}.txt", n % 64),
            content: format!("edit {n}\n").into_bytes(),
            executable: false,
        }],
    }
}

/// Patches an agent keeps unacknowledged in the pipelined runs.
const WINDOW: usize = 256;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Acknowledged patches per second for `agents` agents pushing `per_agent` patches each, with
/// `window` patches in flight per agent (1: each waits for its acknowledgement). The clock runs
/// from the moment every agent is connected and has its SWS until the last acknowledgement:
/// opening a session and creating an SWS are one-time costs, timed on their own.
async fn run_agents(
    dir: &std::path::Path,
    agents: usize,
    per_agent: usize,
    window: usize,
) -> (f64, Duration) {
    let ready = Arc::new(tokio::sync::Barrier::new(agents + 1));
    let mut handles = Vec::new();
    let setup_started = Instant::now();
    for a in 0..agents {
        let dir = dir.to_owned();
        let ready = ready.clone();
        handles.push(tokio::spawn(async move {
            let name = format!("agent{a}");
            let mut agent = Agent::connect(
                &name,
                SigningKey::from_bytes(&[a as u8 + 1; 32]),
                AgentOptions::local(&dir.join(".jit")),
            )
            .await
            .expect("connect");
            let sws = agent.create_sws(None).await.expect("create");
            let patches: Vec<Patch> = (0..per_agent).map(|n| patch(&name, n)).collect();
            ready.wait().await;
            for answer in agent
                .push_many(&sws.id, &patches, window)
                .await
                .expect("push")
            {
                answer.expect("applied");
            }
            agent
        }));
    }
    ready.wait().await;
    let setup = setup_started.elapsed();
    let start = Instant::now();
    let mut connected = Vec::new();
    for handle in handles {
        connected.push(handle.await.expect("agent task"));
    }
    let rate = (agents * per_agent) as f64 / start.elapsed().as_secs_f64();
    for agent in connected {
        agent.close().await;
    }
    (rate, setup)
}

/// Throughput over [`RUNS`] runs: the median, and "median (min–max)" for the table; and the
/// slowest setup (sessions opened, SWS created) before the clock started.
struct Rates {
    median: f64,
    text: String,
    setup: Duration,
}

/// The message-plane issue's throughput goal: acknowledged small patches per second.
const GOAL_RATE: f64 = 5000.0;

/// Runs [`run_agents`] `RUNS` times.
async fn repeat(dir: &std::path::Path, agents: usize, per_agent: usize, window: usize) -> Rates {
    let mut rates = Vec::new();
    let mut setup = Duration::ZERO;
    for _ in 0..RUNS {
        let (rate, took) = run_agents(dir, agents, per_agent, window).await;
        rates.push(rate);
        setup = setup.max(took);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    Rates {
        median,
        text: format!(
            "{median:.0} ({:.0}–{:.0})",
            rates[0],
            rates[rates.len() - 1]
        ),
        setup,
    }
}

/// Repetitions of each throughput measure.
const RUNS: usize = 3;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Arc::new(
        Repository::init(
            dir.path(),
            &InitOptions {
                name: "bench".into(),
                owner: "bench".into(),
                ..Default::default()
            },
        )
        .expect("init"),
    );
    for a in 0..8u8 {
        agents::register(
            repo.store(),
            &format!("agent{a}"),
            &SigningKey::from_bytes(&[a + 1; 32]).verifying_key(),
            vec!["sws.create".into(), "commit:*".into()],
        )
        .expect("register");
    }
    let plane = Plane::start(
        repo.clone(),
        PlaneOptions {
            unix_socket: Some(dir.path().join(".jit/zenoh.sock")),
            ..Default::default()
        },
    )
    .await
    .expect("plane");

    // Round trips: one agent, one patch at a time.
    let mut agent = Agent::connect(
        "agent0",
        SigningKey::from_bytes(&[1; 32]),
        AgentOptions::local(&dir.path().join(".jit")),
    )
    .await
    .expect("connect");
    let sws = agent.create_sws(None).await.expect("create");
    for n in 0..50 {
        agent
            .push(&sws.id, &patch("warm", n))
            .await
            .expect("warm-up");
    }
    let mut times = Vec::with_capacity(1000);
    for n in 0..1000 {
        let started = Instant::now();
        agent.push(&sws.id, &patch("rt", n)).await.expect("push");
        times.push(started.elapsed());
    }
    agent.close().await;
    times.sort();
    let one = repeat(dir.path(), 1, 1000, 1).await;
    let eight = repeat(dir.path(), 8, 250, 1).await;
    let one_window = repeat(dir.path(), 1, 5000, WINDOW).await;
    let eight_window = repeat(dir.path(), 8, 1000, WINDOW).await;
    plane.close().await;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("## Message plane (`cargo run --release -p jit-plane --example bench`)");
    println!();
    println!("Real Zenoh sessions over the daemon's Unix socket; every acknowledgement is sent once the patch is durable (its batch appended to the plane journal and flushed; the LMDB transaction commits within milliseconds). Throughput: median of {RUNS} runs (min–max), each timed from the moment every agent has its session and its SWS to the last acknowledgement; opening the sessions and creating the SWS are one-time costs, listed below the table.");
    println!();
    println!("| measure | value | goal | value ÷ goal |");
    println!("|---|---|---|---|");
    let p50 = ms(percentile(&times, 0.5));
    let p99 = ms(percentile(&times, 0.99));
    println!(
        "| round trip of a small patch, p50 (1,000 sequential) | {p50:.2} ms | ≤ 1 ms | {:.2}× |",
        p50 / 1.0
    );
    println!(
        "| round trip, p99 | {p99:.2} ms | ≤ 5 ms | {:.2}× |",
        p99 / 5.0
    );
    let rows = [
        ("1 agent waiting for each ack (1,000)".to_owned(), &one),
        ("8 agents waiting for each ack (8 × 250)".to_owned(), &eight),
        (format!("1 agent, {WINDOW} in flight (5,000)"), &one_window),
        (
            format!("8 agents, {WINDOW} in flight each (8 × 1,000)"),
            &eight_window,
        ),
    ];
    for (label, rates) in rows {
        println!(
            "| acknowledged patches/s, {label} | {} | ≥ 5,000 | {:.2}× |",
            rates.text,
            rates.median / GOAL_RATE
        );
    }
    println!();
    let setups: Vec<String> = [(1, &one), (8, &eight), (1, &one_window), (8, &eight_window)]
        .iter()
        .map(|(agents, rates)| format!("{:.0} ms ({agents})", ms(rates.setup)))
        .collect();
    println!(
        "Slowest setup before the clock started (agents connected, one SWS each created), per row: {}.",
        setups.join(", ")
    );
}
