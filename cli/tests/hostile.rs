//! Issue #17 item 7, RPC resource limits: the hostile RPC suite. Truncated, oversized,
//! malformed, deeply nested, item-bomb and stalled frames and 1,000 concurrent connections each
//! get their code or are closed within the read timeout, a normal client stays served
//! throughout, and the daemon's peak memory (VmHWM) stays within its baseline plus the budgets
//! it was given plus a stated slack — memory, not time.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ciborium::value::Value;
use common::*;
use jit_kernel::command::Operation;
use jit_kernel::rpc::client::Kernel;
use jit_kernel::rpc::protocol::Response;

/// `--rpc-read-timeout` in the test (seconds).
const READ_TIMEOUT: u64 = 2;
/// `--rpc-budget` in the test (MiB), plus the default small-frame pool (32 MiB).
const BUDGET_MIB: u64 = 64;
const SMALL_MIB: u64 = 32;
/// What the daemon may take beyond its baseline and its budgets (allocator slack, the tasks of
/// 1,000 connections, buffers of answers).
const SLACK_MIB: u64 = 64;

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM")
}

/// The normal client answers, now.
fn served(kernel: &mut Kernel) {
    kernel
        .call(Operation::Info, Value::Map(vec![]))
        .expect("the normal client is served");
}

fn connect(socket: &Path) -> UnixStream {
    let stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(READ_TIMEOUT + 8)))
        .unwrap();
    stream
}

/// What the daemon did with a hostile connection: `Some(code)` if it answered, `None` if it
/// just closed it. Fails if it still holds it after the read timeout and some slack.
fn answer_or_close(stream: &mut UnixStream) -> Option<String> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("the daemon still holds a hostile connection: {e}"),
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).expect("a whole answer");
    match Response::decode(&body).expect("an answer") {
        Response::Err(e) => Some(e.code),
        Response::Ok(_) => Some("ok".into()),
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn send(socket: &Path, bytes: &[u8]) -> Option<String> {
    let mut stream = connect(socket);
    stream.write_all(bytes).unwrap();
    answer_or_close(&mut stream)
}

#[test]
fn rpc_resource_limits_hold_under_hostile_input_and_1000_connections() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    ok(work.path(), &["init", "repo"]);
    let timeout = READ_TIMEOUT.to_string();
    let budget = BUDGET_MIB.to_string();
    let daemon = Daemon::start_with(
        &repo,
        &[
            "--no-plane",
            "--rpc-read-timeout",
            &timeout,
            "--rpc-idle-timeout",
            "4",
            "--rpc-budget",
            &budget,
        ],
    );
    let pid = daemon.child.id();
    let socket = daemon.socket.clone();
    let mut normal = daemon.kernel();
    for _ in 0..20 {
        served(&mut normal);
    }
    let baseline = vm_hwm_kib(pid);

    // Truncated: the stream ends inside a frame.
    let mut truncated = frame(&[0xa0; 100]);
    truncated.truncate(20);
    let mut stream = connect(&socket);
    stream.write_all(&truncated).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(answer_or_close(&mut stream), None);
    served(&mut normal);

    // Oversized: refused before anything is allocated.
    assert_eq!(
        send(&socket, &u32::MAX.to_be_bytes()).as_deref(),
        Some("frame_too_large")
    );
    // Malformed: garbage, and an array announcing 2^32 items it does not hold.
    assert_eq!(
        send(&socket, &frame(&[0xff, 0x00])).as_deref(),
        Some("bad_request")
    );
    assert_eq!(
        send(&socket, &frame(&[0x9b, 0, 0, 0, 1, 0, 0, 0, 0])).as_deref(),
        Some("bad_request")
    );
    // Deeply nested.
    let mut nested = vec![0x81u8; 200_000];
    nested.push(0x00);
    assert_eq!(
        send(&socket, &frame(&nested)).as_deref(),
        Some("bad_request")
    );
    served(&mut normal);

    // An item bomb: 8 MiB holding 8 Mi one-byte items, each a CBOR value in memory once decoded.
    let items: u32 = 8 << 20;
    let mut bomb = vec![0x9a];
    bomb.extend_from_slice(&items.to_be_bytes());
    bomb.resize(5 + items as usize, 0x00);
    assert_eq!(
        send(&socket, &frame(&bomb)).as_deref(),
        Some("too_many_items")
    );
    drop(bomb);
    served(&mut normal);

    // Stalled: 20 frames of 16 MiB sent all but their last byte (or as much as the daemon
    // takes), then nothing. Each is dropped within the read timeout.
    let big = 16usize << 20;
    let stalled: Vec<std::thread::JoinHandle<UnixStream>> = (0..20)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut stream = connect(&socket);
                stream
                    .set_write_timeout(Some(Duration::from_secs(READ_TIMEOUT + 1)))
                    .unwrap();
                let mut bytes = frame(&vec![0x00; big]);
                bytes.pop();
                let _ = stream.write_all(&bytes);
                stream
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    served(&mut normal);
    for handle in stalled {
        let mut stream = handle.join().unwrap();
        let outcome = answer_or_close(&mut stream);
        assert!(
            matches!(outcome.as_deref(), None | Some("timeout") | Some("busy")),
            "a stalled frame got {outcome:?}"
        );
    }
    served(&mut normal);

    // 1,000 connections at once, each stalling inside its frame's length.
    let mut crowd: Vec<UnixStream> = (0..1000)
        .map(|_| {
            let mut stream = connect(&socket);
            let _ = stream.write_all(&[0, 0]);
            stream
        })
        .collect();
    served(&mut normal);
    let mut refused = 0;
    for stream in &mut crowd {
        match answer_or_close(stream).as_deref() {
            None | Some("timeout") => {}
            Some("too_many_connections") => refused += 1,
            other => panic!("a crowding connection got {other:?}"),
        }
    }
    assert!(refused > 0, "no connection was refused beyond the cap");
    drop(crowd);
    served(&mut normal);
    let mut fresh = daemon.kernel();
    served(&mut fresh);

    let peak = vm_hwm_kib(pid);
    let bound = baseline + (BUDGET_MIB + SMALL_MIB + SLACK_MIB) * 1024;
    eprintln!(
        "daemon VmHWM: baseline {} MiB, peak {} MiB, bound {} MiB ({refused} of 1000 refused)",
        baseline / 1024,
        peak / 1024,
        bound / 1024
    );
    assert!(
        peak <= bound,
        "the daemon peaked at {} MiB, over its baseline {} MiB + budgets {} MiB + slack {SLACK_MIB} MiB",
        peak / 1024,
        baseline / 1024,
        BUDGET_MIB + SMALL_MIB
    );
}
