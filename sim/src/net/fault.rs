//! Network faults and settings, as methods on [`Handle`]: partitions, clogs, link
//! configs, message rules, ports, and the counters.
//!
//! Every fault takes effect at once, for messages sent from now on and for messages
//! already in flight, which are checked again when they arrive. Each fault is mixed
//! into the fingerprint and traced at debug level under `sim::net`.

use crate::error::{ErrorKind, SimError};
use crate::fingerprint::{EventKind, tag};
use crate::net::address::Addr;
use crate::net::error::NetError;
use crate::net::link::{LinkConfig, LinkModel};
use crate::net::network::Network;
use crate::net::rule::{self, MessageMeta, RuleGuard, Verdict};
use crate::net::stats::NetStats;
use crate::node::{NodeId, node_id_from_index};
use crate::rand::fnv1a;
use crate::sim::Handle;
use crate::world::Shared;

impl Shared {
    fn net_error(&self, kind: ErrorKind) -> SimError {
        SimError::new(self.world.borrow().seed(), self.now_ns.get(), kind)
    }

    /// Checks that both nodes exist and differ.
    fn check_link(&self, from: NodeId, to: NodeId) -> Result<(), SimError> {
        self.check_node(from, None)?;
        self.check_node(to, None)?;
        if from == to {
            return Err(self.net_error(ErrorKind::PartitionSelf { node: from }));
        }
        Ok(())
    }

    /// Applies one fault to the network and records it.
    fn net_fault(
        &self,
        action: &'static str,
        nodes: (NodeId, NodeId),
        apply: impl FnOnce(&mut Network, u64),
    ) {
        let now_ns = self.now_ns.get();
        let mut world = self.world.borrow_mut();
        apply(&mut world.net, now_ns);
        let value =
            fnv1a(action.as_bytes()) ^ (u64::from(nodes.0.raw()) << 32 | u64::from(nodes.1.raw()));
        world
            .fingerprint
            .record(now_ns, NodeId::MAIN, tag::NET_FAULT, value, || EventKind::NetFault { action });
        drop(world);
        tracing::debug!(target: "sim::net", from = %self.node_name(nodes.0), to = %self.node_name(nodes.1), "{action}");
    }

    fn node_count(&self) -> usize {
        self.world.borrow().nodes.len()
    }
}

/// Sets whether the link from `from` to `to` is cut.
fn set_blocked(net: &mut Network, from: NodeId, to: NodeId, blocked: bool) {
    assert_ne!(from, to, "a node always reaches itself");
    net.link_mut(from, to).blocked = blocked;
}

impl Handle {
    /// Reserves a free port in `node`'s ephemeral range and returns its address: the
    /// race-free counterpart of picking a free loopback port before starting a server.
    /// The port is never handed out again until it is released: bound once and that
    /// endpoint dropped, [`Handle::release_port`], or its node killed.
    ///
    /// # Errors
    ///
    /// For an unknown or killed node, or when the ephemeral range is full.
    pub fn allocate_port(&self, node: NodeId) -> Result<Addr, NetError> {
        let addr = self.shared.net_reserve(node)?;
        tracing::trace!(target: "sim::net", %addr, "reserve");
        Ok(addr)
    }

    /// Releases a reservation of [`Handle::allocate_port`] that was never bound.
    /// Returns whether `addr` was reserved.
    ///
    /// # Errors
    ///
    /// For an unknown node.
    pub fn release_port(&self, addr: Addr) -> Result<bool, NetError> {
        let mut world = self.shared.world.borrow_mut();
        let count = world.nodes.len();
        if addr.node().index() >= count {
            return Err(NetError::UnknownNode { node: addr.node(), count });
        }
        Ok(world.net.node_ports(addr.node()).release(addr.port()))
    }

    /// Cuts every link between a node of `side_a` and a node of `side_b`, both ways.
    /// Messages in flight across the cut are dropped when they arrive.
    ///
    /// # Errors
    ///
    /// For an unknown node, or a node on both sides.
    pub fn partition(&self, side_a: &[NodeId], side_b: &[NodeId]) -> Result<(), SimError> {
        for &node in side_a.iter().chain(side_b) {
            self.shared.check_node(node, None)?;
        }
        for &a in side_a {
            for &b in side_b {
                self.shared.check_link(a, b)?;
            }
        }
        let first = (side_a.first().copied(), side_b.first().copied());
        let nodes = (first.0.unwrap_or(NodeId::MAIN), first.1.unwrap_or(NodeId::MAIN));
        self.shared.net_fault("partition", nodes, |net, _| {
            for &a in side_a {
                for &b in side_b {
                    set_blocked(net, a, b, true);
                    set_blocked(net, b, a, true);
                }
            }
        });
        Ok(())
    }

    /// Cuts the link from `from` to `to` only: `to` still reaches `from`.
    ///
    /// # Errors
    ///
    /// For an unknown node, or `from == to`.
    pub fn partition_oneway(&self, from: NodeId, to: NodeId) -> Result<(), SimError> {
        self.shared.check_link(from, to)?;
        self.shared.net_fault("partition one way", (from, to), |net, _| {
            set_blocked(net, from, to, true);
        });
        Ok(())
    }

    /// Cuts `node` off from every other node that exists now (the main node too),
    /// both ways.
    ///
    /// # Errors
    ///
    /// For an unknown node.
    pub fn isolate(&self, node: NodeId) -> Result<(), SimError> {
        self.shared.check_node(node, None)?;
        let count = self.shared.node_count();
        self.shared.net_fault("isolate", (node, node), |net, _| {
            for other in (0..count).map(node_id_from_index).filter(|other| *other != node) {
                set_blocked(net, node, other, true);
                set_blocked(net, other, node, true);
            }
        });
        Ok(())
    }

    /// Undoes [`Handle::isolate`]: every link to and from `node` carries messages
    /// again. Partitions between other nodes, and clogs, stay.
    ///
    /// # Errors
    ///
    /// For an unknown node.
    pub fn rejoin(&self, node: NodeId) -> Result<(), SimError> {
        self.shared.check_node(node, None)?;
        let count = self.shared.node_count();
        self.shared.net_fault("rejoin", (node, node), |net, _| {
            for other in (0..count).map(node_id_from_index).filter(|other| *other != node) {
                set_blocked(net, node, other, false);
                set_blocked(net, other, node, false);
            }
        });
        Ok(())
    }

    /// Restores both links between `a` and `b` (it does not unclog them).
    ///
    /// # Errors
    ///
    /// For an unknown node, or `a == b`.
    pub fn repair(&self, a: NodeId, b: NodeId) -> Result<(), SimError> {
        self.shared.check_link(a, b)?;
        self.shared.net_fault("repair", (a, b), |net, _| {
            set_blocked(net, a, b, false);
            set_blocked(net, b, a, false);
        });
        Ok(())
    }

    /// Restores the link from `from` to `to`.
    ///
    /// # Errors
    ///
    /// For an unknown node, or `from == to`.
    pub fn repair_oneway(&self, from: NodeId, to: NodeId) -> Result<(), SimError> {
        self.shared.check_link(from, to)?;
        self.shared.net_fault("repair one way", (from, to), |net, _| {
            set_blocked(net, from, to, false);
        });
        Ok(())
    }

    /// Ends every partition and every clog: the network is whole again. Messages
    /// held by clogs are delivered now, in order. Link configs and rules stay.
    pub fn heal(&self) {
        self.shared.net_fault("heal", (NodeId::MAIN, NodeId::MAIN), |net, now_ns| {
            let mut clogged = Vec::new();
            for (index, link) in net.links_mut().enumerate() {
                link.blocked = false;
                if link.clogged {
                    link.clogged = false;
                    clogged.push(index);
                }
            }
            for index in clogged {
                net.release_held(index, now_ns);
            }
        });
    }

    /// Clogs the link from `from` to `to`: messages on it, in flight or sent later,
    /// wait until [`Handle::unclog`] (or [`Handle::heal`]) and are then delivered at
    /// once, in the order they were held.
    ///
    /// # Errors
    ///
    /// For an unknown node, or `from == to`.
    pub fn clog(&self, from: NodeId, to: NodeId) -> Result<(), SimError> {
        self.shared.check_link(from, to)?;
        self.shared.net_fault("clog", (from, to), |net, _| net.link_mut(from, to).clogged = true);
        Ok(())
    }

    /// Unclogs the link from `from` to `to`; what it held is delivered now, in order.
    ///
    /// # Errors
    ///
    /// For an unknown node, or `from == to`.
    pub fn unclog(&self, from: NodeId, to: NodeId) -> Result<(), SimError> {
        self.shared.check_link(from, to)?;
        self.shared.net_fault("unclog", (from, to), |net, now_ns| {
            let index = net.link_for(from, to);
            net.link_mut(from, to).clogged = false;
            net.release_held(index, now_ns);
        });
        Ok(())
    }

    /// Sets the config of every link without one of its own.
    ///
    /// # Errors
    ///
    /// For an invalid config (a minimum above its maximum).
    pub fn set_link_config_default(&self, config: LinkConfig) -> Result<(), SimError> {
        let model = self.link_model(config)?;
        let nodes = (NodeId::MAIN, NodeId::MAIN);
        self.shared.net_fault("set default link config", nodes, |net, _| {
            net.set_model_default(model);
        });
        Ok(())
    }

    /// Gives the link from `from` to `to` its own config (a node's link to itself
    /// included), for messages sent from now on.
    ///
    /// # Errors
    ///
    /// For an unknown node or an invalid config.
    pub fn set_link_config(
        &self,
        from: NodeId,
        to: NodeId,
        config: LinkConfig,
    ) -> Result<(), SimError> {
        self.shared.check_node(from, None)?;
        self.shared.check_node(to, None)?;
        let model = self.link_model(config)?;
        self.shared.net_fault("set link config", (from, to), |net, _| {
            net.link_mut(from, to).model = Some(model);
        });
        Ok(())
    }

    /// Puts the link from `from` to `to` back on the default config.
    ///
    /// # Errors
    ///
    /// For an unknown node.
    pub fn reset_link_config(&self, from: NodeId, to: NodeId) -> Result<(), SimError> {
        self.shared.check_node(from, None)?;
        self.shared.check_node(to, None)?;
        self.shared.net_fault("reset link config", (from, to), |net, _| {
            net.link_mut(from, to).model = None;
        });
        Ok(())
    }

    /// The config the link from `from` to `to` uses now.
    ///
    /// # Errors
    ///
    /// For an unknown node.
    pub fn link_config(&self, from: NodeId, to: NodeId) -> Result<LinkConfig, SimError> {
        self.shared.check_node(from, None)?;
        self.shared.check_node(to, None)?;
        let mut world = self.shared.world.borrow_mut();
        let default = world.net.model_default();
        Ok(world.net.link_mut(from, to).model.unwrap_or(default).config)
    }

    fn link_model(&self, config: LinkConfig) -> Result<LinkModel, SimError> {
        match config.problem() {
            Some(problem) => Err(self.shared.net_error(ErrorKind::InvalidLinkConfig { problem })),
            None => Ok(LinkModel::new(config)),
        }
    }

    /// Installs a message rule, consulted on every send after the rules installed
    /// before it; the first verdict other than [`Verdict::Deliver`] wins. The rule is
    /// removed when the guard drops.
    ///
    /// ```
    /// use sim::net::{Endpoint, Verdict};
    ///
    /// let mut sim = sim::Sim::new(1);
    /// // Drop the second message that the main node sends to itself.
    /// let _rule = sim.add_rule(|meta| {
    ///     if meta.link_seq() == 2 { Verdict::Drop } else { Verdict::Deliver }
    /// });
    /// let got = sim
    ///     .block_on(async {
    ///         let endpoint = Endpoint::<u32>::bind(0).unwrap();
    ///         for n in 1..=3 {
    ///             endpoint.send_to(endpoint.local_addr(), n).unwrap();
    ///         }
    ///         let a = endpoint.recv().await.unwrap().1;
    ///         let b = endpoint.recv().await.unwrap().1;
    ///         let mut got = [a, b];
    ///         got.sort();
    ///         got
    ///     })
    ///     .unwrap();
    /// assert_eq!(got, [1, 3]);
    /// assert_eq!(sim.net_stats().total.dropped.rule, 1);
    /// ```
    ///
    /// # Panics
    ///
    /// When [`crate::net::RULES_MAX`] rules are installed already.
    pub fn add_rule<F>(&self, rule: F) -> RuleGuard
    where
        F: FnMut(&MessageMeta<'_>) -> Verdict + 'static,
    {
        let rules = std::rc::Rc::clone(&self.shared.world.borrow().net.rules);
        rule::install(&rules, rule)
    }

    /// A snapshot of the network's counters, per link and in total.
    pub fn net_stats(&self) -> NetStats {
        self.shared.net_stats()
    }
}
