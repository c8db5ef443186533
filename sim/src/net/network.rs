//! The network's state inside the world, and the send and delivery paths.
//!
//! A send stamps the message with its link and sequence number, asks the rules (outside
//! the world's borrow), then decides from the network's own stream whether it is lost,
//! duplicated and how late it arrives. A delivery is a virtual-time event: the executor
//! jumps to the earliest delivery or timer, and `deliver_due` hands every message due
//! then to its destination's mailbox, checking again that the destination is alive and
//! reachable.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::rc::Rc;
use std::task::Waker;

use crate::fingerprint::{self, EventKind, Fingerprint, tag};
use crate::net::address::Addr;
use crate::net::error::NetError;
use crate::net::link::{HELD_PER_LINK_MAX, Link, LinkConfig, LinkModel};
use crate::net::ports::NodePorts;
use crate::net::queue::DeliveryQueue;
use crate::net::rule::{self, MessageMeta, Rules, Verdict};
use crate::net::socket::Mailbox;
use crate::net::stats::{DropCause, NetStats};
use crate::node::{Node, NodeId, NodeState};
use crate::rand::{RngExt, STREAM_NETWORK, SimRng};
use crate::time::duration_nanos;
use crate::world::Shared;

/// Messages in flight at once, over the whole network; past this, sends are dropped
/// as congestion. A run that reaches it is almost surely a sender without
/// backpressure.
pub const IN_FLIGHT_MAX: usize = 1 << 20;

/// What the network knows about one message (or one copy of it), apart from its
/// payload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head {
    pub(crate) from: Addr,
    pub(crate) to: Addr,
    /// Unique per copy, in send order: names the message in events and traces.
    id: u64,
    link: u32,
    link_seq: u64,
    /// The destination node's restart count at send time: a message never reaches a
    /// later incarnation of the node it was sent to.
    incarnation: u64,
    /// Tell the sender's mailbox if nothing is bound at `to` (a refused connection).
    refusal_tag: Option<u64>,
    /// The payload's digest, taken once at send time (copies share it): the
    /// fingerprint sees what a message says, not only that it was sent.
    digest: u64,
}

/// One message (or one copy of it).
pub(crate) struct Envelope {
    head: Head,
    payload: Box<dyn Any>,
    clone_payload: fn(&dyn Any) -> Box<dyn Any>,
    type_name: fn() -> &'static str,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("head", &self.head)
            .field("type", &(self.type_name)())
            .finish_non_exhaustive()
    }
}

fn clone_payload<T: Clone + 'static>(payload: &dyn Any) -> Box<dyn Any> {
    let payload =
        payload.downcast_ref::<T>().expect("an envelope's clone function matches its payload");
    Box::new(payload.clone())
}

impl Envelope {
    /// Wraps `message`, taking its digest. Runs the payload's `Hash`, which is user
    /// code: never call it under the world's borrow.
    pub(crate) fn new<T: Clone + Hash + 'static>(
        from: Addr,
        to: Addr,
        message: T,
        refusal_tag: Option<u64>,
    ) -> Envelope {
        let digest = fingerprint::digest(&message);
        let head = Head {
            from,
            to,
            id: 0,
            link: u32::MAX,
            link_seq: 0,
            incarnation: 0,
            refusal_tag,
            digest,
        };
        Envelope {
            head,
            payload: Box::new(message),
            clone_payload: clone_payload::<T>,
            type_name: std::any::type_name::<T>,
        }
    }

    #[cfg(test)]
    pub(crate) fn payload(&self) -> &dyn Any {
        &*self.payload
    }

    fn meta(&self) -> MessageMeta<'_> {
        MessageMeta {
            from: self.head.from,
            to: self.head.to,
            link_seq: self.head.link_seq,
            type_name: (self.type_name)(),
            payload: &*self.payload,
        }
    }

    /// A second copy (a fresh id is stamped when it is scheduled). Runs the payload's
    /// `Clone`, which is user code: never call it under the world's borrow.
    fn copy(&self) -> Envelope {
        Envelope {
            head: self.head,
            payload: (self.clone_payload)(&*self.payload),
            clone_payload: self.clone_payload,
            type_name: self.type_name,
        }
    }
}

/// What the link model decided for one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Drop(DropCause),
    Send { deliver_ns: u64 },
    SendTwice { deliver_ns: [u64; 2] },
}

/// The network's part of the world.
/// No link yet between two nodes, in `Network::link_index`.
const NO_LINK: u32 = u32::MAX;

pub(crate) struct Network {
    rng: SimRng,
    model_default: LinkModel,
    links: Vec<Link>,
    /// Per sending node, per receiving node: the link's index in `links` (`NO_LINK`
    /// until the first message): a dense table, two indexings per send.
    link_index: Vec<Vec<u32>>,
    /// Port tables, by node index, grown on first use.
    ports: Vec<NodePorts>,
    in_flight: DeliveryQueue,
    message_id_next: u64,
    binding_next: u64,
    pub(crate) rules: Rules,
    /// Payloads dropped during a delivery, released after the world's borrow ends
    /// (their destructors are user code).
    dropped: Vec<Box<dyn Any>>,
    /// Messages in flight or held when the simulation was dropped.
    discarded: u64,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("links", &self.links.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Network {
    pub(crate) fn new(seed: u64) -> Network {
        Network {
            rng: SimRng::new(seed, STREAM_NETWORK),
            model_default: LinkModel::new(LinkConfig::DEFAULT),
            links: Vec::new(),
            link_index: Vec::new(),
            ports: Vec::new(),
            in_flight: DeliveryQueue::default(),
            message_id_next: 0,
            binding_next: 0,
            rules: Rules::default(),
            dropped: Vec::new(),
            discarded: 0,
        }
    }

    /// The index of the link from `from` to `to`, created on first use.
    fn link_index_of(&self, from: NodeId, to: NodeId) -> Option<usize> {
        let index = *self.link_index.get(from.index())?.get(to.index())?;
        (index != NO_LINK).then_some(index as usize)
    }

    pub(crate) fn link_for(&mut self, from: NodeId, to: NodeId) -> usize {
        if let Some(index) = self.link_index_of(from, to) {
            return index;
        }
        let index = u32::try_from(self.links.len()).expect("fewer than 2^32 links");
        assert!(index != NO_LINK);
        self.links.push(Link::new(from, to));
        if self.link_index.len() <= from.index() {
            self.link_index.resize_with(from.index() + 1, Vec::new);
        }
        let row = &mut self.link_index[from.index()];
        if row.len() <= to.index() {
            row.resize(to.index() + 1, NO_LINK);
        }
        row[to.index()] = index;
        index as usize
    }

    pub(crate) fn link_mut(&mut self, from: NodeId, to: NodeId) -> &mut Link {
        let index = self.link_for(from, to);
        &mut self.links[index]
    }

    pub(crate) fn links_mut(&mut self) -> impl Iterator<Item = &mut Link> {
        self.links.iter_mut()
    }

    fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.link_index_of(from, to).is_some_and(|index| self.links[index].blocked)
    }

    pub(crate) fn model_default(&self) -> LinkModel {
        self.model_default
    }

    pub(crate) fn set_model_default(&mut self, model: LinkModel) {
        self.model_default = model;
    }

    pub(crate) fn node_ports(&mut self, node: NodeId) -> &mut NodePorts {
        let index = node.index();
        if self.ports.len() <= index {
            let start = self.ports.len();
            self.ports.extend(
                (start..=index).map(|i| NodePorts::new(crate::node::node_id_from_index(i))),
            );
        }
        &mut self.ports[index]
    }

    pub(crate) fn next_binding(&mut self) -> u64 {
        self.binding_next += 1;
        self.binding_next
    }

    /// The earliest scheduled delivery.
    pub(crate) fn next_delivery_ns(&self) -> Option<u64> {
        self.in_flight.next_ns()
    }

    pub(crate) fn take_dropped(&mut self) -> Vec<Box<dyn Any>> {
        std::mem::take(&mut self.dropped)
    }

    /// Gives back the (emptied) buffer of [`Network::take_dropped`], keeping its
    /// capacity for the next delivery.
    pub(crate) fn restore_dropped(&mut self, buffer: Vec<Box<dyn Any>>) {
        assert!(buffer.is_empty(), "dropped payloads are released before the buffer returns");
        if self.dropped.is_empty() {
            self.dropped = buffer;
        }
    }

    /// Every port of `node` is freed; returns the mailboxes to close.
    pub(crate) fn node_killed(&mut self, node: NodeId) -> Vec<Rc<dyn Mailbox>> {
        match self.ports.get_mut(node.index()) {
            Some(ports) => ports.clear(),
            None => Vec::new(),
        }
    }

    /// Everything the network holds, for a simulation being dropped: released outside
    /// the borrow, with the simulation still current.
    pub(crate) fn clear(&mut self) -> (Vec<Envelope>, Vec<Rc<dyn Mailbox>>) {
        let mut envelopes = self.in_flight.drain();
        for link in &mut self.links {
            envelopes.extend(link.held.drain(..));
        }
        let mailboxes = self.ports.iter_mut().flat_map(NodePorts::clear).collect();
        self.discarded += envelopes.len() as u64;
        (envelopes, mailboxes)
    }

    /// Numbers a send on its link.
    fn stamp(&mut self, envelope: &mut Envelope, nodes: &[Node]) {
        let head = &mut envelope.head;
        let to = head.to;
        let Some(destination) = nodes.get(to.node().index()) else {
            panic!("send to {to}: no such node in this simulation (an address from another run?)")
        };
        head.incarnation = destination.restarts;
        head.id = self.message_id_next;
        self.message_id_next += 1;
        let index = self.link_for(head.from.node(), to.node());
        let link = &mut self.links[index];
        link.seq_last += 1;
        link.stats.sent += 1;
        head.link = u32::try_from(index).expect("fewer than 2^32 links");
        head.link_seq = link.seq_last;
        assert!(head.link_seq > 0);
    }

    /// Draws the fate of one send from the network's stream.
    fn decide(&mut self, now_ns: u64, head: &Head, verdict: Verdict) -> Decision {
        let Network { links, rng, model_default, in_flight, .. } = self;
        let link = &links[head.link as usize];
        if link.blocked {
            return Decision::Drop(DropCause::Partition);
        }
        let extra_ns = match verdict {
            Verdict::Drop => return Decision::Drop(DropCause::Rule),
            Verdict::Delay(delay) => duration_nanos(delay),
            Verdict::Deliver | Verdict::Duplicate => 0,
        };
        if in_flight.len() >= IN_FLIGHT_MAX {
            return Decision::Drop(DropCause::Congestion);
        }
        let model = link.model.as_ref().unwrap_or(model_default);
        if rng.chance(model.loss()) {
            return Decision::Drop(DropCause::Loss);
        }
        let twice = verdict == Verdict::Duplicate || rng.chance(model.duplicate());
        let first_ns = now_ns.saturating_add(model.latency_ns(rng)).saturating_add(extra_ns);
        if !twice {
            return Decision::Send { deliver_ns: first_ns };
        }
        let second_ns = now_ns.saturating_add(model.latency_ns(rng)).saturating_add(extra_ns);
        Decision::SendTwice { deliver_ns: [first_ns, second_ns] }
    }

    /// Puts a decided message in flight, or in its link's hold when the link is
    /// clogged. Returns the payload when it is dropped instead.
    fn schedule(
        &mut self,
        envelope: Envelope,
        deliver_ns: u64,
        now_ns: u64,
        fingerprint: &mut Fingerprint,
    ) -> Option<Box<dyn Any>> {
        assert!(deliver_ns >= now_ns);
        let Head { id: message, from, to, link_seq, digest, .. } = envelope.head;
        let value = event_value(message, deliver_ns) ^ digest;
        let type_name = envelope.type_name;
        fingerprint.record(now_ns, from.node(), tag::NET_SEND, value, || EventKind::NetSend {
            message,
            from,
            to,
            deliver_ns,
            type_name: type_name(),
            digest,
        });
        let latency_ns = deliver_ns - now_ns;
        tracing::trace!(target: "sim::net", id = message, %from, %to, link_seq, latency_ns, "send");
        if self.links[envelope.head.link as usize].clogged {
            return self.hold(envelope, now_ns, fingerprint);
        }
        self.in_flight.push(envelope, deliver_ns);
        None
    }

    /// Holds a message on its clogged link.
    fn hold(
        &mut self,
        envelope: Envelope,
        now_ns: u64,
        fingerprint: &mut Fingerprint,
    ) -> Option<Box<dyn Any>> {
        let head = envelope.head;
        let link = &mut self.links[head.link as usize];
        assert!(link.clogged);
        if link.held.len() >= HELD_PER_LINK_MAX {
            self.count_drop(&head, DropCause::Congestion, now_ns, fingerprint);
            return Some(envelope.payload);
        }
        link.stats.held += 1;
        link.held.push_back(envelope);
        let Head { id: message, from, to, .. } = head;
        fingerprint.record(now_ns, to.node(), tag::NET_HOLD, message, || EventKind::NetHold {
            message,
            from,
            to,
        });
        tracing::trace!(target: "sim::net", id = message, %from, %to, "hold");
        None
    }

    /// Counts and records a drop. The caller releases the payload outside the world's
    /// borrow.
    fn count_drop(
        &mut self,
        head: &Head,
        cause: DropCause,
        now_ns: u64,
        fingerprint: &mut Fingerprint,
    ) {
        let Head { id: message, from, to, digest, .. } = *head;
        self.links[head.link as usize].stats.dropped.count(cause);
        let value = event_value(message, cause as u64) ^ digest;
        fingerprint.record(now_ns, to.node(), tag::NET_DROP, value, || EventKind::NetDrop {
            message,
            from,
            to,
            cause,
            digest,
        });
        if cause == DropCause::WrongType {
            // A bug in the system under test, not a fault: a receiver bound for another
            // message type. Said at warn level, so that a default trace shows it.
            tracing::warn!(target: "sim::net", id = message, %from, %to, "dropped: the receiver at this address expects another message type");
        } else {
            tracing::trace!(target: "sim::net", id = message, %from, %to, cause = cause.name(), "drop");
        }
    }

    /// Moves the messages held on link `index` back in flight, due now, in the order
    /// they were held.
    pub(crate) fn release_held(&mut self, index: usize, now_ns: u64) {
        let held = std::mem::take(&mut self.links[index].held);
        for envelope in held {
            assert_eq!(envelope.head.link as usize, index);
            self.in_flight.push(envelope, now_ns);
        }
        assert!(self.links[index].held.is_empty());
    }

    /// Delivers every message due at or before `now_ns`, in (time, send) order, and
    /// pushes the wakers of the receivers into `wakers`.
    pub(crate) fn deliver_due(
        &mut self,
        now_ns: u64,
        nodes: &[Node],
        fingerprint: &mut Fingerprint,
        wakers: &mut Vec<Waker>,
    ) {
        while let Some(envelope) = self.in_flight.pop_due(now_ns) {
            if let Some(payload) = self.deliver(envelope, now_ns, nodes, fingerprint, wakers) {
                self.dropped.push(payload);
            }
        }
    }

    /// Hands one due message to its mailbox, unless its node went down, its link was
    /// cut or clogged meanwhile, or nothing is bound at its port. Returns the payload
    /// of a dropped message.
    fn deliver(
        &mut self,
        envelope: Envelope,
        now_ns: u64,
        nodes: &[Node],
        fingerprint: &mut Fingerprint,
        wakers: &mut Vec<Waker>,
    ) -> Option<Box<dyn Any>> {
        let head = envelope.head;
        let node = &nodes[head.to.node().index()];
        let link = &self.links[head.link as usize];
        let cause = if node.state == NodeState::Killed || node.restarts != head.incarnation {
            DropCause::NodeDown
        } else if link.blocked {
            DropCause::Partition
        } else if link.clogged {
            return self.hold(envelope, now_ns, fingerprint);
        } else {
            let ports = self.ports.get(head.to.node().index());
            match ports.and_then(|ports| ports.mailbox(head.to.port())) {
                Some(mailbox) => match mailbox.deliver(head.from, envelope.payload, wakers) {
                    Ok(()) => {
                        self.count_delivery(&head, now_ns, fingerprint);
                        return None;
                    }
                    Err((cause, payload)) => {
                        self.count_drop(&head, cause, now_ns, fingerprint);
                        return Some(payload);
                    }
                },
                None => {
                    self.refuse(&head, wakers);
                    DropCause::NoEndpoint
                }
            }
        };
        self.count_drop(&head, cause, now_ns, fingerprint);
        Some(envelope.payload)
    }

    fn count_delivery(&mut self, head: &Head, now_ns: u64, fingerprint: &mut Fingerprint) {
        let Head { id: message, from, to, .. } = *head;
        self.links[head.link as usize].stats.delivered += 1;
        fingerprint.record(now_ns, to.node(), tag::NET_DELIVER, message, || {
            EventKind::NetDeliver { message, from, to }
        });
        tracing::trace!(target: "sim::net", id = message, %from, %to, "deliver");
    }

    /// Tells the sender that nothing is bound at the destination, if it asked to know
    /// and the way back is open. The refusal arrives at once, like a reset.
    fn refuse(&self, head: &Head, wakers: &mut Vec<Waker>) {
        let Some(tag) = head.refusal_tag else { return };
        let (from, to) = (head.from, head.to);
        if self.is_blocked(to.node(), from.node()) {
            return;
        }
        let ports = self.ports.get(from.node().index());
        if let Some(mailbox) = ports.and_then(|ports| ports.mailbox(from.port())) {
            mailbox.refuse(tag, to, wakers);
        }
    }

    /// The counters, summed.
    pub(crate) fn stats(&self) -> NetStats {
        let mut stats = NetStats::default();
        for link in &self.links {
            stats.total.add(&link.stats);
            stats.held_now += link.held.len() as u64;
            stats.links.insert((link.from, link.to), link.stats);
        }
        stats.in_flight = self.in_flight.len() as u64;
        let total = &stats.total;
        assert_eq!(
            total.sent + total.duplicated,
            total.delivered
                + total.dropped.total()
                + stats.in_flight
                + stats.held_now
                + self.discarded,
            "every message is delivered, dropped, in flight or held"
        );
        stats
    }
}

/// Two numbers folded into one fingerprint value.
fn event_value(a: u64, b: u64) -> u64 {
    a.rotate_left(29) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Shared {
    /// Binds `port` on `node` to `mailbox`; returns the address and the binding id.
    pub(crate) fn net_bind(
        &self,
        node: NodeId,
        port: u16,
        mailbox: Rc<dyn Mailbox>,
    ) -> Result<(Addr, u64), NetError> {
        let mut world = self.world.borrow_mut();
        if world.nodes[node.index()].state == NodeState::Killed {
            return Err(NetError::NodeKilled { node });
        }
        let binding = world.net.next_binding();
        let addr = world.net.node_ports(node).bind(port, binding, mailbox)?;
        drop(world);
        tracing::trace!(target: "sim::net", %addr, "bind");
        Ok((addr, binding))
    }

    /// Frees `addr` if `binding` still holds it. Tolerates a world that is borrowed
    /// (a socket dropped inside a payload's destructor): the port then stays taken
    /// until its node is killed.
    pub(crate) fn net_unbind(&self, addr: Addr, binding: u64) {
        let Ok(mut world) = self.world.try_borrow_mut() else { return };
        let mailbox = world.net.node_ports(addr.node()).unbind(addr.port(), binding);
        drop(world);
        drop(mailbox);
    }

    /// Reserves an ephemeral port on `node`.
    pub(crate) fn net_reserve(&self, node: NodeId) -> Result<Addr, NetError> {
        let mut world = self.world.borrow_mut();
        let count = world.nodes.len();
        let Some(state) = world.nodes.get(node.index()).map(|node| node.state) else {
            return Err(NetError::UnknownNode { node, count });
        };
        if state == NodeState::Killed {
            return Err(NetError::NodeKilled { node });
        }
        world.net.node_ports(node).reserve()
    }

    /// Sends one message: stamp, rules, decision, schedule.
    pub(crate) fn net_send(&self, mut envelope: Envelope) {
        let now_ns = self.now_ns.get();
        let mut world = self.world.borrow_mut();
        let state = &mut *world;
        state.net.stamp(&mut envelope, &state.nodes);
        let mut verdict = Verdict::Deliver;
        if !rule::is_empty(&state.net.rules) {
            let rules = Rc::clone(&state.net.rules);
            drop(world);
            // Rules are user code: they run with nothing borrowed.
            verdict = rule::evaluate(&rules, &envelope.meta());
            world = self.world.borrow_mut();
        }
        let state = &mut *world;
        let released = match state.net.decide(now_ns, &envelope.head, verdict) {
            Decision::Drop(cause) => {
                state.net.count_drop(&envelope.head, cause, now_ns, &mut state.fingerprint);
                Some(envelope.payload)
            }
            Decision::Send { deliver_ns } => {
                state.net.schedule(envelope, deliver_ns, now_ns, &mut state.fingerprint)
            }
            Decision::SendTwice { deliver_ns } => {
                drop(world);
                // Cloning the payload is user code too.
                let copy = envelope.copy();
                self.net_schedule_twice([envelope, copy], deliver_ns, now_ns);
                return;
            }
        };
        drop(world);
        drop(released);
    }

    fn net_schedule_twice(&self, copies: [Envelope; 2], deliver_ns: [u64; 2], now_ns: u64) {
        let mut world = self.world.borrow_mut();
        let state = &mut *world;
        let [original, mut copy] = copies;
        assert_eq!(original.head.id, copy.head.id);
        copy.head.id = state.net.message_id_next;
        state.net.message_id_next += 1;
        state.net.links[copy.head.link as usize].stats.duplicated += 1;
        let first = state.net.schedule(original, deliver_ns[0], now_ns, &mut state.fingerprint);
        let second = state.net.schedule(copy, deliver_ns[1], now_ns, &mut state.fingerprint);
        drop(world);
        drop((first, second));
    }

    /// The network's counters.
    pub(crate) fn net_stats(&self) -> NetStats {
        self.world.borrow().net.stats()
    }
}
