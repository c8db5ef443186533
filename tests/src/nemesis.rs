//! Applies a fault plan to a running cluster: each episode's fault at its start, its
//! undo at its end, and at the end of the fault phase a full heal.

use std::time::Duration;

use sim::Sim;
use sim::net::LinkConfig;

use crate::cluster::{CLUSTER_NODES_MAX, DistCluster};
use crate::faults::{Fault, FaultPlan, JOINS_PER_RUN_MAX, LinkTail};
use crate::history::{History, MemoryLoss};

/// One timed step of a plan: apply or undo an episode's fault, or (at 0 ms, first)
/// set the run's latency tail.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub(crate) at_ms: u64,
    pub(crate) action: Action,
}

/// What a step does.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// The run's latency tail, for the whole run.
    Tail(LinkTail),
    /// An episode's fault ends.
    Undo(Fault),
    /// An episode's fault starts.
    Apply(Fault),
}

impl Action {
    /// The order of steps at one instant: the tail, then undos, then applies.
    fn rank(&self) -> u8 {
        match self {
            Action::Tail(_) => 0,
            Action::Undo(_) => 1,
            Action::Apply(_) => 2,
        }
    }
}

/// The plan as timed steps, in time order (undo before apply on ties, so that a
/// fault ending when the next begins is healed first).
pub(crate) fn timeline(plan: &FaultPlan) -> Vec<Step> {
    let tail = plan.latency_tail.map(|tail| Step { at_ms: 0, action: Action::Tail(tail) });
    let mut steps: Vec<Step> = plan
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
pub(crate) struct Nemesis {
    link: LinkConfig,
    base: LinkConfig,
}

impl Nemesis {
    pub(crate) fn new() -> Nemesis {
        Nemesis { link: LinkConfig::DEFAULT, base: LinkConfig::DEFAULT }
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
        sim.in_context(|| match &step.action {
            Action::Tail(tail) => {
                tracing::info!(target: "cachesim::nemesis", %tail, "latency tail")
            }
            Action::Apply(fault) => tracing::info!(target: "cachesim::nemesis", %fault, "apply"),
            Action::Undo(fault) => tracing::info!(target: "cachesim::nemesis", %fault, "undo"),
        });
        match &step.action {
            Action::Tail(tail) => {
                self.base = tail.link();
                self.link.tail = self.base.tail;
            }
            Action::Apply(fault) => self.fault(sim, cluster, history, fault, false)?,
            Action::Undo(fault) => self.fault(sim, cluster, history, fault, true)?,
        }
        sim.set_link_config_default(self.link).map_err(|e| e.to_string())
    }

    fn fault(
        &mut self,
        sim: &Sim,
        cluster: &DistCluster,
        history: &mut History,
        fault: &Fault,
        undo: bool,
    ) -> Result<(), String> {
        let ids = cluster.ids();
        let sim_node =
            |index: usize| cluster.sim_node(&ids[index]).expect("plans name cluster nodes");
        let sim_nodes =
            |indices: &[usize]| indices.iter().map(|index| sim_node(*index)).collect::<Vec<_>>();
        let error = |e: sim::SimError| e.to_string();
        match (fault, undo) {
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
                self.link.loss = if undo { self.base.loss } else { *ratio }
            }
            (Fault::Duplicate { ratio }, undo) => {
                self.link.duplicate = if undo { self.base.duplicate } else { *ratio }
            }
            (Fault::LatencySpike { latency_ms_max }, undo) => {
                let max = if undo { self.base.latency_max } else { ms(*latency_ms_max) };
                self.link.latency_max = max;
            }
            (node_fault, undo) => node_step(sim, cluster, history, node_fault, undo)?,
        }
        Ok(())
    }

    /// Heals everything: network, paused and killed nodes, clocks. The latency tail
    /// stays: it lasts the whole run.
    pub(crate) fn heal_all(&mut self, sim: &Sim, cluster: &DistCluster) -> Result<(), String> {
        sim.in_context(|| tracing::info!(target: "cachesim::nemesis", "heal everything"));
        sim.heal();
        self.link = self.base;
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

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The faults that act on one node (or add one).
fn node_step(
    sim: &Sim,
    cluster: &DistCluster,
    history: &mut History,
    fault: &Fault,
    undo: bool,
) -> Result<(), String> {
    let ids = cluster.ids();
    let sim_node = |index: usize| cluster.sim_node(&ids[index]).expect("plans name cluster nodes");
    let error = |e: sim::SimError| e.to_string();
    let now_ns = sim.now().as_nanos();
    match (fault, undo) {
        (Fault::Crash { node }, false) => {
            cluster.kill(&ids[*node]).map_err(|e| e.to_string())?;
            history.memory_losses.push(MemoryLoss { node: ids[*node].clone(), at_ns: now_ns });
        }
        (Fault::Crash { node }, true) => cluster.restart(&ids[*node]).map_err(|e| e.to_string())?,
        (Fault::Pause { node }, false) => skip_if_killed(sim.pause(sim_node(*node)))?,
        (Fault::Pause { node }, true) => skip_if_killed(sim.resume(sim_node(*node)))?,
        (Fault::ClockSkew { node, offset_ms, drift_ppm }, false) => {
            sim.set_clock_offset(sim_node(*node), offset_ms * 1_000_000).map_err(error)?;
            sim.set_clock_drift(sim_node(*node), *drift_ppm).map_err(error)?;
        }
        (Fault::ClockSkew { node, .. }, true) => reset_clock(sim, sim_node(*node))?,
        (Fault::Join, false) => {
            // A plan file may ask for more joins than fit: the extra ones do nothing.
            if history.joins.len() < JOINS_PER_RUN_MAX && cluster.len() < CLUSTER_NODES_MAX {
                let id = cluster.join_node(sim).map_err(|e| e.to_string())?;
                history.joins.push((id, now_ns));
            }
        }
        (Fault::Join, true) => {}
        (Fault::Drain { node }, false) => {
            // A node killed meanwhile (a crash) has nothing to drain.
            if let Some(cache_node) = cluster.by_id(&ids[*node]) {
                cache_node.drain();
            }
        }
        (Fault::Drain { node }, true) => leave_and_rejoin(sim, cluster, history, &ids[*node])?,
        (network, _) => unreachable!("not a node fault: {network:?}"),
    }
    Ok(())
}

/// The end of a drain: the node leaves and rejoins empty (killed and restarted, its
/// memory lost). A node a crash holds down stays down: the crash restarts it.
fn leave_and_rejoin(
    sim: &Sim,
    cluster: &DistCluster,
    history: &mut History,
    id: &cache::NodeId,
) -> Result<(), String> {
    let node = cluster.sim_node(id).expect("plans name cluster nodes");
    if sim.node_state(node).map_err(|e| e.to_string())? == sim::NodeState::Killed {
        return Ok(());
    }
    cluster.kill(id).map_err(|e| e.to_string())?;
    history.memory_losses.push(MemoryLoss { node: id.clone(), at_ns: sim.now().as_nanos() });
    cluster.restart(id).map_err(|e| e.to_string())
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
