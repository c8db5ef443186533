//! `cachesim serve` and `cachesim client` as a user runs them: three processes on
//! 127.0.0.1, each on a port it picked itself (port 0, so no port is guessed or
//! raced for), the second and third joining through the first.
#![cfg(feature = "net")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const SECRET: &str = "a cluster secret of some length";
/// Rounds of 200 ms the cluster gets to converge after it starts.
const CONVERGE_ROUNDS_MAX: u32 = 100;

/// A `cachesim serve` process, killed on drop.
struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(id: &str, peers: &[(&str, &str)], secret: &str) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachesim"));
    command.args(["serve", "--id", id, "--listen", "127.0.0.1:0"]);
    for (peer, address) in peers {
        command.args(["--peer", &format!("{peer}@{address}")]);
    }
    let mut child = command
        .env("CACHESIM_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // "serving n1 on 127.0.0.1:PORT (...)"
    let address = line.split_whitespace().nth(3).unwrap_or_default().to_owned();
    assert!(address.starts_with("127.0.0.1:"), "unexpected first line: {line:?}");
    Server { child, address }
}

/// `cachesim client` proving `secret` (by default a node asks clients for the
/// cluster secret).
fn client_with(node: &str, secret: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachesim"));
    command.args(["client", "--node", node, "--timeout-ms", "2000"]).args(args);
    command.env_remove("CACHESIM_SECRET").env_remove("CACHESIM_CLIENT_TOKEN");
    if let Some(secret) = secret {
        command.env("CACHESIM_SECRET", secret);
    }
    command.output().unwrap()
}

fn client(node: &str, args: &[&str]) -> Output {
    client_with(node, Some(SECRET), args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn a_three_process_cluster_serves_a_client() {
    let n1 = serve("n1", &[], SECRET);
    let n2 = serve("n2", &[("n1", &n1.address)], SECRET);
    let n3 = serve("n3", &[("n1", &n1.address)], SECRET);
    // The joins travel by heartbeat and gossip: wait until a write at ALL succeeds
    // through each node (every owner acknowledged it).
    let converged = (0..CONVERGE_ROUNDS_MAX).any(|_| {
        let written = [&n1, &n2, &n3].iter().all(|node| {
            client(&node.address, &["--consistency", "all", "set", "probe", "1"]).status.success()
        });
        if !written {
            std::thread::sleep(Duration::from_millis(200));
        }
        written
    });
    assert!(converged, "the cluster never converged");
    let set = client(&n1.address, &["set", "user:42", "alice"]);
    assert!(set.status.success(), "{set:?}");
    let got = client(&n3.address, &["--consistency", "quorum", "get", "user:42"]);
    assert_eq!(stdout(&got), "alice");
    let keys = client(&n2.address, &["keys", "user:*"]);
    assert_eq!(stdout(&keys), "user:42");
    assert!(client(&n2.address, &["remove", "user:42"]).status.success());
    let gone = client(&n1.address, &["--consistency", "quorum", "get", "user:42"]);
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    let bad = client(&n1.address, &["set", "", "x"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    // Clients prove the cluster secret by default: without it, nothing is read.
    let anonymous = client_with(&n1.address, None, &["get", "probe"]);
    assert_eq!(anonymous.status.code(), Some(3), "{anonymous:?}");
    // A fourth process with another secret cannot write through the cluster.
    let other = "another secret entirely!";
    let intruder = serve("n4", &[("n1", &n1.address)], other);
    let refused =
        client_with(&intruder.address, Some(other), &["--consistency", "quorum", "set", "x", "y"]);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    let absent = client(&n2.address, &["--consistency", "all", "get", "x"]);
    assert_eq!(absent.status.code(), Some(1), "the intruder's write reached the cluster");
}

#[test]
fn serve_refuses_to_start_without_a_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_cachesim"))
        .args(["serve", "--id", "n1", "--listen", "127.0.0.1:0"])
        .env_remove("CACHESIM_SECRET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("no cluster secret"), "{message}");
}
