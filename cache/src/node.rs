//! A cache node: its state, its public API and the handler of its peers' requests.
//!
//! The data path itself is in `write_path.rs` and `read_path.rs`. All state sits in one
//! `RefCell`; no borrow is ever held across an `.await`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::anti_entropy::AntiEntropy;
use crate::detector::Detector;
use crate::error::Error;
use crate::glob::KeyPattern;
use crate::handoff::Handoff;
use crate::membership::{Member, Membership};
use crate::message::{ClientRequest, ClientResponse, PeerRequest, PeerResponse, WriteOp};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::node_id::NodeId;
use crate::options::Options;
use crate::rebalance::Rebalancer;
use crate::ring::Ring;
use crate::runtime::{LocalBoxFuture, Runtime, TaskGuard, Transport, TransportError};
use crate::store::{Apply, Entry, Item, Store, Tombstone};
use crate::version::{LamportClock, Version};

/// What a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// The address its peers reach it at.
    pub address: String,
    /// The other members it starts knowing, with their addresses.
    pub peers: Vec<(NodeId, String)>,
    /// Its options.
    pub options: Options,
    /// A planted bug this node runs with (tests of the harness only).
    #[cfg(feature = "mutants")]
    pub mutant: Option<crate::mutant::Mutant>,
}

impl NodeConfig {
    /// A configuration from its parts, with no planted bug: the way to build one that
    /// compiles whatever features the cache is built with.
    pub fn new(
        id: NodeId,
        address: impl Into<String>,
        peers: Vec<(NodeId, String)>,
        options: Options,
    ) -> NodeConfig {
        NodeConfig {
            id,
            address: address.into(),
            peers,
            options,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}

/// The state of one node; borrowed briefly, never across an `.await`.
pub(crate) struct State {
    pub(crate) store: Store,
    pub(crate) clock: LamportClock,
    pub(crate) membership: Membership,
    pub(crate) ring: Ring,
    pub(crate) metrics: Metrics,
}

pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) address: String,
    pub(crate) options: Options,
    pub(crate) runtime: Rc<dyn Runtime>,
    pub(crate) transport: Rc<dyn Transport>,
    pub(crate) state: RefCell<State>,
    /// Each background feature keeps its own state, in its own file's type.
    pub(crate) handoff: RefCell<Handoff>,
    pub(crate) detector: RefCell<Detector>,
    pub(crate) anti_entropy: RefCell<AntiEntropy>,
    pub(crate) rebalancer: RefCell<Rebalancer>,
    /// Set by [`CacheNode::drain`]: writes are refused, reads served.
    pub(crate) draining: Cell<bool>,
    #[cfg(feature = "mutants")]
    pub(crate) mutant: Option<crate::mutant::Mutant>,
    stopped: Cell<bool>,
    tasks: RefCell<Vec<TaskGuard>>,
}

/// A running cache node. Dropping it stops it.
pub struct CacheNode {
    pub(crate) inner: Rc<Inner>,
}

/// A handle that answers peer requests for a node, without keeping it alive; give it
/// to the transport's server loop.
#[derive(Clone)]
pub struct PeerHandler {
    inner: Weak<Inner>,
}

impl fmt::Debug for CacheNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheNode").field("id", &self.inner.id).finish_non_exhaustive()
    }
}

impl fmt::Debug for PeerHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerHandler").finish_non_exhaustive()
    }
}

impl CacheNode {
    /// Starts a node that knows `config.peers` (all alive) and itself.
    ///
    /// # Errors
    ///
    /// When the peers repeat an id or exceed the membership's limit.
    pub fn start(
        config: NodeConfig,
        runtime: Rc<dyn Runtime>,
        transport: Rc<dyn Transport>,
    ) -> Result<CacheNode, Error> {
        let now_ms = runtime.wall_clock_ms();
        let mut membership =
            Membership::new(Member::new(config.id.clone(), &config.address), now_ms);
        for (peer, address) in &config.peers {
            if *peer == config.id || membership.get(peer).is_some() {
                return Err(Error::UnknownNode { node: peer.clone() });
            }
            membership.upsert(Member::new(peer.clone(), address.clone()), now_ms)?;
        }
        let options = config.options;
        let mut ring = Ring::new(options.replication_factor(), options.vnode_count_per_node());
        ring.rebuild(membership.ring_nodes());
        assert_eq!(ring.nodes().len(), config.peers.len() + 1);
        let state = State {
            store: Store::new(options.entry_count_max()),
            clock: LamportClock::new(config.id.clone()),
            membership,
            ring,
            metrics: Metrics::default(),
        };
        let inner = Rc::new(Inner {
            id: config.id,
            address: config.address,
            handoff: RefCell::new(Handoff::new(&options)),
            detector: RefCell::new(Detector::new(&options)),
            anti_entropy: RefCell::new(AntiEntropy::new(&options)),
            rebalancer: RefCell::new(Rebalancer::new(&options)),
            options,
            runtime,
            transport,
            state: RefCell::new(state),
            draining: Cell::new(false),
            #[cfg(feature = "mutants")]
            mutant: config.mutant,
            stopped: Cell::new(false),
            tasks: RefCell::new(Vec::new()),
        });
        let join_no_handoff = inner.mutant(crate::Mutant::JoinNoHandoff);
        inner.rebalancer.borrow_mut().join_no_handoff = join_no_handoff;
        let node = CacheNode { inner };
        Inner::start_background(&node.inner);
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// This node's address.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// This node's options.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// A handle for the transport's server loop.
    pub fn peer_handler(&self) -> PeerHandler {
        PeerHandler { inner: Rc::downgrade(&self.inner) }
    }

    /// Sets `key` to `value` (with an optional time to live) at the write consistency
    /// level, from any node; returns the version written.
    ///
    /// # Errors
    ///
    /// A bad key or value, no reachable owner, or too few acknowledgements
    /// ([`Error::QuorumFailed`]: the owners that acknowledged keep the write).
    pub async fn set(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<Version, Error> {
        let value = value.into();
        crate::store::check_value(&value)?;
        self.inner.check_running()?;
        Inner::write(&self.inner, key, WriteOp::Set { value, ttl }, None).await
    }

    /// The item at `key`, at the read consistency level, or `None` when there is none
    /// (never written, removed or expired). Stale owners that answered are repaired.
    ///
    /// # Errors
    ///
    /// A bad key, or too few owners answered.
    pub async fn get(&self, key: &str) -> Result<Option<Item>, Error> {
        self.inner.check_running()?;
        Inner::read(&self.inner, key, None).await
    }

    /// Removes each key (writes a versioned tombstone); returns their versions.
    ///
    /// # Errors
    ///
    /// The first key whose removal failed, as for [`CacheNode::set`].
    pub async fn remove(&self, keys: &[&str]) -> Result<Vec<Version>, Error> {
        self.inner.check_running()?;
        let mut versions = Vec::with_capacity(keys.len());
        for key in keys {
            versions.push(Inner::write(&self.inner, key, WriteOp::Remove, None).await?);
        }
        Ok(versions)
    }

    /// The owners of `key` in this node's view, primary first.
    pub fn owners(&self, key: &str) -> Vec<NodeId> {
        self.inner.state.borrow().ring.lookup(key).to_vec()
    }

    /// Whether this node owns `key` in its own view.
    pub fn is_owner(&self, key: &str) -> bool {
        self.inner.state.borrow().ring.is_owner(key, &self.inner.id)
    }

    /// A copy of this node's ring.
    pub fn ring(&self) -> Ring {
        self.inner.state.borrow().ring.clone()
    }

    /// The counters and gauges.
    pub fn metrics(&self) -> MetricsSnapshot {
        let state = self.inner.state.borrow();
        state.metrics.snapshot(&state.membership, &state.store)
    }

    /// Stops the node: background tasks are cancelled and every later call fails
    /// with [`Error::Stopped`]. Idempotent.
    pub fn stop(&self) {
        // The canary: a destructor's assertion, outside any task (skipped while
        // unwinding, as a careful destructor does: a second panic would abort).
        if !std::thread::panicking() {
            assert!(!self.inner.mutant(crate::Mutant::PanicOnStop), "the node was stopped");
        }
        self.inner.stop();
    }

    /// Keeps a background task (a server loop, a periodic job) for as long as the node
    /// runs: [`CacheNode::stop`] cancels it.
    pub fn attach_task(&self, guard: TaskGuard) {
        self.inner.keep_task(guard);
    }

    /// Whether [`CacheNode::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.get()
    }

    /// Debug hook: applies `entry` locally through the version check, as a replica
    /// write would, without any network.
    ///
    /// # Errors
    ///
    /// When the store is full.
    pub fn debug_inject(&self, key: &str, entry: Entry) -> Result<Apply, Error> {
        self.inner.apply_local(key, entry)
    }

    /// Debug hook: forgets `key` locally (no tombstone), as if this replica missed it.
    pub fn debug_drop_local(&self, key: &str) -> Option<Entry> {
        self.inner.state.borrow_mut().store.drop_local(key)
    }

    /// Debug hook: whether a live (unexpired) item is held locally for `key`.
    pub fn local_contains(&self, key: &str) -> bool {
        let now_ms = self.inner.runtime.wall_clock_ms();
        self.inner.state.borrow().store.get(key, now_ms).is_some()
    }

    /// Debug hook: the entry held locally for `key`, tombstones and expired items
    /// included.
    pub fn local_entry(&self, key: &str) -> Option<Entry> {
        self.inner.state.borrow().store.entry(key).cloned()
    }

    /// Every key held locally with its entry, in key order.
    pub fn local_entries(&self) -> Vec<(String, Entry)> {
        let mut entries = Vec::new();
        self.for_each_local_entry(|key, entry| entries.push((key.to_string(), entry.clone())));
        entries
    }

    /// Visits every key held locally with its entry, in key order, without copying
    /// the store (a harness that samples stores often reads them this way).
    ///
    /// # Panics
    ///
    /// When `visit` changes this node's state: it runs while the state is borrowed
    /// (reading it, through `is_owner` say, is fine).
    pub fn for_each_local_entry(&self, mut visit: impl FnMut(&str, &Entry)) {
        let state = self.inner.state.borrow();
        for (key, entry) in state.store.iter() {
            visit(key, entry);
        }
    }
}

impl Drop for CacheNode {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

impl PeerHandler {
    /// Answers one request from a peer.
    pub fn handle(&self, request: PeerRequest) -> LocalBoxFuture<PeerResponse> {
        let inner = self.inner.upgrade();
        Box::pin(async move {
            match inner {
                Some(inner) if !inner.stopped.get() => Inner::handle(&inner, request).await,
                _ => PeerResponse::Failed(Error::Stopped),
            }
        })
    }
}

impl Inner {
    pub(crate) fn check_running(&self) -> Result<(), Error> {
        if self.stopped.get() { Err(Error::Stopped) } else { Ok(()) }
    }

    fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        // Dropping the guards cancels the background tasks.
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
        self.transport.shutdown();
    }

    /// The receiver's check, for every path: apply only if newer, and let the clock
    /// jump past the version (the Lamport receive rule).
    pub(crate) fn apply_local(&self, key: &str, entry: Entry) -> Result<Apply, Error> {
        // A tombstone ages from when this node stores it, on its own monotonic clock
        // (see `Tombstone::deleted_at_ms`), whatever the sender's clock said.
        let entry = match entry {
            Entry::Tombstone(tombstone) => {
                Entry::Tombstone(Tombstone { deleted_at_ms: self.elapsed_ms(), ..tombstone })
            }
            item @ Entry::Item(_) => item,
        };
        let mut state = self.state.borrow_mut();
        if !self.mutant(crate::Mutant::NoLamportReceive) {
            state.clock.observe(entry.version());
        }
        if self.mutant(crate::Mutant::SkipVersionCheck) {
            state.store.drop_local(key);
        }
        let outcome = state.store.apply(key, entry)?;
        if !outcome.is_applied() {
            state.metrics.apply_stale += 1;
            self.reached("a stale copy was refused by the version check");
        }
        Ok(outcome)
    }

    /// Whether to take a rare path here on purpose (a simulation fault point; always
    /// false on a real runtime). Each caller's line is a site of its own.
    #[track_caller]
    pub(crate) fn buggify(&self) -> bool {
        self.runtime.buggify(std::panic::Location::caller())
    }

    /// Marks an interesting state as reached (a coverage point, see
    /// [`crate::Runtime::reached`]); the names are listed in [`crate::COVERAGE_POINTS`].
    pub(crate) fn reached(&self, name: &'static str) {
        debug_assert!(crate::COVERAGE_POINTS.contains(&name), "an unlisted coverage point {name}");
        self.runtime.reached(name);
    }

    /// A random delay of up to `max_ms` (fault points' slow paths).
    pub(crate) fn delay_random(&self, max_ms: u64) -> Duration {
        Duration::from_millis(self.runtime.random_u64() % (max_ms + 1))
    }

    /// The address of `node` in this node's membership.
    pub(crate) fn address_of(&self, node: &NodeId) -> Option<String> {
        self.state.borrow().membership.get(node).map(|member| member.address.clone())
    }

    /// Sends `request` to `node` with the configured RPC timeout.
    pub(crate) async fn call(
        &self,
        node: &NodeId,
        request: PeerRequest,
    ) -> Result<PeerResponse, TransportError> {
        let address = self.address_of(node).ok_or(TransportError::Unreachable)?;
        let mut timeout_ms = self.options.rpc_timeout_ms();
        if self.buggify() {
            // Fault point: an early timeout, as on a loaded link or a busy peer.
            timeout_ms = (timeout_ms / 4).max(1);
        }
        let timeout = Duration::from_millis(timeout_ms);
        self.transport.call(&address, request, timeout).await
    }

    /// Starts every background loop whose interval is not 0; each feature's file
    /// decides what it runs.
    fn start_background(inner: &Rc<Inner>) {
        Inner::start_detector(inner);
        Inner::start_gossip(inner);
        Inner::start_handoff(inner);
        Inner::start_anti_entropy(inner);
        Inner::start_rebalance(inner);
        Inner::start_sweeps(inner);
    }

    async fn handle(inner: &Rc<Inner>, request: PeerRequest) -> PeerResponse {
        match request {
            PeerRequest::Forward { key, op, consistency } => {
                if inner.draining.get() {
                    return PeerResponse::Written(Err(Error::Draining));
                }
                let written = Inner::coordinate_forwarded(inner, &key, op, consistency).await;
                PeerResponse::Written(written)
            }
            PeerRequest::Replicate { key, entry, cause: _ } => inner.handle_replicate(&key, entry),
            PeerRequest::Read { key } => {
                PeerResponse::Entry(inner.state.borrow().store.entry(&key).cloned())
            }
            PeerRequest::Membership(request) => {
                PeerResponse::Membership(Inner::handle_membership(inner, request).await)
            }
            PeerRequest::AntiEntropy(request) => {
                PeerResponse::AntiEntropy(Inner::handle_anti_entropy(inner, request).await)
            }
            PeerRequest::Rebalance(request) => {
                PeerResponse::Rebalance(Inner::handle_rebalance(inner, request).await)
            }
            PeerRequest::Keys(request) => PeerResponse::Keys(inner.handle_keys(request)),
            PeerRequest::Client(request) => {
                PeerResponse::Client(Inner::handle_client(inner, request).await)
            }
        }
    }

    /// Serves a client exactly as the node's own API would.
    async fn handle_client(inner: &Rc<Inner>, request: ClientRequest) -> ClientResponse {
        match request {
            ClientRequest::Set { key, value, ttl, consistency } => {
                let written = match crate::store::check_value(&value) {
                    Ok(()) => {
                        Inner::write(inner, &key, WriteOp::Set { value, ttl }, consistency).await
                    }
                    Err(error) => Err(error),
                };
                ClientResponse::Written(written)
            }
            ClientRequest::Get { key, consistency } => {
                ClientResponse::Read(Inner::read(inner, &key, consistency).await)
            }
            ClientRequest::Remove { key, consistency } => ClientResponse::Written(
                Inner::write(inner, &key, WriteOp::Remove, consistency).await,
            ),
            ClientRequest::ListKeys { pattern, max } => {
                let listed = match KeyPattern::parse(&pattern) {
                    Ok(parsed) => Ok(inner.list_cluster_keys(&pattern, &parsed, max).await),
                    Err(error) => Err(Error::from(error)),
                };
                ClientResponse::Keys(listed)
            }
        }
    }

    /// A replica write, read repair or hint replay: refused by a node that does not own
    /// the key in its own view (the ownership guard), else applied if newer.
    fn handle_replicate(&self, key: &str, entry: Entry) -> PeerResponse {
        if !self.state.borrow().ring.is_owner(key, &self.id) {
            self.state.borrow_mut().metrics.write_apply_refused += 1;
            self.reached("a copy was refused by the ownership guard");
            return PeerResponse::Failed(Error::NotOwner);
        }
        match self.apply_local(key, entry) {
            Ok(outcome) => PeerResponse::Replicated {
                applied: outcome.is_applied(),
                held: self.state.borrow().store.version(key).cloned(),
            },
            Err(error) => PeerResponse::Failed(error),
        }
    }

    /// Runs `round` every `interval_ms` (0: never) for as long as the node runs. The
    /// loop holds the node only during a round, so it ends when the node is dropped,
    /// and [`CacheNode::stop`] cancels it.
    pub(crate) fn spawn_periodic(
        inner: &Rc<Inner>,
        name: &'static str,
        interval_ms: u64,
        round: impl Fn(Rc<Inner>) -> LocalBoxFuture<()> + 'static,
    ) {
        if interval_ms == 0 {
            return;
        }
        let (runtime, node) = (Rc::clone(&inner.runtime), Rc::downgrade(inner));
        let task = async move {
            loop {
                runtime.sleep(Duration::from_millis(interval_ms)).await;
                let Some(inner) = node.upgrade() else { return };
                round(inner).await;
            }
        };
        inner.keep_task(inner.runtime.spawn(name, Box::pin(task)));
    }

    /// Keeps a background task for as long as the node runs.
    pub(crate) fn keep_task(&self, guard: TaskGuard) {
        if self.stopped.get() {
            return; // Dropping the guard cancels the task.
        }
        self.tasks.borrow_mut().push(guard);
    }
}
