//! Applies a fault plan to a running cluster: each episode's fault at its start, its
//! undo at its end, and at the end of the fault phase a full heal.

use std::time::Duration;

use sim::Sim;
use sim::net::LinkConfig;
use sim::rand::Ratio;

use crate::cluster::DistCluster;
use crate::faults::{Fault, FaultPlan};
use crate::history::{History, MemoryLoss};

/// One timed step of a plan: apply or undo an episode's fault.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) at_ms: u64,
    pub(crate) fault: Fault,
    pub(crate) undo: bool,
}

/// The plan as timed steps, in time order (undo before apply on ties, so that a
/// fault ending when the next begins is healed first).
pub(crate) fn timeline(plan: &FaultPlan) -> Vec<Step> {
    let mut steps: Vec<Step> = plan
        .episodes
        .iter()
        .flat_map(|episode| {
            [
                Step { at_ms: episode.start_ms, fault: episode.fault.clone(), undo: false },
                Step { at_ms: episode.end_ms(), fault: episode.fault.clone(), undo: true },
            ]
        })
        .collect();
    steps.sort_by_key(|step| (step.at_ms, !step.undo));
    steps
}

/// The link settings the nemesis has changed, so that overlapping loss, duplication
/// and latency episodes compose and undo independently.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Nemesis {
    link: LinkConfig,
}

impl Nemesis {
    pub(crate) fn new() -> Nemesis {
        Nemesis { link: LinkConfig::DEFAULT }
    }

    /// Applies (or undoes) one step. Steps that no longer make sense (pausing a node
    /// that a crash killed meanwhile) are skipped.
    pub(crate) fn step(
        &mut self,
        sim: &Sim,
        cluster: &DistCluster,
        history: &mut History,
        step: &Step,
    ) -> Result<(), String> {
        let ids = cluster.ids();
        let sim_node =
            |index: usize| cluster.sim_node(&ids[index]).expect("plans name cluster nodes");
        let sim_nodes =
            |indices: &[usize]| indices.iter().map(|index| sim_node(*index)).collect::<Vec<_>>();
        let error = |e: sim::SimError| e.to_string();
        match (&step.fault, step.undo) {
            (Fault::Partition { side_a, side_b }, false) => {
                sim.partition(&sim_nodes(side_a), &sim_nodes(side_b)).map_err(error)?
            }
            (Fault::Partition { side_a, side_b }, true) => {
                for a in side_a {
                    for b in side_b {
                        sim.repair(sim_node(*a), sim_node(*b)).map_err(error)?;
                    }
                }
            }
            (Fault::PartitionOneway { from, to }, false) => {
                sim.partition_oneway(sim_node(*from), sim_node(*to)).map_err(error)?
            }
            (Fault::PartitionOneway { from, to }, true) => {
                sim.repair_oneway(sim_node(*from), sim_node(*to)).map_err(error)?
            }
            (Fault::Loss { ratio }, undo) => {
                self.link.loss = if undo { Ratio::NEVER } else { *ratio }
            }
            (Fault::Duplicate { ratio }, undo) => {
                self.link.duplicate = if undo { Ratio::NEVER } else { *ratio }
            }
            (Fault::LatencySpike { latency_ms_max }, undo) => {
                let max = if undo {
                    LinkConfig::DEFAULT.latency_max
                } else {
                    Duration::from_millis(*latency_ms_max)
                };
                self.link.latency_max = max;
            }
            (Fault::Crash { node }, false) => {
                cluster.kill(&ids[*node]).map_err(|e| e.to_string())?;
                history
                    .memory_losses
                    .push(MemoryLoss { node: ids[*node].clone(), at_ns: sim.now().as_nanos() });
            }
            (Fault::Crash { node }, true) => {
                cluster.restart(&ids[*node]).map_err(|e| e.to_string())?
            }
            (Fault::Pause { node }, false) => skip_if_killed(sim.pause(sim_node(*node)))?,
            (Fault::Pause { node }, true) => skip_if_killed(sim.resume(sim_node(*node)))?,
            (Fault::ClockSkew { node, offset_ms, drift_ppm }, false) => {
                sim.set_clock_offset(sim_node(*node), offset_ms * 1_000_000).map_err(error)?;
                sim.set_clock_drift(sim_node(*node), *drift_ppm).map_err(error)?;
            }
            (Fault::ClockSkew { node, .. }, true) => reset_clock(sim, sim_node(*node))?,
        }
        sim.set_link_config_default(self.link).map_err(error)
    }

    /// Undoes everything: heals the network, restores the links, resumes paused
    /// nodes, restarts killed ones and resets every clock.
    pub(crate) fn heal_all(&mut self, sim: &Sim, cluster: &DistCluster) -> Result<(), String> {
        sim.heal();
        self.link = LinkConfig::DEFAULT;
        sim.set_link_config_default(self.link).map_err(|e| e.to_string())?;
        for id in cluster.ids() {
            let node = cluster.sim_node(&id).expect("cluster nodes exist");
            match sim.node_state(node).map_err(|e| e.to_string())? {
                sim::NodeState::Paused => sim.resume(node).map_err(|e| e.to_string())?,
                sim::NodeState::Killed => cluster.restart(&id).map_err(|e| e.to_string())?,
                sim::NodeState::Running => {}
            }
            reset_clock(sim, node)?;
        }
        Ok(())
    }
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
