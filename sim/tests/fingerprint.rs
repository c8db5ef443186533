//! Goal: the run's fingerprint sees what messages say and what nodes note, not only
//! that something happened, and a seed keeps its meaning from one build to the next.
//!
//! Method: planted non-determinism that changes only a message's contents (or a
//! noted value) between two runs of one seed, caught by `sim::check_determinism`,
//! whose report must name that send (or note); and a small fixed scenario whose
//! fingerprints for three seeds are pinned.

use std::cell::Cell;
use std::time::Duration;

use sim::net::{Addr, Endpoint, LinkConfig, RpcClient, RpcServer};
use sim::rand::Ratio;
use sim::{EventKind, Sim};

thread_local! {
    /// Bumped by each run of a checked body: state that survives from one run to the
    /// next, the planted non-determinism.
    static RUNS: Cell<u64> = const { Cell::new(0) };
}

/// This thread's run count before the bump.
fn next_run() -> u64 {
    RUNS.with(|runs| runs.replace(runs.get() + 1))
}

/// The message of the payload test: a sequence number and a value.
type Message = (u32, u64);

/// The value message 2 carries in run `run`: the only thing that differs.
fn planted_value(run: u64) -> u64 {
    1_000 + run % 2
}

/// One node sends four messages to another, one every 10 ms; message 2's value
/// depends on `run`. Both runs send the same messages, at the same times, on the same
/// links: before payloads were digested, their fingerprints and event logs were
/// equal and the check passed (verified by taking a constant digest instead).
fn payload_run(sim: &mut Sim, run: u64) {
    let a = sim.node("a").build();
    let b = sim.node("b").build();
    let b_addr = sim.allocate_port(b).unwrap();
    drop(sim.spawn_on(b, "sink", async move {
        let endpoint = Endpoint::<Message>::bind(b_addr.port()).unwrap();
        while endpoint.recv().await.is_ok() {}
    }));
    drop(sim.spawn_on(a, "source", async move {
        let endpoint = Endpoint::<Message>::bind(0).unwrap();
        for seq in 0..4u32 {
            let value = if seq == 2 { planted_value(run) } else { 7 };
            endpoint.send_to(b_addr, (seq, value)).unwrap();
            sim::time::sleep(Duration::from_millis(10)).await;
        }
    }));
    sim.run_for(Duration::from_secs(1)).unwrap();
}

#[test]
fn payload_only_difference_is_caught_at_its_send() {
    let error = sim::check_determinism(3, |sim| payload_run(sim, next_run()))
        .expect_err("two runs differ only in message 2's value");
    let index = error.first_difference().expect("the difference is within the logs");
    let (first, second) = error.context();
    let differing = first.iter().find(|event| event.index == index).unwrap();
    let EventKind::NetSend { message, digest, .. } = differing.kind else {
        panic!("the first difference is not a send: {differing}")
    };
    assert_eq!(message, 2, "{error}");
    let other = second.iter().find(|event| event.index == index).unwrap();
    let EventKind::NetSend { message: message_other, digest: digest_other, .. } = other.kind else {
        panic!("the second run's event is not a send: {other}")
    };
    assert_eq!(message_other, 2);
    // The report shows both digests, each the digest of what that run sent.
    let digests =
        [sim::fingerprint::digest(&(2u32, 1_000u64)), sim::fingerprint::digest(&(2u32, 1_001u64))];
    assert!(digests.contains(&digest) && digests.contains(&digest_other) && digest != digest_other);
    let text = error.to_string();
    for digest in digests {
        let expected = "net send #2 ";
        let line = text.lines().find(|line| line.contains(&format!("digest {digest:#018x}")));
        let line = line.unwrap_or_else(|| panic!("no line shows digest {digest:#x}:\n{text}"));
        assert!(line.contains(expected) && line.contains("(u32, u64)"), "{line}");
        assert!(line.trim_start().starts_with('>'), "the send is the marked event: {line}");
    }
}

/// A node notes a decision whose value depends on `run`; everything else is the same.
/// Before `note` existed nothing in the run showed the decision at all.
fn note_run(sim: &mut Sim, run: u64) {
    let a = sim.node("a").build();
    drop(sim.spawn_on(a, "decider", async move {
        sim::time::sleep(Duration::from_millis(5)).await;
        sim::fingerprint::note("term", 4);
        sim::time::sleep(Duration::from_millis(5)).await;
        sim::fingerprint::note("leader", planted_value(run));
    }));
    sim.run_for(Duration::from_secs(1)).unwrap();
}

#[test]
fn noted_decision_difference_is_caught_at_its_note() {
    let error = sim::check_determinism(4, |sim| note_run(sim, next_run()))
        .expect_err("two runs differ only in the noted leader");
    let index = error.first_difference().expect("the difference is within the logs");
    let differing = error.context().0.iter().find(|event| event.index == index).unwrap();
    assert!(
        matches!(differing.kind, EventKind::Note { label: "leader", .. }),
        "the first difference is not the note: {differing}"
    );
    assert_eq!(differing.time_ns, 10_000_000);
    let text = error.to_string();
    assert!(text.contains("> ") && text.contains("note leader = 0x3e8"), "{text}");
    assert!(text.contains("note leader = 0x3e9"), "{text}");
}

#[test]
fn note_is_a_no_op_outside_a_simulation_and_deterministic_inside() {
    sim::fingerprint::note("outside", 1);
    let fingerprint = sim::check_determinism(5, |sim| note_run(sim, 0)).unwrap();
    let other = sim::check_determinism(5, |sim| note_run(sim, 1)).unwrap();
    assert_ne!(fingerprint, other, "the noted value is in the fingerprint");
}

/// Three nodes; each serves RPCs and calls the others on a jittered timer, doubling
/// a drawn number, for 2 virtual seconds, over links that lose and duplicate;
/// messages carry strings and numbers.
fn pinned_scenario(seed: u64) -> (u64, u64) {
    let mut sim = Sim::new(seed);
    let lossy = LinkConfig::DEFAULT.with_loss(Ratio::new(1, 10)).with_duplicate(Ratio::new(1, 20));
    sim.set_link_config_default(lossy).unwrap();
    let nodes: Vec<_> = (0..3).map(|i| sim.node(format!("n{i}")).build()).collect();
    let addrs: Vec<Addr> = nodes.iter().map(|&node| sim.allocate_port(node).unwrap()).collect();
    for (i, &node) in nodes.iter().enumerate() {
        let (addr, peers) = (addrs[i], addrs.clone());
        drop(sim.spawn_on(node, "server", async move {
            let server = RpcServer::<(String, u64), u64>::bind(addr.port()).unwrap();
            server.serve(|_from, (_name, n)| async move { n.wrapping_mul(2) }).await;
        }));
        drop(sim.spawn_on(node, "caller", async move {
            let client = RpcClient::<(String, u64), u64>::bind(0).unwrap();
            for round in 0..20u64 {
                let jitter = sim::rand::range(1..50);
                sim::time::sleep(Duration::from_millis(jitter)).await;
                let peer = peers[(i + 1 + (round as usize % 2)) % peers.len()];
                let request = (format!("n{i}/{round}"), sim::rand::u64() >> 8);
                let reply = client.call(peer, request, Duration::from_millis(200)).await;
                sim::fingerprint::note("reply", reply.unwrap_or(0));
            }
        }));
    }
    sim.run_for(Duration::from_secs(2)).unwrap();
    (sim.fingerprint(), sim.event_count())
}

/// Pinned fingerprints. A change to these numbers means the meaning of a seed changed:
/// a seed recorded before the change (in a corpus, a bug report, a CI log) no longer
/// replays the same run. That must be deliberate (a change to the scheduler, the
/// network model, the streams or the fingerprint itself), said so in the commit, and
/// the numbers updated with it; never updated to make a refactoring pass.
#[test]
fn pinned_fingerprints_keep_the_meaning_of_a_seed() {
    let pinned: [(u64, u64); 3] =
        [(0x5966_0ff8_eb58_ed6f, 837), (0x928a_bc41_1092_aa74, 856), (0x88bf_f576_dbde_d0aa, 868)];
    let actual = [0, 1, 2].map(pinned_scenario);
    assert_eq!(actual, pinned, "(fingerprint, events) for seeds 0, 1, 2: {actual:#x?}");
}
