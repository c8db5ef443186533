//! Goal: traces carry virtual time and the node name, are captured per simulation,
//! and buggify is deterministic per seed and off unless enabled.

use std::time::Duration;

use sim::{Sim, Trace};

#[test]
fn trace_lines_carry_virtual_time_and_node() {
    let mut sim =
        Sim::builder().seed(1).trace(Trace::Filter("info".into())).capture_trace(true).build();
    let node = sim.node("n2").build();
    let _ = sim.spawn_on(node, "hb", async {
        sim::time::sleep(Duration::from_millis(1250)).await;
        tracing::info!("heartbeat ok");
        tracing::debug!("filtered out");
    });
    sim.run_for(Duration::from_secs(2)).unwrap();
    let trace = sim.take_trace().unwrap();
    assert_eq!(trace.lines().count(), 1, "{trace}");
    assert!(trace.starts_with("[   1.250000s n2]  INFO heartbeat ok"), "{trace:?}");
    assert_eq!(sim.take_trace().as_deref(), Some(""), "take empties the buffer");
}

#[test]
fn a_malformed_filter_falls_back_to_info() {
    let trace = Trace::Filter("sim=[[nonsense".into());
    let mut sim = Sim::builder().seed(1).trace(trace).capture_trace(true).build();
    let node = sim.node("n1").build();
    let _ = sim.spawn_on(node, "hb", async {
        tracing::info!("still traced");
        tracing::debug!("filtered out");
    });
    sim.run_for(Duration::from_millis(1)).unwrap();
    let trace = sim.take_trace().unwrap();
    assert_eq!(trace.lines().collect::<Vec<_>>(), ["[   0.000000s n1]  INFO still traced"]);
}

#[test]
fn trace_can_go_to_a_file() {
    let path = std::env::temp_dir().join(format!("sim-trace-test-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    {
        let trace = Trace::File { filter: "info".into(), path: path.clone() };
        let mut sim = Sim::builder().seed(2).trace(trace).build();
        sim.block_on(async {
            sim::time::sleep(Duration::from_millis(3)).await;
            tracing::info!("to the file");
        })
        .unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(text, "[   0.003000s main]  INFO to the file\n");
}

#[test]
fn parallel_sims_keep_their_traces_apart() {
    let run = |seed: u64| {
        let mut sim = Sim::builder().seed(seed).capture_trace(true).build();
        sim.block_on(async move {
            for i in 0..50 {
                tracing::info!(seed, i, "event");
                sim::yield_now().await;
            }
        })
        .unwrap();
        sim.take_trace().unwrap()
    };
    #[allow(clippy::disallowed_methods)] // Two sims on two threads, by design.
    let traces: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2).map(|seed| scope.spawn(move || run(seed))).collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    for (seed, trace) in traces.iter().enumerate() {
        assert_eq!(trace.lines().count(), 50);
        assert!(trace.lines().all(|line| line.contains(&format!("seed={seed}"))), "{trace}");
    }
}

#[test]
fn buggify_is_off_unless_enabled() {
    let mut sim = Sim::new(1);
    let fired = sim.block_on(async { (0..1_000).filter(|_| sim::buggify()).count() }).unwrap();
    assert_eq!(fired, 0);
    assert!(sim.buggify_sites().is_empty());
    assert!(!sim::buggify(), "outside a simulation buggify is false");
}

#[test]
fn buggify_sites_switch_per_seed_and_fire_deterministically() {
    let run = |seed| {
        let mut sim = Sim::builder()
            .seed(seed)
            .buggify_config(Some(sim::BuggifyConfig {
                activation: sim::rand::Ratio::new(1, 2),
                fire: sim::rand::Ratio::new(1, 4),
            }))
            .build();
        let fired = sim
            .block_on(async {
                let a = (0..400).filter(|_| sim::buggify()).count();
                let b = (0..400).filter(|_| sim::buggify()).count();
                (a, b)
            })
            .unwrap();
        (fired, sim.buggify_sites(), sim.fingerprint())
    };
    let mut patterns = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let (fired, sites, fingerprint) = run(seed);
        assert_eq!(run(seed), (fired, sites.clone(), fingerprint), "seed {seed}");
        assert_eq!(sites.len(), 2);
        for ((file, on), count) in sites.iter().zip([fired.0, fired.1]) {
            assert!(file.contains("trace.rs"));
            if *on {
                assert!((50..150).contains(&count), "a site on fires about 1 in 4: {count}");
            } else {
                assert_eq!(count, 0, "a site off never fires");
            }
        }
        patterns.insert(sites.iter().map(|(_, on)| *on).collect::<Vec<_>>());
    }
    assert!(patterns.len() >= 3, "sites switch differently across seeds: {patterns:?}");
}
