//! Bad input: requests the cache must refuse, sent now and then among the workload's,
//! and the check that each is refused with the error that names what is wrong.
//!
//! An empty key, a key over [`cache::KEY_LEN_MAX`] bytes, a value over
//! [`cache::VALUE_LEN_MAX`] bytes (in the `keys` profile only: its digest costs a run
//! about as much as the rest of it) and a malformed listing pattern. The contract: the
//! node answers with [`cache::Error::InvalidKey`], [`cache::Error::ValueTooLarge`] or
//! [`cache::Error::InvalidPattern`], and stores nothing. A request lost to a fault
//! (no answer) or refused by a stopping node is no violation.

use bytes::Bytes;
use cache::{ClientRequest, ClientResponse, Consistency, Error, NodeId, PeerResponse};
use sim::net::RpcError;
use sim::rand::Ratio;

use crate::checker::{Check, Violation};

/// The share of a client's requests that are bad input.
pub(crate) const BAD_INPUT_SHARE: Ratio = Ratio::new(1, 64);

/// A bad request the cache answered other than as the contract says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BadInput {
    /// When the answer arrived (virtual ns).
    pub at_ns: u64,
    /// The node asked.
    pub target: NodeId,
    /// What was wrong with the request.
    pub what: &'static str,
    /// The answer, as printed.
    pub answer: String,
}

/// What is wrong with one bad request, and whether an error is the one that says so.
pub(crate) struct BadRequest {
    pub(crate) what: &'static str,
    pub(crate) request: ClientRequest,
    /// Whether an error is the one the contract names.
    pub(crate) expected: fn(&Error) -> bool,
}

fn invalid_key(error: &Error) -> bool {
    matches!(error, Error::InvalidKey { .. })
}

fn too_large(error: &Error) -> bool {
    matches!(error, Error::ValueTooLarge { .. })
}

fn invalid_pattern(error: &Error) -> bool {
    matches!(error, Error::InvalidPattern(_))
}

/// Draws one bad request; a value over the limit only if `oversized` allows it.
pub(crate) fn draw(oversized: bool) -> BadRequest {
    let long_key = || "k".repeat(cache::KEY_LEN_MAX + 1);
    let key = if sim::rand::chance(Ratio::new(1, 2)) { String::new() } else { long_key() };
    let consistency = Some(Consistency::Quorum);
    let value = Bytes::from_static(b"bad");
    let bad = |what, request, expected| BadRequest { what, request, expected };
    match sim::rand::range(0..5) {
        0 if oversized => {
            let value = Bytes::from(vec![b'.'; cache::VALUE_LEN_MAX + 1]);
            let request = ClientRequest::Set { key: "k0".into(), value, ttl: None, consistency };
            bad("a value over the size limit", request, too_large)
        }
        0 | 1 => {
            let request = ClientRequest::Set { key, value, ttl: None, consistency };
            bad("a set of an empty or too long key", request, invalid_key)
        }
        2 => bad(
            "a get of an empty or too long key",
            ClientRequest::Get { key, consistency },
            invalid_key,
        ),
        3 => {
            let request = ClientRequest::Remove { key, consistency };
            bad("a remove of an empty or too long key", request, invalid_key)
        }
        _ => {
            let pattern =
                if sim::rand::chance(Ratio::new(1, 2)) { "k[1".into() } else { long_key() };
            let request = ClientRequest::ListKeys { pattern, max: 0 };
            bad("a listing with a malformed or too long pattern", request, invalid_pattern)
        }
    }
}

/// `None` when `answer` is what the contract allows (an error that is `expected`);
/// else the answer printed.
pub(crate) fn judge(
    expected: fn(&Error) -> bool,
    answer: &Result<PeerResponse, RpcError>,
) -> Option<String> {
    let error = match answer {
        // Lost to a fault, or a node on its way down.
        Err(_) | Ok(PeerResponse::Failed(Error::Stopped)) => return None,
        Ok(PeerResponse::Client(
            ClientResponse::Written(Err(error))
            | ClientResponse::Read(Err(error))
            | ClientResponse::Keys(Err(error)),
        )) => error,
        Ok(other) => return Some(format!("{other:?}")),
    };
    if expected(error) { None } else { Some(format!("error: {error}")) }
}

/// Safety: every bad request was refused with the error that names what is wrong.
pub(crate) fn bad_input_accepted(bad_inputs: &[BadInput]) -> Vec<Violation> {
    bad_inputs
        .iter()
        .map(|bad| Violation {
            check: Check::BadInputAccepted,
            message: format!(
                "{} sent {} at {:.3}s answered {}",
                bad.target,
                bad.what,
                bad.at_ns as f64 / 1e9,
                shorten(&bad.answer)
            ),
            ops: Vec::new(),
        })
        .collect()
}

/// An answer cut to a line (a listing may be long).
fn shorten(answer: &str) -> String {
    const SHOWN_MAX: usize = 160;
    match answer.char_indices().nth(SHOWN_MAX) {
        Some((at, _)) => format!("{}…", &answer[..at]),
        None => answer.to_string(),
    }
}
