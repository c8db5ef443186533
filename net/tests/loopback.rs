//! Three real nodes on 127.0.0.1 talking TCP: the data path end to end, a node going
//! away, and bad bytes from a stranger.

use std::net::TcpListener;
use std::time::Duration;

use cache::{Consistency, NodeConfig, NodeId, Options};
use cache_net::{Keys, NetNode, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Binds three listeners on free ports (each bound once, then handed to its node) and
/// starts a node on each; every node knows the other two.
fn start_cluster(options: &Options) -> Vec<NetNode> {
    start_cluster_with(options, &Keys::default())
}

fn start_cluster_with(options: &Options, keys: &Keys) -> Vec<NetNode> {
    let listeners: Vec<TcpListener> =
        (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addresses: Vec<String> =
        listeners.iter().map(|listener| listener.local_addr().unwrap().to_string()).collect();
    let ids: Vec<NodeId> = (1..=3).map(|n| NodeId::new(&format!("n{n}")).unwrap()).collect();
    listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let peers = (0..3)
                .filter(|other| *other != index)
                .map(|other| (ids[other].clone(), addresses[other].clone()))
                .collect();
            let config =
                NodeConfig::new(ids[index].clone(), &addresses[index], peers, options.clone());
            NetNode::start(config, listener, keys.clone()).unwrap()
        })
        .collect()
}

fn local<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local
        .block_on(&runtime, async { tokio::time::timeout(Duration::from_secs(30), future).await })
        .expect("the test finished within 30 s")
}

/// Sends `bytes`, closes the sending side, and returns what the node answered before
/// it hung up. The node may cut the connection off first: nothing here unwraps.
async fn send_and_hear(stream: &mut tokio::net::TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut heard = Vec::new();
    let _ = stream.read_to_end(&mut heard).await;
    heard
}

fn quorum() -> Options {
    Options::builder()
        .read_consistency(Consistency::Quorum)
        .write_consistency(Consistency::Quorum)
        .rpc_timeout_ms(500)
        .build()
        .unwrap()
}

#[test]
fn writes_through_one_node_are_read_through_the_others() {
    local(async {
        let nodes = start_cluster(&quorum());
        for index in 0..50 {
            let key = format!("key{index}");
            nodes[index % 3].node().set(&key, format!("value{index}"), None).await.unwrap();
        }
        for index in 0..50 {
            let key = format!("key{index}");
            let item = nodes[(index + 1) % 3].node().get(&key).await.unwrap().unwrap();
            assert_eq!(&item.value[..], format!("value{index}").as_bytes());
        }
        nodes[2].node().remove(&["key7"]).await.unwrap();
        assert!(nodes[0].node().get("key7").await.unwrap().is_none());
        let served: u64 = nodes.iter().map(|node| node.net_stats().requests_served).sum();
        assert!(served >= 100, "peers served {served} requests");
    });
}

#[test]
fn a_quorum_survives_one_node_stopped() {
    local(async {
        let mut nodes = start_cluster(&quorum());
        let stopped = nodes.pop().unwrap();
        let port = stopped.local_addr();
        drop(stopped);
        // The port is free again once the runtime has run the cancelled server task
        // (tokio cancels a task at its next turn, not inside `drop`).
        let mut bound = None;
        for _ in 0..100 {
            tokio::task::yield_now().await;
            bound = TcpListener::bind(port).ok();
            if bound.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(bound.is_some(), "the stopped node's port is free again within a second");
        for index in 0..20 {
            let key = format!("key{index}");
            nodes[index % 2].node().set(&key, "v", None).await.unwrap();
            assert!(nodes[(index + 1) % 2].node().get(&key).await.unwrap().is_some());
        }
    });
}

#[test]
fn a_stranger_sending_garbage_is_cut_off_and_the_cluster_serves_on() {
    local(async {
        let nodes = start_cluster(&quorum());
        let target = nodes[0].local_addr();
        let mut cases: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            // A header of another protocol version.
            vec![b'C', b'S', 99, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
            // A header announcing 4 GiB.
            vec![b'C', b'S', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 255, 255, 255, 255],
            // A request before the handshake.
            vec![b'C', b'S', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3, 250, 250, 250],
        ];
        // A frame cut short: the connection ends inside it.
        cases.push(vec![b'C', b'S', 1, 1, 0, 0, 0, 0]);
        for bytes in &cases {
            let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
            assert!(send_and_hear(&mut stream, bytes).await.is_empty(), "no answer to garbage");
        }
        // After a handshake, a well-formed header around a payload that is no request.
        let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
        let mut session =
            cache_net::handshake::dial(&mut stream, &Keys::default(), cache_net::Role::Client)
                .await
                .unwrap();
        let mut garbage = bytes::BytesMut::from(
            &[b'C', b'S', 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3, 250, 250, 250][..],
        );
        session.sealer.seal(&mut garbage);
        let heard = send_and_hear(&mut stream, &garbage).await;
        assert!(heard.is_empty(), "no answer to a malformed request");
        // After a handshake, a frame without its tag (or with a wrong one).
        let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
        cache_net::handshake::dial(&mut stream, &Keys::default(), cache_net::Role::Client)
            .await
            .unwrap();
        let mut unsealed = bytes::BytesMut::new();
        let get = cache::PeerRequest::Client(cache::ClientRequest::Get {
            key: "k".into(),
            consistency: None,
        });
        cache_net::frame::encode(cache_net::frame::FrameKind::Request, 1, &get, &mut unsealed)
            .unwrap();
        let heard = send_and_hear(&mut stream, &unsealed).await;
        assert!(heard.is_empty(), "no answer to a frame without its tag");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let bad = nodes[0].net_stats().bad_input;
        assert_eq!(bad.get("bad-tag"), Some(&1), "{bad:?}");
        assert_eq!(bad.get("auth-refused"), Some(&1), "{bad:?}");
        assert_eq!(bad.get("bad-magic"), Some(&1), "{bad:?}");
        assert_eq!(bad.get("unknown-version"), Some(&1), "{bad:?}");
        assert_eq!(bad.get("oversized"), Some(&1), "{bad:?}");
        assert_eq!(bad.get("malformed"), Some(&1), "{bad:?}");
        assert_eq!(bad.get("truncated"), Some(&1), "{bad:?}");
        nodes[0].node().set("after", "still", None).await.unwrap();
        assert!(nodes[1].node().get("after").await.unwrap().is_some());
    });
}

#[test]
fn a_client_talks_to_any_node() {
    local(async {
        let nodes = start_cluster(&quorum());
        let first =
            cache_net::Client::new(nodes[0].local_addr().to_string(), Duration::from_secs(2), None);
        let second =
            cache_net::Client::new(nodes[2].local_addr().to_string(), Duration::from_secs(2), None);
        for index in 0..20 {
            first.set(&format!("user:{index}"), "x", None, None).await.unwrap();
        }
        first.set("other", "y", None, Some(Consistency::All)).await.unwrap();
        let item = second.get("user:3", Some(Consistency::Quorum)).await.unwrap().unwrap();
        assert_eq!(&item.value[..], b"x");
        second.remove("user:3", None).await.unwrap();
        assert_eq!(first.get("user:3", None).await.unwrap(), None);
        let listed = second.keys("user:*", 0).await.unwrap();
        assert_eq!(listed.keys.len(), 19, "{listed:?}");
        // The cache's own refusals come back as its errors.
        let refused = first.set("", "x", None, None).await.unwrap_err();
        assert!(matches!(refused, cache_net::ClientError::Cache(cache::Error::InvalidKey { .. })));
        let refused = first.keys("[z-a]", 0).await.unwrap_err();
        assert!(matches!(refused, cache_net::ClientError::Cache(cache::Error::InvalidPattern(_))));
        // A node that is gone: no answer, no panic.
        let port = nodes[1].local_addr();
        drop(nodes);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let gone = cache_net::Client::new(port.to_string(), Duration::from_millis(200), None);
        let error = gone.get("user:1", None).await.unwrap_err();
        assert!(matches!(error, cache_net::ClientError::Transport(_)), "{error:?}");
    });
}

fn fast_detection() -> Options {
    Options::builder()
        .read_consistency(Consistency::Quorum)
        .write_consistency(Consistency::Quorum)
        .rpc_timeout_ms(300)
        .heartbeat_interval_ms(100)
        .probe_timeout_ms(50)
        .gossip_interval_ms(100)
        .suspect_after_ms(300)
        .dead_after_ms(600)
        .build()
        .unwrap()
}

fn secret(text: &str) -> Secret {
    Secret::new(text.as_bytes().to_vec()).unwrap()
}

/// A fourth node holding another secret dials the cluster: it is refused at every
/// connection, never joins the good nodes' membership, and cannot write or read
/// through them; the cluster serves on.
#[test]
fn a_node_with_the_wrong_secret_is_refused_and_changes_nothing() {
    local(async {
        let good = Keys { cluster: Some(secret("the cluster secret")), client_token: None };
        let nodes = start_cluster_with(&fast_detection(), &good);
        nodes[0].node().set("before", "v", None).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let peers = nodes
            .iter()
            .map(|node| (node.node().id().clone(), node.local_addr().to_string()))
            .collect();
        let config =
            NodeConfig::new(NodeId::new("intruder").unwrap(), address, peers, fast_detection());
        let wrong = Keys { cluster: Some(secret("another secret!!")), client_token: None };
        let intruder = NetNode::start(config, listener, wrong).unwrap();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(intruder.node().set("sneaky", "x", None).await.is_err());
        assert!(intruder.node().get("before").await.is_err(), "it cannot read either");
        for node in &nodes {
            let ring = node.node().ring();
            assert_eq!(ring.nodes().len(), 3, "the intruder never joined: {:?}", ring.nodes());
            assert!(node.node().local_entry("sneaky").is_none());
        }
        let refused: u64 = nodes
            .iter()
            .filter_map(|node| node.net_stats().bad_input.get("auth-refused").copied())
            .sum();
        assert!(refused >= 3, "the good nodes refused {refused} handshakes");
        let failed = intruder.net_stats().bad_input.get("auth-refused").copied().unwrap_or(0);
        // One connect at a time per peer, then a backoff (50 ms doubling): a handful of
        // attempts per peer in a second, not one per call.
        assert!((3..=30).contains(&failed), "the intruder failed {failed} handshakes");
        nodes[1].node().set("after", "v", None).await.unwrap();
        assert!(nodes[2].node().get("after").await.unwrap().is_some());
    });
}

/// With a client token set, a client without it (or with another) is refused; with it,
/// it is served; and a client connection may not send what only peers send.
#[test]
fn clients_need_the_token_and_may_send_client_requests_only() {
    local(async {
        let keys = Keys {
            cluster: Some(secret("the cluster secret")),
            client_token: Some(secret("the client token")),
        };
        let nodes = start_cluster_with(&quorum(), &keys);
        let target = nodes[0].local_addr();
        let timeout = Duration::from_secs(2);
        let anonymous = cache_net::Client::new(target.to_string(), timeout, None);
        assert!(matches!(
            anonymous.set("k", "v", None, None).await,
            Err(cache_net::ClientError::Transport(_))
        ));
        let wrong =
            cache_net::Client::new(target.to_string(), timeout, Some(secret("not the token!!!")));
        assert!(wrong.get("k", None).await.is_err());
        let right = cache_net::Client::new(target.to_string(), timeout, keys.client_token.clone());
        right.set("k", "v", None, None).await.unwrap();
        assert_eq!(&right.get("k", None).await.unwrap().unwrap().value[..], b"v");
        // A client that proves the token, then sends a replica write.
        let mut stream = tokio::net::TcpStream::connect(target).await.unwrap();
        let mut session =
            cache_net::handshake::dial(&mut stream, &keys, cache_net::Role::Client).await.unwrap();
        let forged = cache::PeerRequest::Read { key: "k".into() };
        let mut frame = bytes::BytesMut::new();
        cache_net::frame::encode(cache_net::frame::FrameKind::Request, 1, &forged, &mut frame)
            .unwrap();
        session.sealer.seal(&mut frame);
        let heard = send_and_hear(&mut stream, &frame).await;
        assert!(heard.is_empty(), "no answer to a peer request from a client");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let bad = nodes[0].net_stats().bad_input;
        assert_eq!(bad.get("forbidden"), Some(&1), "{bad:?}");
        assert_eq!(bad.get("auth-refused"), Some(&2), "{bad:?}");
    });
}

/// An attacker that skips checking the node's proof and answers with a forged one
/// (here: all zeros) is cut off at the handshake; the replica write it sends after
/// is never applied.
#[test]
fn a_forged_proof_is_refused_before_any_request() {
    use cache_net::frame::{self, FrameKind};
    local(async {
        let keys = Keys { cluster: Some(secret("the cluster secret")), client_token: None };
        let nodes = start_cluster_with(&quorum(), &keys);
        let mut stream = tokio::net::TcpStream::connect(nodes[0].local_addr()).await.unwrap();
        let mut out = bytes::BytesMut::new();
        let mut hello = vec![cache_net::Role::Peer as u8];
        hello.extend_from_slice(&[7; cache_net::NONCE_BYTES]);
        frame::encode_raw(FrameKind::Hello, &hello, &mut out);
        stream.write_all(&out).await.unwrap();
        let mut challenge = vec![0u8; frame::HEADER_BYTES + 2 * cache_net::NONCE_BYTES];
        stream.read_exact(&mut challenge).await.unwrap();
        out.clear();
        frame::encode_raw(FrameKind::Proof, &[0; cache_net::NONCE_BYTES], &mut out);
        let entry = cache::Entry::Item(cache::Item::new(
            bytes::Bytes::from_static(b"forged"),
            cache::Version::new(1 << 40, NodeId::new("n1").unwrap()),
        ));
        let forged = cache::PeerRequest::Replicate {
            key: "forged".into(),
            entry,
            cause: cache::ReplicaCause::Write,
        };
        frame::encode(FrameKind::Request, 1, &forged, &mut out).unwrap();
        assert!(
            send_and_hear(&mut stream, &out).await.is_empty(),
            "no answer after a forged proof"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(nodes[0].net_stats().bad_input.get("auth-refused"), Some(&1));
        for node in &nodes {
            assert!(node.node().local_entry("forged").is_none(), "the forged write was applied");
        }
    });
}

/// A dialer that has proved nothing and announces a 16 MiB hello is cut off at its
/// header, not kept waiting (with 16 MiB reserved) until the handshake times out.
#[test]
fn an_oversized_hello_is_refused_on_its_header() {
    local(async {
        let nodes = start_cluster(&quorum());
        let mut stream = tokio::net::TcpStream::connect(nodes[0].local_addr()).await.unwrap();
        let mut header = vec![b'C', b'S', 1, 3, 0, 0, 0, 0, 0, 0, 0, 0];
        header.extend_from_slice(&(16u32 << 20).to_be_bytes());
        stream.write_all(&header).await.unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the node waited for the payload of an unauthenticated frame");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(nodes[0].net_stats().bad_input.get("auth-refused"), Some(&1));
    });
}

/// A client that sends many requests for a large value and never reads its answers
/// stalls itself: the node stops reading from it after a bounded number in progress,
/// holds a bounded number of answers, and serves everyone else meanwhile.
#[test]
fn a_client_that_never_reads_is_held_to_a_bounded_backlog() {
    use cache_net::frame::{self, FrameKind};
    local(async {
        let nodes = start_cluster(&quorum());
        let big = vec![b'x'; 256 << 10];
        nodes[0].node().set("big", big, None).await.unwrap();
        let served_before = nodes[0].net_stats().requests_served;
        let mut stream = tokio::net::TcpStream::connect(nodes[0].local_addr()).await.unwrap();
        let mut session =
            cache_net::handshake::dial(&mut stream, &Keys::default(), cache_net::Role::Client)
                .await
                .unwrap();
        let mut out = bytes::BytesMut::new();
        let get = cache::PeerRequest::Client(cache::ClientRequest::Get {
            key: "big".into(),
            consistency: Some(Consistency::One),
        });
        for id in 0..2_000 {
            let mut one = bytes::BytesMut::new();
            frame::encode(FrameKind::Request, id, &get, &mut one).unwrap();
            session.sealer.seal(&mut one);
            out.extend_from_slice(&one);
        }
        stream.write_all(&out).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let served = nodes[0].net_stats().requests_served - served_before;
        assert!(served >= 50, "the node served the client at first ({served} answers)");
        // In progress, plus queued for the writer (64), plus what the socket buffers
        // take (a few 256 KiB answers): far below the 2,000 sent.
        let bound = 500;
        assert!(cache_net::REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX + 64 < bound);
        assert!(served <= bound as u64, "{served} answers queued for a client that reads none");
        let other =
            cache_net::Client::new(nodes[0].local_addr().to_string(), Duration::from_secs(2), None);
        other.set("k", "v", None, None).await.unwrap();
        drop(stream);
    });
}

/// Stopping a node closes its connections to its peers too, even while something
/// still holds the node (a test body, a client of its API).
#[test]
fn a_stopped_node_closes_its_connections_to_peers() {
    local(async {
        let nodes = start_cluster(&quorum());
        for index in 0..20 {
            nodes[0].node().set(&format!("key{index}"), "v", None).await.unwrap();
        }
        let open_before = nodes[1].net_stats().connections_open;
        assert!(open_before >= 1, "n1 holds a connection to n2");
        let held = nodes[0].shared_node();
        nodes[0].stop();
        let mut open_after = open_before;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            open_after = nodes[1].net_stats().connections_open;
            if open_after < open_before {
                break;
            }
        }
        assert!(open_after < open_before, "n2 still holds {open_after} connections");
        assert!(held.is_stopped());
    });
}

/// Dialers that connect and never finish the handshake hold at most
/// `HANDSHAKING_COUNT_MAX` slots: the next connection is refused at once, and clients
/// get in again once those dialers are gone.
#[test]
fn dialers_that_never_finish_the_handshake_cannot_take_every_slot() {
    local(async {
        let nodes = start_cluster(&quorum());
        let target = nodes[0].local_addr();
        let mut idle = Vec::new();
        for _ in 0..cache_net::HANDSHAKING_COUNT_MAX {
            idle.push(tokio::net::TcpStream::connect(target).await.unwrap());
        }
        // Each is counted once its connection task has run.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused_before = nodes[0].net_stats().connections_refused;
        let mut one_more = tokio::net::TcpStream::connect(target).await.unwrap();
        assert!(send_and_hear(&mut one_more, b"").await.is_empty());
        let refused = nodes[0].net_stats().connections_refused - refused_before;
        assert!(refused >= 1, "a dialer past the handshake limit was let in");
        drop(idle);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let client = cache_net::Client::new(target.to_string(), Duration::from_secs(2), None);
        client.set("k", "v", None, None).await.unwrap();
    });
}

/// A peer that completes the handshake and then answers nothing (frozen, and no RST
/// to say so): after `TIMEOUTS_IN_A_ROW_MAX` calls in a row time out, the transport
/// gives the connection up, and the next call dials afresh.
#[test]
fn a_connection_without_answers_is_given_up_and_dialed_again() {
    local(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let counter = accepted.clone();
        tokio::task::spawn_local(async move {
            let mut held = Vec::new();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.set(counter.get() + 1);
                let mut buffer = bytes::BytesMut::new();
                let keys = Keys::default();
                if cache_net::handshake::accept(&mut stream, &mut buffer, &keys).await.is_ok() {
                    held.push(stream); // reads nothing, answers nothing
                }
            }
        });
        let client = cache_net::Client::new(address, Duration::from_millis(100), None);
        for _ in 0..cache_net::TIMEOUTS_IN_A_ROW_MAX {
            let timed_out = client.get("k", None).await;
            assert_eq!(
                timed_out,
                Err(cache_net::ClientError::Transport(cache::TransportError::Timeout))
            );
        }
        assert_eq!(accepted.get(), 1, "one connection, reused");
        let _ = client.get("k", None).await;
        assert_eq!(accepted.get(), 2, "the silent connection was given up and dialed again");
    });
}
