//! FoundationDB-style fault points.
//!
//! `buggify()` marks a place where the code may take a rare path on purpose (a slow
//! replay, a tiny batch). Per run, each call site is switched on or off once, from the
//! fault stream, the first time it is reached; a site that is on fires with a small
//! probability. Off entirely unless the simulation enables it
//! ([`crate::Builder::buggify`]), in which case nothing is drawn.

use std::collections::BTreeMap;
use std::panic::Location;

use crate::context;
use crate::fingerprint::{EventKind, tag};
use crate::rand::{Ratio, RngExt, STREAM_FAULTS, SimRng};

/// Default chance that a call site is switched on for a run.
pub const BUGGIFY_ACTIVATION_DEFAULT: Ratio = Ratio::new(1, 4);
/// Default chance that a switched-on site fires on one call.
pub const BUGGIFY_FIRE_DEFAULT: Ratio = Ratio::new(1, 20);

/// How buggify behaves in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuggifyConfig {
    /// Chance that a call site is switched on for the run.
    pub activation: Ratio,
    /// Chance that a switched-on site fires on one call.
    pub fire: Ratio,
}

impl Default for BuggifyConfig {
    fn default() -> BuggifyConfig {
        BuggifyConfig { activation: BUGGIFY_ACTIVATION_DEFAULT, fire: BUGGIFY_FIRE_DEFAULT }
    }
}

type SiteKey = (&'static str, u32, u32);

#[derive(Debug)]
pub(crate) struct Buggify {
    config: Option<BuggifyConfig>,
    rng: SimRng,
    sites: BTreeMap<SiteKey, bool>,
}

impl Buggify {
    pub(crate) fn new(seed: u64, config: Option<BuggifyConfig>) -> Buggify {
        Buggify { config, rng: SimRng::new(seed, STREAM_FAULTS), sites: BTreeMap::new() }
    }

    /// Evaluates one call; `None` when buggify is off.
    fn evaluate(&mut self, site: &'static Location<'static>, fire: Option<Ratio>) -> Option<bool> {
        let config = self.config?;
        let key = (site.file(), site.line(), site.column());
        let rng = &mut self.rng;
        let active = *self.sites.entry(key).or_insert_with(|| rng.chance(config.activation));
        Some(active && self.rng.chance(fire.unwrap_or(config.fire)))
    }

    /// The call sites reached so far and whether each is switched on.
    pub(crate) fn sites(&self) -> Vec<(String, bool)> {
        self.sites
            .iter()
            .map(|((file, line, column), on)| (format!("{file}:{line}:{column}"), *on))
            .collect()
    }
}

/// Whether to take the rare path here. Always false unless the running simulation
/// enabled buggify, and outside a simulation.
#[track_caller]
pub fn buggify() -> bool {
    evaluate(Location::caller(), None)
}

/// Like [`buggify`], with this site's own firing chance.
#[track_caller]
pub fn buggify_with(fire: Ratio) -> bool {
    evaluate(Location::caller(), Some(fire))
}

/// Like [`buggify`], for a site that the caller names: a layer that forwards fault
/// points through an adapter passes its own caller's location, so that each of its
/// call sites is a site of its own instead of all being the adapter's one line.
pub fn buggify_at(site: &'static Location<'static>) -> bool {
    evaluate(site, None)
}

fn evaluate(site: &'static Location<'static>, fire: Option<Ratio>) -> bool {
    context::try_with(|shared| {
        let mut world = shared.world.borrow_mut();
        let fired = world.buggify.evaluate(site, fire)?;
        let node = shared.current_node.get();
        let now_ns = shared.now_ns.get();
        world.fingerprint.record(now_ns, node, tag::BUGGIFY, u64::from(fired), || {
            EventKind::Buggify { site: site.to_string(), fired }
        });
        Some(fired)
    })
    .flatten()
    .unwrap_or(false)
}
