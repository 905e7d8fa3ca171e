//! End-to-end latency from an agent's `put` to the content being readable through the mount:
//! an agent pushes a one-file patch over the plane of a running `jit up` (with its mount), then
//! reads the file at `<mount>/sws/<id>/…` until it shows the new content. Prints a Markdown row
//! pair. Driven by `bench/plane-mount.sh`, which starts the daemon and registers the agent.
//!
//!   mount_e2e JIT_DIR MOUNTPOINT AGENT [EDITS]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use jit_kernel::patch::{Patch, PatchOp};
use jit_plane::agent::{Agent, AgentOptions};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn key(jit_dir: &Path, agent: &str) -> SigningKey {
    let text = std::fs::read_to_string(jit_dir.join("agents").join(format!("{agent}.key")))
        .expect("the agent's key (jit agent new)");
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret).expect("a hex key");
    SigningKey::from_bytes(&secret)
}

/// Reads `path` until it holds `want`; the time it took from `since`.
fn visible(path: &Path, want: &[u8], since: Instant) -> Duration {
    loop {
        if std::fs::read(path).is_ok_and(|got| got == want) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{} never showed the pushed content",
            path.display()
        );
        std::thread::yield_now();
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, jit_dir, mount, agent_name, rest @ ..] = args.as_slice() else {
        panic!("usage: mount_e2e JIT_DIR MOUNTPOINT AGENT [EDITS]");
    };
    let edits: usize = rest.first().map_or(1000, |n| n.parse().expect("EDITS"));
    let (jit_dir, mount) = (PathBuf::from(jit_dir), PathBuf::from(mount));
    let mut agent = Agent::connect(
        agent_name,
        key(&jit_dir, agent_name),
        AgentOptions::local(&jit_dir),
    )
    .await
    .expect("connect");
    let sws = agent.create_sws(None).await.expect("create an SWS");
    let file = mount.join("sws").join(&sws.id).join("e2e.txt");
    let (mut acked, mut readable) = (Vec::new(), Vec::new());
    for n in 0..edits + 50 {
        let content = format!("edit {n}\n").into_bytes();
        let patch = Patch {
            id: format!("e2e-{n}"),
            author: agent_name.clone(),
            ts: n as u64,
            ops: vec![PatchOp::Put {
                path: "e2e.txt".into(),
                content: content.clone(),
                executable: false,
            }],
        };
        let started = Instant::now();
        agent.push(&sws.id, &patch).await.expect("push");
        let ack = started.elapsed();
        let seen = tokio::task::block_in_place(|| visible(&file, &content, started));
        if n >= 50 {
            acked.push(ack);
            readable.push(seen);
        }
    }
    agent.close().await;
    acked.sort();
    readable.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (label, times) in [
        (
            format!("agent `put` → acknowledged (durable), over {edits} edits"),
            &acked,
        ),
        (
            "agent `put` → new content read through the mount".to_owned(),
            &readable,
        ),
    ] {
        let (p50, p99) = (ms(percentile(times, 0.5)), ms(percentile(times, 0.99)));
        // The message-plane issue's goals: p50 ≤ 1 ms, p99 ≤ 5 ms.
        println!(
            "| {label} | {p50:.2} / {p99:.2} ms | ≤ 1 / ≤ 5 ms | {:.2}× / {:.2}× |",
            p50 / 1.0,
            p99 / 5.0
        );
    }
}
