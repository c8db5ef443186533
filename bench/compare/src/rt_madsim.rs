//! The workload's runtime: madsim (built with `--cfg madsim`).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use madsim::net::{Endpoint, NetSim};
use madsim::runtime::{NodeHandle, Runtime};

use crate::workload::Msg;

pub type Addr = SocketAddr;

/// A node and its place (its address is `10.0.0.{index + 1}`).
pub struct Node {
    index: usize,
    handle: NodeHandle,
}

pub struct World {
    runtime: Runtime,
}

fn ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1))
}

impl World {
    pub fn new(seed: u64) -> World {
        World { runtime: Runtime::with_seed_and_config(seed, madsim::Config::default()) }
    }

    pub fn add_node(&mut self, index: usize) -> Node {
        let handle = self.runtime.create_node().name(format!("n{index}")).ip(ip(index)).build();
        Node { index, handle }
    }

    pub fn addr(&self, node: &Node, port: u16) -> Addr {
        SocketAddr::new(ip(node.index), port)
    }

    pub fn spawn(&self, node: &Node, future: impl Future<Output = ()> + Send + 'static) {
        drop(node.handle.spawn(future));
    }

    pub fn cutter(&self, nodes: &[Node]) -> Cutter {
        Cutter { nodes: nodes.iter().map(|node| node.handle.id()).collect() }
    }

    pub fn block_on(&mut self, future: impl Future<Output = ()>) {
        self.runtime.block_on(future);
    }
}

pub struct Cutter {
    nodes: Vec<madsim::task::NodeId>,
}

impl Cutter {
    pub fn cut(&self, index: usize) {
        NetSim::current().clog_node(self.nodes[index]);
    }

    pub fn heal(&self, index: usize) {
        NetSim::current().unclog_node(self.nodes[index]);
    }
}

pub struct Ep(Endpoint);

impl Ep {
    pub async fn bind(port: u16) -> Ep {
        Ep(Endpoint::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
            .await
            .expect("a free port"))
    }

    pub async fn send(&self, to: Addr, msg: Msg) {
        let _ = self.0.send_to_raw(to, 0, Box::new(msg)).await;
    }

    pub async fn recv(&self) -> (Addr, Msg) {
        let (payload, from) = self.0.recv_from_raw(0).await.expect("an open endpoint");
        (from, *payload.downcast::<Msg>().expect("a Msg"))
    }
}

pub async fn sleep(duration: Duration) {
    madsim::time::sleep(duration).await;
}

pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    madsim::time::timeout(duration, future).await.ok()
}

pub fn random() -> u64 {
    madsim::rand::random()
}
