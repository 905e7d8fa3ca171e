//! Federation between universes (issue #19), each universe with its own store and its own
//! message plane (a real Zenoh peer on its Unix socket); imports travel over real Zenoh
//! sessions. One test per requirement of the seeds — RFC-0021's invariants and stages, the ASL
//! visibility table and invariants, the federated-readiness RFC's handshake, epochs, quarantine
//! and partition recovery — and one per hostile behaviour. A hostile universe is the honest
//! daemon's answers changed on their way by [`Hostile`], which holds that universe's key and
//! re-signs what it forges, as a publisher that lies would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ciborium::value::Value;
use ed25519_dalek::SigningKey;
use jit_kernel::command::Operation;
use jit_kernel::federation::import::ImportReport;
use jit_kernel::federation::wire::{
    DependReply, FetchAnswer, FetchReply, HeadReply, HeadRequest, HelloReply, HelloRequest,
    PackedFetchReply,
};
use jit_kernel::federation::{foreign, handshake, import, known, peers, publish, serve};
use jit_kernel::history::CommitInfo;
use jit_kernel::identity::UniverseIdentity;
use jit_kernel::node::{Direction, Node, Payload, Trust};
use jit_kernel::patch::{Patch, PatchOp};
use jit_kernel::path::RepoPath;
use jit_kernel::refs::RefName;
use jit_kernel::repo::InitOptions;
use jit_kernel::source::{Dag, Source};
use jit_kernel::sync::Quiet;
use jit_kernel::sync::{wire, Remote};
use jit_kernel::{collapse, content, dag, sws, tree, DeclaredTime, Error, NodeId, Repository};
use jit_plane::server::{Plane, PlaneOptions};
use jit_plane::sync::ZenohRemote;
use jit_proto::federation::{Accept, Manifest, Statement, MAX_CLOSURE};
use jit_proto::head::{PublishedHead, SignedHead};
use jit_proto::identity::SignedIdentity;
use jit_proto::{merkle, Code};
use serde_bytes::{ByteArray, ByteBuf};
use uuid::Uuid;

const T: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One universe: its store and its plane.
struct Universe {
    _dir: tempfile::TempDir,
    repo: Arc<Repository>,
    plane: Option<Plane>,
    socket: PathBuf,
    id: Uuid,
}

impl Universe {
    fn new(rt: &tokio::runtime::Runtime, name: &str) -> Universe {
        Universe::owned_by(rt, name, &format!("{name}-owner"))
    }

    fn owned_by(rt: &tokio::runtime::Runtime, name: &str, owner: &str) -> Universe {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(
            dir.path(),
            &InitOptions {
                name: name.into(),
                owner: owner.into(),
                ..Default::default()
            },
        )
        .unwrap();
        let id = repo.universe().unwrap().id;
        let socket = dir.path().join(".jit/zenoh.sock");
        let mut universe = Universe {
            _dir: dir,
            repo: Arc::new(repo),
            plane: None,
            socket,
            id,
        };
        universe.start(rt);
        universe
    }

    fn start(&mut self, rt: &tokio::runtime::Runtime) {
        self.start_with(rt, |_| {});
    }

    fn start_with(&mut self, rt: &tokio::runtime::Runtime, tweak: impl FnOnce(&mut PlaneOptions)) {
        let mut options = PlaneOptions {
            unix_socket: Some(self.socket.clone()),
            ..Default::default()
        };
        tweak(&mut options);
        let repo = self.repo.clone();
        let plane = rt
            .block_on(async move { tokio::time::timeout(T, Plane::start(repo, options)).await })
            .unwrap()
            .unwrap();
        self.plane = Some(plane);
    }

    /// Cuts the universe off: its plane closes (a partition, as the other side sees it).
    fn stop(&mut self, rt: &tokio::runtime::Runtime) {
        if let Some(plane) = self.plane.take() {
            rt.block_on(async move { tokio::time::timeout(T, plane.close()).await })
                .unwrap();
        }
    }

    fn endpoint(&self) -> String {
        format!("unixsock-stream/{}", self.socket.display())
    }

    fn remote(&self, rt: &tokio::runtime::Runtime) -> jit_plane::Result<ZenohRemote> {
        Ok(ZenohRemote::connect("peer", &self.endpoint(), "", rt.handle().clone())?.federation())
    }

    fn identity(&self) -> UniverseIdentity {
        UniverseIdentity::load(self.repo.jit_dir()).unwrap()
    }

    fn key(&self) -> SigningKey {
        let hex =
            std::fs::read_to_string(self.repo.jit_dir().join("keys/universe.ed25519")).unwrap();
        let mut secret = [0u8; 32];
        hex::decode_to_slice(hex.trim(), &mut secret).unwrap();
        SigningKey::from_bytes(&secret)
    }

    /// Commits `files` (path, content) on the checked-out branch.
    fn commit(&self, files: &[(&str, Vec<u8>)]) -> NodeId {
        let branch = self.repo.head().unwrap();
        let id = sws::working(self.repo.store(), &branch, "me").unwrap();
        let patch = Patch {
            id: format!("p{}", files.len()),
            author: "me".into(),
            ts: 0,
            ops: files
                .iter()
                .map(|(path, content)| PatchOp::Put {
                    path: (*path).into(),
                    content: content.clone(),
                    executable: false,
                })
                .collect(),
        };
        sws::apply_patch(self.repo.store(), id, &patch).unwrap();
        let info = CommitInfo {
            author: "Me <me@x>".into(),
            message: "work".into(),
            time: DeclaredTime {
                seconds: 1_700_000_000,
                tz_minutes: 0,
            },
        };
        match collapse::commit(self.repo.store(), id, &info).unwrap() {
            collapse::Outcome::Committed { snapshot, .. } => snapshot,
            other => panic!("{other:?}"),
        }
    }

    fn publish(&self, rev: &str, name: &str) -> SignedHead {
        publish::publish(&self.repo, rev, name).unwrap().1
    }

    fn import_via(
        &self,
        remote: &mut dyn Remote,
        from: &Universe,
        name: &str,
        local: &str,
    ) -> Result<ImportReport, Error> {
        import::import(
            &self.repo,
            remote,
            Some(&from.endpoint()),
            Some(from.id),
            name,
            local,
            &Quiet,
        )
    }

    fn import(
        &self,
        rt: &tokio::runtime::Runtime,
        from: &Universe,
        name: &str,
        local: &str,
    ) -> Result<ImportReport, Error> {
        let mut remote = from
            .remote(rt)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let result = self.import_via(&mut remote, from, name, local);
        remote.close();
        result
    }

    /// (committed, staged) nodes held of `other`.
    fn foreign(&self, other: &Universe) -> (u64, u64) {
        let txn = self.repo.store().read().unwrap();
        foreign::counts(self.repo.store(), &txn, other.id).unwrap()
    }

    fn known(&self, other: &Universe) -> Option<known::Known> {
        self.known_id(other.id)
    }

    fn known_id(&self, other: Uuid) -> Option<known::Known> {
        let txn = self.repo.store().read().unwrap();
        known::get(self.repo.store(), &txn, other).unwrap()
    }

    fn node_count(&self) -> u64 {
        let txn = self.repo.store().read().unwrap();
        self.repo.store().node_count(&txn).unwrap()
    }

    fn node(&self, id: &NodeId) -> Node {
        let txn = self.repo.store().read().unwrap();
        self.repo.store().node(&txn, id).unwrap()
    }

    /// Every file of `snapshot` (path → bytes) as `source` reads it.
    fn files(source: &dyn Source, snapshot: &NodeId) -> BTreeMap<String, Vec<u8>> {
        let root = tree::tree_of(source, snapshot).unwrap();
        let mut files = BTreeMap::new();
        tree::walk(source, &root, b"", true, &mut |path, entry| {
            if entry.kind != jit_kernel::node::EntryKind::Directory {
                let bytes = content::read_blob(source, &entry.id)?;
                files.insert(String::from_utf8_lossy(path).into_owned(), bytes);
            }
            Ok(())
        })
        .unwrap();
        files
    }

    /// The files of `other`'s `snapshot` as imported here.
    fn imported_files(&self, other: &Universe, snapshot: &NodeId) -> BTreeMap<String, Vec<u8>> {
        let txn = self.repo.store().read().unwrap();
        let source = foreign::Foreign::new(self.repo.store(), &txn, other.id);
        Self::files(&source, snapshot)
    }

    fn own_files(&self, snapshot: &NodeId) -> BTreeMap<String, Vec<u8>> {
        let txn = self.repo.store().read().unwrap();
        Self::files(&Dag::new(self.repo.store(), &txn), snapshot)
    }

    fn tip(&self) -> NodeId {
        self.repo.resolve("main").unwrap()
    }
}

impl Drop for Universe {
    fn drop(&mut self) {
        if self.plane.is_some() {
            let rt = runtime();
            self.stop(&rt);
        }
    }
}

/// Content that does not compress into one chunk: several chunks per file.
fn large(seed: u8, len: usize) -> Vec<u8> {
    let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn code(result: &Result<ImportReport, Error>) -> Code {
    match result {
        Ok(report) => panic!("imported: {report:?}"),
        Err(error) => error.code(),
    }
}

/// The honest publisher's answers, changed on their way by `tamper` — a publisher that lies.
struct Hostile<'a> {
    inner: ZenohRemote,
    tamper: Tamper<'a>,
}

/// How a hostile universe changes an answer.
type Tamper<'a> = Box<dyn FnMut(Operation, &mut Value) + 'a>;

impl Remote for Hostile<'_> {
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

fn hostile<'a>(
    rt: &tokio::runtime::Runtime,
    universe: &Universe,
    tamper: impl FnMut(Operation, &mut Value) + 'a,
) -> Hostile<'a> {
    Hostile {
        inner: universe.remote(rt).unwrap(),
        tamper: Box::new(tamper),
    }
}

/// A universe whose fetch replies `change` alters on the way.
fn lying_fetches<'a>(
    rt: &tokio::runtime::Runtime,
    universe: &Universe,
    change: fn(&mut jit_kernel::sync::wire::FetchReply),
) -> Hostile<'a> {
    hostile(rt, universe, move |op, value| {
        if op == Operation::FederationFetch {
            edit::<FetchAnswer>(value, |answer| {
                let mut reply = answer.clone().open().unwrap();
                change(&mut reply);
                *answer = FetchAnswer::new(reply, true).unwrap();
            });
        }
    })
}

fn edit<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: &mut Value,
    change: impl FnOnce(&mut T),
) {
    let mut message: T = wire::from_value(value.clone(), "reply").unwrap();
    change(&mut message);
    *value = wire::to_value(&message).unwrap();
}

/// A published universe A (three files, one of them large) and an importer B.
fn pair(rt: &tokio::runtime::Runtime) -> (Universe, Universe, NodeId) {
    let a = Universe::new(rt, "alpha");
    let b = Universe::new(rt, "beta");
    let snapshot = a.commit(&[
        ("README", b"alpha\n".to_vec()),
        ("src/lib.rs", b"pub fn f() {}\n".to_vec()),
        ("data/big.bin", large(1, 300_000)),
    ]);
    a.publish("main", "release");
    (a, b, snapshot)
}

fn nothing_imported(b: &Universe, a: &Universe) {
    assert_eq!(b.foreign(a), (0, 0), "nothing of A is held or staged");
    assert!(b.known(a).is_none_or(|k| k.imports.is_empty()));
}

// ---- RFC-0021: stages ----

#[test]
fn rfc0021_stage1_hello_universe() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let mut remote = a.remote(&rt).unwrap();
    let session = handshake::hello(&b.repo, &mut remote, Some(&a.endpoint())).unwrap();
    // The universe's id, key, metadata and version, verified.
    assert_eq!(session.universe, a.id);
    assert_eq!(session.identity.name, "alpha");
    assert_eq!(session.identity.owner, "alpha-owner");
    assert_eq!(
        session.identity.public_key,
        a.identity().verifying_key().to_bytes()
    );
    assert_eq!(session.identity.version, 1);
    assert!(session.first_contact);
    assert_eq!(session.accept.epoch, 1);
    assert_eq!(session.accept.policy, serve::policy());
    assert_eq!(
        session.accept.policy_hash.into_array(),
        jit_proto::federation::policy_hash(&serve::policy()).unwrap()
    );
    // B now knows A's verified identity and where it was reached; nothing else yet.
    let record = b.known(&a).unwrap();
    assert_eq!(record.endpoint.as_deref(), Some(a.endpoint().as_str()));
    assert!(record.head.is_none(), "a hello verifies no head");
    // Nothing is listed before a completed handshake: without a session, no head.
    let head = HeadRequest {
        session: ByteBuf::from(vec![0u8; 57]),
        from: 0,
    };
    let refused = remote
        .call(vec![(
            Operation::FederationHead,
            wire::to_value(&head).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(refused.code(), Code::Forbidden);
    remote.close();
}

#[test]
fn rfc0021_stage2_capability_intersect() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let mut remote = a.remote(&rt).unwrap();
    // A full hello shares every capability this build has.
    let session = handshake::hello(&b.repo, &mut remote, None).unwrap();
    let mut all: Vec<String> = jit_proto::federation::CAPABILITIES
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    all.sort();
    assert_eq!(session.accept.capabilities, all);
    // A hello offering only the head (and one A does not know) shares only the head; the
    // session is refused the manifest (`unsupported`).
    let me = b.identity();
    let hello = jit_proto::federation::Hello {
        universe: ByteArray::new(*b.id.as_bytes()),
        identity_version: 1,
        protocol: jit_proto::federation::PROTOCOL,
        capabilities: vec!["head/v1".into(), "teleport/v9".into()],
        policy: BTreeMap::new(),
        nonce: ByteArray::new([9; 16]),
    };
    let request = HelloRequest {
        hello: ByteBuf::from(me.seal(&hello).unwrap()),
        identity: vec![ByteBuf::from(me.document().unwrap().encode().unwrap())],
    };
    let reply: HelloReply = wire::from_value(
        remote
            .call(vec![(
                Operation::FederationHello,
                wire::to_value(&request).unwrap(),
            )])
            .unwrap()
            .remove(0),
        "accept",
    )
    .unwrap();
    let accept = Accept::open(&reply.accept, &a.identity().verifying_key().to_bytes()).unwrap();
    assert_eq!(accept.capabilities, vec!["head/v1".to_owned()]);
    let depend = jit_kernel::federation::wire::DependRequest {
        session: accept.session.clone(),
        roots: vec![a.tip()],
        haves: vec![],
    };
    let refused = remote
        .call(vec![(
            Operation::FederationDepend,
            wire::to_value(&depend).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unsupported);
    // Another protocol version shares nothing.
    let mut future = hello.clone();
    future.protocol = 99;
    let request = HelloRequest {
        hello: ByteBuf::from(me.seal(&future).unwrap()),
        identity: request.identity.clone(),
    };
    let refused = remote
        .call(vec![(
            Operation::FederationHello,
            wire::to_value(&request).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unsupported);
    remote.close();
}

/// The closure of `snapshot` in `u`'s own DAG.
fn closure_of(u: &Universe, snapshot: NodeId) -> Vec<NodeId> {
    let txn = u.repo.store().read().unwrap();
    jit_kernel::federation::closure::walk(&Dag::new(u.repo.store(), &txn), &[snapshot], |_| {
        Ok(false)
    })
    .unwrap()
}

#[test]
fn rfc0021_stage3_dependency_exchange() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let (mut remote, token) = session(&rt, &a, &b);
    // B declares what it depends on; A answers with the manifest of exactly that.
    let reply = depend(&mut remote, &token, snapshot).unwrap();
    remote.close();
    let manifest =
        Manifest::open(&reply.manifest, &a.identity().verifying_key().to_bytes()).unwrap();
    let closure = closure_of(&a, snapshot);
    assert_eq!(manifest.roots, vec![ByteArray::new(snapshot.0)]);
    assert_eq!(manifest.count, closure.len() as u64);
    assert_eq!(
        manifest.digest.into_array(),
        jit_proto::federation::closure_digest(closure.iter().map(|id| &id.0))
    );
    assert_eq!(manifest.epoch, 1);
    // The import declares the snapshot the published name names.
    let report = b.import(&rt, &a, "release", "r").unwrap();
    assert_eq!(report.snapshot, snapshot);
}

#[test]
fn rfc0021_stage4_partial_subgraph_import_is_the_minimal_closure() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let report = b.import(&rt, &a, "release", "r").unwrap();
    let closure = closure_of(&a, snapshot);
    // Exactly the closure crossed — snapshot, trees, blobs, chunks — and is held.
    assert_eq!(report.fetched_nodes, closure.len() as u64);
    assert!(report.closure > 6, "the large file came as several chunks");
    let txn = b.repo.store().read().unwrap();
    let held: Vec<NodeId> = foreign::entries(b.repo.store(), &txn, a.id)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut expected = closure.clone();
    expected.sort();
    assert_eq!(held, expected);
    // Not the publisher's history: the snapshot's parent never crossed.
    let parent = a.node(&snapshot).parents[0];
    assert!(!foreign::holds(b.repo.store(), &txn, a.id, &parent).unwrap());
    assert_eq!(b.foreign(&a).1, 0, "nothing is left staged");
}

#[test]
fn rfc0021_stage5_reference_linking() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let before = b.node_count();
    let tip = b.tip();
    let report = b.import(&rt, &a, "release", "r").unwrap();
    // One federation edge, the only node added to B's DAG: local → remote.
    assert_eq!(b.node_count(), before + 1);
    let edge = b.node(&report.edge);
    let Payload::FederationEdge(link) = &edge.payload else {
        panic!("{edge:?}")
    };
    assert_eq!(
        (link.local, link.remote, link.universe),
        (tip, snapshot, *a.id.as_bytes())
    );
    assert_eq!(edge.parents, vec![tip]);
}

#[test]
fn rfc0021_stage6_causal_verification() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    // A manifest, properly signed, whose count is not the closure's: the check after the
    // transfer refuses it, and the publisher is quarantined with nothing imported.
    let key = a.key();
    let mut lying = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationDepend {
            edit::<DependReply>(value, |reply| {
                let mut manifest = Manifest::claimed(&reply.manifest).unwrap();
                manifest.count += 1;
                reply.manifest = ByteBuf::from(manifest.seal(&key).unwrap());
            });
        }
    });
    let refused = b.import_via(&mut lying, &a, "release", "r").unwrap_err();
    assert_eq!(refused.code(), Code::Quarantined);
    assert!(
        refused.to_string().contains("signed manifest says"),
        "{refused}"
    );
    nothing_imported(&b, &a);
}

#[test]
fn rfc0021_stage7_finalization() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let report = b.import(&rt, &a, "release", "alpha-release").unwrap();
    // The import record, the head it was verified under and the edge are one record.
    let record = b.known(&a).unwrap();
    let import = &record.imports["alpha-release"];
    assert_eq!(
        (import.snapshot, import.edge, import.epoch),
        (snapshot, report.edge, 1)
    );
    let head = SignedHead::decode(record.head.as_ref().unwrap()).unwrap();
    assert_eq!(head.head.epoch, 1);
    assert_eq!(record.entries.len(), 1);
    assert_eq!(b.imported_files(&a, &snapshot), a.own_files(&snapshot));
    // The link is established: importing it again moves nothing.
    let again = b.import(&rt, &a, "release", "alpha-release").unwrap();
    assert_eq!((again.fetched_nodes, again.new_nodes), (0, 0));
    assert_eq!(again.edge, report.edge);
}

#[test]
fn trust_policy_an_untrusted_universe_is_linked_but_enters_a_branch_only_with_an_override() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let into = |override_trust| import::Into {
        branch: RefName::branch("main").unwrap(),
        path: RepoPath::parse("vendor/alpha").unwrap(),
        info: CommitInfo {
            author: "Me <me@x>".into(),
            message: "vendor alpha".into(),
            time: DeclaredTime {
                seconds: 1_700_000_200,
                tz_minutes: 0,
            },
        },
        override_trust,
    };
    let tip = b.tip();
    let import_into = |into: &import::Into, local: &str| {
        let mut remote = a.remote(&rt).unwrap();
        let result = import::import_with(
            &b.repo,
            &mut remote,
            None,
            Some(a.id),
            "release",
            local,
            Some(into),
            None,
            &Quiet,
        );
        remote.close();
        result
    };
    // Untrusted: refused into a branch, and nothing of it imported; linking is allowed.
    let refused = import_into(&into(false), "vendored");
    assert_eq!(code(&refused), Code::Forbidden);
    assert_eq!(b.tip(), tip);
    nothing_imported(&b, &a);
    b.import(&rt, &a, "release", "linked").unwrap();
    assert_eq!(b.tip(), tip, "a link moves no branch");
    // With the override it is committed: a snapshot on main holds the imported tree.
    let report = import_into(&into(true), "vendored").unwrap();
    let committed = b.tip();
    assert_ne!(committed, tip);
    assert_eq!(b.node(&committed).parents, vec![tip]);
    let Payload::FederationEdge(link) = b.node(&report.edge).payload else {
        panic!()
    };
    assert_eq!(
        link.local, committed,
        "the edge's local end is the vendoring snapshot"
    );
    let files = b.own_files(&committed);
    assert_eq!(files["vendor/alpha/README"], b"alpha\n");
    assert_eq!(files["vendor/alpha/data/big.bin"], large(1, 300_000));
    let txn = b.repo.store().read().unwrap();
    assert!(
        !b.repo.store().has_node(&txn, &snapshot).unwrap(),
        "the publisher's snapshot node never enters the DAG"
    );
    drop(txn);
    // Semi-trusted needs no override.
    peers::trust(b.repo.store(), a.id, Trust::SemiTrusted).unwrap();
    let mut into_other = into(false);
    into_other.path = RepoPath::parse("vendor/again").unwrap();
    import_into(&into_other, "again").unwrap();
    assert!(b.own_files(&b.tip()).contains_key("vendor/again/README"));
}

// ---- RFC-0021: invariants ----

#[test]
fn rfc0021_invariant1_no_dag_fusion() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let (a_nodes, b_tip) = (a.node_count(), b.tip());
    b.import(&rt, &a, "release", "r").unwrap();
    // No merge across universes: B's branch did not move, A's snapshot is not in B's DAG, and
    // A's store did not change by serving.
    assert_eq!(b.tip(), b_tip);
    let txn = b.repo.store().read().unwrap();
    assert!(!b.repo.store().has_node(&txn, &snapshot).unwrap());
    assert_eq!(a.node_count(), a_nodes);
    assert_ne!(a.id, b.id);
}

#[test]
fn rfc0021_invariant2_federation_edges_declare_their_direction() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let report = b.import(&rt, &a, "release", "r").unwrap();
    let edge = b.node(&report.edge);
    let Payload::FederationEdge(link) = &edge.payload else {
        panic!()
    };
    assert_eq!(
        link.direction,
        Direction::Import,
        "local → remote, explicit"
    );
    assert_eq!(link.purpose, "import");
    assert_eq!(edge.parents, vec![b.tip()], "the local end is B's tip");
    assert_eq!(link.local, b.tip());
}

#[test]
fn rfc0021_invariant3_each_universe_declares_a_trust_level() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let untrusted = b.import(&rt, &a, "release", "first").unwrap();
    assert_eq!(
        untrusted.trust, "untrusted",
        "an unknown universe is untrusted"
    );
    peers::trust(b.repo.store(), a.id, Trust::SemiTrusted).unwrap();
    let semi = b.import(&rt, &a, "release", "second").unwrap();
    let Payload::FederationEdge(link) = b.node(&semi.edge).payload else {
        panic!()
    };
    assert_eq!(
        link.trust,
        Trust::SemiTrusted,
        "the edge records the level at linking"
    );
}

#[test]
fn rfc0021_invariant4_no_causal_pollution() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let before = b.node_count();
    b.import(&rt, &a, "release", "r").unwrap();
    assert_eq!(
        b.node_count(),
        before + 1,
        "foreign nodes are never counted as local"
    );
    // A local node with a foreign parent is refused.
    let txn = b.repo.store().read().unwrap();
    let tree = tree::tree_of(
        &foreign::Foreign::new(b.repo.store(), &txn, a.id),
        &snapshot,
    )
    .unwrap();
    drop(txn);
    let polluted = Node::with_parents(
        vec![snapshot],
        99,
        Payload::Snapshot(jit_kernel::node::Snapshot {
            tree,
            author: "x".into(),
            message: "adopt a foreign parent".into(),
            time: DeclaredTime {
                seconds: 0,
                tz_minutes: 0,
            },
        }),
    );
    let refused = b
        .repo
        .store()
        .operation("test.pollute", |op| dag::append(op, &polluted))
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvariantViolation, "{refused}");
}

#[test]
fn rfc0021_invariant5_deterministic_byte_identical_import() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let c = Universe::new(&rt, "gamma");
    b.import(&rt, &a, "release", "r").unwrap();
    c.import(&rt, &a, "release", "r").unwrap();
    let a_txn = a.repo.store().read().unwrap();
    let (b_txn, c_txn) = (
        b.repo.store().read().unwrap(),
        c.repo.store().read().unwrap(),
    );
    let in_b = foreign::entries(b.repo.store(), &b_txn, a.id).unwrap();
    let in_c = foreign::entries(c.repo.store(), &c_txn, a.id).unwrap();
    assert_eq!(in_b, in_c, "two importers hold the same ids and bytes");
    for (id, bytes) in &in_b {
        let origin = a.repo.store().node_bytes(&a_txn, id).unwrap().unwrap();
        assert_eq!(
            *bytes, &*origin,
            "node {id} is byte-identical to its origin"
        );
    }
    assert!(in_b.iter().any(|(id, _)| *id == snapshot));
}

#[test]
fn rfc0021_invariant6_provenance_keeps_both_universe_ids() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let report = b.import(&rt, &a, "release", "r").unwrap();
    let edge = b.node(&report.edge);
    assert_eq!(edge.metadata["local_universe"], b.id.to_string());
    assert_eq!(edge.metadata["remote_universe"], a.id.to_string());
    assert_eq!(edge.metadata["published"], "release");
    assert_eq!(edge.metadata["epoch"], "1");
}

// ---- ASL: the visibility table ----

/// A's universe with an internal snapshot (never published) under the published one, and
/// the ids of an internal artifact, its chunks, and the published ones.
struct Visibility {
    a: Universe,
    b: Universe,
    internal_snapshot: NodeId,
    internal_blob: NodeId,
    internal_chunk: NodeId,
    published_snapshot: NodeId,
    published_blob: NodeId,
    published_chunk: NodeId,
}

fn blob_and_chunk(u: &Universe, snapshot: &NodeId, path: &str) -> (NodeId, NodeId) {
    let txn = u.repo.store().read().unwrap();
    let dag = Dag::new(u.repo.store(), &txn);
    let root = tree::tree_of(&dag, snapshot).unwrap();
    let blob = tree::lookup(&dag, &root, path.as_bytes())
        .unwrap()
        .unwrap()
        .id;
    let Payload::Blob(jit_kernel::node::Blob::Chunked { chunks, .. }) =
        dag.node(&blob).unwrap().payload
    else {
        panic!("{path} is not chunked")
    };
    (blob, chunks[0].id)
}

fn visibility(rt: &tokio::runtime::Runtime) -> Visibility {
    let a = Universe::new(rt, "alpha");
    let b = Universe::new(rt, "beta");
    let internal_snapshot = a.commit(&[("secret.bin", large(7, 200_000))]);
    let (internal_blob, internal_chunk) = blob_and_chunk(&a, &internal_snapshot, "secret.bin");
    // The published snapshot drops the secret: it stays in the internal one only.
    let branch = a.repo.head().unwrap();
    let id = sws::working(a.repo.store(), &branch, "me").unwrap();
    sws::apply_patch(
        a.repo.store(),
        id,
        &Patch {
            id: "rm".into(),
            author: "me".into(),
            ts: 0,
            ops: vec![
                PatchOp::Delete {
                    path: "secret.bin".into(),
                },
                PatchOp::Put {
                    path: "public.bin".into(),
                    content: large(8, 200_000),
                    executable: false,
                },
            ],
        },
    )
    .unwrap();
    let info = CommitInfo {
        author: "Me <me@x>".into(),
        message: "publishable".into(),
        time: DeclaredTime {
            seconds: 1_700_000_100,
            tz_minutes: 0,
        },
    };
    let collapse::Outcome::Committed {
        snapshot: published_snapshot,
        ..
    } = collapse::commit(a.repo.store(), id, &info).unwrap()
    else {
        panic!()
    };
    let (published_blob, published_chunk) = blob_and_chunk(&a, &published_snapshot, "public.bin");
    a.publish("main", "release");
    Visibility {
        a,
        b,
        internal_snapshot,
        internal_blob,
        internal_chunk,
        published_snapshot,
        published_blob,
        published_chunk,
    }
}

/// A session's token for `b` at `a`.
fn session(rt: &tokio::runtime::Runtime, a: &Universe, b: &Universe) -> (ZenohRemote, ByteBuf) {
    let mut remote = a.remote(rt).unwrap();
    let session = handshake::hello(&b.repo, &mut remote, None).unwrap();
    (remote, ByteBuf::from(session.token))
}

fn fetch(remote: &mut ZenohRemote, token: &ByteBuf, id: NodeId) -> FetchReply {
    let request = jit_kernel::federation::wire::FetchRequest {
        session: token.clone(),
        ids: vec![id],
        max_bytes: 1 << 20,
        zstd: false,
    };
    wire::from_value(
        remote
            .call(vec![(
                Operation::FederationFetch,
                wire::to_value(&request).unwrap(),
            )])
            .unwrap()
            .remove(0),
        "fetch",
    )
    .unwrap()
}

fn depend(remote: &mut ZenohRemote, token: &ByteBuf, id: NodeId) -> Result<DependReply, Error> {
    let request = jit_kernel::federation::wire::DependRequest {
        session: token.clone(),
        roots: vec![id],
        haves: vec![],
    };
    let answer = remote.call(vec![(
        Operation::FederationDepend,
        wire::to_value(&request)?,
    )])?;
    wire::from_value(answer.into_iter().next().unwrap(), "depend")
}

/// The reply for `id` says exactly what the reply for an id nobody holds says.
fn answered_as_nonexistent(remote: &mut ZenohRemote, token: &ByteBuf, id: NodeId) {
    let nobody = NodeId([0xAB; 32]);
    let hidden = fetch(remote, token, id);
    let absent = fetch(remote, token, nobody);
    assert_eq!((hidden.nodes.len(), hidden.missing.clone()), (0, vec![id]));
    let mut as_absent = hidden;
    as_absent.missing = vec![nobody];
    assert_eq!(
        jit_kernel::cbor::encode(&wire::to_value(&as_absent).unwrap()).unwrap(),
        jit_kernel::cbor::encode(&wire::to_value(&absent).unwrap()).unwrap(),
        "same reply bytes as for a nonexistent id"
    );
}

#[test]
fn asl_internal_artifact_is_hidden() {
    let rt = runtime();
    let v = visibility(&rt);
    let (mut remote, token) = session(&rt, &v.a, &v.b);
    answered_as_nonexistent(&mut remote, &token, v.internal_blob);
    remote.close();
}

#[test]
fn asl_published_artifact_is_visible_read_only() {
    let rt = runtime();
    let v = visibility(&rt);
    let (mut remote, token) = session(&rt, &v.a, &v.b);
    let reply = fetch(&mut remote, &token, v.published_blob);
    assert_eq!(reply.nodes.len(), 1);
    assert_eq!(reply.nodes[0].id, v.published_blob);
    remote.close();
    // Imported, it is readable in B, and only through the read-only foreign store.
    v.b.import(&rt, &v.a, "release", "r").unwrap();
    let files = v.b.imported_files(&v.a, &v.published_snapshot);
    assert_eq!(files["public.bin"], large(8, 200_000));
    let txn = v.b.repo.store().read().unwrap();
    assert!(!v.b.repo.store().has_node(&txn, &v.published_blob).unwrap());
}

#[test]
fn asl_internal_snapshot_is_hidden() {
    let rt = runtime();
    let v = visibility(&rt);
    let (mut remote, token) = session(&rt, &v.a, &v.b);
    // The parent of the published snapshot is internal: not declarable, not fetchable, and
    // refused exactly as an id nobody holds.
    let internal = depend(&mut remote, &token, v.internal_snapshot).unwrap_err();
    let absent = depend(&mut remote, &token, NodeId([0xAB; 32])).unwrap_err();
    assert_eq!(internal.code(), Code::NodeNotFound);
    assert_eq!(
        internal
            .to_string()
            .replace(&v.internal_snapshot.to_hex(), "ID"),
        absent
            .to_string()
            .replace(&NodeId([0xAB; 32]).to_hex(), "ID")
    );
    answered_as_nonexistent(&mut remote, &token, v.internal_snapshot);
    remote.close();
}

#[test]
fn asl_published_snapshot_is_visible() {
    let rt = runtime();
    let v = visibility(&rt);
    let (mut remote, token) = session(&rt, &v.a, &v.b);
    let reply = depend(&mut remote, &token, v.published_snapshot).unwrap();
    let manifest =
        Manifest::open(&reply.manifest, &v.a.identity().verifying_key().to_bytes()).unwrap();
    assert_eq!(manifest.roots[0].into_array(), v.published_snapshot.0);
    assert_eq!(
        fetch(&mut remote, &token, v.published_snapshot).nodes.len(),
        1
    );
    remote.close();
}

#[test]
fn asl_blocks_supporting_published_artifacts_are_visible() {
    let rt = runtime();
    let v = visibility(&rt);
    let (mut remote, token) = session(&rt, &v.a, &v.b);
    let reply = fetch(&mut remote, &token, v.published_chunk);
    assert_eq!(reply.nodes[0].id, v.published_chunk);
    remote.close();
}

#[test]
fn asl_blocks_of_internal_artifacts_are_hidden() {
    let rt = runtime();
    let v = visibility(&rt);
    let (mut remote, token) = session(&rt, &v.a, &v.b);
    answered_as_nonexistent(&mut remote, &token, v.internal_chunk);
    remote.close();
}

// ---- ASL: the five invariants ----

#[test]
fn asl_invariant1_determinism() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let c = Universe::new(&rt, "gamma");
    let (mut remote, token) = session(&rt, &a, &b);
    let first = depend(&mut remote, &token, snapshot).unwrap();
    let second = depend(&mut remote, &token, snapshot).unwrap();
    assert_eq!(
        first, second,
        "the same closure signs to the same manifest bytes"
    );
    remote.close();
    let from_b = b.import(&rt, &a, "release", "r").unwrap();
    let from_c = c.import(&rt, &a, "release", "r").unwrap();
    assert_eq!(from_b.closure, from_c.closure);
    assert_eq!(
        b.imported_files(&a, &snapshot),
        c.imported_files(&a, &snapshot)
    );
}

#[test]
fn asl_invariant2_immutability() {
    let rt = runtime();
    let (a, b, first) = pair(&rt);
    b.import(&rt, &a, "release", "r").unwrap();
    let before = b.imported_files(&a, &first);
    // A moves the name to a new snapshot: B's import stays what it verified until B asks, and
    // afterwards the old snapshot still reads the same.
    let second = a.commit(&[("README", b"alpha, second edition\n".to_vec())]);
    a.publish("main", "release");
    assert_eq!(b.known(&a).unwrap().imports["r"].snapshot, first);
    let refreshed = b.import(&rt, &a, "release", "r").unwrap();
    assert_eq!(refreshed.snapshot, second);
    assert_eq!(b.imported_files(&a, &first), before);
    assert_eq!(
        b.imported_files(&a, &second)["README"],
        b"alpha, second edition\n"
    );
}

#[test]
fn asl_invariant3_domain_isolation() {
    let rt = runtime();
    let v = visibility(&rt);
    // What A shows is exactly the published closure.
    let txn = v.a.repo.store().read().unwrap();
    let shown = jit_kernel::federation::visible::count(v.a.repo.store(), &txn).unwrap();
    let closure = jit_kernel::federation::closure::walk(
        &Dag::new(v.a.repo.store(), &txn),
        &[v.published_snapshot],
        |_| Ok(false),
    )
    .unwrap();
    assert_eq!(shown, closure.len() as u64);
    for internal in [v.internal_snapshot, v.internal_blob, v.internal_chunk] {
        assert!(!serve::shows(&v.a.repo, &internal).unwrap());
    }
}

#[test]
fn asl_invariant4_federation_safety_read_only() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let a_log = {
        let txn = a.repo.store().read().unwrap();
        a.repo.store().log_tail(&txn).unwrap()
    };
    b.import(&rt, &a, "release", "r").unwrap();
    // Serving wrote nothing in A.
    let txn = a.repo.store().read().unwrap();
    assert_eq!(a.repo.store().log_tail(&txn).unwrap(), a_log);
    drop(txn);
    // B's own work never touches what it imported.
    let held = b.foreign(&a);
    b.commit(&[("mine.txt", b"local work\n".to_vec())]);
    assert_eq!(b.foreign(&a), held);
    assert_eq!(b.imported_files(&a, &snapshot), a.own_files(&snapshot));
}

#[test]
fn asl_invariant5_snapshot_integrity() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let txn = a.repo.store().read().unwrap();
    let closure =
        jit_kernel::federation::closure::walk(&Dag::new(a.repo.store(), &txn), &[snapshot], |_| {
            Ok(false)
        })
        .unwrap();
    drop(txn);
    for id in &closure {
        assert!(
            serve::shows(&a.repo, id).unwrap(),
            "{id} supports the published snapshot"
        );
    }
    b.import(&rt, &a, "release", "r").unwrap();
    assert_eq!(b.imported_files(&a, &snapshot), a.own_files(&snapshot));
}

// ---- The federated-readiness RFC ----

#[test]
fn readiness_signed_handshake() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    // An accept signed by a key that is not A's: refused on first contact, nothing recorded.
    let impostor = SigningKey::from_bytes(&[42; 32]);
    let mut forged = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHello {
            edit::<HelloReply>(value, |reply| {
                let accept = Accept::claimed(&reply.accept).unwrap();
                reply.accept = ByteBuf::from(accept.seal(&impostor).unwrap());
            });
        }
    });
    let refused = b.import_via(&mut forged, &a, "release", "r");
    assert_eq!(code(&refused), Code::BadSignature);
    nothing_imported(&b, &a);
    assert!(
        b.known(&a).is_none(),
        "nothing is recorded of a failed first contact"
    );
    // The honest handshake goes through.
    b.import(&rt, &a, "release", "r").unwrap();
}

#[test]
fn readiness_epoch_monotonicity() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let old = a.publish("main", "again");
    assert_eq!(old.head.epoch, 2);
    a.commit(&[("README", b"three\n".to_vec())]);
    let newest = a.publish("main", "release");
    assert_eq!(newest.head.epoch, 3, "every publish raises the epoch");
    b.import(&rt, &a, "release", "r").unwrap();
    // A replayed epoch-2 head is a rollback: refused `stale`, not quarantined.
    let stale = old.encode().unwrap();
    let mut replay = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| {
                reply.head = Some(ByteBuf::from(stale.clone()))
            });
        }
    });
    let refused = b.import_via(&mut replay, &a, "release", "r");
    assert_eq!(code(&refused), Code::Stale);
    let record = b.known(&a).unwrap();
    assert!(record.quarantine.is_none());
    assert_eq!(
        SignedHead::decode(record.head.as_ref().unwrap())
            .unwrap()
            .head
            .epoch,
        3
    );
}

/// A's key signs a second history for its current epoch, in which `release` names `other`.
fn forge_divergent_head(a: &Universe, other: NodeId) -> (Vec<u8>, Vec<Vec<u8>>) {
    let txn = a.repo.store().read().unwrap();
    let log = publish::entries(a.repo.store(), &txn).unwrap();
    let head = publish::head(a.repo.store(), &txn).unwrap().unwrap();
    let mut forged_log = log.clone();
    forged_log.last_mut().unwrap().snapshot = other;
    let entries: Vec<Vec<u8>> = forged_log.iter().map(|e| e.encode().unwrap()).collect();
    let leaves: Vec<_> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let forged = SignedHead::sign(
        PublishedHead {
            root: merkle::root(&leaves),
            ..head.head
        },
        &a.key(),
    )
    .unwrap();
    (forged.encode().unwrap(), entries)
}

#[test]
fn readiness_quarantine_on_divergence_and_release() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    b.import(&rt, &a, "release", "r").unwrap();
    let held = b.known(&a).unwrap().head.unwrap().to_vec();
    // The same epoch, now naming another snapshot: two histories.
    let (forged_head, forged_entries) = forge_divergent_head(&a, NodeId([5; 32]));
    let mut divergent = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| {
                reply.head = Some(ByteBuf::from(forged_head.clone()));
                reply.entries = forged_entries.iter().cloned().map(ByteBuf::from).collect();
            });
        }
    });
    // B asks from its held size (1): give it the forged log's tail... it holds entry 0, so
    // the forged head cannot verify against it either way.
    let refused = b
        .import_via(&mut divergent, &a, "release", "r")
        .unwrap_err();
    assert_eq!(refused.code(), Code::Quarantined, "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains(&hex::encode(&held)),
        "names the head held: {message}"
    );
    assert!(
        message.contains(&hex::encode(&forged_head)),
        "and the head offered"
    );
    assert!(
        message.contains("jit federation release"),
        "and the next command"
    );
    let record = b.known(&a).unwrap();
    assert_eq!(record.quarantine.unwrap().code, "equivocation");
    // The two heads make a proof that is kept (and gossiped), checkable with A's key alone.
    let proof = jit_proto::equivocation::EquivocationProof::decode(&record.proof.unwrap()).unwrap();
    proof
        .verify(&a.identity().verifying_key().to_bytes())
        .unwrap();
    // Nothing more is imported, even from the honest daemon, until released.
    let blocked = b.import(&rt, &a, "release", "other");
    assert_eq!(code(&blocked), Code::Quarantined);
    jit_kernel::federation::quarantine::release(b.repo.store(), a.id, false).unwrap();
    b.import(&rt, &a, "release", "other").unwrap();
}

#[test]
fn readiness_partition_recovery() {
    let rt = runtime();
    let (mut a, b, _) = pair(&rt);
    b.import(&rt, &a, "release", "r").unwrap();
    // Partition: A's plane is unreachable; B's attempt fails and changes nothing it verified.
    a.stop(&rt);
    a.commit(&[("README", b"two\n".to_vec())]);
    a.publish("main", "release");
    a.commit(&[("README", b"three\n".to_vec())]);
    let third = a.publish("main", "release");
    let during = b.import(&rt, &a, "release", "r");
    assert!(during.is_err());
    let record = b.known(&a).unwrap();
    assert!(record.quarantine.is_none());
    assert_eq!(
        SignedHead::decode(record.head.as_ref().unwrap())
            .unwrap()
            .head
            .epoch,
        1
    );
    // Healed: B resumes from epoch 1 and verifies the log's extension to epoch 3.
    a.start(&rt);
    let report = b.import(&rt, &a, "release", "r").unwrap();
    assert_eq!(report.epoch, third.head.epoch);
    assert_eq!(b.imported_files(&a, &a.tip())["README"], b"three\n");
}

#[test]
fn readiness_a_transfer_cut_midway_resumes_with_what_was_verified() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    // The connection drops at the third fetch: a network failure, not a lie.
    let mut fetches = 0;
    let mut cut = Hostile {
        inner: a.remote(&rt).unwrap(),
        tamper: Box::new(|_, _| {}),
    };
    let refused = {
        let mut dropping = Dropping {
            inner: &mut cut,
            fetches: &mut fetches,
            after: 2,
        };
        b.import_via(&mut dropping, &a, "release", "r").unwrap_err()
    };
    assert_eq!(refused.code(), Code::SyncFailed, "{refused}");
    let record = b.known(&a).unwrap();
    assert!(
        record.quarantine.is_none(),
        "a dropped connection is no fault"
    );
    assert!(record.imports.is_empty());
    let (held, pending) = b.foreign(&a);
    assert_eq!(held, 0, "nothing is held before an import commits");
    assert!(pending > 0, "what was verified stays pending");
    // The next import resumes: it fetches only what did not arrive.
    let report = b.import(&rt, &a, "release", "r").unwrap();
    assert_eq!(report.resumed_nodes, pending);
    assert_eq!(report.fetched_nodes + report.resumed_nodes, report.closure);
    assert_eq!(b.foreign(&a), (report.closure, 0));
}

/// A transport whose connection drops after `after` fetch requests.
struct Dropping<'r> {
    inner: &'r mut dyn Remote,
    fetches: &'r mut usize,
    after: usize,
}

impl Remote for Dropping<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn call(&mut self, requests: Vec<(Operation, Value)>) -> Result<Vec<Value>, Error> {
        if requests
            .iter()
            .any(|(op, _)| *op == Operation::FederationFetch)
        {
            *self.fetches += 1;
            if *self.fetches > self.after {
                return Err(Error::Sync {
                    remote: "peer".into(),
                    reason: "the connection dropped".into(),
                });
            }
        }
        self.inner.call(requests)
    }
}

// ---- A hostile universe ----

#[test]
fn hostile_forged_head_signature_is_quarantined() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    b.import(&rt, &a, "release", "r").unwrap();
    a.commit(&[("README", b"two\n".to_vec())]);
    a.publish("main", "release");
    let held = b.foreign(&a);
    let impostor = SigningKey::from_bytes(&[42; 32]);
    let mut forged = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| {
                let head = SignedHead::decode(reply.head.as_ref().unwrap()).unwrap();
                let resigned = SignedHead::sign(head.head, &impostor).unwrap();
                reply.head = Some(ByteBuf::from(resigned.encode().unwrap()));
            });
        }
    });
    assert_eq!(
        code(&b.import_via(&mut forged, &a, "release", "r")),
        Code::Quarantined
    );
    assert_eq!(
        b.known(&a).unwrap().quarantine.unwrap().code,
        "bad_signature"
    );
    assert_eq!(b.foreign(&a), held, "nothing more imported");
}

#[test]
fn hostile_manifest_whose_digest_does_not_match_is_quarantined() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let key = a.key();
    let mut lying = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationDepend {
            edit::<DependReply>(value, |reply| {
                let mut manifest = Manifest::claimed(&reply.manifest).unwrap();
                manifest.digest = ByteArray::new([7; 32]);
                reply.manifest = ByteBuf::from(manifest.seal(&key).unwrap());
            });
        }
    });
    let refused = b.import_via(&mut lying, &a, "release", "r").unwrap_err();
    assert_eq!(refused.code(), Code::Quarantined);
    assert!(
        refused.to_string().contains("signed manifest says"),
        "{refused}"
    );
    nothing_imported(&b, &a);
}

#[test]
fn hostile_node_whose_bytes_do_not_match_its_id_is_quarantined() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let mut lying = lying_fetches(&rt, &a, |reply| {
        if let Some(node) = reply.nodes.last_mut() {
            let last = node.bytes.len() - 1;
            node.bytes[last] ^= 1;
        }
    });
    let refused = b.import_via(&mut lying, &a, "release", "r").unwrap_err();
    assert_eq!(refused.code(), Code::Quarantined);
    assert_eq!(
        b.known(&a).unwrap().quarantine.unwrap().code,
        "invariant_violation"
    );
    nothing_imported(&b, &a);
}

#[test]
fn hostile_node_sent_as_a_compressed_frame_is_refused_not_inflated() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let mut lying = lying_fetches(&rt, &a, |reply| {
        for node in &mut reply.nodes {
            // A stored representation (a zstd frame) instead of canonical bytes: it would
            // inflate to the right node, but federation asks for canonical bytes.
            let mut frame = vec![0x01];
            frame.extend(zstd::bulk::compress(&node.bytes, 1).unwrap());
            node.bytes = frame;
        }
    });
    let refused = b.import_via(&mut lying, &a, "release", "r").unwrap_err();
    assert_eq!(refused.code(), Code::Quarantined, "{refused}");
    nothing_imported(&b, &a);
}

#[test]
fn hostile_rolled_back_head_is_refused_stale() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let first = {
        let txn = a.repo.store().read().unwrap();
        publish::head(a.repo.store(), &txn).unwrap().unwrap()
    };
    a.commit(&[("README", b"two\n".to_vec())]);
    a.publish("main", "release");
    b.import(&rt, &a, "release", "r").unwrap();
    let held = b.foreign(&a);
    let old = first.encode().unwrap();
    let mut rollback = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| reply.head = Some(ByteBuf::from(old.clone())));
        }
    });
    assert_eq!(
        code(&b.import_via(&mut rollback, &a, "release", "r")),
        Code::Stale
    );
    assert_eq!(b.foreign(&a), held);
    assert!(b.known(&a).unwrap().quarantine.is_none());
}

#[test]
fn hostile_changed_snapshot_under_an_old_epoch_is_quarantined() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    // First sight of a log whose published name was swapped under the same epoch: the
    // entries do not hash to the signed root.
    let (real_head, _) = {
        let txn = a.repo.store().read().unwrap();
        let head = publish::head(a.repo.store(), &txn).unwrap().unwrap();
        (head.encode().unwrap(), ())
    };
    let (_, forged_entries) = forge_divergent_head(&a, NodeId([5; 32]));
    let mut swapped = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| {
                reply.head = Some(ByteBuf::from(real_head.clone()));
                reply.entries = forged_entries.iter().cloned().map(ByteBuf::from).collect();
            });
        }
    });
    let refused = b.import_via(&mut swapped, &a, "release", "r").unwrap_err();
    assert_eq!(refused.code(), Code::Quarantined, "{refused}");
    nothing_imported(&b, &a);
}

#[test]
fn hostile_replayed_old_identity_version_is_refused() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    // A rotates its key (version 2, signed by version 1's key and its own); B follows it.
    let v1 = a.identity().document().unwrap();
    let (k1, k2) = (a.key(), SigningKey::from_bytes(&[77; 32]));
    let v2 = v1.rotate(&k1, &k2).unwrap();
    let chain = vec![
        ByteBuf::from(v1.encode().unwrap()),
        ByteBuf::from(v2.encode().unwrap()),
    ];
    let rotate = |value: &mut Value, chain: Vec<ByteBuf>, key: &SigningKey, version: u64| {
        edit::<HelloReply>(value, |reply| {
            let mut accept = Accept::claimed(&reply.accept).unwrap();
            accept.identity_version = version;
            reply.accept = ByteBuf::from(accept.seal(key).unwrap());
            reply.identity = chain;
        });
    };
    let mut rotated = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHello {
            rotate(value, chain.clone(), &k2, 2);
        }
    });
    let session = handshake::hello(&b.repo, &mut rotated, None).unwrap();
    assert_eq!(session.identity.version, 2, "a rotation is followed");
    // Version 1 again, signed by the old key: a replay.
    let old_chain = vec![ByteBuf::from(v1.encode().unwrap())];
    let mut replayed = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHello {
            rotate(value, old_chain.clone(), &k1, 1);
        }
    });
    let refused = b.import_via(&mut replayed, &a, "release", "r");
    assert_eq!(code(&refused), Code::Replayed);
    let held = SignedIdentity::decode(&b.known(&a).unwrap().identity).unwrap();
    assert_eq!(held.doc.version, 2, "the version held did not go back");
    nothing_imported(&b, &a);
}

#[test]
fn hostile_denied_universe_is_refused_before_any_lookup() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    peers::deny(b.repo.store(), a.id).unwrap();
    assert_eq!(code(&b.import(&rt, &a, "release", "r")), Code::Forbidden);
    // Through a bare hello too: the accept's claimed universe is refused before its identity
    // is looked at; nothing of A is recorded.
    let mut remote = a.remote(&rt).unwrap();
    let refused = handshake::hello(&b.repo, &mut remote, None).unwrap_err();
    remote.close();
    assert_eq!(refused.code(), Code::Forbidden);
    assert!(b.known(&a).is_none());
    nothing_imported(&b, &a);
    // And A refuses a denied B at its hello.
    peers::deny(a.repo.store(), b.id).unwrap();
    peers::trust(b.repo.store(), a.id, Trust::Untrusted).unwrap();
    assert_eq!(code(&b.import(&rt, &a, "release", "r")), Code::Forbidden);
}

#[test]
fn hostile_oversized_head_manifest_and_closure_are_refused_before_allocating() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let key = a.key();
    let mut big_head = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| {
                reply.head = Some(ByteBuf::from(vec![0u8; 64 * 1024]));
            });
        }
    });
    assert_eq!(
        code(&b.import_via(&mut big_head, &a, "release", "r")),
        Code::TooLarge
    );
    let mut big_manifest = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationDepend {
            edit::<DependReply>(value, |reply| {
                reply.manifest = ByteBuf::from(vec![0u8; 1 << 20]);
            });
        }
    });
    assert_eq!(
        code(&b.import_via(&mut big_manifest, &a, "release", "r")),
        Code::Malformed
    );
    let mut big_closure = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationDepend {
            edit::<DependReply>(value, |reply| {
                let mut manifest = Manifest::claimed(&reply.manifest).unwrap();
                manifest.count = MAX_CLOSURE + 1;
                reply.manifest = ByteBuf::from(manifest.seal(&key).unwrap());
            });
        }
    });
    assert_eq!(
        code(&b.import_via(&mut big_closure, &a, "release", "r")),
        Code::TooLarge
    );
    // A closure that declares more bytes than one import may hold; a consistency proof of more
    // hashes than any log needs.
    let mut big_bytes = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationDepend {
            edit::<DependReply>(value, |reply| {
                let mut manifest = Manifest::claimed(&reply.manifest).unwrap();
                manifest.bytes = jit_proto::federation::MAX_CLOSURE_BYTES + 1;
                reply.manifest = ByteBuf::from(manifest.seal(&key).unwrap());
            });
        }
    });
    assert_eq!(
        code(&b.import_via(&mut big_bytes, &a, "release", "r")),
        Code::TooLarge
    );
    let mut long_proof = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| {
                reply.consistency = vec![ByteArray::new([0; 32]); 65];
            });
        }
    });
    assert_eq!(
        code(&b.import_via(&mut long_proof, &a, "release", "r")),
        Code::TooLarge
    );
    // A compressed reply that claims more than a reply may hold, or that inflates beyond what
    // it claims (a zstd bomb), is refused before that much is allocated.
    let mut claims_too_much = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationFetch {
            edit::<FetchAnswer>(value, |answer| {
                *answer = FetchAnswer::Packed(PackedFetchReply {
                    zstd: ByteBuf::from(vec![0u8; 16]),
                    size: 1 << 40,
                });
            });
        }
    });
    assert_eq!(
        code(&b.import_via(&mut claims_too_much, &a, "release", "r")),
        Code::TooLarge
    );
    let bomb = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
    let mut inflates = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationFetch {
            edit::<FetchAnswer>(value, |answer| {
                *answer = FetchAnswer::Packed(PackedFetchReply {
                    zstd: ByteBuf::from(bomb.clone()),
                    size: 1024,
                });
            });
        }
    });
    assert_eq!(
        code(&b.import_via(&mut inflates, &a, "release", "r")),
        Code::TooLarge
    );
    // A closure bigger than the one declared — in nodes, or in bytes — is cut off where it
    // exceeds it.
    let mut understated = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationDepend {
            edit::<DependReply>(value, |reply| {
                let mut manifest = Manifest::claimed(&reply.manifest).unwrap();
                manifest.bytes = 100;
                reply.manifest = ByteBuf::from(manifest.seal(&key).unwrap());
            });
        }
    });
    let refused = b
        .import_via(&mut understated, &a, "release", "r")
        .unwrap_err();
    assert_eq!(refused.code(), Code::Quarantined);
    assert!(
        refused.to_string().contains("more than the 100 bytes"),
        "{refused}"
    );
    nothing_imported(&b, &a);
    jit_kernel::federation::quarantine::release(b.repo.store(), a.id, false).unwrap();
    let mut understated = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationDepend {
            edit::<DependReply>(value, |reply| {
                let mut manifest = Manifest::claimed(&reply.manifest).unwrap();
                manifest.count = 2;
                reply.manifest = ByteBuf::from(manifest.seal(&key).unwrap());
            });
        }
    });
    assert_eq!(
        code(&b.import_via(&mut understated, &a, "release", "r")),
        Code::Quarantined
    );
    nothing_imported(&b, &a);
}

// ---- Three universes ----

#[test]
fn three_universes_b_refreshes_only_new_nodes_and_c_catches_up_after_a_partition() {
    let rt = runtime();
    let mut a = Universe::new(&rt, "alpha");
    let (b, c) = (Universe::new(&rt, "beta"), Universe::new(&rt, "gamma"));
    let files: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            (
                format!("dir{}/file{i}.txt", i % 10),
                format!("file {i}\n").into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let first = a.commit(&refs);
    a.publish("main", "release");
    let b1 = b.import(&rt, &a, "release", "r").unwrap();
    let c1 = c.import(&rt, &a, "release", "r").unwrap();
    assert_eq!(b1.closure, c1.closure);

    // A changes one file and publishes; B refreshes.
    let second = a.commit(&[("dir3/file13.txt", b"changed\n".to_vec())]);
    a.publish("main", "release");
    let b2 = b.import(&rt, &a, "release", "r").unwrap();
    // The new nodes: the snapshot, the root tree, dir3's tree, the changed blob.
    let new_in_closure = {
        let txn = a.repo.store().read().unwrap();
        let dag = Dag::new(a.repo.store(), &txn);
        let old: std::collections::HashSet<NodeId> =
            jit_kernel::federation::closure::walk(&dag, &[first], |_| Ok(false))
                .unwrap()
                .into_iter()
                .collect();
        jit_kernel::federation::closure::walk(&dag, &[second], |_| Ok(false))
            .unwrap()
            .into_iter()
            .filter(|id| !old.contains(id))
            .count() as u64
    };
    assert_eq!(new_in_closure, 4);
    assert_eq!(
        b2.fetched_nodes, new_in_closure,
        "B moved only the new nodes"
    );
    assert_eq!(b2.new_nodes, new_in_closure);
    // Then a partition: A is unreachable from C, and publishes again meanwhile. C's attempt
    // fails and leaves what it verified (epoch 1) as it was.
    a.stop(&rt);
    a.commit(&[("dir4/file14.txt", b"changed too\n".to_vec())]);
    a.publish("main", "release");
    assert!(c.import(&rt, &a, "release", "r").is_err());
    let held = SignedHead::decode(c.known(&a).unwrap().head.as_ref().unwrap()).unwrap();
    assert_eq!(held.head.epoch, 1);
    a.start(&rt);
    // Healed: C catches up from its last verified head (epoch 1) to epoch 3.
    let c3 = c.import(&rt, &a, "release", "r").unwrap();
    assert_eq!(c3.epoch, 3);
    assert_eq!(c3.snapshot, a.tip());
    assert!(
        c3.fetched_nodes <= 2 * new_in_closure,
        "C fetched {}",
        c3.fetched_nodes
    );
    assert_eq!(c.imported_files(&a, &a.tip()), a.own_files(&a.tip()));
}

// ---- Issue #20: equivocation caught by gossip ----

fn free_tcp() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp/127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// Waits (bounded) until `done` holds.
fn until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

#[test]
fn split_view_is_caught_by_one_gossip_round_and_the_proof_stands_alone() {
    let rt = runtime();
    let a = Universe::new(&rt, "alpha");
    let first = a.commit(&[("README", b"one\n".to_vec())]);
    a.publish("main", "release");
    let second = a.commit(&[("README", b"two\n".to_vec())]);
    let real = a.publish("main", "other");
    assert_eq!(real.head.epoch, 2);
    let (mut b, mut c, mut d) = (
        Universe::new(&rt, "beta"),
        Universe::new(&rt, "gamma"),
        Universe::new(&rt, "delta"),
    );
    // B sees A's real epoch 2: release names the first snapshot.
    assert_eq!(b.import(&rt, &a, "release", "r").unwrap().snapshot, first);
    // C is shown another epoch 2, signed with A's key, in which release names the second.
    let key = a.key();
    let (log, forged_head) = {
        let txn = a.repo.store().read().unwrap();
        let mut log = publish::entries(a.repo.store(), &txn).unwrap();
        log[1].name = "release".into();
        let entries: Vec<Vec<u8>> = log.iter().map(|e| e.encode().unwrap()).collect();
        let leaves: Vec<_> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let head = SignedHead::sign(
            PublishedHead {
                root: merkle::root(&leaves),
                ..real.head
            },
            &key,
        )
        .unwrap();
        (entries, head)
    };
    let mut split = hostile(&rt, &a, |op, value| match op {
        Operation::FederationHead => edit::<HeadReply>(value, |reply| {
            reply.head = Some(ByteBuf::from(forged_head.encode().unwrap()));
            reply.entries = log.iter().cloned().map(ByteBuf::from).collect();
        }),
        Operation::FederationDepend => edit::<DependReply>(value, |reply| {
            let mut manifest = Manifest::claimed(&reply.manifest).unwrap();
            manifest.head_root = ByteArray::new(forged_head.head.root);
            reply.manifest = ByteBuf::from(manifest.seal(&key).unwrap());
        }),
        _ => {}
    });
    assert_eq!(
        c.import_via(&mut split, &a, "release", "r")
            .unwrap()
            .snapshot,
        second,
        "each importer alone sees a consistent history"
    );
    drop(split);
    assert!(b.known(&a).unwrap().quarantine.is_none());
    assert!(c.known(&a).unwrap().quarantine.is_none());

    // B, C and D (which imports nothing) join one network and gossip.
    let (eb, ec, ed) = (free_tcp(), free_tcp(), free_tcp());
    let gossip = Some(Duration::from_millis(200));
    for (u, listen, connect) in [
        (&mut b, eb.clone(), vec![]),
        (&mut c, ec.clone(), vec![eb.clone()]),
        (&mut d, ed.clone(), vec![eb.clone(), ec.clone()]),
    ] {
        u.stop(&rt);
        u.start_with(&rt, |o| {
            o.listen = vec![listen];
            o.connect = connect;
            o.gossip_every = gossip;
        });
    }
    let caught = until(Duration::from_secs(20), || {
        [&b, &c, &d].iter().all(|u| {
            u.known(&a)
                .is_some_and(|k| k.proof.is_some() && k.quarantine.is_some())
        })
    });
    assert!(caught, "every daemon holds the proof and has quarantined A");
    let record = d.known(&a).unwrap();
    assert_eq!(record.quarantine.unwrap().code, "equivocation");
    assert!(record.imports.is_empty(), "D never imported from A");
    assert_eq!(
        code(&b.import(&rt, &a, "release", "again")),
        Code::Quarantined
    );

    // The proof stands alone: copied with A's public key to a place that knows nothing else.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join("proof.cbor"), record.proof.unwrap()).unwrap();
    std::fs::write(
        fresh.path().join("key"),
        hex::encode(a.identity().verifying_key().to_bytes()),
    )
    .unwrap();
    let alpha = a.id;
    drop(a);
    let bytes = std::fs::read(fresh.path().join("proof.cbor")).unwrap();
    let mut public = [0u8; 32];
    hex::decode_to_slice(
        std::fs::read_to_string(fresh.path().join("key")).unwrap(),
        &mut public,
    )
    .unwrap();
    let proof = jit_proto::equivocation::EquivocationProof::decode(&bytes).unwrap();
    proof.verify(&public).expect("verifies with the key alone");
    assert_eq!(proof.evidence_kind(), "same-epoch");

    // A release sticks: the same proof heard again (as the next round would bring it) does not
    // quarantine B again, and is not passed on.
    jit_kernel::federation::quarantine::release(b.repo.store(), alpha, false).unwrap();
    let note = jit_kernel::federation::gossip::proof_notes(d.repo.store())
        .unwrap()
        .remove(0);
    assert_eq!(
        jit_kernel::federation::gossip::hear_proof(b.repo.store(), &note).unwrap(),
        None
    );
    assert!(b.known_id(alpha).unwrap().quarantine.is_none());
}

// ---- Issue #20: bundles ----

fn bundle_of(a: &Universe, name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    jit_kernel::federation::bundle::export(&a.repo, name, &mut bytes).unwrap();
    bytes
}

/// A bundle's items (length-prefixed), header first.
fn items(bundle: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bundle.len() {
        let len = u64::from_be_bytes(bundle[at..at + 8].try_into().unwrap()) as usize;
        out.push(bundle[at + 8..at + 8 + len].to_vec());
        at += 8 + len;
    }
    out
}

fn joined(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(&(item.len() as u64).to_be_bytes());
        out.extend_from_slice(item);
    }
    out
}

#[test]
fn bundle_import_offline_equals_network_import_byte_for_byte() {
    let rt = runtime();
    let (a, b, snapshot) = pair(&rt);
    let c = Universe::new(&rt, "gamma");
    let bundle = bundle_of(&a, "release");
    // Anyone can verify it with the file alone.
    let summary = jit_kernel::federation::bundle::verify(&mut &bundle[..]).unwrap();
    assert_eq!((summary.universe, summary.snapshot), (a.id, snapshot));
    assert_eq!(summary.nodes, closure_of(&a, snapshot).len() as u64);
    // B imports over the network, C from the bundle with no network.
    let by_network = b.import(&rt, &a, "release", "r").unwrap();
    let by_bundle =
        jit_kernel::federation::bundle::import(&c.repo, &mut &bundle[..], Some("r"), None).unwrap();
    assert_eq!(
        (by_bundle.snapshot, by_bundle.epoch, by_bundle.closure),
        (by_network.snapshot, by_network.epoch, by_network.closure)
    );
    let (b_txn, c_txn) = (
        b.repo.store().read().unwrap(),
        c.repo.store().read().unwrap(),
    );
    assert_eq!(
        foreign::entries(b.repo.store(), &b_txn, a.id).unwrap(),
        foreign::entries(c.repo.store(), &c_txn, a.id).unwrap(),
        "the same nodes, byte for byte"
    );
    let (in_b, in_c) = (b.known(&a).unwrap(), c.known(&a).unwrap());
    assert_eq!(
        (&in_b.identity, &in_b.head, &in_b.entries),
        (&in_c.identity, &in_c.head, &in_c.entries)
    );
    let (ib, ic) = (&in_b.imports["r"], &in_c.imports["r"]);
    assert_eq!(
        (ib.snapshot, ib.epoch, &ib.published),
        (ic.snapshot, ic.epoch, &ic.published)
    );
    assert_eq!(c.imported_files(&a, &snapshot), a.own_files(&snapshot));
    // A bundle of a later epoch moves only what C lacks.
    a.commit(&[("README", b"alpha, again\n".to_vec())]);
    a.publish("main", "release");
    let later = jit_kernel::federation::bundle::import(
        &c.repo,
        &mut &bundle_of(&a, "release")[..],
        Some("r"),
        None,
    )
    .unwrap();
    assert_eq!(later.epoch, 2);
    assert_eq!(later.fetched_nodes, 3, "snapshot, root tree, README's blob");
}

#[test]
fn bundle_damage_each_case_has_its_own_error_and_stores_nothing() {
    let rt = runtime();
    let (a, _b, _) = pair(&rt);
    let c = Universe::new(&rt, "gamma");
    let bundle = bundle_of(&a, "release");
    let parts = items(&bundle);
    assert!(parts.len() > 6);
    let mut reordered = parts.clone();
    reordered.swap(3, 4); // two children of the root tree
    let mut flipped = parts.clone();
    let last = flipped[4].len() - 1;
    flipped[4][last] ^= 1;
    let mut extra = parts.clone();
    extra.push(
        Node::content(Payload::Blob(jit_kernel::node::Blob::Inline(
            b"stowaway".to_vec(),
        )))
        .encode()
        .unwrap(),
    );
    let mut padded = bundle.clone();
    padded.extend_from_slice(&[0, 0, 0]);
    let mut forged_header = parts.clone();
    let mut header: jit_kernel::federation::bundle::Header =
        jit_kernel::cbor::from_canonical_bytes(&parts[0]).unwrap();
    let mut head = SignedHead::decode(&header.head).unwrap();
    head.sig[0] ^= 1;
    header.head = ByteBuf::from(head.encode().unwrap());
    forged_header[0] = jit_kernel::cbor::to_canonical_bytes(&header).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            bundle[..bundle.len() - 100].to_vec(),
            "truncated",
        ),
        ("reordered", joined(&reordered), "out of order"),
        ("damaged node", joined(&flipped), "damaged or foreign"),
        (
            "extra node",
            joined(&extra),
            "an extra node after the closure",
        ),
        ("padded", padded, "trailing bytes"),
        (
            "forged head",
            joined(&forged_header),
            "not signed by the universe's key",
        ),
    ];
    for (case, bytes, expected) in cases {
        let verified = jit_kernel::federation::bundle::verify(&mut &bytes[..]);
        let imported = jit_kernel::federation::bundle::import(&c.repo, &mut &bytes[..], None, None);
        for error in [verified.unwrap_err(), imported.unwrap_err()] {
            assert!(error.to_string().contains(expected), "{case}: {error}");
        }
        assert_eq!(c.foreign(&a), (0, 0), "{case}: nothing stored");
        assert!(
            c.known(&a).is_none_or(|k| k.imports.is_empty()),
            "{case}: nothing imported"
        );
    }
}

// ---- Issue #20: pins ----

#[test]
fn pins_move_only_to_a_consistent_newer_head_across_three_epochs() {
    let rt = runtime();
    let (a, b, first) = pair(&rt);
    let pinned = b.import(&rt, &a, "release", "r").unwrap();
    let edge = b.node(&pinned.edge);
    // The pin: universe, snapshot, epoch and the head's root.
    let held = SignedHead::decode(b.known(&a).unwrap().head.as_ref().unwrap()).unwrap();
    assert_eq!(edge.metadata["head_root"], hex::encode(held.head.root));
    assert_eq!(edge.metadata["epoch"], "1");
    // Three epochs later: a file changed, one added, one removed.
    a.commit(&[("README", b"alpha two\n".to_vec())]);
    a.publish("main", "release");
    a.commit(&[("src/new.rs", b"// new\n".to_vec())]);
    a.publish("main", "release");
    let branch = a.repo.head().unwrap();
    let sws_id = sws::working(a.repo.store(), &branch, "me").unwrap();
    sws::apply_patch(
        a.repo.store(),
        sws_id,
        &Patch {
            id: "rm".into(),
            author: "me".into(),
            ts: 0,
            ops: vec![PatchOp::Delete {
                path: "src/lib.rs".into(),
            }],
        },
    )
    .unwrap();
    let info = CommitInfo {
        author: "Me <me@x>".into(),
        message: "rm".into(),
        time: DeclaredTime {
            seconds: 1_700_000_300,
            tz_minutes: 0,
        },
    };
    collapse::commit(a.repo.store(), sws_id, &info).unwrap();
    let newest = a.publish("main", "release");
    assert_eq!(newest.head.epoch, 4);
    let moved = b.import(&rt, &a, "release", "r").unwrap();
    assert_eq!((moved.epoch, moved.snapshot), (4, a.tip()));
    let changes: Vec<(String, jit_kernel::tree::ChangeKind)> =
        jit_kernel::federation::import::changes(b.repo.store(), a.id, &first, &moved.snapshot)
            .unwrap()
            .into_iter()
            .map(|c| (String::from_utf8(c.path).unwrap(), c.kind))
            .collect();
    use jit_kernel::tree::ChangeKind::{Added, Deleted, Modified};
    assert_eq!(
        changes,
        vec![
            ("README".to_owned(), Modified),
            ("src/lib.rs".to_owned(), Deleted),
            ("src/new.rs".to_owned(), Added),
        ]
    );
    let record = b.known(&a).unwrap();
    assert_eq!(record.imports["r"].epoch, 4);
    assert_eq!(record.head_from.as_deref(), Some(a.endpoint().as_str()));
}

#[test]
fn pins_a_name_moved_inside_an_epoch_is_named_with_both_ids_and_where_each_was_shown() {
    let rt = runtime();
    let (a, b, first) = pair(&rt);
    let second = a.commit(&[("README", b"two\n".to_vec())]);
    a.publish("main", "other");
    b.import(&rt, &a, "release", "r").unwrap();
    // The same epoch (2), another log: `release` now names the second snapshot.
    let key = a.key();
    let (entries, forged) = {
        let txn = a.repo.store().read().unwrap();
        let mut log = publish::entries(a.repo.store(), &txn).unwrap();
        let head = publish::head(a.repo.store(), &txn).unwrap().unwrap();
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
        (entries, forged)
    };
    let mut retag = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| {
                let sent = reply.entries.len();
                reply.head = Some(ByteBuf::from(forged.encode().unwrap()));
                // What the importer asked for: all of it from 0, or the tail it lacks.
                let skip = if sent == entries.len() {
                    0
                } else {
                    entries.len()
                };
                reply.entries = entries[skip..].iter().cloned().map(ByteBuf::from).collect();
            });
        }
    });
    let refused = b.import_via(&mut retag, &a, "release", "r").unwrap_err();
    assert_eq!(refused.code(), Code::Quarantined);
    let message = refused.to_string();
    for needed in [
        format!("moved \"release\" from {first} to {second} inside epoch 2"),
        format!("was shown by {}", a.endpoint()),
        "jit federation ls --json".to_owned(),
        format!("jit federation release {}", a.id),
    ] {
        assert!(message.contains(&needed), "{needed:?} not in {message}");
    }
}

// ---- Issue #20: witnesses ----

fn import_witnessed(
    rt: &tokio::runtime::Runtime,
    importer: &Universe,
    remote: &mut dyn Remote,
    from: &Universe,
    local: &str,
) -> Result<ImportReport, Error> {
    let reach = jit_plane::sync::ZenohReach::new(rt.handle().clone());
    import::import_with(
        &importer.repo,
        remote,
        Some(&from.endpoint()),
        Some(from.id),
        "release",
        local,
        None,
        Some(&reach),
        &Quiet,
    )
}

/// `u` says hello to each of `others` (so it knows their identities and endpoints).
fn meet(rt: &tokio::runtime::Runtime, u: &Universe, others: &[&Universe]) {
    for other in others {
        let mut remote = other.remote(rt).unwrap();
        handshake::hello(&u.repo, &mut remote, Some(&other.endpoint())).unwrap();
        remote.close();
    }
}

#[test]
fn witnesses_k_of_n_are_required_a_fork_is_refused_and_a_frozen_head_is_refused() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    let (w1, mut w2) = (
        Universe::new(&rt, "witness-1"),
        Universe::new(&rt, "witness-2"),
    );
    let (c, d) = (Universe::new(&rt, "gamma"), Universe::new(&rt, "delta"));
    // The witnesses know A; the importers know the witnesses; untrusted heads need 2 of 2.
    meet(&rt, &w1, &[&a]);
    meet(&rt, &w2, &[&a]);
    for importer in [&b, &c, &d] {
        meet(&rt, importer, &[&w1, &w2]);
    }
    for importer in [&b, &c] {
        jit_kernel::federation::witness::set_policy(
            importer.repo.store(),
            Trust::Untrusted,
            2,
            &[w1.id, w2.id],
        )
        .unwrap();
    }
    let mut remote = a.remote(&rt).unwrap();
    import_witnessed(&rt, &b, &mut remote, &a, "r").unwrap();
    assert!(
        w1.known(&a).unwrap().witnessed.is_some(),
        "W1 cosigned epoch 1"
    );

    // k-1 cosignatures: W2 is down, so B refuses A's next head.
    a.commit(&[("README", b"two\n".to_vec())]);
    let epoch2 = a.publish("main", "release");
    w2.stop(&rt);
    let refused = import_witnessed(&rt, &b, &mut remote, &a, "r").unwrap_err();
    assert_eq!(refused.code(), Code::Forbidden, "{refused}");
    assert!(
        refused.to_string().contains("has 1 of the 2 cosignatures"),
        "{refused}"
    );
    assert_eq!(
        b.known(&a).unwrap().imports["r"].epoch,
        1,
        "the pin did not move"
    );
    w2.start(&rt);
    // C, with both up, gets epoch 2 cosigned by both.
    import_witnessed(&rt, &c, &mut remote, &a, "r").unwrap();
    remote.close();

    // A fork: B is shown another epoch 2; W1 has cosigned the real one and refuses it.
    let key = a.key();
    let (entries, forged) = {
        let txn = a.repo.store().read().unwrap();
        let mut log = publish::entries(a.repo.store(), &txn).unwrap();
        log[1].snapshot = NodeId([5; 32]);
        let entries: Vec<Vec<u8>> = log.iter().map(|e| e.encode().unwrap()).collect();
        let leaves: Vec<_> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let forged = SignedHead::sign(
            PublishedHead {
                root: merkle::root(&leaves),
                ..epoch2.head
            },
            &key,
        )
        .unwrap();
        (entries, forged)
    };
    let mut fork = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| {
                reply.head = Some(ByteBuf::from(forged.encode().unwrap()));
                reply.entries = entries[1..].iter().cloned().map(ByteBuf::from).collect();
                reply.consistency = jit_proto::merkle::consistency_proof(
                    &entries
                        .iter()
                        .map(|e| merkle::leaf_hash(e))
                        .collect::<Vec<_>>(),
                    1,
                )
                .unwrap()
                .into_iter()
                .map(ByteArray::new)
                .collect();
            });
        }
    });
    let refused = import_witnessed(&rt, &b, &mut fork, &a, "r").unwrap_err();
    assert_eq!(refused.code(), Code::Quarantined, "{refused}");
    assert!(
        refused.to_string().contains("refuses to cosign a fork"),
        "{refused}"
    );
    assert!(
        w1.known(&a).unwrap().proof.is_some(),
        "the witness keeps the proof"
    );
    drop(fork);

    // A frozen head: D is shown epoch 1 again; W2 has cosigned epoch 2 and refuses it.
    jit_kernel::federation::witness::set_policy(d.repo.store(), Trust::Untrusted, 1, &[w2.id])
        .unwrap();
    let old = {
        let mut replies = Vec::new();
        let txn = a.repo.store().read().unwrap();
        let log = publish::entries(a.repo.store(), &txn).unwrap();
        replies.push(log[0].encode().unwrap());
        replies
    };
    let first_head = SignedHead::sign(
        PublishedHead {
            epoch: 1,
            size: 1,
            root: merkle::root(&[merkle::leaf_hash(&old[0])]),
            universe: *a.id.as_bytes(),
        },
        &key,
    )
    .unwrap();
    let mut frozen = hostile(&rt, &a, |op, value| {
        if op == Operation::FederationHead {
            edit::<HeadReply>(value, |reply| {
                reply.head = Some(ByteBuf::from(first_head.encode().unwrap()));
                reply.entries = old.iter().cloned().map(ByteBuf::from).collect();
                reply.consistency = Vec::new();
            });
        }
        if op == Operation::FederationDepend {
            edit::<DependReply>(value, |reply| {
                let mut manifest = Manifest::claimed(&reply.manifest).unwrap();
                manifest.epoch = 1;
                manifest.head_root = ByteArray::new(first_head.head.root);
                reply.manifest = ByteBuf::from(manifest.seal(&key).unwrap());
            });
        }
    });
    let refused = import_witnessed(&rt, &d, &mut frozen, &a, "r").unwrap_err();
    assert_eq!(refused.code(), Code::Stale, "{refused}");
    assert!(refused.to_string().starts_with("frozen"), "{refused}");
    assert!(d.known(&a).unwrap().imports.is_empty());
}

// ---- Issue #20: several sources must agree ----

#[test]
fn sources_must_agree_a_split_moves_nothing_and_says_who_said_what() {
    let rt = runtime();
    let [a, m1, m2, b] = ["alpha", "mirror-1", "mirror-2", "beta"].map(|n| Universe::new(&rt, n));
    // The same commit in the publisher and both mirrors is the same snapshot everywhere.
    let one = [("README", b"one\n".to_vec())];
    let s1 = a.commit(&one);
    assert_eq!((m1.commit(&one), m2.commit(&one)), (s1, s1));
    for u in [&a, &m1, &m2] {
        u.publish("main", "release");
    }
    meet(&rt, &b, &[&m1, &m2]);
    jit_kernel::federation::agree::set_policy(b.repo.store(), "r", 2, &[a.id, m1.id, m2.id])
        .unwrap();
    let mut remote = a.remote(&rt).unwrap();
    assert_eq!(
        import_witnessed(&rt, &b, &mut remote, &a, "r")
            .unwrap()
            .snapshot,
        s1
    );
    // A and mirror 1 move on together; mirror 2 lags: 2 of 3 still agree.
    let two = [("README", b"two\n".to_vec())];
    let s2 = a.commit(&two);
    assert_eq!(m1.commit(&two), s2);
    a.publish("main", "release");
    m1.publish("main", "release");
    assert_eq!(
        import_witnessed(&rt, &b, &mut remote, &a, "r")
            .unwrap()
            .snapshot,
        s2
    );
    // A split: A says one thing, both mirrors another. Nothing moves.
    let s3 = a.commit(&[("README", b"three\n".to_vec())]);
    a.publish("main", "release");
    let elsewhere = [("README", b"three, elsewhere\n".to_vec())];
    let s4 = m1.commit(&elsewhere);
    assert_eq!(m2.commit(&[("README", b"two\n".to_vec())]), s2);
    assert_eq!(m2.commit(&elsewhere), s4);
    m1.publish("main", "release");
    m2.publish("main", "release");
    let refused = import_witnessed(&rt, &b, &mut remote, &a, "r").unwrap_err();
    remote.close();
    assert_eq!(refused.code(), Code::Forbidden, "{refused}");
    let message = refused.to_string();
    for said in [
        format!("{}: {s3}", a.id),
        format!("{}: {s4}", m1.id),
        format!("{}: {s4}", m2.id),
        "1 of the 2 required".to_owned(),
    ] {
        assert!(message.contains(&said), "{said:?} not in {message}");
    }
    let record = b.known(&a).unwrap();
    assert_eq!(record.imports["r"].snapshot, s2, "nothing moved");
    assert!(
        record.quarantine.is_none(),
        "disagreement is no proof of a lie"
    );
}

#[test]
fn witnesses_count_once_per_owner() {
    let rt = runtime();
    let (a, b, _) = pair(&rt);
    // Two witnesses run by one owner are one voice: 2 of them do not make 2 cosignatures.
    let (w1, w2) = (
        Universe::owned_by(&rt, "witness-1", "acme"),
        Universe::owned_by(&rt, "witness-2", "acme"),
    );
    meet(&rt, &w1, &[&a]);
    meet(&rt, &w2, &[&a]);
    meet(&rt, &b, &[&w1, &w2]);
    jit_kernel::federation::witness::set_policy(
        b.repo.store(),
        Trust::Untrusted,
        2,
        &[w1.id, w2.id],
    )
    .unwrap();
    let mut remote = a.remote(&rt).unwrap();
    let refused = import_witnessed(&rt, &b, &mut remote, &a, "r").unwrap_err();
    assert_eq!(refused.code(), Code::Forbidden, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("has 1 of the 2 cosignatures (from different owners)"),
        "{refused}"
    );
    // One of them is enough when one is required.
    jit_kernel::federation::witness::set_policy(
        b.repo.store(),
        Trust::Untrusted,
        1,
        &[w1.id, w2.id],
    )
    .unwrap();
    import_witnessed(&rt, &b, &mut remote, &a, "r").unwrap();
    remote.close();
}

#[test]
fn a_bundle_carries_cosignatures_for_an_importer_that_requires_witnesses() {
    let rt = runtime();
    let (a, _b, snapshot) = pair(&rt);
    let (w1, w2) = (
        Universe::new(&rt, "witness-1"),
        Universe::new(&rt, "witness-2"),
    );
    let c = Universe::new(&rt, "gamma");
    meet(&rt, &w1, &[&a]);
    meet(&rt, &w2, &[&a]);
    meet(&rt, &a, &[&w1, &w2]);
    meet(&rt, &c, &[&w1, &w2]);
    jit_kernel::federation::witness::set_policy(
        c.repo.store(),
        Trust::Untrusted,
        2,
        &[w1.id, w2.id],
    )
    .unwrap();
    // Without cosignatures, C (which requires 2) refuses the bundle and stores nothing.
    let bare = bundle_of(&a, "release");
    let refused =
        jit_kernel::federation::bundle::import(&c.repo, &mut &bare[..], None, None).unwrap_err();
    assert!(
        refused.to_string().contains("carries 0 of the 2"),
        "{refused}"
    );
    assert_eq!(c.foreign(&a), (0, 0));
    // The publisher asks both witnesses before exporting; the bundle then imports offline.
    let reach = jit_plane::sync::ZenohReach::new(rt.handle().clone());
    let mut cosigned = Vec::new();
    jit_kernel::federation::bundle::export_cosigned(
        &a.repo,
        "release",
        &[w1.id, w2.id],
        Some(&reach),
        &mut cosigned,
    )
    .unwrap();
    // A cosignature passed off as another witness's does not count.
    let mut parts = items(&cosigned);
    let mut header: jit_kernel::federation::bundle::Header =
        jit_kernel::cbor::from_canonical_bytes(&parts[0]).unwrap();
    header.cosignatures[1].1 = header.cosignatures[0].1.clone();
    parts[0] = jit_kernel::cbor::to_canonical_bytes(&header).unwrap();
    let forged = joined(&parts);
    let refused =
        jit_kernel::federation::bundle::import(&c.repo, &mut &forged[..], None, None).unwrap_err();
    assert!(
        refused.to_string().contains("carries 1 of the 2"),
        "{refused}"
    );
    let report =
        jit_kernel::federation::bundle::import(&c.repo, &mut &cosigned[..], None, None).unwrap();
    assert_eq!(report.snapshot, snapshot);
}
