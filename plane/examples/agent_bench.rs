//! The Rust agent against a running daemon, measured the way `bench/python_client.py` measures
//! the Python client, so the two sit side by side in BENCHMARKS.md (`bench/agents.sh` runs
//! both over the Unix socket and over TLS on loopback).
//!
//! `cargo run --release -p jit-plane --example agent_bench -- ENDPOINT NAME KEYFILE
//! [ZENOH_CONFIG] [ROUND_TRIPS] [PIPELINED]` prints one JSON line: the round trip of one small
//! patch (send → durable → acknowledged; p50 and p99 over ROUND_TRIPS, after 50 warm-up
//! patches) and acknowledged patches per second with 256 in flight (PIPELINED patches, one
//! agent, one SWS).

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use jit_kernel::patch::{Patch, PatchOp};
use jit_plane::agent::{Agent, AgentOptions};

fn patch(tag: &str, n: usize) -> Patch {
    Patch {
        id: format!("{tag}-{n}"),
        author: "bench".into(),
        ts: n as u64,
        ops: vec![PatchOp::Put {
            path: format!("{tag}/f{}.txt", n % 64),
            // 16 bytes, as bench/python_client.py writes.
            content: format!("{:<15}\n", format!("edit {n}")).into_bytes(),
            executable: false,
        }],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, name, key_file, rest @ ..] = args.as_slice() else {
        eprintln!(
            "usage: agent_bench ENDPOINT NAME KEYFILE [ZENOH_CONFIG] [ROUND_TRIPS] [PIPELINED]"
        );
        std::process::exit(2);
    };
    let config = rest.first().filter(|c| !c.is_empty()).cloned();
    let round_trips: usize = rest.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let pipelined: usize = rest.get(2).and_then(|n| n.parse().ok()).unwrap_or(5000);
    let mut seed = [0u8; 32];
    let text = std::fs::read_to_string(key_file).expect("key file");
    hex::decode_to_slice(text.trim(), &mut seed).expect("64 hex characters");
    let options = AgentOptions {
        connect: vec![endpoint.clone()],
        namespace: String::new(),
        attempt_timeout: Duration::from_secs(2),
        attempts: 30,
        retry_for: jit_plane::agent::RETRY_FOR,
        zenoh_config: config.map(Into::into),
    };
    let mut agent = Agent::connect(name, SigningKey::from_bytes(&seed), options)
        .await
        .expect("connect");
    let tag = format!("rust{}", std::process::id());
    let sws = agent.create_sws(None).await.expect("create").id;
    for n in 0..50 {
        agent
            .push(&sws, &patch(&format!("{tag}w"), n))
            .await
            .expect("warm-up");
    }
    let mut times = Vec::with_capacity(round_trips);
    for n in 0..round_trips {
        let started = Instant::now();
        agent
            .push(&sws, &patch(&format!("{tag}r"), n))
            .await
            .expect("push");
        times.push(started.elapsed());
    }
    times.sort();
    let sws = agent.create_sws(None).await.expect("create").id;
    let patches: Vec<Patch> = (0..pipelined)
        .map(|n| patch(&format!("{tag}p"), n))
        .collect();
    let started = Instant::now();
    for answer in agent
        .push_many(&sws, &patches, 256)
        .await
        .expect("push_many")
    {
        answer.expect("applied");
    }
    let rate = pipelined as f64 / started.elapsed().as_secs_f64();
    agent.close().await;
    println!(
        "{{\"client\":\"rust\",\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"pipelined_per_s\":{rate:.0}}}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}
