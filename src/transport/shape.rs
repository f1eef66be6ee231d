//! What a peer's message must look like before raft sees it. raft-rs trusts its peers: a
//! proposal without entries, a read request without its context, an append whose entries do
//! not follow its index, or a snapshot whose membership cannot be restored makes it panic, and
//! the node with it. No correct peer sends any of these, so the peer server refuses them (400)
//! and the node keeps running. (A peer that lies within the rules, say a leader of a made-up
//! term, is beyond what raft can defend against; TLS with client certificates keeps such
//! senders out.)

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfState, Message, MessageType};
use raft::{Changer, ProgressTracker};

/// Why raft must not be given `m`; `None` if it may.
pub(super) fn problem(m: &Message) -> Option<String> {
    let entries = m.get_entries();
    match m.get_msg_type() {
        MessageType::MsgPropose if entries.is_empty() => {
            Some("a proposal (MsgPropose) without entries".into())
        }
        // raft-rs reads the request's context from its one entry.
        MessageType::MsgReadIndex | MessageType::MsgReadIndexResp if entries.len() != 1 => {
            Some(format!(
                "a read request ({:?}) with {} entries, not one",
                m.get_msg_type(),
                entries.len()
            ))
        }
        MessageType::MsgAppend => entries
            .iter()
            .zip(1u64..)
            .find(|(e, n)| Some(e.index) != m.index.checked_add(*n))
            .map(|(e, _)| {
                format!(
                    "an append after index {} whose entries do not follow it (entry {})",
                    m.index, e.index
                )
            }),
        MessageType::MsgSnapshot => {
            let cs = m.get_snapshot().get_metadata().get_conf_state();
            restorable(cs)
                .err()
                .map(|why| format!("a snapshot whose membership {cs:?} cannot be restored: {why}"))
        }
        _ => None,
    }
}

/// Whether raft can restore `cs` from a snapshot: the same steps raft-rs takes (outgoing
/// voters first, then the joint step to the incoming configuration), on a scratch tracker,
/// and the result must be `cs` again (raft-rs panics otherwise).
fn restorable(cs: &ConfState) -> Result<(), String> {
    let single = |id: &u64, kind: ConfChangeType| {
        let mut c = ConfChangeSingle {
            node_id: *id,
            ..Default::default()
        };
        c.set_change_type(kind);
        c
    };
    let outgoing = cs.get_voters_outgoing();
    let incoming: Vec<ConfChangeSingle> = outgoing
        .iter()
        .map(|id| single(id, ConfChangeType::RemoveNode))
        .chain(
            cs.get_voters()
                .iter()
                .map(|id| single(id, ConfChangeType::AddNode)),
        )
        .chain(
            cs.get_learners()
                .iter()
                .chain(cs.get_learners_next())
                .map(|id| single(id, ConfChangeType::AddLearnerNode)),
        )
        .collect();
    let mut tracker = ProgressTracker::new(1);
    let err = |e: raft::Error| e.to_string();
    if outgoing.is_empty() {
        for change in &incoming {
            let (conf, changes) = Changer::new(&tracker)
                .simple(std::slice::from_ref(change))
                .map_err(err)?;
            tracker.apply_conf(conf, changes, 1);
        }
    } else {
        for id in outgoing {
            let (conf, changes) = Changer::new(&tracker)
                .simple(&[single(id, ConfChangeType::AddNode)])
                .map_err(err)?;
            tracker.apply_conf(conf, changes, 1);
        }
        let (conf, changes) = Changer::new(&tracker)
            .enter_joint(cs.auto_leave, &incoming)
            .map_err(err)?;
        tracker.apply_conf(conf, changes, 1);
    }
    let restored = tracker.conf().to_conf_state();
    if same_members(cs, &restored) {
        Ok(())
    } else {
        Err(format!("it comes out as {restored:?}"))
    }
}

/// Whether `a` and `b` name the same configuration, in any order (a list with an id twice
/// names another).
pub(super) fn same_members(a: &ConfState, b: &ConfState) -> bool {
    let sorted = |ids: &[u64]| {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids
    };
    sorted(a.get_voters()) == sorted(b.get_voters())
        && sorted(a.get_learners()) == sorted(b.get_learners())
        && sorted(a.get_voters_outgoing()) == sorted(b.get_voters_outgoing())
        && sorted(a.get_learners_next()) == sorted(b.get_learners_next())
        && a.auto_leave == b.auto_leave
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn message(kind: MessageType, index: u64, entry_indexes: &[u64]) -> Message {
        let mut m = Message {
            index,
            ..Default::default()
        };
        m.set_msg_type(kind);
        m.set_entries(
            entry_indexes
                .iter()
                .map(|&index| Entry {
                    index,
                    ..Default::default()
                })
                .collect::<Vec<_>>()
                .into(),
        );
        m
    }

    fn snapshot_with(cs: ConfState) -> Message {
        let mut m = message(MessageType::MsgSnapshot, 0, &[]);
        m.mut_snapshot().mut_metadata().set_conf_state(cs);
        m
    }

    #[test]
    fn what_raft_sends_passes() {
        for m in [
            message(MessageType::MsgPropose, 0, &[0]),
            message(MessageType::MsgReadIndex, 0, &[0]),
            message(MessageType::MsgReadIndexResp, 7, &[0]),
            message(MessageType::MsgAppend, 4, &[5, 6, 7]),
            message(MessageType::MsgAppend, 4, &[]),
            message(MessageType::MsgHeartbeat, 0, &[]),
            snapshot_with(ConfState::from((vec![1, 2, 3], vec![4]))),
        ] {
            assert_eq!(problem(&m), None, "{m:?}");
        }
        // Joint: voters 1 2 3 leaving for 1 2 4, with 3 to stay as a learner.
        let mut joint = ConfState::from((vec![1, 2, 4], vec![]));
        joint.set_voters_outgoing(vec![1, 2, 3]);
        joint.set_learners_next(vec![3]);
        joint.auto_leave = true;
        assert_eq!(problem(&snapshot_with(joint)), None);
    }

    /// Each of these panicked raft-rs when a peer sent it (found by a review), but for the
    /// id listed twice: raft compares members as sets, and would take it for another list.
    #[test]
    fn shapes_that_would_panic_raft_are_named() {
        let cases = [
            (message(MessageType::MsgPropose, 0, &[]), "without entries"),
            (message(MessageType::MsgReadIndex, 0, &[]), "0 entries"),
            (message(MessageType::MsgReadIndex, 0, &[0, 0]), "2 entries"),
            (message(MessageType::MsgAppend, 4, &[6]), "entry 6"),
            (message(MessageType::MsgAppend, 4, &[5, 5]), "entry 5"),
            (message(MessageType::MsgAppend, u64::MAX, &[0]), "entry 0"),
            (
                snapshot_with(ConfState::from((vec![], vec![2]))),
                "cannot be restored",
            ),
            (
                snapshot_with(ConfState::from((vec![1, 2, 3], vec![3]))),
                "cannot be restored",
            ),
            (
                snapshot_with(ConfState::from((vec![1, 1, 2], vec![]))),
                "cannot be restored",
            ),
            (
                snapshot_with(ConfState {
                    voters: vec![1, 2],
                    learners_next: vec![3],
                    ..Default::default()
                }),
                "cannot be restored",
            ),
            (
                snapshot_with(ConfState {
                    voters: vec![1, 2],
                    auto_leave: true,
                    ..Default::default()
                }),
                "cannot be restored",
            ),
        ];
        for (m, said) in cases {
            let problem = problem(&m).unwrap_or_else(|| panic!("{m:?} passed"));
            assert!(problem.contains(said), "{problem}");
        }
    }
}
