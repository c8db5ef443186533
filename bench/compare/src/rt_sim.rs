//! The workload's runtime: this project's `sim`.

use std::future::Future;
use std::time::Duration;

use sim::net::Endpoint;

use crate::workload::Msg;

pub type Addr = sim::net::Addr;
pub type Node = sim::NodeId;

pub struct World {
    sim: sim::Sim,
}

impl World {
    pub fn new(seed: u64) -> World {
        World { sim: sim::Sim::builder().seed(seed).build() }
    }

    pub fn add_node(&mut self, index: usize) -> Node {
        self.sim.node(format!("n{index}")).build()
    }

    pub fn addr(&self, node: &Node, port: u16) -> Addr {
        Addr::new(*node, port)
    }

    pub fn spawn(&self, node: &Node, future: impl Future<Output = ()> + 'static) {
        drop(self.sim.spawn_on(*node, "task", future).expect("a running node"));
    }

    pub fn cutter(&self, nodes: &[Node]) -> Cutter {
        Cutter { handle: self.sim.handle(), nodes: nodes.to_vec() }
    }

    pub fn block_on(&mut self, future: impl Future<Output = ()> + 'static) {
        self.sim.block_on(future).expect("the run ends");
    }
}

pub struct Cutter {
    handle: sim::Handle,
    nodes: Vec<Node>,
}

impl Cutter {
    pub fn cut(&self, index: usize) {
        self.handle.isolate(self.nodes[index]).expect("a node");
    }

    pub fn heal(&self, index: usize) {
        self.handle.rejoin(self.nodes[index]).expect("a node");
    }
}

pub struct Ep(Endpoint<Msg>);

impl Ep {
    pub async fn bind(port: u16) -> Ep {
        Ep(Endpoint::bind(port).expect("a free port"))
    }

    pub async fn send(&self, to: Addr, msg: Msg) {
        let _ = self.0.send_to(to, msg);
    }

    pub async fn recv(&self) -> (Addr, Msg) {
        self.0.recv().await.expect("an open endpoint")
    }
}

pub async fn sleep(duration: Duration) {
    sim::time::sleep(duration).await;
}

pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    sim::time::timeout(duration, future).await.ok()
}

pub fn random() -> u64 {
    sim::rand::u64()
}
