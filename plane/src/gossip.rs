//! Federation gossip on the plane (issue #20): every daemon puts the head it verified of each
//! universe it follows on `jit/fed/<universe>/heads`, and the proofs it holds on
//! `jit/fed/<universe>/proofs`, once a round; it hears both from the daemons it is connected
//! to. What a note means is the kernel's decision (`jit_kernel::federation::gossip`); a proof
//! found or newly accepted is put at once, so it crosses the network in one round.

use std::sync::Arc;
use std::time::Duration;

use jit_kernel::federation::gossip::{self, HeadNote, ProofNote};
use jit_kernel::Repository;

use crate::keyexpr;

/// The heads every daemon tells the others.
pub const HEADS: &str = "jit/fed/*/heads";
/// The equivocation proofs every daemon passes on.
pub const PROOFS: &str = "jit/fed/*/proofs";

fn key(namespace: &str, universe: &[u8; 16], what: &str) -> String {
    keyexpr(
        namespace,
        &format!("jit/fed/{}/{what}", uuid::Uuid::from_bytes(*universe)),
    )
}

async fn put_proof(session: &zenoh::Session, namespace: &str, note: &ProofNote) {
    match jit_kernel::cbor::to_canonical_bytes(note) {
        Ok(bytes) => {
            let key = key(namespace, &note.universe.into_array(), "proofs");
            if let Err(e) = session.put(key, bytes).await {
                tracing::warn!(%e, "cannot pass an equivocation proof on");
            }
        }
        Err(e) => tracing::warn!(%e, "cannot encode an equivocation proof"),
    }
}

/// One round: this daemon's heads and proofs, put once.
async fn tell(session: &zenoh::Session, repo: &Arc<Repository>, namespace: &str) {
    let notes = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || {
            Ok::<_, jit_kernel::Error>((
                gossip::head_notes(repo.store())?,
                gossip::proof_notes(repo.store())?,
            ))
        })
        .await
    };
    let (heads, proofs) = match notes {
        Ok(Ok(notes)) => notes,
        Ok(Err(e)) => return tracing::warn!(%e, "cannot read what to gossip"),
        Err(e) => return tracing::warn!(%e, "gossip task failed"),
    };
    for note in heads {
        match jit_kernel::cbor::to_canonical_bytes(&note) {
            Ok(bytes) => {
                let key = key(namespace, &note.universe.into_array(), "heads");
                if let Err(e) = session.put(key, bytes).await {
                    tracing::warn!(%e, "cannot gossip a head");
                }
            }
            Err(e) => tracing::warn!(%e, "cannot encode a head note"),
        }
    }
    for note in proofs {
        put_proof(session, namespace, &note).await;
    }
}

/// What hearing a note leads to: a proof to pass on, or nothing.
fn hear(repo: &Repository, bytes: &[u8], proof: bool) -> jit_kernel::Result<Option<ProofNote>> {
    if proof {
        gossip::hear_proof(repo.store(), &gossip::decode_note::<ProofNote>(bytes)?)
    } else {
        gossip::hear_head(repo.store(), &gossip::decode_note::<HeadNote>(bytes)?)
    }
}

/// Gossips every `every` and hears the others until the session closes.
pub(crate) async fn run(
    session: zenoh::Session,
    repo: Arc<Repository>,
    namespace: String,
    every: Duration,
) {
    let subscribe = |key: &'static str| session.declare_subscriber(keyexpr(&namespace, key));
    let (heads, proofs) = match (subscribe(HEADS).await, subscribe(PROOFS).await) {
        (Ok(heads), Ok(proofs)) => (heads, proofs),
        (Err(e), _) | (_, Err(e)) => return tracing::warn!(%e, "cannot subscribe to gossip"),
    };
    let mut round = tokio::time::interval(every);
    loop {
        let heard = tokio::select! {
            _ = round.tick() => {
                tell(&session, &repo, &namespace).await;
                continue;
            }
            sample = heads.recv_async() => sample.map(|s| (s, false)),
            sample = proofs.recv_async() => sample.map(|s| (s, true)),
        };
        let Ok((sample, is_proof)) = heard else {
            return; // the session closed
        };
        let bytes = sample.payload().to_bytes().to_vec();
        let repo = repo.clone();
        let found = tokio::task::spawn_blocking(move || hear(&repo, &bytes, is_proof)).await;
        match found {
            Ok(Ok(Some(note))) => put_proof(&session, &namespace, &note).await,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::debug!(%e, "a gossip note was refused"),
            Err(e) => tracing::warn!(%e, "gossip task failed"),
        }
    }
}
