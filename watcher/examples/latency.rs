//! Edit → durable latency of a watched checkout: writes a file N times and, after each write
//! returns, polls the store until the checkout's SWS holds the new content. Prints p50, p99 and
//! max in milliseconds as one JSON line. Used by `bench/watcher.sh`; needs `jit watch` running.
//!
//!   cargo run --release -p jit-watcher --example latency -- REPO CHECKOUT [N]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jit_kernel::{checkout, content, sws, tree, Repository};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: latency REPO CHECKOUT [N]";
    let repo = PathBuf::from(args.next().ok_or(usage)?);
    let co = std::fs::canonicalize(args.next().ok_or(usage)?)?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let repo = Repository::open(&repo)?;
    let store = repo.store();
    let key = co.to_str().ok_or("checkout path is not UTF-8")?.to_owned();
    let file = co.join("latency-probe.txt");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("edit number {i}\n");
        let (blob, _) = content::split_bytes(text.as_bytes())?;
        std::fs::write(&file, &text)?;
        let written = Instant::now();
        loop {
            let txn = store.read()?;
            let state = checkout::get(store, &txn, &key)?.ok_or("not a checkout")?;
            if let Some(id) = checkout::sws_of(store, &txn, &state)? {
                let root = sws::get(store, &txn, id)?.tree;
                let src = sws::SwsSource::new(store, &txn, id);
                if tree::lookup(&src, &root, b"latency-probe.txt")?.map(|e| e.id) == Some(blob) {
                    break;
                }
            }
            drop(txn);
            if written.elapsed() > Duration::from_secs(10) {
                return Err(format!("edit {i} not recorded after 10 s").into());
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        samples.push(written.elapsed());
        // Edits a person makes are apart; give the watcher its quiet window.
        std::thread::sleep(Duration::from_millis(5));
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]);
    println!(
        "{{\"n\": {n}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}}}",
        at(0.50),
        at(0.99),
        ms(samples[samples.len() - 1])
    );
    Ok(())
}
