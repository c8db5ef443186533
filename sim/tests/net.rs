//! Goal: the virtual network (`sim::net`) delivers, delays, loses, duplicates, holds
//! and drops messages exactly as its link model, faults and rules say, counts every
//! message, and replays the same seed identically.
//!
//! Method: small scenarios between a few nodes. Receivers log what they get, with the
//! virtual time; the counters of `Handle::net_stats` are checked against the logs.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use sim::net::{
    Addr, DropCause, EPHEMERAL_PORT_MIN, Endpoint, LinkConfig, NetError, Rpc, RpcClient, RpcError,
    RpcServer, Verdict,
};
use sim::rand::Ratio;
use sim::time::Instant;
use sim::{ErrorKind, EventKind, NodeId, Sim, Trace};

/// What a sink received: arrival time, sender, message.
type Log<M> = Rc<RefCell<Vec<(Instant, Addr, M)>>>;

/// An address that receives `M`: ties a sink's type to its senders', so that a test
/// cannot send `i32` to a `u32` sink by accident (the network would drop it as
/// [`DropCause::WrongType`]).
struct Target<M>(Addr, PhantomData<M>);

impl<M> Clone for Target<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for Target<M> {}

impl<M> Target<M> {
    fn new(addr: Addr) -> Target<M> {
        Target(addr, PhantomData)
    }
}

const MS: Duration = Duration::from_millis(1);

/// Reserves a port on `node` and spawns a task there that binds it and logs every
/// message it receives. The port is reserved first so that the address is known (and
/// bindable) before the task runs.
fn sink<M: Clone + std::hash::Hash + 'static>(sim: &Sim, node: NodeId) -> (Target<M>, Log<M>) {
    let addr = sim.allocate_port(node).unwrap();
    let log: Log<M> = Rc::default();
    let entries = Rc::clone(&log);
    detach(sim, node, "sink", async move {
        let endpoint = Endpoint::<M>::bind(addr.port()).unwrap();
        endpoint.set_queue_max(1 << 20);
        while let Ok((from, message)) = endpoint.recv().await {
            entries.borrow_mut().push((Instant::now(), from, message));
        }
    });
    (Target::new(addr), log)
}

/// Spawns a task on `node` that sends `messages` to `to` from an ephemeral port, all
/// at the current instant.
fn send_all<M: Clone + std::hash::Hash + 'static>(
    sim: &Sim,
    node: NodeId,
    to: Target<M>,
    messages: Vec<M>,
) {
    detach(sim, node, "source", async move {
        let endpoint = Endpoint::<M>::bind(0).unwrap();
        for message in messages {
            endpoint.send_to(to.0, message).unwrap();
        }
    });
}

/// Spawns a task that nobody waits for.
fn detach<F: Future + 'static>(sim: &Sim, node: NodeId, name: &'static str, future: F) {
    drop(sim.spawn_on(node, name, future).unwrap());
}

fn payloads<M: Clone>(log: &Log<M>) -> Vec<M> {
    log.borrow().iter().map(|(_, _, message)| message.clone()).collect()
}

fn two_nodes(seed: u64) -> (Sim, NodeId, NodeId) {
    let sim = Sim::new(seed);
    let a = sim.node("a").build();
    let b = sim.node("b").build();
    (sim, a, b)
}

#[test]
fn latency_stays_within_its_bounds_and_the_tail_takes_its_share() {
    let (mut sim, a, b) = two_nodes(1);
    let config = LinkConfig::DEFAULT.with_latency(2 * MS, 5 * MS);
    sim.set_link_config(a, b, config).unwrap();
    assert_eq!(sim.link_config(a, b).unwrap(), config);
    assert_eq!(sim.link_config(b, a).unwrap(), LinkConfig::DEFAULT);
    let (addr, log) = sink::<u32>(&sim, b);
    send_all(&sim, a, addr, (0..2_000).collect());
    sim.run_for(Duration::from_secs(1)).unwrap();
    let times: Vec<Duration> = log.borrow().iter().map(|(at, _, _)| at.since_start()).collect();
    assert_eq!(times.len(), 2_000);
    assert!(times.iter().all(|at| (2 * MS..=5 * MS).contains(at)), "a latency left 2-5 ms");
    let (min, max) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    assert!(*min < Duration::from_micros(2_010) && *max > Duration::from_micros(4_990));
    // Jitter reorders: the receive order is not the send order.
    let received = payloads(&log);
    assert!(received.windows(2).any(|pair| pair[0] > pair[1]), "no reordering at all");

    // A heavy tail: 1/10 of messages take 100-200 ms instead.
    let tail = config.with_tail(Ratio::new(1, 10), 100 * MS, 200 * MS);
    sim.set_link_config(a, b, tail).unwrap();
    let start = sim.now();
    send_all(&sim, a, addr, (0..2_000).collect());
    sim.run_for(Duration::from_secs(1)).unwrap();
    let late = log.borrow()[2_000..].iter().filter(|(at, _, _)| *at - start >= 100 * MS).count();
    for (at, _, _) in &log.borrow()[2_000..] {
        let latency = *at - start;
        assert!((2 * MS..=5 * MS).contains(&latency) || (100 * MS..=200 * MS).contains(&latency));
    }
    assert!((140..=260).contains(&late), "{late} of 2,000 in the tail, expected about 200");
}

#[test]
fn loss_and_duplication_ratios_hold_over_10k_messages_for_three_seeds() {
    const MESSAGES: u64 = 10_000;
    for seed in [11, 12, 13] {
        let (mut sim, a, b) = two_nodes(seed);
        let lossy =
            LinkConfig::DEFAULT.with_loss(Ratio::new(1, 10)).with_duplicate(Ratio::new(1, 20));
        sim.set_link_config_default(lossy).unwrap();
        let (addr, log) = sink::<u64>(&sim, b);
        send_all(&sim, a, addr, (0..MESSAGES).collect());
        sim.run_for(Duration::from_secs(1)).unwrap();
        let link = sim.net_stats().link(a, b);
        assert_eq!(link.sent, MESSAGES);
        // Binomial bounds at about four standard deviations: a failure is a bug, not
        // bad luck (the seeds are fixed anyway).
        let lost = link.dropped.loss;
        assert!((880..=1_120).contains(&lost), "seed {seed}: {lost} lost, expected about 1,000");
        let kept = MESSAGES - lost;
        let expected = kept / 20;
        let duplicated = link.duplicated;
        assert!(
            duplicated.abs_diff(expected) <= 90,
            "seed {seed}: {duplicated} duplicated of {kept}"
        );
        assert_eq!(link.dropped.total(), lost, "seed {seed}: only loss drops");
        assert_eq!(link.delivered, kept + duplicated);
        assert_eq!(log.borrow().len() as u64, link.delivered);
        // Every kept message arrived at least once; copies arrive twice at most.
        let mut received = payloads(&log);
        received.sort_unstable();
        let mut distinct = received.clone();
        distinct.dedup();
        assert_eq!(distinct.len() as u64, kept);
        assert_eq!(received.len() - distinct.len(), duplicated as usize);
    }
}

#[test]
fn a_partition_blocks_both_directions_and_a_one_way_partition_only_one() {
    let (mut sim, a, b) = two_nodes(2);
    let (addr_a, log_a) = sink::<&'static str>(&sim, a);
    let (addr_b, log_b) = sink::<&'static str>(&sim, b);
    sim.partition(&[a], &[b]).unwrap();
    send_all(&sim, a, addr_b, vec!["a->b"]);
    send_all(&sim, b, addr_a, vec!["b->a"]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(log_a.borrow().is_empty() && log_b.borrow().is_empty());
    assert_eq!(sim.net_stats().total.dropped.partition, 2);

    sim.heal();
    sim.partition_oneway(a, b).unwrap();
    send_all(&sim, a, addr_b, vec!["a->b"]);
    send_all(&sim, b, addr_a, vec!["b->a"]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(log_b.borrow().is_empty(), "a->b is cut");
    assert_eq!(payloads(&log_a), ["b->a"], "b->a still flows");
    assert_eq!(sim.net_stats().link(a, b).dropped.partition, 2);
    assert_eq!(sim.net_stats().link(b, a).delivered, 1);
}

#[test]
fn heal_restores_delivery_and_cut_messages_in_flight_are_dropped_on_arrival() {
    let (mut sim, a, b) = two_nodes(3);
    let c = sim.node("c").build();
    let (addr_b, log_b) = sink::<u32>(&sim, b);
    // In flight when the partition starts: dropped when it arrives.
    send_all(&sim, a, addr_b, vec![1, 2, 3]);
    sim.run_for(Duration::from_micros(10)).unwrap();
    sim.isolate(b).unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(log_b.borrow().is_empty());
    assert_eq!(sim.net_stats().link(a, b).dropped.partition, 3);
    send_all(&sim, c, addr_b, vec![4]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(log_b.borrow().is_empty(), "isolation cuts every node off");

    sim.heal();
    send_all(&sim, a, addr_b, vec![5]);
    send_all(&sim, c, addr_b, vec![6]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    let mut got = payloads(&log_b);
    got.sort_unstable();
    assert_eq!(got, [5, 6]);

    // Per-link repair restores only that link.
    sim.partition(&[a, c], &[b]).unwrap();
    sim.repair(a, b).unwrap();
    send_all(&sim, a, addr_b, vec![7]);
    send_all(&sim, c, addr_b, vec![8]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(payloads(&log_b)[2..], [7]);
    sim.repair_oneway(c, b).unwrap();
    send_all(&sim, c, addr_b, vec![9]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(payloads(&log_b)[3..], [9]);
}

#[test]
fn rejoin_undoes_one_isolation_and_leaves_other_partitions() {
    let (mut sim, a, b) = two_nodes(4);
    let c = sim.node("c").build();
    let (addr_b, log_b) = sink::<u32>(&sim, b);
    let (addr_c, log_c) = sink::<u32>(&sim, c);
    sim.isolate(b).unwrap();
    sim.partition_oneway(a, c).unwrap();
    sim.rejoin(b).unwrap();
    send_all(&sim, a, addr_b, vec![1]);
    send_all(&sim, c, addr_b, vec![2]);
    send_all(&sim, a, addr_c, vec![3]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    let mut got = payloads(&log_b);
    got.sort_unstable();
    assert_eq!(got, [1, 2], "b is back in touch with everyone");
    assert!(log_c.borrow().is_empty(), "the one-way partition a -> c stays");
}

#[test]
fn a_network_error_converts_into_a_sim_error_for_question_marks() {
    fn bind_twice() -> Result<(), sim::SimError> {
        let first = sim::net::Endpoint::<u32>::bind(7)?;
        let _second = sim::net::Endpoint::<u32>::bind(7)?;
        drop(first);
        Ok(())
    }
    let mut sim = Sim::new(5);
    let error = sim.block_on(async { bind_twice() }).unwrap().unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Net { .. }), "{error:?}");
    assert_eq!(error.seed(), 5);
    assert!(error.kind().to_string().starts_with("network: "), "{}", error.kind());
}

#[test]
fn instants_subtract_like_std() {
    let mut sim = Sim::new(6);
    sim.block_on(async {
        let start = Instant::now();
        sim::time::sleep(Duration::from_millis(5)).await;
        let later = Instant::now();
        assert_eq!(later.duration_since(start), Duration::from_millis(5));
        assert_eq!(start.duration_since(later), Duration::ZERO);
        assert_eq!(later.checked_duration_since(start), Some(Duration::from_millis(5)));
        assert_eq!(start.checked_duration_since(later), None);
    })
    .unwrap();
}

#[test]
fn clog_holds_messages_then_releases_them_in_order() {
    let (mut sim, a, b) = two_nodes(4);
    let (addr_b, log_b) = sink::<u32>(&sim, b);
    sim.clog(a, b).unwrap();
    send_all(&sim, a, addr_b, (1..=20).collect());
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(log_b.borrow().is_empty(), "a clogged link delivers nothing");
    let stats = sim.net_stats();
    assert_eq!((stats.held_now, stats.link(a, b).held), (20, 20));
    let released_at = sim.now();
    sim.unclog(a, b).unwrap();
    sim.run_for(Duration::from_millis(1)).unwrap();
    assert_eq!(payloads(&log_b), (1..=20).collect::<Vec<_>>(), "held order is send order");
    assert!(log_b.borrow().iter().all(|(at, _, _)| *at == released_at), "released at once");
    assert_eq!(sim.net_stats().held_now, 0);

    // Messages already in flight when the clog starts are held when they arrive.
    send_all(&sim, a, addr_b, vec![21, 22]);
    sim.run_for(Duration::from_micros(1)).unwrap();
    sim.clog(a, b).unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(log_b.borrow().len(), 20);
    assert_eq!(sim.net_stats().held_now, 2);
    sim.heal();
    sim.run_for(Duration::from_millis(1)).unwrap();
    assert_eq!(log_b.borrow().len(), 22, "heal unclogs too");
}

#[test]
fn a_rule_drops_exactly_the_second_message_from_n1_to_n3() {
    let mut sim = Sim::new(5);
    let [n1, n2, n3] = ["n1", "n2", "n3"].map(|name| sim.node(name).build());
    let (addr2, log2) = sink::<u32>(&sim, n2);
    let (addr3, log3) = sink::<u32>(&sim, n3);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let seen_by_rule = Rc::clone(&seen);
    let rule = sim.add_rule(move |meta| {
        seen_by_rule.borrow_mut().push((meta.link_seq(), meta.type_name()));
        let n1_to_n3 = meta.from().node() == n1 && meta.to().node() == n3;
        if n1_to_n3 && meta.link_seq() == 2 { Verdict::Drop } else { Verdict::Deliver }
    });
    let sent: Vec<u32> = (1..=5).collect();
    detach(&sim, n1, "source", async move {
        let endpoint = Endpoint::<u32>::bind(0).unwrap();
        for n in 1..=5 {
            endpoint.send_to(addr3.0, n).unwrap();
            endpoint.send_to(addr2.0, n).unwrap();
        }
    });
    sim.run_for(Duration::from_secs(1)).unwrap();
    let mut got3 = payloads(&log3);
    got3.sort_unstable();
    assert_eq!(got3, [1, 3, 4, 5], "only the second message to n3 is gone");
    let mut got2 = payloads(&log2);
    got2.sort_unstable();
    assert_eq!(got2, sent, "the same sequence number on another link passes");
    assert_eq!(sim.net_stats().link(n1, n3).dropped.rule, 1);
    assert_eq!(seen.borrow().len(), 10, "the rule sees every send");
    assert!(seen.borrow().iter().all(|(_, name)| *name == "u32"));
    drop(rule);
    send_all(&sim, n1, addr3, vec![6, 7]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(log3.borrow().len(), 6, "a dropped guard removes its rule");
    assert_eq!(seen.borrow().len(), 10);
}

#[test]
fn rules_delay_and_duplicate_by_payload_and_the_first_opinion_wins() {
    let (mut sim, a, b) = two_nodes(6);
    let fixed = LinkConfig::DEFAULT.with_latency(MS, MS);
    sim.set_link_config_default(fixed).unwrap();
    let (addr_b, log_b) = sink::<u32>(&sim, b);
    let _slow = sim.add_rule(|meta| match meta.downcast_ref::<u32>() {
        Some(10) => Verdict::Delay(Duration::from_secs(2)),
        _ => Verdict::Deliver,
    });
    let _twice = sim.add_rule(|meta| match meta.downcast_ref::<u32>() {
        Some(10 | 20) => Verdict::Duplicate,
        _ => Verdict::Deliver,
    });
    send_all(&sim, a, addr_b, vec![10, 20, 30]);
    sim.run_for(Duration::from_secs(3)).unwrap();
    let log: Vec<(Duration, u32)> =
        log_b.borrow().iter().map(|(at, _, n)| (at.since_start(), *n)).collect();
    // 10 is delayed (the first rule wins, so it is not duplicated); 20 comes twice.
    assert_eq!(log, [(MS, 20), (MS, 20), (MS, 30), (Duration::from_secs(2) + MS, 10)]);
    assert_eq!(sim.net_stats().link(a, b).duplicated, 1);
}

#[test]
fn kill_drops_messages_in_flight_to_the_node_and_frees_its_ports() {
    let mut sim = Sim::new(7);
    let a = sim.node("a").build();
    let received = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&received);
    let b = sim
        .node("b")
        .init(move || {
            let log = Rc::clone(&log);
            async move {
                // After a restart the same port binds again: the kill freed it.
                let endpoint = Endpoint::<u32>::bind(7000).unwrap();
                while let Ok((_, n)) = endpoint.recv().await {
                    log.borrow_mut().push(n);
                }
            }
        })
        .build();
    let addr_b = Target::<u32>::new(Addr::new(b, 7000));
    let reserved = sim.allocate_port(b).unwrap();
    send_all(&sim, a, addr_b, vec![1, 2, 3]);
    sim.run_for(Duration::from_micros(500)).unwrap();
    assert_eq!(sim.net_stats().in_flight, 3, "sent, not yet arrived (latency is 1 ms or more)");
    sim.kill(b).unwrap();
    assert_eq!(sim.allocate_port(b), Err(NetError::NodeKilled { node: b }));
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(received.borrow().is_empty());
    assert_eq!(sim.net_stats().link(a, b).dropped.node_down, 3);

    // Sent to the dead node, which restarts before the message arrives: a message
    // never reaches a later incarnation, although port 7000 is bound again.
    send_all(&sim, a, addr_b, vec![4]);
    sim.run_for(Duration::from_micros(500)).unwrap();
    sim.restart(b).unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(received.borrow().is_empty());
    assert_eq!(sim.net_stats().link(a, b).dropped.node_down, 4);
    assert!(!sim.release_port(reserved).unwrap(), "the kill released the reservation too");

    send_all(&sim, a, addr_b, vec![5]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(*received.borrow(), [5], "the restarted node receives again");
}

#[test]
fn an_endpoint_that_outlives_its_node_is_closed_and_its_waiters_wake() {
    let (mut sim, _a, b) = two_nodes(8);
    let slot: Rc<RefCell<Option<Endpoint<u32>>>> = Rc::default();
    let keep = Rc::clone(&slot);
    detach(&sim, b, "binder", async move {
        *keep.borrow_mut() = Some(Endpoint::bind(80).unwrap());
    });
    sim.run_for(Duration::ZERO).unwrap();
    let endpoint = slot.borrow_mut().take().unwrap();
    let handle = sim.handle();
    let (result, at) = sim
        .block_on(async move {
            let nemesis = sim::spawn(async move {
                sim::time::sleep(10 * MS).await;
                handle.kill(b).unwrap();
            });
            let result = endpoint.recv().await;
            nemesis.await.unwrap();
            assert!(endpoint.is_closed());
            assert_eq!(endpoint.send_to(endpoint.local_addr(), 1), Err(NetError::Closed));
            assert_eq!(endpoint.try_recv(), Err(NetError::Closed));
            (result, Instant::now())
        })
        .unwrap();
    assert_eq!(result, Err(NetError::Closed));
    assert_eq!(at.since_start(), 10 * MS, "the waiter woke at the kill");
}

#[test]
fn ephemeral_allocation_is_deterministic_and_never_collides() {
    let run = |seed: u64| {
        let mut sim = Sim::new(seed);
        let node = sim.node("n").build();
        let reserved = sim.allocate_port(node).unwrap();
        let ports = sim
            .block_on(async move {
                let handle = sim::Handle::current();
                let mut live = Vec::new();
                let mut ports = Vec::new();
                for round in 0..200u16 {
                    let endpoint = handle
                        .spawn_on(node, "bind", async { Endpoint::<u8>::bind(0).unwrap() })
                        .unwrap()
                        .await
                        .unwrap();
                    ports.push(endpoint.local_addr().port());
                    // Keep two in three alive; dropping frees the port.
                    if round % 3 != 0 {
                        live.push(endpoint);
                    }
                    if round == 100 {
                        ports.push(handle.allocate_port(node).unwrap().port());
                    }
                }
                ports
            })
            .unwrap();
        (reserved, ports)
    };
    let (reserved, ports) = run(1);
    assert_eq!(reserved.port(), EPHEMERAL_PORT_MIN);
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len(), "no port handed out twice");
    assert!(!ports.contains(&reserved.port()), "a reserved port is never handed out");
    assert_eq!(ports[0], EPHEMERAL_PORT_MIN + 1);
    assert!(ports.windows(2).all(|pair| pair[0] < pair[1]), "handed out in order");
    assert_eq!(run(2), (reserved, ports), "the same ports whatever the seed");
}

#[test]
fn a_taken_port_is_addr_in_use_and_a_reserved_port_binds_once() {
    let mut sim = Sim::new(9);
    let node = sim.node("n1").build();
    let reserved = sim.allocate_port(node).unwrap();
    sim.block_on(async move {
        let first = Endpoint::<u8>::bind(80).unwrap();
        let addr = first.local_addr();
        let error = Endpoint::<u8>::bind(80).unwrap_err();
        assert_eq!(error, NetError::AddrInUse { addr });
        assert_eq!(error.to_string(), "address main:80 is in use");
        drop(first);
        let again = Endpoint::<u8>::bind(80).expect("dropping an endpoint frees its port");
        drop(again);
    })
    .unwrap();
    let handle = sim.handle();
    sim.block_on(async move {
        let result = handle
            .spawn_on(node, "bind reserved", async move {
                let bound = Endpoint::<u8>::bind(reserved.port()).unwrap();
                assert_eq!(bound.local_addr(), reserved);
                let twice = Endpoint::<u8>::bind(reserved.port()).map(|_| ());
                (twice, bound)
            })
            .unwrap()
            .await
            .unwrap();
        assert_eq!(result.0, Err(NetError::AddrInUse { addr: reserved }));
    })
    .unwrap();
    assert!(!sim.release_port(reserved).unwrap(), "binding consumed the reservation");
    let unknown = sim::net::Addr::new(node, 1);
    assert!(!sim.release_port(unknown).unwrap());
}

#[test]
fn rpc_timeouts_fire_at_the_virtual_deadline() {
    let (mut sim, a, b) = two_nodes(10);
    let slow = sim.allocate_port(b).unwrap();
    detach(&sim, b, "slow server", async move {
        let server = RpcServer::<u32, u32>::bind(slow.port()).unwrap();
        server
            .serve(|_, n| async move {
                sim::time::sleep(Duration::from_secs(10)).await;
                n
            })
            .await;
    });
    let handle = sim.handle();
    let outcomes = sim
        .block_on(async move {
            let run = handle.spawn_on(a, "client", async move {
                let client = RpcClient::<u32, u32>::bind(0).unwrap();
                let mut outcomes = Vec::new();
                // A server that answers too late, then no server at all.
                for to in [slow, Addr::new(b, 9)] {
                    let start = Instant::now();
                    let result = client.call(to, 1, 250 * MS).await;
                    outcomes.push((result, Instant::now() - start));
                }
                assert_eq!(client.pending_count(), 0);
                outcomes
            });
            run.unwrap().await.unwrap()
        })
        .unwrap();
    assert_eq!(outcomes, [(Err(RpcError::Timeout), 250 * MS), (Err(RpcError::Timeout), 250 * MS)]);
}

#[test]
fn rpc_refusal_is_opt_in_and_arrives_before_the_deadline() {
    let (mut sim, a, b) = two_nodes(11);
    let handle = sim.handle();
    let (result, elapsed) = sim
        .block_on(async move {
            let run = handle.spawn_on(a, "client", async move {
                let client = RpcClient::<u32, u32>::bind(0).unwrap().with_refused_errors(true);
                let start = Instant::now();
                let result = client.call(Addr::new(b, 9), 1, Duration::from_secs(5)).await;
                (result, Instant::now() - start)
            });
            run.unwrap().await.unwrap()
        })
        .unwrap();
    assert_eq!(result, Err(RpcError::NoEndpoint { addr: Addr::new(b, 9) }));
    assert!(elapsed >= MS && elapsed <= 10 * MS, "refused after one link latency: {elapsed:?}");
    assert_eq!(sim.net_stats().link(a, b).dropped.no_endpoint, 1);
}

#[test]
fn rpc_serves_concurrent_calls_and_discards_duplicate_responses() {
    let (mut sim, a, b) = two_nodes(12);
    sim.set_link_config_default(LinkConfig::DEFAULT.with_duplicate(Ratio::new(1, 4))).unwrap();
    let addr = sim.allocate_port(b).unwrap();
    detach(&sim, b, "server", async move {
        let server = RpcServer::<u64, u64>::bind(addr.port()).unwrap();
        server
            .serve(|_, n| async move {
                // Even requests wait: a slow request never holds up the others.
                if n % 2 == 0 {
                    sim::time::sleep(Duration::from_millis(n)).await;
                }
                n * 10
            })
            .await;
    });
    let handle = sim.handle();
    let (results, stale) = sim
        .block_on(async move {
            let run = handle.spawn_on(a, "client", async move {
                let client = Rc::new(RpcClient::<u64, u64>::bind(0).unwrap());
                let calls: Vec<_> = (1..=40u64)
                    .map(|n| {
                        let client = Rc::clone(&client);
                        sim::spawn(
                            async move { client.call(addr, n, Duration::from_secs(1)).await },
                        )
                    })
                    .collect();
                let mut results = Vec::new();
                for call in calls {
                    results.push(call.await.unwrap());
                }
                sim::time::sleep(Duration::from_secs(1)).await;
                (results, client.stale_responses())
            });
            run.unwrap().await.unwrap()
        })
        .unwrap();
    let expected: Vec<Result<u64, RpcError>> = (1..=40).map(|n| Ok(n * 10)).collect();
    assert_eq!(results, expected);
    let total = sim.net_stats().total;
    assert!(total.duplicated > 5, "the duplication ratio applied: {total:?}");
    assert!(stale > 0, "a duplicated request or response yields a stale response");
}

/// Runs 30 calls over links that duplicate every message; returns how many times the
/// handler ran.
fn handler_runs_under_duplication(at_most_once: bool) -> u64 {
    let (mut sim, a, b) = two_nodes(21);
    sim.set_link_config_default(LinkConfig::DEFAULT.with_duplicate(Ratio::new(1, 1))).unwrap();
    let addr = sim.allocate_port(b).unwrap();
    let runs = Rc::new(std::cell::Cell::new(0u64));
    let counted = Rc::clone(&runs);
    detach(&sim, b, "server", async move {
        let server = RpcServer::<u64, u64>::bind(addr.port()).unwrap();
        let server = if at_most_once { server.at_most_once() } else { server };
        server
            .serve(move |_, n| {
                counted.set(counted.get() + 1);
                async move { n + 1 }
            })
            .await;
    });
    let handle = sim.handle();
    sim.block_on(async move {
        let run = handle.spawn_on(a, "client", async move {
            // Two clients in turn on the same address: the second's ids must not be
            // taken for duplicates of the first's.
            for _ in 0..2 {
                let client = RpcClient::<u64, u64>::bind(7).unwrap();
                for n in 0..15 {
                    assert_eq!(client.call(addr, n, Duration::from_secs(1)).await, Ok(n + 1));
                }
            }
        });
        run.unwrap().await.unwrap();
    })
    .unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    runs.get()
}

#[test]
fn an_at_most_once_server_runs_each_request_once_under_duplication() {
    assert_eq!(handler_runs_under_duplication(true), 30);
    assert!(handler_runs_under_duplication(false) > 30, "duplicates run the handler again");
}

#[test]
fn wrong_types_and_full_queues_are_counted_drops() {
    // Traced at warn (a default trace shows it): a receiver expecting another type is
    // a bug in the system under test, not a fault.
    let mut sim =
        Sim::builder().seed(13).trace(Trace::Filter("warn".into())).capture_trace(true).build();
    let (a, b) = (sim.node("a").build(), sim.node("b").build());
    let addr = sim.allocate_port(b).unwrap();
    let handle = sim.handle();
    let queued = sim
        .block_on(async move {
            let receiver = handle
                .spawn_on(b, "receiver", async move {
                    let endpoint = Endpoint::<u32>::bind(addr.port()).unwrap();
                    endpoint.set_queue_max(3);
                    // Do not read until everything has arrived.
                    sim::time::sleep(Duration::from_secs(1)).await;
                    let mut queued = Vec::new();
                    while let Some((_, n)) = endpoint.try_recv().unwrap() {
                        queued.push(n);
                    }
                    // The receiver sees what it never got.
                    assert_eq!(endpoint.wrong_type_count(), 1);
                    queued
                })
                .unwrap();
            handle
                .spawn_on(a, "sender", async move {
                    let wrong = Endpoint::<u64>::bind(0).unwrap();
                    wrong.send_to(addr, 99).unwrap();
                    let right = Endpoint::<u32>::bind(0).unwrap();
                    for n in 0..6 {
                        right.send_to(addr, n).unwrap();
                    }
                })
                .unwrap()
                .await
                .unwrap();
            receiver.await.unwrap()
        })
        .unwrap();
    assert_eq!(queued.len(), 3);
    let dropped = sim.net_stats().link(a, b).dropped;
    assert_eq!((dropped.wrong_type, dropped.queue_full), (1, 3));
    assert_eq!(dropped.get(DropCause::QueueFull), 3);
    let trace = sim.take_trace().unwrap();
    assert_eq!(trace.matches("expects another message type").count(), 1, "{trace}");
}

#[test]
fn nodes_are_found_by_name_and_an_unknown_name_lists_the_known_ones() {
    let sim = Sim::new(3);
    let (a, b) = (sim.node("a").build(), sim.node("b").build());
    assert_eq!((sim.node_by_name("a").unwrap(), sim.node_by_name("b").unwrap()), (a, b));
    let error = sim.node_by_name("c").unwrap_err().to_string();
    assert!(error.contains("no node is named \"c\": the nodes are"), "{error}");
    assert!(error.contains("a, b"), "{error}");
    // `node` builds: a taken name is refused, never silently a second node.
    assert!(sim.node("b").try_build().is_err());
}

#[test]
fn a_handle_outliving_its_simulation_still_reads_the_counters() {
    let (sim, a, b) = two_nodes(17);
    let (addr, _log) = sink::<u32>(&sim, b);
    send_all(&sim, a, addr, vec![1, 2, 3]);
    let mut sim = sim;
    sim.run_for(Duration::from_micros(1)).unwrap();
    let handle = sim.handle();
    assert_eq!(handle.net_stats().in_flight, 3);
    drop(sim);
    let stats = handle.net_stats();
    assert_eq!((stats.total.sent, stats.in_flight, stats.total.delivered), (3, 0, 0));
}

#[test]
fn bad_arguments_are_errors_with_clear_messages() {
    let (sim, a, _b) = two_nodes(14);
    let other = Sim::new(0);
    let ghost = {
        let _ = other.node("x").build();
        other.node("y").build();
        other.node("z").build()
    };
    let error = sim.partition(&[a], &[ghost]).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::UnknownNode { .. }), "{error}");
    let error = sim.partition(&[a], &[a]).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::PartitionSelf { .. }), "{error}");
    assert!(error.to_string().starts_with("cannot cut node#1 off from itself"), "{error}");
    assert!(sim.clog(a, a).is_err());
    assert!(sim.isolate(ghost).is_err());
    assert!(sim.rejoin(ghost).is_err());
    let inverted = LinkConfig::DEFAULT.with_latency(2 * MS, MS);
    let error = sim.set_link_config_default(inverted).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::InvalidLinkConfig { .. }), "{error}");
    assert!(error.to_string().starts_with("invalid link config: latency_min exceeds"), "{error}");
    assert!(matches!(sim.allocate_port(ghost), Err(NetError::UnknownNode { .. })));
}

/// A random workload: three nodes exchange numbered messages over a lossy, jittery,
/// duplicating network, with a partition and an RPC in the middle. Returns what each
/// node received, in order.
fn workload(sim: &mut Sim) -> Vec<(u32, u32)> {
    let nodes: Vec<NodeId> = (0..3).map(|i| sim.node(format!("n{i}")).build()).collect();
    let config = LinkConfig::DEFAULT.with_loss(Ratio::new(1, 20)).with_duplicate(Ratio::new(1, 20));
    sim.set_link_config_default(config).unwrap();
    let addrs: Vec<Addr> = nodes.iter().map(|node| sim.allocate_port(*node).unwrap()).collect();
    let log = Rc::new(RefCell::new(Vec::new()));
    for (index, node) in nodes.iter().enumerate() {
        let (addrs, log) = (addrs.clone(), Rc::clone(&log));
        detach(sim, *node, "peer", async move {
            let endpoint = Endpoint::<(u32, u32)>::bind(addrs[index].port()).unwrap();
            for round in 0..50u32 {
                let to = addrs[sim::rand::range(0..3) as usize];
                endpoint.send_to(to, (index as u32, round)).unwrap();
                while let Some((_, message)) = endpoint.try_recv().unwrap() {
                    log.borrow_mut().push(message);
                }
                sim::time::sleep(Duration::from_micros(sim::rand::range(0..3_000))).await;
            }
        });
    }
    sim.run_for(50 * MS).unwrap();
    sim.partition(&nodes[..1], &nodes[1..]).unwrap();
    sim.run_for(50 * MS).unwrap();
    sim.heal();
    sim.run_for(Duration::from_secs(1)).unwrap();
    log.borrow().clone()
}

#[test]
fn the_same_seed_gives_the_same_network_fingerprint() {
    let fingerprint = sim::check_determinism(21, |sim| {
        workload(sim);
    })
    .unwrap();
    let mut first = Sim::new(21);
    let mut second = Sim::new(21);
    let received = workload(&mut first);
    assert_eq!(received, workload(&mut second));
    assert_eq!(first.fingerprint(), second.fingerprint());
    assert_eq!(first.fingerprint(), fingerprint);
    assert_eq!(first.net_stats(), second.net_stats());
    assert!(first.net_stats().total.dropped.partition > 0, "the partition cut something");
    assert!(first.net_stats().total.dropped.loss > 0 && first.net_stats().total.duplicated > 0);
}

#[test]
fn different_seeds_give_different_delivery_orders() {
    let orders: Vec<Vec<(u32, u32)>> = (1..=4).map(|seed| workload(&mut Sim::new(seed))).collect();
    for (i, a) in orders.iter().enumerate() {
        assert!(a.len() > 50, "seed {}: only {} received", i + 1, a.len());
        for b in &orders[i + 1..] {
            assert_ne!(a, b, "two seeds delivered in the same order");
        }
    }
    // The network stream alone reorders: the same traffic at the same instants, on two
    // seeds, arrives in different orders.
    let order = |seed| {
        let (mut sim, a, b) = two_nodes(seed);
        let (addr, log) = sink::<u32>(&sim, b);
        send_all(&sim, a, addr, (0..100).collect());
        sim.run_for(Duration::from_secs(1)).unwrap();
        payloads(&log)
    };
    assert_ne!(order(1), order(2));
    assert_eq!(order(1), order(1));
}

#[test]
fn sends_deliveries_and_drops_are_traced_and_logged_as_events() {
    // tracing-core caches each call site's interest. While a single dispatcher is
    // registered it asks the current thread's default only, so a call site first
    // reached by a parallel test (which has no dispatcher) would be cached as off. A
    // second registered dispatcher makes it consult them all.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let mut sim = Sim::builder()
        .seed(15)
        .trace(Trace::Filter("sim::net=trace".into()))
        .capture_trace(true)
        .event_log(10_000)
        .build();
    let a = sim.node("a").build();
    let b = sim.node("b").build();
    let (addr, log) = sink::<u32>(&sim, b);
    let _drop_first =
        sim.add_rule(|meta| if meta.link_seq() == 1 { Verdict::Drop } else { Verdict::Deliver });
    send_all(&sim, a, addr, vec![1, 2]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(payloads(&log), [2]);
    let trace = sim.take_trace().unwrap();
    let line = |word: &str| trace.lines().find(|line| line.contains(word)).map(str::to_owned);
    let send = line(" send").unwrap_or_else(|| panic!("no send line in {trace}"));
    assert!(send.contains("from=a:49152") && send.contains("to=b:49152"), "{send}");
    assert!(line(" deliver").is_some_and(|line| line.contains("id=1")), "{trace}");
    assert!(line(" drop").is_some_and(|line| line.contains("cause=\"rule\"")), "{trace}");
    let events = sim.event_log();
    let kinds =
        |matches: fn(&EventKind) -> bool| events.iter().filter(|e| matches(&e.kind)).count();
    assert_eq!(kinds(|kind| matches!(kind, EventKind::NetSend { .. })), 1);
    assert_eq!(kinds(|kind| matches!(kind, EventKind::NetDeliver { .. })), 1);
    assert_eq!(kinds(|kind| matches!(kind, EventKind::NetDrop { cause: DropCause::Rule, .. })), 1);
    let deliver = events.iter().find(|e| matches!(e.kind, EventKind::NetDeliver { .. })).unwrap();
    assert_eq!(deliver.node, b, "a delivery is the receiver's event");
}

#[test]
fn a_paused_node_receives_on_resume_and_rpc_messages_are_visible_to_rules() {
    let (mut sim, a, b) = two_nodes(16);
    let (addr, log) = sink::<u32>(&sim, b);
    sim.run_for(Duration::ZERO).unwrap();
    sim.pause(b).unwrap();
    send_all(&sim, a, addr, vec![1]);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(log.borrow().is_empty(), "a paused node runs nothing");
    assert_eq!(sim.net_stats().link(a, b).delivered, 1, "but its queue took the message");
    sim.resume(b).unwrap();
    sim.run_for(Duration::ZERO).unwrap();
    assert_eq!(payloads(&log), [1]);

    // Rules see RPC requests as `Rpc` values and can pick them by body.
    let server = sim.allocate_port(b).unwrap();
    detach(&sim, b, "server", async move {
        RpcServer::<u32, u32>::bind(server.port()).unwrap().serve(|_, n| async move { n }).await;
    });
    let _rule = sim.add_rule(|meta| match meta.downcast_ref::<Rpc<u32, u32>>() {
        Some(Rpc::Request { body: 13, .. }) => Verdict::Drop,
        _ => Verdict::Deliver,
    });
    let handle = sim.handle();
    let results = sim
        .block_on(async move {
            let run = handle.spawn_on(a, "client", async move {
                let client = RpcClient::<u32, u32>::bind(0).unwrap();
                let mut results = Vec::new();
                for n in [12, 13, 14] {
                    results.push(client.call(server, n, Duration::from_secs(1)).await);
                }
                results
            });
            run.unwrap().await.unwrap()
        })
        .unwrap();
    assert_eq!(results, [Ok(12), Err(RpcError::Timeout), Ok(14)]);
}

#[test]
fn a_node_built_at_an_address_binds_it_again_after_each_restart() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut sim = Sim::new(21);
    let bound: Rc<RefCell<Vec<Addr>>> = Rc::default();
    let seen = Rc::clone(&bound);
    let (node, addr) = sim
        .node("server")
        .init_at(move |addr| {
            let seen = Rc::clone(&seen);
            async move {
                let endpoint = Endpoint::<u32>::bind(addr.port()).unwrap();
                seen.borrow_mut().push(endpoint.local_addr());
                std::future::pending::<()>().await;
            }
        })
        .try_build_at()
        .unwrap();
    assert_eq!(addr.node(), node);
    for _ in 0..2 {
        sim.run_for(Duration::from_millis(1)).unwrap();
        sim.kill(node).unwrap();
        sim.restart(node).unwrap();
    }
    sim.run_for(Duration::from_millis(1)).unwrap();
    // Every start bound the one address peers know.
    assert_eq!(*bound.borrow(), vec![addr; 3]);
    // Built with plain try_build, an init_at still runs, at its own address; a later
    // init replaces it, and never runs beside it.
    let seen = Rc::clone(&bound);
    let other = sim
        .node("other")
        .init_at(move |addr| {
            let seen = Rc::clone(&seen);
            async move { seen.borrow_mut().push(addr) }
        })
        .try_build()
        .unwrap();
    let plain = sim.node("plain").init_at(|_| async {}).init(|| async {}).try_build_at().unwrap();
    sim.run_for(Duration::from_millis(1)).unwrap();
    assert_eq!(bound.borrow().len(), 4);
    assert_eq!(bound.borrow()[3].node(), other);
    assert_eq!(plain.1.node(), plain.0);
}

#[test]
fn a_task_waker_used_on_another_thread_is_a_clear_panic() {
    let mut sim = Sim::new(5);
    let waker = sim
        .block_on(std::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone())))
        .unwrap();
    // The point of the test: a waker that leaves the simulation's thread.
    #[allow(clippy::disallowed_methods)]
    let woken = std::thread::spawn(move || waker.wake_by_ref()).join();
    let panic = woken.unwrap_err();
    let message = panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(message.contains("used on another thread"), "{message}");
}
