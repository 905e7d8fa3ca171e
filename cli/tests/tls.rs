//! Issue #23 (across machines): a daemon on one host, an agent and a replica on another, over
//! mutual TLS with Zenoh's access control — two network namespaces joined by a veth pair stand
//! in for the hosts (addresses from 192.0.2.0/24, a documentation range that is never routed).
//!
//! Host A runs `jit up --listen tls/192.0.2.1:7447` with a Zenoh configuration that demands a
//! client certificate signed by the test's CA and lets certificates named `agents.jit.test`
//! use only the agent, event and sync keys. On host B a Rust agent (this test binary, run
//! again as [`remote_agent_child`]) enrols its key over TLS, is approved with `jit agent
//! approve`, commits, and is refused a federation key by the access control; `jit clone` over
//! TLS copies what it committed. A client with no certificate, and one whose certificate
//! another CA signed, are refused.
//!
//! Skipped, saying so, where network namespaces cannot be made (not root, no `ip`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jit_testutils::bin::{import, jit, jit_bin, json, ok};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

const HOST_A: &str = "192.0.2.1";
const HOST_B: &str = "192.0.2.2";
const ENDPOINT: &str = "tls/192.0.2.1:7447";
const AGENT_CN: &str = "agents.jit.test";
/// The environment variable that makes this binary the remote agent.
const CHILD_ENV: &str = "JIT_TLS_TEST_CHILD";

/// Two network namespaces joined by a veth pair; removed on drop (also on panic).
struct Hosts {
    a: String,
    b: String,
}

fn ip(args: &[&str]) -> std::io::Result<Output> {
    Command::new("ip").args(args).output()
}

fn must(args: &[&str]) {
    let out = ip(args).expect("ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Hosts {
    /// Makes them, or says why it cannot.
    fn make() -> Result<Hosts, String> {
        let tag = std::process::id();
        let hosts = Hosts {
            a: format!("jit-a-{tag}"),
            b: format!("jit-b-{tag}"),
        };
        match ip(&["netns", "add", &hosts.a]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            Err(e) => return Err(format!("cannot run ip: {e}")),
        }
        must(&["netns", "add", &hosts.b]);
        let (veth_a, veth_b) = (format!("jva{tag}"), format!("jvb{tag}"));
        must(&[
            "link", "add", &veth_a, "netns", &hosts.a, "type", "veth", "peer", "name", &veth_b,
            "netns", &hosts.b,
        ]);
        for (ns, dev, addr) in [(&hosts.a, &veth_a, HOST_A), (&hosts.b, &veth_b, HOST_B)] {
            must(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            must(&["-n", ns, "link", "set", dev, "up"]);
            must(&["-n", ns, "link", "set", "lo", "up"]);
        }
        Ok(hosts)
    }

    /// A command run on host `ns`.
    fn on(ns: &str, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).arg(program);
        command
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of the veth pair, and with it the other.
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "delete", ns]);
        }
    }
}

/// A process killed on drop unless it was waited for.
struct Running(Option<Child>);

impl Running {
    fn spawn(command: &mut Command) -> Running {
        Running(Some(command.spawn().expect("spawn")))
    }

    /// Waits for the process (at most `limit`, then it is killed and the test fails) and
    /// returns what it printed.
    fn finish(mut self, what: &str, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let mut child = self.0.take().expect("running");
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("output")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A CA, and certificates it signs, written as PEM files into a directory.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Authority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        }
    }

    /// Signs a certificate for `names` (IP addresses or DNS names) with common name `cn`;
    /// writes `<stem>.pem` and `<stem>.key` into `dir`.
    fn sign(&self, dir: &Path, stem: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// The daemon's Zenoh configuration: mutual TLS, and access control — everything over the
/// local Unix socket; for certificates named [`AGENT_CN`] over TLS, the agent, event, log,
/// enrolment and sync keys only (no federation).
fn server_config(ca: &Path, cert: &Path, key: &Path) -> String {
    let every = r#"["put", "delete", "declare_subscriber", "query", "reply", "declare_queryable", "liveliness_token", "liveliness_query", "declare_liveliness_subscriber"]"#;
    format!(
        r#"{{
  transport: {{ link: {{ tls: {{
    root_ca_certificate: {ca:?},
    listen_certificate: {cert:?},
    listen_private_key: {key:?},
    enable_mtls: true,
  }} }} }},
  access_control: {{
    enabled: true,
    default_permission: "deny",
    rules: [
      {{ id: "local", permission: "allow", flows: ["ingress", "egress"], messages: {every}, key_exprs: ["**"] }},
      {{ id: "agents", permission: "allow", flows: ["ingress", "egress"], messages: {every},
         key_exprs: ["jit/sws/**", "jit/kernel/**", "jit/log/**", "jit/agent/**", "jit/sync/**"] }},
    ],
    subjects: [
      {{ id: "this-host", link_protocols: ["unixsock-stream"] }},
      {{ id: "agent-hosts", link_protocols: ["tls"], cert_common_names: [{AGENT_CN:?}] }},
    ],
    policies: [
      {{ rules: ["local"], subjects: ["this-host"] }},
      {{ rules: ["agents"], subjects: ["agent-hosts"] }},
    ],
  }},
}}"#,
        ca = ca.display().to_string(),
        cert = cert.display().to_string(),
        key = key.display().to_string(),
    )
}

/// A client's Zenoh configuration: the CA that signed the daemon's certificate, and the
/// client's own certificate, if any (Zenoh sends it only with `enable_mtls` set on the client
/// side too).
fn client_config(ca: &Path, own: Option<(&Path, &Path)>) -> String {
    let own = own
        .map(|(cert, key)| {
            format!(
                "connect_certificate: {:?}, connect_private_key: {:?}, enable_mtls: true,",
                cert.display().to_string(),
                key.display().to_string()
            )
        })
        .unwrap_or_default();
    format!(
        "{{ transport: {{ link: {{ tls: {{ root_ca_certificate: {:?}, {own} }} }} }} }}",
        ca.display().to_string()
    )
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `jit clone` run on host B with the Zenoh configuration `config`, bounded in time.
fn clone_on_b(hosts: &Hosts, config: &Path, dest: &Path) -> Output {
    let mut command = Hosts::on(&hosts.b, &jit_bin());
    command
        .args(["clone", ENDPOINT])
        .arg(dest)
        .env("JIT_ZENOH_CONFIG", config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Running::spawn(&mut command).finish("jit clone over TLS", Duration::from_secs(120))
}

#[test]
fn tls_an_agent_and_a_replica_on_another_host_with_client_certificates_and_acl() {
    let hosts = match Hosts::make() {
        Ok(hosts) => hosts,
        Err(why) => {
            eprintln!("SKIPPED: network namespaces cannot be made here ({why}); the cross-host TLS test needs root and iproute2");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let ca = Authority::new("JIT test CA");
    let ca_path = certs.join("ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let (server_cert, server_key) = ca.sign(&certs, "daemon", "daemon.jit.test", &[HOST_A]);
    let (agent_cert, agent_key) = ca.sign(&certs, "agent", AGENT_CN, &["agents.jit.test"]);
    let rogue = Authority::new("Someone else's CA");
    let (rogue_cert, rogue_key) = rogue.sign(&certs, "rogue", AGENT_CN, &["agents.jit.test"]);
    let write = |name: &str, text: String| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let daemon_config = write(
        "daemon.json5",
        server_config(&ca_path, &server_cert, &server_key),
    );
    let agent_config = write(
        "agent.json5",
        client_config(&ca_path, Some((&agent_cert, &agent_key))),
    );
    let no_cert_config = write("no-cert.json5", client_config(&ca_path, None));
    let rogue_config = write(
        "rogue.json5",
        client_config(&ca_path, Some((&rogue_cert, &rogue_key))),
    );

    // Host A: a universe with one commit, its daemon listening on TLS only off-host.
    let repo = tmp.path().join("origin");
    std::fs::create_dir(&repo).unwrap();
    ok(&repo, &["init"]);
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("README"), "hello\n").unwrap();
    import(&repo, &tree, "first");
    // Without client certificates the daemon refuses to listen off loopback.
    let refused = jit(&repo, &["up", "--no-mount", "--listen", ENDPOINT]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("requires client certificates"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let mut up = Hosts::on(&hosts.a, &jit_bin());
    up.arg("-C")
        .arg(&repo)
        .args(["up", "--no-mount", "--listen", ENDPOINT, "--zenoh-config"])
        .arg(&daemon_config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let _daemon = Running::spawn(&mut up);
    ok(&repo, &["wait", "--timeout", "60"]);

    // Host B: the Rust agent enrols over TLS and waits for approval.
    let mut agent = Hosts::on(&hosts.b, &std::env::current_exe().unwrap());
    agent
        .args(["remote_agent_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &agent_config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let agent = Running::spawn(&mut agent);
    wait_for("the enrolment request", || {
        json(&repo, &["agent", "pending"])
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["agent"] == "builder"))
    });
    let approved = json(&repo, &["agent", "approve", "builder"]);
    assert_eq!(approved["agent"], "builder");
    let finished = agent.finish("the remote agent", Duration::from_secs(120));
    let said = String::from_utf8_lossy(&finished.stdout).into_owned();
    assert!(finished.status.success(), "the remote agent failed: {said}");
    assert!(said.contains("committed "), "{said}");
    assert!(
        said.contains("federation refused by the access control"),
        "{said}"
    );
    // The access control is what refused it: on this host the same query is answered.
    assert!(
        answered_locally(&repo, "jit/federation/head"),
        "the local socket may use every key"
    );
    let log = json(&repo, &["log"]);
    assert!(log.to_string().contains("from host B"), "{log}");

    // A replica on host B, over TLS with the agents' certificate.
    let replica = tmp.path().join("replica");
    let cloned = clone_on_b(&hosts, &agent_config, &replica);
    assert!(
        cloned.status.success(),
        "{}",
        String::from_utf8_lossy(&cloned.stderr)
    );
    assert_eq!(
        ok(&replica, &["cat", "main:remote.txt"]),
        "written on host B\n"
    );
    assert_eq!(
        json(&replica, &["log"]),
        log,
        "the replica has the whole history"
    );

    // No certificate, or one another CA signed: refused, and nothing is made.
    for (config, what) in [
        (&no_cert_config, "no client certificate"),
        (&rogue_config, "a certificate another CA signed"),
    ] {
        let dest = tmp.path().join(format!("refused-{}", what.len()));
        let out = clone_on_b(&hosts, config, &dest);
        assert!(!out.status.success(), "a clone with {what} got in");
        assert!(
            !dest.exists() || !jit(&dest, &["cat", "main:README"]).status.success(),
            "a clone with {what} copied history"
        );
    }
    drop(hosts);
}

/// Whether a query on `key` over the daemon's local Unix socket gets an answer.
fn answered_locally(repo: &Path, key: &str) -> bool {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = jit_plane::agent::AgentOptions::local(&repo.join(".jit"));
        let key_pair = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let agent = tokio::time::timeout(
            Duration::from_secs(30),
            jit_plane::agent::Agent::connect("local-reader", key_pair, options),
        )
        .await
        .expect("connect timed out")
        .expect("connect");
        let answered = answered(agent.session(), key).await;
        agent.close().await;
        answered
    })
}

/// Whether a query on `key` gets a reply (of any content) within two seconds.
async fn answered(session: &zenoh::Session, key: &str) -> bool {
    let replies = session
        .get(key)
        .timeout(Duration::from_secs(2))
        .await
        .expect("get");
    let mut answered = false;
    while let Ok(reply) = replies.recv_async().await {
        answered |= reply.result().is_ok();
    }
    answered
}

/// Host B's agent, run by the test above in the other namespace (ignored when run alone): it
/// enrols its key over TLS, waits for approval, commits a file, then checks the access
/// control keeps it from the federation keys. Prints what it did for the test to check.
#[test]
#[ignore = "run by tls_an_agent_and_a_replica_on_another_host_with_client_certificates_and_acl"]
fn remote_agent_child() {
    let Some(config) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use jit_plane::agent::{Agent, AgentOptions};
        let options = AgentOptions {
            connect: vec![ENDPOINT.to_owned()],
            namespace: String::new(),
            attempt_timeout: Duration::from_secs(2),
            attempts: 30,
            retry_for: jit_plane::agent::RETRY_FOR,
            zenoh_config: Some(config.into()),
        };
        let key = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
        let mut agent = tokio::time::timeout(
            Duration::from_secs(30),
            Agent::connect("builder", key, options),
        )
        .await
        .expect("connect timed out")
        .expect("connect over TLS");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = agent.enrol(None, Some("host B")).await.expect("enrol");
            if answer.state == jit_kernel::agents::enrol::State::Approved {
                break;
            }
            assert!(Instant::now() < deadline, "never approved");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let sws = agent.create_sws(None).await.expect("create").id;
        let patch = jit_kernel::patch::Patch {
            id: "b1".into(),
            author: "builder".into(),
            ts: 0,
            ops: vec![jit_kernel::patch::PatchOp::Put {
                path: "remote.txt".into(),
                content: b"written on host B\n".to_vec(),
                executable: false,
            }],
        };
        agent.push(&sws, &patch).await.expect("push");
        let info = jit_kernel::history::CommitInfo {
            author: "Builder <b@host-b>".into(),
            message: "from host B".into(),
            time: jit_kernel::DeclaredTime {
                seconds: 1_700_000_000,
                tz_minutes: 0,
            },
        };
        let committed = agent.commit(&sws, &info).await.expect("commit");
        println!("committed {}", committed.snapshot.to_hex());
        // The access control lets this certificate use no federation key: no answer.
        if !answered(agent.session(), "jit/federation/head").await {
            println!("federation refused by the access control");
        }
        agent.close().await;
    });
}
