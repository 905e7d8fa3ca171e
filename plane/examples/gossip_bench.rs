//! Benchmark (issue #20): one gossip round between three daemons on loopback TCP. A publisher
//! shows importer B one epoch-2 head and importer C another (both signed with its key); a third
//! daemon D imports nothing. The three planes start gossiping every 100 ms; measured is the time
//! from their start until all three hold the equivocation proof and have quarantined the
//! publisher, and the proof's size. Prints a Markdown table.
//!
//!   cargo run --release -p jit-plane --example gossip_bench [RUNS]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ciborium::value::Value;
use ed25519_dalek::SigningKey;
use jit_kernel::command::Operation;
use jit_kernel::federation::wire::{DependReply, HeadReply};
use jit_kernel::federation::{import, known, publish};
use jit_kernel::history::CommitInfo;
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::repo::InitOptions;
use jit_kernel::sync::{wire, Quiet, Remote};
use jit_kernel::{collapse, sws, DeclaredTime, Error, Repository};
use jit_plane::server::{Plane, PlaneOptions};
use jit_plane::sync::ZenohRemote;
use jit_proto::federation::{Manifest, Statement};
use jit_proto::head::{PublishedHead, SignedHead};
use jit_proto::merkle;
use serde_bytes::{ByteArray, ByteBuf};

struct Node {
    _dir: tempfile::TempDir,
    repo: Arc<Repository>,
    socket: std::path::PathBuf,
}

fn node(name: &str) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repository::init(
        dir.path(),
        &InitOptions {
            name: name.into(),
            owner: name.into(),
            ..Default::default()
        },
    )
    .expect("init");
    let socket = dir.path().join(".jit/zenoh.sock");
    Node {
        _dir: dir,
        repo: Arc::new(repo),
        socket,
    }
}

fn plane(rt: &tokio::runtime::Runtime, n: &Node, tweak: impl FnOnce(&mut PlaneOptions)) -> Plane {
    let mut options = PlaneOptions {
        unix_socket: Some(n.socket.clone()),
        gossip_every: None,
        ..Default::default()
    };
    tweak(&mut options);
    let repo = n.repo.clone();
    rt.block_on(async move { Plane::start(repo, options).await })
        .expect("plane")
}

fn commit(n: &Node, content: &str) {
    let branch = n.repo.head().expect("head");
    let id = sws::working(n.repo.store(), &branch, "me").expect("sws");
    let patch = Patch {
        id: content.into(),
        author: "me".into(),
        ts: 0,
        ops: vec![PatchOp::Put {
            path: "README".into(),
            content: content.as_bytes().to_vec(),
            executable: false,
        }],
    };
    sws::apply_patch(n.repo.store(), id, &patch).expect("patch");
    let info = CommitInfo {
        author: "Me <me@x>".into(),
        message: content.into(),
        time: DeclaredTime {
            seconds: 1_700_000_000,
            tz_minutes: 0,
        },
    };
    collapse::commit(n.repo.store(), id, &info).expect("commit");
}

/// The publisher's answers, changed on their way.
struct Lying {
    inner: ZenohRemote,
    tamper: Tamper,
}

/// How the publisher's answer is changed.
type Tamper = Box<dyn FnMut(Operation, &mut Value)>;

impl Remote for Lying {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn call(&mut self, requests: Vec<(Operation, Value)>) -> Result<Vec<Value>, Error> {
        let ops: Vec<Operation> = requests.iter().map(|(op, _)| *op).collect();
        let mut answers = self.inner.call(requests)?;
        for (op, answer) in ops.into_iter().zip(answers.iter_mut()) {
            (self.tamper)(op, answer);
        }
        Ok(answers)
    }
}

fn free_tcp() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    format!(
        "tcp/127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    )
}

/// One round, from the planes' start to every daemon holding the proof: (time, proof bytes).
fn round(rt: &tokio::runtime::Runtime) -> (Duration, usize) {
    let a = node("alpha");
    let _a_plane = plane(rt, &a, |_| {});
    commit(&a, "one\n");
    publish::publish(&a.repo, "main", "release").expect("publish");
    commit(&a, "two\n");
    let real = publish::publish(&a.repo, "main", "other")
        .expect("publish")
        .1;
    let endpoint = format!("unixsock-stream/{}", a.socket.display());
    let connect = || {
        ZenohRemote::connect("a", &endpoint, "", rt.handle().clone())
            .expect("connect")
            .federation()
    };
    let id = a.repo.universe().expect("universe").id;
    let (b, c, d) = (node("beta"), node("gamma"), node("delta"));
    import::import(
        &b.repo,
        &mut connect(),
        Some(&endpoint),
        Some(id),
        "release",
        "r",
        &Quiet,
    )
    .expect("B imports");
    let secret =
        std::fs::read_to_string(a.repo.jit_dir().join("keys/universe.ed25519")).expect("key");
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(secret.trim(), &mut bytes).expect("hex");
    let key = SigningKey::from_bytes(&bytes);
    let (entries, forged) = {
        let txn = a.repo.store().read().expect("txn");
        let mut log = publish::entries(a.repo.store(), &txn).expect("log");
        log[1].name = "release".into();
        let entries: Vec<Vec<u8>> = log.iter().map(|e| e.encode().expect("entry")).collect();
        let leaves: Vec<_> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let forged = SignedHead::sign(
            PublishedHead {
                root: merkle::root(&leaves),
                ..real.head
            },
            &key,
        )
        .expect("sign");
        (entries, forged)
    };
    let mut lying = Lying {
        inner: connect(),
        tamper: Box::new(move |op, value| match op {
            Operation::FederationHead => {
                let mut reply: HeadReply = wire::from_value(value.clone(), "head").expect("head");
                reply.head = Some(ByteBuf::from(forged.encode().expect("head")));
                reply.entries = entries.iter().cloned().map(ByteBuf::from).collect();
                *value = wire::to_value(&reply).expect("value");
            }
            Operation::FederationDepend => {
                let mut reply: DependReply =
                    wire::from_value(value.clone(), "depend").expect("depend");
                let mut manifest = Manifest::claimed(&reply.manifest).expect("manifest");
                manifest.head_root = ByteArray::new(forged.head.root);
                reply.manifest = ByteBuf::from(manifest.seal(&key).expect("seal"));
                *value = wire::to_value(&reply).expect("value");
            }
            _ => {}
        }),
    };
    import::import(
        &c.repo,
        &mut lying,
        Some(&endpoint),
        Some(id),
        "release",
        "r",
        &Quiet,
    )
    .expect("C imports");
    let (eb, ec, ed) = (free_tcp(), free_tcp(), free_tcp());
    let every = Some(Duration::from_millis(100));
    let start = Instant::now();
    let _planes = [
        plane(rt, &b, |o| {
            o.listen = vec![eb.clone()];
            o.gossip_every = every;
        }),
        plane(rt, &c, |o| {
            o.listen = vec![ec.clone()];
            o.connect = vec![eb.clone()];
            o.gossip_every = every;
        }),
        plane(rt, &d, |o| {
            o.listen = vec![ed.clone()];
            o.connect = vec![eb.clone(), ec.clone()];
            o.gossip_every = every;
        }),
    ];
    let proof_of = |n: &Node| {
        let txn = n.repo.store().read().expect("txn");
        known::get(n.repo.store(), &txn, id)
            .expect("record")
            .and_then(|k| k.proof.filter(|_| k.quarantine.is_some()))
    };
    loop {
        let proofs: Vec<_> = [&b, &c, &d].iter().map(|n| proof_of(n)).collect();
        if proofs.iter().all(Option::is_some) {
            return (start.elapsed(), proofs[2].as_ref().map_or(0, |p| p.len()));
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gossip never converged"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let (time, bytes) = round(&rt);
        times.push(time.as_secs_f64() * 1e3);
        size = bytes;
    }
    times.sort_by(f64::total_cmp);
    println!("| measure ({runs} runs, median with min–max) | value |");
    println!("|---|---|");
    println!(
        "| three daemons on loopback TCP, from their start to all holding the proof (rounds every 100 ms) | {:.0} ms ({:.0}–{:.0}) |",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    println!("| the equivocation proof (same-epoch) | {size} bytes |");
}
