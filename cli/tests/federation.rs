//! Federation through the real binary against a lying mirror (issue #20, pins): A's daemon
//! serves on loopback TCP; B imports from it; then B asks a *mirror* — a real Zenoh peer in
//! this test that answers `jit/federation/*` by asking A and changing A's answers, re-signed
//! with A's key, as a publisher showing two histories would — and is shown another log under
//! the same epoch, in which the published name `release` names another snapshot. The `--json`
//! error is compared with a golden file (`tests/golden/federation_retag_error.json`) once the
//! ids that change from run to run are replaced by placeholders.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::*;
use ed25519_dalek::SigningKey;
use jit_kernel::federation::publish;
use jit_kernel::federation::wire::{HeadReply, HeadRequest};
use jit_kernel::rpc::protocol::Response;
use jit_kernel::sync::wire;
use jit_kernel::Repository;
use jit_proto::head::{PublishedHead, SignedHead};
use jit_proto::merkle;
use serde_bytes::ByteBuf;

fn free_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    format!(
        "tcp/127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    )
}

fn universe_key(dir: &Path) -> SigningKey {
    let hex = std::fs::read_to_string(dir.join(".jit/keys/universe.ed25519")).unwrap();
    let mut secret = [0u8; 32];
    hex::decode_to_slice(hex.trim(), &mut secret).unwrap();
    SigningKey::from_bytes(&secret)
}

fn zenoh_config(mode: &str, key: &str, endpoint: &str) -> zenoh::Config {
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", &format!("{mode:?}")).unwrap();
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    config
        .insert_json5(key, &format!("[{endpoint:?}]"))
        .unwrap();
    config
}

/// The mirror: answers every `jit/federation/<op>` query by asking `upstream` and passing the
/// answer through `tamper`.
async fn mirror(
    listen: String,
    upstream: String,
    tamper: impl Fn(&str, &[u8], Vec<u8>) -> Vec<u8> + Send + Sync + 'static,
) -> (zenoh::Session, zenoh::Session) {
    let front = zenoh::open(zenoh_config("peer", "listen/endpoints", &listen))
        .await
        .unwrap();
    let back = zenoh::open(zenoh_config("client", "connect/endpoints", &upstream))
        .await
        .unwrap();
    let queryable = front.declare_queryable("jit/federation/*").await.unwrap();
    let forward = back.clone();
    tokio::spawn(async move {
        while let Ok(query) = queryable.recv_async().await {
            let key = query.key_expr().to_string();
            let payload = query
                .payload()
                .map(|p| p.to_bytes().to_vec())
                .unwrap_or_default();
            let replies = forward
                .get(key.as_str())
                .payload(payload.clone())
                .timeout(Duration::from_secs(20))
                .await
                .unwrap();
            let Ok(reply) = replies.recv_async().await else {
                continue;
            };
            let Ok(sample) = reply.result() else { continue };
            let answer = tamper(&key, &payload, sample.payload().to_bytes().to_vec());
            let _ = query.reply(query.key_expr().clone(), answer).await;
        }
    });
    (front, back)
}

#[test]
fn a_name_moved_inside_an_epoch_gives_the_documented_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, work) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("w"),
    );
    ok(tmp.path(), &["init", a.to_str().unwrap()]);
    ok(tmp.path(), &["init", b.to_str().unwrap()]);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("README"), "one\n").unwrap();
    let first = import(&a, &work, "one")["snapshot"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&a, &["publish", "main", "--as", "release"]);
    std::fs::write(work.join("README"), "two\n").unwrap();
    let second = import(&a, &work, "two")["snapshot"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&a, &["publish", "main", "--as", "other"]);
    let id = json(&a, &["info"])["universe"].as_str().unwrap().to_owned();

    // The forged epoch 2: the same entries, but the second is `release` too.
    let key = universe_key(&a);
    let (entries, forged, held_root) = {
        let repo = Repository::open(&a).unwrap();
        let txn = repo.store().read().unwrap();
        let mut log = publish::entries(repo.store(), &txn).unwrap();
        let head = publish::head(repo.store(), &txn).unwrap().unwrap();
        log[1].name = "release".into();
        let entries: Vec<Vec<u8>> = log.iter().map(|e| e.encode().unwrap()).collect();
        let leaves: Vec<_> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let forged = SignedHead::sign(
            PublishedHead {
                root: merkle::root(&leaves),
                ..head.head
            },
            &key,
        )
        .unwrap();
        (entries, forged, head.head.root)
    };

    let (endpoint_a, endpoint_mirror) = (free_endpoint(), free_endpoint());
    let _daemon = Daemon::start_with(&a, &["--listen", &endpoint_a]);
    ok(&b, &["federation", "hello", &endpoint_a]);
    ok(
        &b,
        &["federation", "import", &id, "release", "--as", "r", "-q"],
    );
    let held_head = json(&b, &["federation", "ls"])[0]["root"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(held_head, hex::encode(held_root));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let forged_bytes = forged.encode().unwrap();
    let served = forged_bytes.clone();
    let _mirror = runtime.block_on(mirror(
        endpoint_mirror.clone(),
        endpoint_a.clone(),
        move |key, request, answer| {
            if !key.ends_with("/head") {
                return answer;
            }
            let request: HeadRequest =
                wire::from_value(jit_kernel::cbor::decode(request).unwrap(), "head").unwrap();
            let Ok(Response::Ok(value)) = Response::decode(&answer) else {
                return answer;
            };
            let mut reply: HeadReply = wire::from_value(value, "head").unwrap();
            reply.head = Some(ByteBuf::from(served.clone()));
            reply.entries = entries[request.from as usize..]
                .iter()
                .cloned()
                .map(ByteBuf::from)
                .collect();
            reply.consistency = Vec::new();
            Response::Ok(wire::to_value(&reply).unwrap())
                .encode()
                .unwrap()
        },
    ));

    let out = jit(
        &b,
        &[
            "federation",
            "import",
            &id,
            "release",
            "--as",
            "r",
            "--from",
            &endpoint_mirror,
            "--json",
        ],
    );
    assert!(!out.status.success(), "the import must be refused");
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let held_signed = json(&b, &["federation", "ls"])[0]["quarantine"]["held"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut text = serde_json::to_string_pretty(&error).unwrap();
    for (value, placeholder) in [
        (held_signed, "<HELD_SIGNED_HEAD>"),
        (hex::encode(&forged_bytes), "<OFFERED_SIGNED_HEAD>"),
        (hex::encode(forged.head.root), "<OFFERED_ROOT>"),
        (hex::encode(held_root), "<HELD_ROOT>"),
        (first.clone(), "<FIRST_SNAPSHOT>"),
        (second.clone(), "<SECOND_SNAPSHOT>"),
        (id.clone(), "<UNIVERSE>"),
        (endpoint_a.clone(), "<ENDPOINT_A>"),
        (endpoint_mirror.clone(), "<ENDPOINT_MIRROR>"),
    ] {
        text = text.replace(&value, placeholder);
    }
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/federation_retag_error.json");
    if std::env::var_os("JIT_BLESS").is_some() {
        std::fs::write(&golden, format!("{text}\n")).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        text.trim_end(),
        expected.trim_end(),
        "the documented error changed"
    );
}

/// `jit federation update` moves a pin across three epochs to the newest consistent head and
/// lists what changed between the snapshot it held and the new one, path by path.
#[test]
fn update_moves_a_pin_across_three_epochs_and_lists_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, work) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("w"),
    );
    ok(tmp.path(), &["init", a.to_str().unwrap()]);
    ok(tmp.path(), &["init", b.to_str().unwrap()]);
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(work.join("README"), "one\n").unwrap();
    std::fs::write(work.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    let first = import(&a, &work, "one")["snapshot"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&a, &["publish", "main", "--as", "release"]);
    let endpoint = free_endpoint();
    let _daemon = Daemon::start_with(&a, &["--listen", &endpoint]);
    ok(&b, &["federation", "hello", &endpoint]);
    let id = json(&a, &["info"])["universe"].as_str().unwrap().to_owned();
    ok(
        &b,
        &["federation", "import", &id, "release", "--as", "up", "-q"],
    );
    // Three epochs: README changes, a file is added, one is removed.
    std::fs::write(work.join("README"), "two\n").unwrap();
    import(&a, &work, "two");
    ok(&a, &["publish", "main", "--as", "release"]);
    std::fs::write(work.join("src/new.rs"), "// new\n").unwrap();
    import(&a, &work, "three");
    ok(&a, &["publish", "main", "--as", "release"]);
    std::fs::remove_file(work.join("src/lib.rs")).unwrap();
    let last = import(&a, &work, "four")["snapshot"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&a, &["publish", "main", "--as", "release"]);
    let updated = json(&b, &["federation", "update", &id, "-q"]);
    let row = &updated[0];
    assert_eq!(row["local"], "up");
    assert_eq!(
        row["from"],
        serde_json::json!({"snapshot": first, "epoch": 1})
    );
    assert_eq!(row["to"], serde_json::json!({"snapshot": last, "epoch": 4}));
    assert_eq!(
        row["changes"],
        serde_json::json!([
            {"change": "M", "path": "README"},
            {"change": "D", "path": "src/lib.rs"},
            {"change": "A", "path": "src/new.rs"},
        ])
    );
    let text = ok(&b, &["federation", "update", &id, "-q"]);
    assert!(text.contains("epoch 4 -> 4"), "{text}");
}
