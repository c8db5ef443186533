//! `#[sim::test]`: an async body on a fresh simulation per seed.

use std::sync::Mutex;
use std::time::Duration;

static SEEDS_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[sim::test]
async fn the_body_runs_in_virtual_time() {
    let start = sim::time::Instant::now();
    sim::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(3600));
}

#[sim::test(seeds = 5)]
async fn every_seed_gets_a_fresh_simulation() -> Result<(), sim::SimError> {
    let handle = sim::Handle::current();
    SEEDS_SEEN.lock().unwrap().push(handle.seed());
    assert_eq!(handle.nodes().len(), 1, "only the main node: nothing left from another seed");
    let node = handle.node("server").try_build()?;
    assert_eq!(handle.node_name(node).as_deref(), Some("server"));
    // One lock for both counts: seeds run on parallel threads, which push meanwhile.
    let all = SEEDS_SEEN.lock().unwrap().clone();
    let mut distinct = all.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), all.len(), "each seed runs once");
    Ok(())
}

#[test]
fn a_failing_body_names_its_seed_and_how_to_replay_it() {
    let failures = sim::Seeds::new(0..3, 1)
        .try_run(|sim| {
            sim.block_on(async { Err::<(), &str>("the invariant broke") })
                .map_err(|e| e.to_string())
                .and_then(sim::TestOutcome::into_test_result)
        })
        .unwrap_err();
    let text = failures.to_string();
    assert!(text.starts_with("3 of 3 seeds failed"), "{text}");
    assert!(text.contains("seed 1: the invariant broke"), "{text}");
    assert!(text.contains("replay: SIM_SEED=1 cargo test"), "{text}");
}
