//! Replays every line of `seeds.txt`: each seed that once found a bug must pass now.

use cachesim::CacheSystem;

#[test]
fn every_corpus_seed_passes() {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../seeds.txt"));
    match sim_harness::replay_corpus(&CacheSystem, path) {
        Ok(passed) => assert!(passed > 0, "seeds.txt has no entries"),
        Err(failures) => panic!("{failures}"),
    }
}
