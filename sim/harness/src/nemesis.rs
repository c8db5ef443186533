//! The nemesis: applies a plan to a running system, each episode's fault at its start
//! and its undo at its end, and heals everything when the fault phase is over.

use std::time::Duration;

use sim::Sim;
use sim::net::LinkConfig;

use crate::fault::{CustomFault, Fault, LinkTail, Memory, Plan};

/// What the nemesis acts on: the system's nodes, by the indices plans name (0 is
/// `n1`), and the system's own faults.
pub trait Target<C> {
    /// How many nodes faults may name now (nodes that joined count too).
    fn node_count(&self) -> usize;

    /// The simulator node behind index `index`, if there is one.
    fn node(&self, index: usize) -> Option<sim::NodeId>;

    /// Kills node `index`. The default kills the simulator node: its tasks stop, and
    /// whatever it kept only in them is gone. A system whose nodes keep durable state
    /// keeps it outside the node's tasks, and drops it here when `memory` is
    /// [`Memory::Lost`].
    ///
    /// # Errors
    ///
    /// When the node cannot be killed.
    fn kill(&mut self, sim: &Sim, index: usize, memory: Memory) -> Result<(), String> {
        let _ = memory;
        let node = self.node(index).ok_or_else(|| no_node(index))?;
        sim.kill(node).map_err(|error| error.to_string())
    }

    /// Restarts node `index` after a kill. The default restarts the simulator node
    /// (its `init` runs again).
    ///
    /// # Errors
    ///
    /// When the node cannot be restarted.
    fn restart(&mut self, sim: &Sim, index: usize) -> Result<(), String> {
        let node = self.node(index).ok_or_else(|| no_node(index))?;
        sim.restart(node).map_err(|error| error.to_string())
    }

    /// Applies (or, with `undo`, undoes) one of the system's own faults.
    ///
    /// # Errors
    ///
    /// When the fault cannot be applied; the default refuses every custom fault.
    fn apply(&mut self, sim: &Sim, fault: &C, undo: bool) -> Result<(), String> {
        let _ = (sim, fault, undo);
        Err("the plan has a custom fault, but this system applies none: implement Target::apply"
            .to_string())
    }
}

fn no_node(index: usize) -> String {
    format!("the plan names n{}, but the system has no such node", index + 1)
}

/// One timed step of a plan: set the run's latency tail (at 0 ms, first), or apply or
/// undo an episode's fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Step<C> {
    /// When, in milliseconds from the fault phase's start.
    pub at_ms: u64,
    /// What.
    pub action: Action<C>,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action<C> {
    /// The run's latency tail, for the whole run.
    Tail(LinkTail),
    /// An episode's fault ends.
    Undo(Fault<C>),
    /// An episode's fault starts.
    Apply(Fault<C>),
}

impl<C> Action<C> {
    /// The order of steps at one instant: the tail, then undos, then applies.
    fn rank(&self) -> u8 {
        match self {
            Action::Tail(_) => 0,
            Action::Undo(_) => 1,
            Action::Apply(_) => 2,
        }
    }
}

/// The plan as timed steps, in time order (undo before apply on ties, so that a fault
/// ending when the next begins is healed first).
pub fn timeline<C: Clone>(plan: &Plan<C>) -> Vec<Step<C>> {
    let tail = plan.latency_tail.map(|tail| Step { at_ms: 0, action: Action::Tail(tail) });
    let mut steps: Vec<Step<C>> = plan
        .episodes
        .iter()
        .flat_map(|episode| {
            [
                Step { at_ms: episode.start_ms, action: Action::Apply(episode.fault.clone()) },
                Step { at_ms: episode.end_ms(), action: Action::Undo(episode.fault.clone()) },
            ]
        })
        .chain(tail)
        .collect();
    steps.sort_by_key(|step| (step.at_ms, step.action.rank()));
    steps
}

/// The link settings the nemesis has changed, so that overlapping loss, duplication
/// and latency episodes compose and undo independently; `base` is the link without
/// episodes (the default, with the run's latency tail if any).
#[derive(Clone, Copy, Debug)]
pub struct Nemesis {
    link: LinkConfig,
    base: LinkConfig,
}

impl Default for Nemesis {
    fn default() -> Nemesis {
        Nemesis::new()
    }
}

impl Nemesis {
    /// A nemesis that has changed nothing yet.
    pub fn new() -> Nemesis {
        Nemesis { link: LinkConfig::DEFAULT, base: LinkConfig::DEFAULT }
    }

    /// Applies (or undoes) one step, and says so in the trace. Steps that no longer
    /// make sense (pausing a node that a crash killed meanwhile) are skipped.
    ///
    /// # Errors
    ///
    /// When the simulator or the target refuses the step.
    pub fn step<C: CustomFault>(
        &mut self,
        sim: &Sim,
        target: &mut impl Target<C>,
        step: &Step<C>,
    ) -> Result<(), String> {
        sim.in_context(|| match &step.action {
            Action::Tail(tail) => tracing::info!(target: "sim::nemesis", %tail, "latency tail"),
            Action::Apply(fault) => tracing::info!(target: "sim::nemesis", %fault, "apply"),
            Action::Undo(fault) => tracing::info!(target: "sim::nemesis", %fault, "undo"),
        });
        match &step.action {
            Action::Tail(tail) => {
                self.base = tail.link();
                self.link.tail = self.base.tail;
            }
            Action::Apply(fault) => self.fault(sim, target, fault, false)?,
            Action::Undo(fault) => self.fault(sim, target, fault, true)?,
        }
        sim.set_link_config_default(self.link).map_err(|e| e.to_string())
    }

    fn fault<C: CustomFault>(
        &mut self,
        sim: &Sim,
        target: &mut impl Target<C>,
        fault: &Fault<C>,
        undo: bool,
    ) -> Result<(), String> {
        let node = |index: usize| target.node(index).ok_or_else(|| no_node(index));
        let nodes = |indices: &[usize]| -> Result<Vec<sim::NodeId>, String> {
            indices.iter().map(|index| node(*index)).collect()
        };
        let error = |e: sim::SimError| e.to_string();
        match (fault, undo) {
            (Fault::Partition { side_a, side_b }, false) => {
                let (a, b) = (nodes(side_a)?, nodes(side_b)?);
                sim.partition(&a, &b).map_err(error)?
            }
            (Fault::Partition { side_a, side_b }, true) => {
                for a in side_a {
                    for b in side_b {
                        sim.repair(node(*a)?, node(*b)?).map_err(error)?;
                    }
                }
            }
            (Fault::PartitionOneway { from, to }, false) => {
                sim.partition_oneway(node(*from)?, node(*to)?).map_err(error)?
            }
            (Fault::PartitionOneway { from, to }, true) => {
                sim.repair_oneway(node(*from)?, node(*to)?).map_err(error)?
            }
            (Fault::Loss { ratio }, undo) => {
                self.link.loss = if undo { self.base.loss } else { *ratio }
            }
            (Fault::Duplicate { ratio }, undo) => {
                self.link.duplicate = if undo { self.base.duplicate } else { *ratio }
            }
            (Fault::LatencySpike { latency_ms_max }, undo) => {
                let max = if undo { self.base.latency_max } else { ms(*latency_ms_max) };
                self.link.latency_max = max;
            }
            (Fault::Custom(custom), undo) => target.apply(sim, custom, undo)?,
            (node_fault, undo) => node_step(sim, target, node_fault, undo)?,
        }
        Ok(())
    }

    /// Heals everything: network, paused and killed nodes, clocks. The latency tail
    /// stays: it lasts the whole run.
    ///
    /// # Errors
    ///
    /// When the simulator or the target refuses a step of the heal.
    pub fn heal_all<C>(&mut self, sim: &Sim, target: &mut impl Target<C>) -> Result<(), String> {
        sim.in_context(|| tracing::info!(target: "sim::nemesis", "heal everything"));
        sim.heal();
        self.link = self.base;
        sim.set_link_config_default(self.link).map_err(|e| e.to_string())?;
        for index in 0..target.node_count() {
            let node = target.node(index).ok_or_else(|| no_node(index))?;
            match sim.node_state(node).map_err(|e| e.to_string())? {
                sim::NodeState::Paused => sim.resume(node).map_err(|e| e.to_string())?,
                sim::NodeState::Killed => target.restart(sim, index)?,
                sim::NodeState::Running => {}
            }
            reset_clock(sim, node)?;
        }
        Ok(())
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The faults that act on one node.
fn node_step<C>(
    sim: &Sim,
    target: &mut impl Target<C>,
    fault: &Fault<C>,
    undo: bool,
) -> Result<(), String> {
    let node = |index: usize| target.node(index).ok_or_else(|| no_node(index));
    let error = |e: sim::SimError| e.to_string();
    match (fault, undo) {
        (Fault::Crash { node }, false) => target.kill(sim, *node, Memory::Lost)?,
        (Fault::Reboot { node }, false) => target.kill(sim, *node, Memory::Kept)?,
        (Fault::Crash { node } | Fault::Reboot { node }, true) => {
            // A node restarted meanwhile (by another fault's end) stays up.
            if sim.node_state(target.node(*node).ok_or_else(|| no_node(*node))?).map_err(error)?
                == sim::NodeState::Killed
            {
                target.restart(sim, *node)?;
            }
        }
        (Fault::Pause { node: index }, false) => skip_if_killed(sim.pause(node(*index)?))?,
        (Fault::Pause { node: index }, true) => skip_if_killed(sim.resume(node(*index)?))?,
        (Fault::ClockSkew { node: index, offset_ms, drift_ppm }, false) => {
            let node = node(*index)?;
            sim.set_clock_offset(node, offset_ms.saturating_mul(1_000_000)).map_err(error)?;
            sim.set_clock_drift(node, *drift_ppm).map_err(error)?;
        }
        (Fault::ClockSkew { node: index, .. }, true) => reset_clock(sim, node(*index)?)?,
        _ => unreachable!("not a node fault"),
    }
    Ok(())
}

fn reset_clock(sim: &Sim, node: sim::NodeId) -> Result<(), String> {
    sim.set_clock_drift(node, 0).map_err(|e| e.to_string())?;
    sim.set_clock_offset(node, 0).map_err(|e| e.to_string())
}

fn skip_if_killed(result: Result<(), sim::SimError>) -> Result<(), String> {
    match result {
        Err(error) if matches!(error.kind(), sim::ErrorKind::NodeKilled { .. }) => Ok(()),
        other => other.map_err(|e| e.to_string()),
    }
}
