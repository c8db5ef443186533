//! Message rules: scripted faults that look at each message as it is sent.
//!
//! Rules are consulted in install order; the first verdict other than
//! [`Verdict::Deliver`] wins, and with none the link model alone decides. A rule is
//! removed when its [`RuleGuard`] drops. Rules run outside every borrow of the
//! simulation, so a rule may itself call [`crate::Handle`] methods (partition the
//! network once a given message is sent, say). Such a fault applies to the message
//! being judged too: the link model runs after the rules.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use crate::net::address::Addr;

/// Rules installed at once; one more is a bug in the test (a rule installed in a
/// loop and never dropped).
pub const RULES_MAX: usize = 1024;

/// What a rule decides for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No opinion: later rules, then the link model, decide.
    Deliver,
    /// Drop the message (counted as [`crate::net::DropCause::Rule`]).
    Drop,
    /// Add this much to the message's latency.
    Delay(Duration),
    /// Send one extra copy; each copy goes through the link model on its own.
    Duplicate,
}

/// What a rule sees of a message.
pub struct MessageMeta<'a> {
    pub(crate) from: Addr,
    pub(crate) to: Addr,
    pub(crate) link_seq: u64,
    pub(crate) type_name: &'static str,
    pub(crate) payload: &'a dyn Any,
}

impl fmt::Debug for MessageMeta<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageMeta")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("link_seq", &self.link_seq)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

impl MessageMeta<'_> {
    /// The sending endpoint.
    pub fn from(&self) -> Addr {
        self.from
    }

    /// The destination.
    pub fn to(&self) -> Addr {
        self.to
    }

    /// The message's number on its directed node-to-node link: 1 for the first
    /// message ever sent from `from.node()` to `to.node()`, 2 for the second, …
    /// whatever their ports.
    pub fn link_seq(&self) -> u64 {
        self.link_seq
    }

    /// The payload's type, as [`std::any::type_name`] spells it.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The payload.
    pub fn payload(&self) -> &dyn Any {
        self.payload
    }

    /// The payload, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.payload.downcast_ref::<T>()
    }
}

type RuleFn = Rc<RefCell<dyn FnMut(&MessageMeta<'_>) -> Verdict>>;

struct Entry {
    id: u64,
    rule: RuleFn,
}

/// The installed rules, shared by the network and the guards.
#[derive(Default)]
pub(crate) struct RuleList {
    entries: Vec<Entry>,
    id_next: u64,
}

impl fmt::Debug for RuleList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleList").field("count", &self.entries.len()).finish_non_exhaustive()
    }
}

pub(crate) type Rules = Rc<RefCell<RuleList>>;

/// Installs `rule` last.
pub(crate) fn install(
    rules: &Rules,
    rule: impl FnMut(&MessageMeta<'_>) -> Verdict + 'static,
) -> RuleGuard {
    let mut list = rules.borrow_mut();
    assert!(list.entries.len() < RULES_MAX, "more than {RULES_MAX} message rules installed");
    let id = list.id_next;
    list.id_next += 1;
    list.entries.push(Entry { id, rule: Rc::new(RefCell::new(rule)) });
    RuleGuard { rules: Rc::clone(rules), id }
}

pub(crate) fn is_empty(rules: &Rules) -> bool {
    rules.borrow().entries.is_empty()
}

/// The verdict of the installed rules on one message.
///
/// Each rule is fetched by index under a short borrow, so a rule may install or drop
/// rules. A rule that sends a message is not consulted on that message (it is busy).
pub(crate) fn evaluate(rules: &Rules, meta: &MessageMeta<'_>) -> Verdict {
    for index in 0..RULES_MAX {
        let Some(rule) = rules.borrow().entries.get(index).map(|entry| Rc::clone(&entry.rule))
        else {
            return Verdict::Deliver;
        };
        let verdict = match rule.try_borrow_mut() {
            Ok(mut rule) => rule(meta),
            Err(_) => Verdict::Deliver,
        };
        if verdict != Verdict::Deliver {
            return verdict;
        }
    }
    Verdict::Deliver
}

/// Keeps a message rule installed; dropping it removes the rule.
#[must_use = "the rule is removed as soon as its guard drops"]
pub struct RuleGuard {
    rules: Rules,
    id: u64,
}

impl fmt::Debug for RuleGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleGuard").field("id", &self.id).finish()
    }
}

impl Drop for RuleGuard {
    fn drop(&mut self) {
        let removed = {
            let mut list = self.rules.borrow_mut();
            let position = list.entries.iter().position(|entry| entry.id == self.id);
            let position = position.expect("a guard's rule stays installed until the guard drops");
            list.entries.remove(position)
        };
        // The closure's captures drop outside the borrow: they may hold other guards.
        drop(removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeId;

    fn meta(link_seq: u64, payload: &dyn Any) -> MessageMeta<'_> {
        let addr = Addr::new(NodeId::MAIN, 1);
        MessageMeta { from: addr, to: addr, link_seq, type_name: "u32", payload }
    }

    #[test]
    fn first_opinion_wins_in_install_order_and_guards_remove() {
        let rules = Rules::default();
        let passive = install(&rules, |_| Verdict::Deliver);
        let dropper =
            install(
                &rules,
                |meta| {
                    if meta.link_seq() == 2 { Verdict::Drop } else { Verdict::Deliver }
                },
            );
        let duplicator = install(&rules, |_| Verdict::Duplicate);
        assert_eq!(evaluate(&rules, &meta(1, &7u32)), Verdict::Duplicate);
        assert_eq!(evaluate(&rules, &meta(2, &7u32)), Verdict::Drop);
        drop(dropper);
        assert_eq!(evaluate(&rules, &meta(2, &7u32)), Verdict::Duplicate);
        drop(duplicator);
        drop(passive);
        assert!(is_empty(&rules));
        assert_eq!(evaluate(&rules, &meta(2, &7u32)), Verdict::Deliver);
    }

    #[test]
    fn meta_exposes_payload() {
        let value = 41u32;
        let meta = meta(3, &value);
        assert_eq!(meta.downcast_ref::<u32>(), Some(&41));
        assert_eq!(meta.downcast_ref::<u64>(), None);
        assert!(meta.payload().is::<u32>());
        assert_eq!(meta.type_name(), "u32");
    }
}
