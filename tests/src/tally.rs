//! The wire tally: per node, the messages it sent of each kind that one of its own
//! counters promises to count, and the check that holds the counters to it.
//!
//! A cache's metrics are part of its contract: operators alarm on them, and a counter
//! that stays at 0 (or counts the wrong thing) hides an outage. The harness does not
//! take the cache's word for them. Each promise below pairs a counter with what the
//! wire saw the node send, as an inequality that holds whatever is in flight when the
//! run ends: a counter bumped before its message leaves is at least the messages seen;
//! one bumped after an answer arrives is at most the answers seen.
//!
//! Counters start from 0 when a node restarts, and the wire cannot tell incarnations
//! apart for every message, so only nodes that ran one incarnation the whole run (see
//! [`DistCluster::start_count`]) are judged.

use std::collections::{BTreeMap, BTreeSet};

use cache::{
    ClientResponse, Entry, Error, MembershipRequest, MerkleRequest, MerkleResponse, PeerRequest,
    PeerResponse, RebalanceRequest, ReplicaCause, WriteOp,
};
use sim::net::Rpc;

use crate::checker::{Check, Violation};
use crate::cluster::DistCluster;

/// What one node sent, counted by kind.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    /// `Forward` requests of sets, and of removes.
    forward_set: u64,
    forward_remove: u64,
    /// Replica reads (`Read` requests).
    replica_reads: u64,
    /// Replica writes of a coordinated write (`Replicate`, cause `Write`): items, and
    /// tombstones.
    replica_writes_set: u64,
    replica_writes_remove: u64,
    /// Read repairs sent (`Replicate`, cause `ReadRepair`).
    read_repairs: u64,
    /// Rebalance `Transfer` requests, and the entries in them.
    transfer_batches: u64,
    transfer_keys: u64,
    /// Anti-entropy rounds begun (`Summary` requests), and those that listed leaves
    /// (a first `Leaves` request after a `Summary`).
    merkle_summaries: u64,
    merkle_dirty_rounds: u64,
    /// The peers whose current round with this node has listed leaves already (a
    /// node syncs with several peers at once when it starts).
    merkle_listed: BTreeSet<sim::NodeId>,
    /// Entries answered to the node's `Fetch` requests (sent to it).
    merkle_entries_received: u64,
    /// Gossip requests.
    gossip_requests: u64,
    /// Client writes answered `Ok` by this node.
    client_writes_ok: u64,
    /// Client reads answered with a quorum failure.
    client_read_quorum_failures: u64,
    /// Forwarded writes this node coordinated, answered `Ok`, and answered with a
    /// quorum failure.
    forwarded_writes_ok: u64,
    forwarded_quorum_failures: u64,
}

/// Counts one message into its sender's tally (or, for merkle entries, its receiver's).
pub(crate) fn tally_see(
    tallies: &mut BTreeMap<sim::NodeId, Tally>,
    (from, to): (sim::NodeId, sim::NodeId),
    message: &Rpc<PeerRequest, PeerResponse>,
) {
    match message {
        Rpc::Request { body, .. } => tally_request(tallies.entry(from).or_default(), to, body),
        Rpc::Response {
            body: PeerResponse::AntiEntropy(MerkleResponse::Entries { entries, .. }),
            ..
        } => {
            tallies.entry(to).or_default().merkle_entries_received += entries.len() as u64;
        }
        Rpc::Response { body, .. } => tally_response(tallies.entry(from).or_default(), body),
    }
}

fn tally_request(tally: &mut Tally, to: sim::NodeId, body: &PeerRequest) {
    match body {
        PeerRequest::Forward { op: WriteOp::Set { .. }, .. } => tally.forward_set += 1,
        PeerRequest::Forward { op: WriteOp::Remove, .. } => tally.forward_remove += 1,
        PeerRequest::Read { .. } => tally.replica_reads += 1,
        PeerRequest::Replicate { entry, cause: ReplicaCause::Write, .. } => match entry {
            Entry::Item(_) => tally.replica_writes_set += 1,
            Entry::Tombstone(_) => tally.replica_writes_remove += 1,
        },
        PeerRequest::Replicate { cause: ReplicaCause::ReadRepair, .. } => tally.read_repairs += 1,
        PeerRequest::Rebalance(RebalanceRequest::Transfer { entries }) => {
            tally.transfer_batches += 1;
            tally.transfer_keys += entries.len() as u64;
        }
        PeerRequest::AntiEntropy(MerkleRequest::Summary { .. }) => {
            tally.merkle_summaries += 1;
            tally.merkle_listed.remove(&to);
        }
        PeerRequest::AntiEntropy(MerkleRequest::Leaves { .. }) => {
            tally.merkle_dirty_rounds += u64::from(tally.merkle_listed.insert(to));
        }
        PeerRequest::Membership(MembershipRequest::Gossip { .. }) => tally.gossip_requests += 1,
        _ => {}
    }
}

fn tally_response(tally: &mut Tally, body: &PeerResponse) {
    let quorum_failed = |error: &Error| matches!(error, Error::QuorumFailed { .. });
    match body {
        PeerResponse::Client(ClientResponse::Written(Ok(_))) => tally.client_writes_ok += 1,
        PeerResponse::Client(ClientResponse::Read(Err(error))) if quorum_failed(error) => {
            tally.client_read_quorum_failures += 1;
        }
        PeerResponse::Written(Ok(_)) => tally.forwarded_writes_ok += 1,
        PeerResponse::Written(Err(error)) if quorum_failed(error) => {
            tally.forwarded_quorum_failures += 1;
        }
        _ => {}
    }
}

/// One promise: `counter` (the cache's) against `seen` (the wire's), with its sense.
struct Promise {
    counter: &'static str,
    value: u64,
    /// `AtLeast`: the counter is at least `seen`; `AtMost`: at most.
    sense: Sense,
    seen: u64,
    what: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sense {
    AtLeast,
    AtMost,
}

/// The promises of one node's counters, `m`, against its tally: the write and read
/// paths', then the repair paths' and gossip's.
fn promises(m: &cache::Metrics, t: &Tally) -> Vec<Promise> {
    let mut promises = path_promises(m, t);
    promises.extend(repair_promises(m, t));
    promises
}

fn at_least(counter: &'static str, value: u64, seen: u64, what: &'static str) -> Promise {
    Promise { counter, value, sense: Sense::AtLeast, seen, what }
}

fn at_most(counter: &'static str, value: u64, seen: u64, what: &'static str) -> Promise {
    Promise { counter, value, sense: Sense::AtMost, seen, what }
}

/// The write and read paths' counters: each is bumped before its message leaves, or
/// before the answer the wire saw.
fn path_promises(m: &cache::Metrics, t: &Tally) -> Vec<Promise> {
    vec![
        at_least("forward_set", m.forward_set, t.forward_set, "set forwards sent"),
        at_least("forward_remove", m.forward_remove, t.forward_remove, "remove forwards sent"),
        at_least("forward_get", m.forward_get, t.replica_reads, "replica reads sent"),
        at_least(
            "replica_fanout_set",
            m.replica_fanout_set,
            t.replica_writes_set,
            "replica writes of sets sent",
        ),
        at_least(
            "replica_fanout_remove",
            m.replica_fanout_remove,
            t.replica_writes_remove,
            "replica writes of removes sent",
        ),
        at_least("read_repair", m.read_repair, t.read_repairs, "read repairs sent"),
        at_least(
            "write_attempts",
            m.write_attempts,
            t.client_writes_ok,
            "client writes answered ok",
        ),
        at_least("write_acks", m.write_acks, t.forwarded_writes_ok, "forwarded writes answered ok"),
        at_least(
            "write_quorum_failures",
            m.write_quorum_failures,
            t.forwarded_quorum_failures,
            "forwarded writes answered with a quorum failure",
        ),
        at_least(
            "read_quorum_failures",
            m.read_quorum_failures,
            t.client_read_quorum_failures,
            "client reads answered with a quorum failure",
        ),
    ]
}

/// Rebalance's, anti-entropy's and gossip's counters.
fn repair_promises(m: &cache::Metrics, t: &Tally) -> Vec<Promise> {
    let loops = m.auto_sync_loops;
    vec![
        at_least("rebalanced_keys", m.rebalanced_keys, t.transfer_keys, "keys transferred"),
        at_least("rebalance_batches", m.rebalance_batches, t.transfer_batches, "transfers sent"),
        // A round is counted when it ends (one may be in flight), a startup pull's
        // sync when it begins.
        at_least(
            "auto_sync_loops + bootstrap_syncs + 1",
            loops + m.bootstrap_syncs + 1,
            t.merkle_summaries,
            "anti-entropy syncs begun",
        ),
        at_least("merkle_syncs", m.merkle_syncs, t.merkle_dirty_rounds, "syncs that listed leaves"),
        // A round is clean, dirty (it lists leaves) or failed.
        at_least(
            "auto_sync_clean_ticks + auto_sync_failures + syncs that listed leaves",
            m.auto_sync_clean_ticks + m.auto_sync_failures + t.merkle_dirty_rounds,
            loops,
            "anti-entropy rounds counted (auto_sync_loops)",
        ),
        at_most(
            "auto_sync_clean_ticks",
            m.auto_sync_clean_ticks,
            t.merkle_summaries.saturating_sub(t.merkle_dirty_rounds),
            "syncs begun that listed no leaves",
        ),
        at_most(
            "merkle_keys_pulled",
            m.merkle_keys_pulled,
            t.merkle_entries_received,
            "entries fetched from peers",
        ),
        at_least("gossip_sent", m.gossip_sent, t.gossip_requests, "gossip requests sent"),
    ]
}

/// White-box, against the wire: every node that ran one incarnation keeps counters
/// true to the messages it sent and received ([`promises`]).
pub(crate) fn counters_untrue(
    cluster: &DistCluster,
    tallies: &BTreeMap<sim::NodeId, Tally>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for id in cluster.ids() {
        let (Some(node), Some(sim_node)) = (cluster.by_id(&id), cluster.sim_node(&id)) else {
            continue;
        };
        if cluster.start_count(&id) != 1 {
            continue;
        }
        let tally = tallies.get(&sim_node).cloned().unwrap_or_default();
        for promise in promises(&node.metrics().counters, &tally) {
            let kept = match promise.sense {
                Sense::AtLeast => promise.value >= promise.seen,
                Sense::AtMost => promise.value <= promise.seen,
            };
            if !kept {
                let sense = if promise.sense == Sense::AtLeast { "fewer" } else { "more" };
                let message = format!(
                    "{id} counts {} = {}, {sense} than the wire's {} {}",
                    promise.counter, promise.value, promise.seen, promise.what
                );
                violations.push(Violation {
                    check: Check::CounterUntrue,
                    message,
                    ops: Vec::new(),
                });
            }
        }
    }
    violations
}

/// The shortest key the workload writes (`k0`): a hint holds at least its key.
const WORKLOAD_KEY_LEN_MIN: u64 = 2;

/// White-box, any incarnation: a node's hint gauges agree with its queue. The hints it
/// holds per peer add up to the hints it holds, and `hinted_bytes` (the keys and
/// values queued) is at least [`WORKLOAD_KEY_LEN_MIN`] bytes a hint.
pub(crate) fn hint_gauges_untrue(
    cluster: &DistCluster,
    id: &cache::NodeId,
    node: &cache::CacheNode,
) -> Vec<Violation> {
    let queued = node.hints_queued() as u64;
    let per_peer: u64 = cluster.ids().iter().map(|peer| node.hints_queued_for(peer) as u64).sum();
    let bytes = node.metrics().counters.hinted_bytes;
    let mut violations = Vec::new();
    if per_peer != queued {
        let message =
            format!("{id} holds {queued} hint(s), but its hints per peer add up to {per_peer}");
        violations.push(Violation { check: Check::CounterUntrue, message, ops: Vec::new() });
    }
    if bytes < WORKLOAD_KEY_LEN_MIN * queued {
        let message = format!(
            "{id} counts hinted_bytes = {bytes} for {queued} hint(s): fewer than their keys alone"
        );
        violations.push(Violation { check: Check::CounterUntrue, message, ops: Vec::new() });
    }
    violations
}
