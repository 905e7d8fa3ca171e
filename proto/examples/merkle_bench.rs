//! Benchmark (issue #20): verifying a published head against the one held, with its RFC 9162
//! consistency proof, over a publish log of 2^20 entries — what an importer does on every
//! refresh — and an inclusion proof of one entry. Prints a Markdown table.
//!
//!   cargo run --release -p jit-proto --example merkle_bench

use std::time::Instant;

use ed25519_dalek::SigningKey;
use jit_proto::head::{PublishedHead, SignedHead};
use jit_proto::merkle;

fn main() {
    let n: usize = 1 << 20;
    let old = n - 12_345;
    let build = Instant::now();
    let leaves: Vec<merkle::Hash> = (0..n)
        .map(|i| merkle::leaf_hash(format!("entry {i}").as_bytes()))
        .collect();
    let key = SigningKey::from_bytes(&[7; 32]);
    let sign = |epoch: u64, size: usize| {
        SignedHead::sign(
            PublishedHead {
                universe: [1; 16],
                epoch,
                size: size as u64,
                root: merkle::root(&leaves[..size]),
            },
            &key,
        )
        .expect("sign")
    };
    let (held, offered) = (sign(1, old), sign(2, n));
    let built = build.elapsed();
    let prove = Instant::now();
    let consistency = merkle::consistency_proof(&leaves, old).expect("proof");
    let proved = prove.elapsed();
    let inclusion = merkle::inclusion_proof(&leaves, 777_777).expect("inclusion");
    let public = key.verifying_key().to_bytes();
    let rounds = 2_000u32;
    let verify = Instant::now();
    for _ in 0..rounds {
        offered
            .verify_after(&public, Some(&held.head), &consistency)
            .expect("verifies");
    }
    let per_verify = verify.elapsed() / rounds;
    let include = Instant::now();
    for _ in 0..rounds {
        assert!(merkle::verify_inclusion(
            &leaves[777_777],
            777_777,
            n as u64,
            &inclusion,
            &offered.head.root
        ));
    }
    let per_inclusion = include.elapsed() / rounds;
    println!("| measure (log of 2^20 = {n} entries) | time | proof |");
    println!("|---|---|---|");
    println!(
        "| verify a head against the one held (signature + consistency proof from {old} entries) | {:.1} µs | {} hashes, {} bytes |",
        per_verify.as_secs_f64() * 1e6,
        consistency.len(),
        consistency.len() * 32
    );
    println!(
        "| verify one entry's inclusion proof | {:.1} µs | {} hashes, {} bytes |",
        per_inclusion.as_secs_f64() * 1e6,
        inclusion.len(),
        inclusion.len() * 32
    );
    println!(
        "| (publisher) make the consistency proof | {:.1} ms | |",
        proved.as_secs_f64() * 1e3
    );
    println!(
        "| (setup) hash 2^20 leaves and both roots | {:.0} ms | |",
        built.as_secs_f64() * 1e3
    );
}
