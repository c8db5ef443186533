//! What the harness's nemesis acts on in a cache run: the cache nodes (by index, in
//! the order they joined), their kills and restarts (a kill loses the node's memory,
//! which the history records), and the cache's own faults, joins and drains.

use sim::Sim;
use sim_harness::{Memory, Target};

use crate::cluster::CLUSTER_NODES_MAX;
use crate::faults::{CacheFault, JOINS_PER_RUN_MAX};
use crate::history::MemoryLoss;
use crate::run::CacheWorld;

impl CacheWorld {
    fn id(&self, index: usize) -> Result<cache::NodeId, String> {
        let ids = self.cluster.ids();
        ids.get(index).cloned().ok_or_else(|| {
            format!("the plan names n{}, but the cluster has {} nodes", index + 1, ids.len())
        })
    }

    /// Kills node `id`: a cache node keeps everything in memory, so it loses it all.
    fn kill_id(&self, sim: &Sim, id: &cache::NodeId) -> Result<(), String> {
        self.cluster.kill(id).map_err(|e| e.to_string())?;
        let loss = MemoryLoss { node: id.clone(), at_ns: sim.now().as_nanos() };
        self.history.borrow_mut().memory_losses.push(loss);
        Ok(())
    }

    /// The end of a drain: the node leaves and rejoins empty (killed and restarted,
    /// its memory lost). A node a crash holds down stays down: the crash restarts it.
    fn leave_and_rejoin(&self, sim: &Sim, id: &cache::NodeId) -> Result<(), String> {
        let node = self.cluster.sim_node(id).ok_or("a drained node is a cluster node")?;
        if sim.node_state(node).map_err(|e| e.to_string())? == sim::NodeState::Killed {
            return Ok(());
        }
        self.kill_id(sim, id)?;
        self.cluster.restart(id).map_err(|e| e.to_string())
    }
}

impl Target<CacheFault> for CacheWorld {
    fn node_count(&self) -> usize {
        self.cluster.ids().len()
    }

    fn node(&self, index: usize) -> Option<sim::NodeId> {
        self.cluster.sim_node(self.cluster.ids().get(index)?)
    }

    fn kill(&mut self, sim: &Sim, index: usize, _memory: Memory) -> Result<(), String> {
        self.kill_id(sim, &self.id(index)?)
    }

    fn restart(&mut self, _sim: &Sim, index: usize) -> Result<(), String> {
        self.cluster.restart(&self.id(index)?).map_err(|e| e.to_string())
    }

    fn apply(&mut self, sim: &Sim, fault: &CacheFault, undo: bool) -> Result<(), String> {
        match (fault, undo) {
            (CacheFault::Join, false) => {
                // A plan file may ask for more joins than fit: the extra ones do nothing.
                let joined = self.history.borrow().joins.len();
                if joined < JOINS_PER_RUN_MAX && self.cluster.len() < CLUSTER_NODES_MAX {
                    let id = self.cluster.join_node(sim).map_err(|e| e.to_string())?;
                    self.history.borrow_mut().joins.push((id, sim.now().as_nanos()));
                }
            }
            (CacheFault::Join, true) => {}
            (CacheFault::Drain { node }, false) => {
                // A node killed meanwhile (a crash) has nothing to drain.
                if let Some(cache_node) = self.cluster.by_id(&self.id(*node)?) {
                    cache_node.drain();
                }
            }
            (CacheFault::Drain { node }, true) => self.leave_and_rejoin(sim, &self.id(*node)?)?,
        }
        Ok(())
    }
}
