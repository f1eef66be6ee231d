//! The Ready trace: with `RUST_LOG=raftexample::ready=trace`, one line for each part of each
//! `Ready` the node handles (hard state, new and committed entries, outgoing messages,
//! snapshot, read states), so a person learning Raft can watch a PUT travel through the
//! protocol. Nothing is formatted unless that target is enabled.
//!
//! The same Readys go to the page at `/-/ui` as [`crate::events`], built only while a page
//! watches.

use raft::eraftpb::{Entry, Message};
use raft::{LightReady, Ready};

use crate::describe::entry_text;
use crate::events::Events;

const TARGET: &str = "raftexample::ready";

fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::TRACE)
}

/// Traces a `Ready` before it is handled, and publishes it to any page watching.
pub(super) fn ready(node: u64, rd: &Ready, events: &Events) {
    events.ready(node, rd);
    if !enabled() {
        return;
    }
    tracing::trace!(
        target: TARGET, node, number = rd.number(), must_sync = rd.must_sync(), "ready"
    );
    if let Some(ss) = rd.ss() {
        tracing::trace!(
            target: TARGET, node, leader = ss.leader_id, role = ?ss.raft_state, "soft state"
        );
    }
    if let Some(hs) = rd.hs() {
        tracing::trace!(
            target: TARGET, node, term = hs.term, vote = hs.vote, commit = hs.commit,
            "hard state"
        );
    }
    if !rd.snapshot().is_empty() {
        let meta = rd.snapshot().get_metadata();
        tracing::trace!(
            target: TARGET, node, term = meta.term, index = meta.index,
            voters = ?meta.get_conf_state().voters, bytes = rd.snapshot().data.len(), "snapshot"
        );
    }
    entries(node, "new entry", rd.entries());
    entries(node, "committed entry", rd.committed_entries());
    messages(
        node,
        "message (sent before the WAL write: leader)",
        rd.messages(),
    );
    messages(
        node,
        "message (sent after the WAL write)",
        rd.persisted_messages(),
    );
    for rs in rd.read_states() {
        tracing::trace!(
            target: TARGET, node, index = rs.index, ctx = ?rs.request_ctx, "read state"
        );
    }
}

/// Traces what `advance` released, and publishes it to any page watching.
pub(super) fn light_ready(node: u64, light: &LightReady, events: &Events) {
    events.light_ready(node, light);
    if !enabled() {
        return;
    }
    if let Some(commit) = light.commit_index() {
        tracing::trace!(target: TARGET, node, commit, "commit index advanced");
    }
    entries(node, "committed entry", light.committed_entries());
    messages(node, "message (after advance)", light.messages());
}

fn entries(node: u64, what: &str, entries: &[Entry]) {
    for e in entries {
        tracing::trace!(
            target: TARGET, node, term = e.term, index = e.index, entry = %entry_text(e),
            "{what}"
        );
    }
}

fn messages(node: u64, what: &str, messages: &[Message]) {
    for m in messages {
        tracing::trace!(
            target: TARGET, node, kind = ?m.get_msg_type(), from = m.from, to = m.to,
            term = m.term, index = m.index, log_term = m.log_term, entries = m.entries.len(),
            commit = m.commit, reject = m.reject, "{what}"
        );
    }
}
