//! A replicated register (the ABD algorithm): the protocol alone, with no simulator in
//! it but its coverage marks (`sim::reachable`, which do nothing outside a simulation). Replicas keep a versioned value; a client writes by reading a majority's
//! versions and writing a higher one to a majority, and reads by taking the newest
//! value of a majority and writing it back to a majority before it answers. Any two
//! majorities meet, so a read sees every write acknowledged before it began.
//!
//! The network is behind [`Transport`]: the simulator implements it in `harness.rs`;
//! a real network would implement it the same way.
//!
//! [`Bug::ReadOne`] plants a bug: reads answer with the first replica's value and skip
//! the write-back, as an "optimisation". [`Bug::ReuseVersion`] plants a subtler one:
//! a write that forgets its client's last, unacknowledged write.

use std::rc::Rc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

/// A version: a counter, then the writer's id to break ties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Version {
    /// Counts writes.
    pub(crate) counter: u64,
    /// The writing client.
    pub(crate) writer: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.counter, self.writer)
    }
}

/// What one replica holds (and keeps across a reboot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Cell {
    /// The version of `value`.
    pub(crate) version: Version,
    /// The value (0 before any write).
    pub(crate) value: u64,
}

/// A client's request to a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Request {
    /// What do you hold?
    Read,
    /// Hold this, if newer than what you hold.
    Write(Cell),
}

/// A replica's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Response {
    /// What it holds.
    Value(Cell),
    /// The write is held (or something newer is).
    Ack,
}

/// A replica's whole logic: pure, so it runs on any network.
pub(crate) fn handle(cell: &mut Cell, request: Request) -> Response {
    match request {
        Request::Read => Response::Value(*cell),
        Request::Write(incoming) => {
            if incoming.version > cell.version {
                *cell = incoming;
            }
            Response::Ack
        }
    }
}

/// A planted bug.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Bug {
    /// The correct protocol.
    #[default]
    None,
    /// Reads answer with the first replica's value and skip the write-back.
    ReadOne,
    /// A write forgets its client's last write: after a write whose outcome was
    /// unknown, the next may reuse its version with another value.
    ReuseVersion,
    /// A client stops calling a replica once a call to it timed out, for good (a
    /// circuit breaker that never closes): after enough faults it reaches no majority,
    /// even once the network has healed.
    ShunForever,
}

/// How a client reaches the replicas.
pub(crate) trait Transport {
    /// How many replicas there are.
    fn replicas(&self) -> usize;

    /// Sends `request` to replica `replica`; `None` when no answer came in time.
    fn call(&self, replica: usize, request: Request) -> impl Future<Output = Option<Response>>;
}

fn newest(answers: &[Response]) -> Cell {
    let cells = answers.iter().filter_map(|answer| match answer {
        Response::Value(cell) => Some(*cell),
        Response::Ack => None,
    });
    cells.max_by_key(|cell| cell.version).unwrap_or_default()
}

/// A client of the register.
#[derive(Debug)]
pub(crate) struct Client<T> {
    /// Its id (the tie-breaker of its versions).
    pub(crate) id: u32,
    /// The network.
    pub(crate) transport: T,
    /// The planted bug, if any.
    pub(crate) bug: Bug,
    /// The counter of this client's last write, kept across restarts (the client's
    /// own durable state): a write whose outcome was unknown may have reached a
    /// minority only, so the next one must not reuse its version with another value.
    pub(crate) last_counter: Rc<std::cell::Cell<u64>>,
    /// Replicas this client no longer calls (only under [`Bug::ShunForever`]), one bit
    /// each.
    pub(crate) shunned: std::cell::Cell<u64>,
}

impl<T: Transport> Client<T> {
    fn majority(&self) -> usize {
        self.transport.replicas() / 2 + 1
    }

    /// Sends `request` to every replica; the first `needed` answers, or `None` when
    /// fewer came.
    async fn gather(&self, request: Request, needed: usize) -> Option<Vec<Response>> {
        let called = (0..self.transport.replicas()).filter(|r| self.shunned.get() >> r & 1 == 0);
        let mut calls: FuturesUnordered<_> = called
            .map(|replica| async move { (replica, self.transport.call(replica, request).await) })
            .collect();
        let mut answers = Vec::new();
        while let Some((replica, answer)) = calls.next().await {
            match answer {
                Some(answer) => answers.push(answer),
                None if self.bug == Bug::ShunForever => {
                    self.shunned.set(self.shunned.get() | 1 << replica);
                }
                None => {}
            }
            if answers.len() >= needed {
                return Some(answers);
            }
        }
        None
    }

    /// Writes `value`; its version once a majority holds it, `None` when the outcome
    /// is unknown (too few answers).
    pub(crate) async fn write(&self, value: u64) -> Option<Version> {
        let seen = newest(&self.gather(Request::Read, self.majority()).await?);
        let last = if self.bug == Bug::ReuseVersion { 0 } else { self.last_counter.get() };
        let counter = seen.version.counter.max(last) + 1;
        self.last_counter.set(counter);
        let version = Version { counter, writer: self.id };
        self.gather(Request::Write(Cell { version, value }), self.majority()).await?;
        Some(version)
    }

    /// Reads the register; `None` when too few replicas answered.
    pub(crate) async fn read(&self) -> Option<Cell> {
        if self.bug == Bug::ReadOne {
            return Some(newest(&self.gather(Request::Read, 1).await?));
        }
        let answers = self.gather(Request::Read, self.majority()).await?;
        let cell = newest(&answers);
        if answers.iter().any(|answer| *answer != Response::Value(cell)) {
            // Some replica lags: the write-back makes the value a majority's before
            // anyone reads it from us.
            sim::reachable("read wrote back a newer value");
        }
        self.gather(Request::Write(cell), self.majority()).await?;
        Some(cell)
    }
}
