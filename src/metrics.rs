//! Prometheus metrics of one node, served at `GET /-/metrics`. Each component updates its own
//! counters: the node handle counts proposals and reads, the raft node its term, leader
//! changes, WAL syncs and snapshots, the transport its messages, the REST API its requests.
//! One registry per node (not the process-wide default), so several nodes can share a
//! process in tests.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric of a node.
pub struct Metrics {
    registry: Registry,
    /// Proposals (PUTs and membership changes) received.
    pub proposals_received: IntCounter,
    /// Proposals applied and acknowledged.
    pub proposals_committed: IntCounter,
    /// Proposals that failed, by reason.
    pub proposals_failed: IntCounterVec,
    /// Proposals sent again because a leader change or a silence may have lost them.
    pub proposals_resent: IntCounter,
    /// Committed copies of proposals that had taken effect already: skipped.
    pub duplicates_skipped: IntCounter,
    /// Entries handed to the state machine.
    pub entries_applied: IntCounter,
    /// The current raft term.
    pub term: IntGauge,
    /// The leader this node knows (0: none).
    pub leader: IntGauge,
    /// Times a leader became known, after none was or in a new term (not the times none was):
    /// a leader deposed and elected again counts again.
    pub leader_changes: IntCounter,
    /// Linearizable reads started.
    pub read_index_requests: IntCounter,
    /// Time from a linearizable read's arrival to its being safe to serve.
    pub read_index_seconds: Histogram,
    /// Duration of each WAL write that ended in a sync.
    pub wal_sync_seconds: Histogram,
    /// Entries in each WAL write that ended in a sync: how well proposals are batched.
    pub wal_sync_entries: Histogram,
    /// Bytes appended to the WAL.
    pub wal_bytes_written: IntCounter,
    /// Snapshots saved (taken here or received from the leader).
    pub snapshots: IntCounter,
    /// Snapshots this node could not save for want of disk space (it goes on, and tries again).
    pub snapshots_failed: IntCounter,
    /// Time to take and save a snapshot.
    pub snapshot_seconds: Histogram,
    /// Raft messages handed to a peer's connection, by peer.
    pub peer_messages_sent: IntCounterVec,
    /// Raft messages dropped (queue full or peer unreachable), by peer.
    pub peer_messages_dropped: IntCounterVec,
    /// REST requests, by route and status code.
    pub http_requests: IntCounterVec,
}

/// Latency buckets from 100 µs to 10 s: a WAL sync on a fast disk is well under a
/// millisecond, a read during an election can take seconds.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.5, 14).expect("constant bucket parameters are valid")
}

impl Metrics {
    /// A fresh registry with every metric registered, labelled with the node id.
    pub fn new(node_id: u64) -> Metrics {
        let registry = Registry::new_custom(
            Some("raftexample".into()),
            Some([("node".to_string(), node_id.to_string())].into()),
        )
        .expect("a constant prefix and label are valid");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("constant metric names are valid");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric is registered once");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("constant metric names are valid");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric is registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("constant metric names are valid");
            registry
                .register(Box::new(g.clone()))
                .expect("each metric is registered once");
            g
        };
        let histogram_with = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("constant metric names are valid");
            registry
                .register(Box::new(h.clone()))
                .expect("each metric is registered once");
            h
        };
        let histogram = |name: &str, help: &str| histogram_with(name, help, latency_buckets());
        // The build as labels of a constant 1, as Prometheus exporters name theirs: a query
        // joins it to any other metric by the node label, to see which nodes still run an
        // older build in a rolling upgrade.
        let build = crate::version::BUILD;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "The build this node runs: its git commit and the commit's date (labels).",
            ),
            &["commit", "date"],
        )
        .expect("constant metric names are valid");
        build_info
            .with_label_values(&[build.commit, build.date])
            .set(1);
        registry
            .register(Box::new(build_info))
            .expect("each metric is registered once");
        Metrics {
            proposals_received: counter(
                "proposals_received_total",
                "Proposals (PUT, POST, DELETE) received.",
            ),
            proposals_committed: counter(
                "proposals_committed_total",
                "Proposals committed, applied and acknowledged.",
            ),
            proposals_failed: counter_vec(
                "proposals_failed_total",
                "Proposals that failed, by reason.",
                &["reason"],
            ),
            proposals_resent: counter(
                "proposals_resent_total",
                "Proposals sent again after a silence (a leader change sends everything again).",
            ),
            duplicates_skipped: counter(
                "duplicates_skipped_total",
                "Committed copies of proposals that had already taken effect, skipped.",
            ),
            entries_applied: counter(
                "entries_applied_total",
                "Committed entries handed to the state machine.",
            ),
            term: gauge("term", "Current raft term."),
            leader: gauge("leader", "Id of the leader this node knows (0 for none)."),
            leader_changes: counter(
                "leader_changes_total",
                "Times a leader became known, after none was or in a new term.",
            ),
            read_index_requests: counter(
                "read_index_requests_total",
                "Linearizable reads (ReadIndex) started.",
            ),
            read_index_seconds: histogram(
                "read_index_seconds",
                "Time until a linearizable read was safe to serve.",
            ),
            wal_sync_seconds: histogram(
                "wal_sync_seconds",
                "Duration of WAL writes that ended in an fsync.",
            ),
            wal_sync_entries: histogram_with(
                "wal_sync_entries",
                "Entries in each WAL write that ended in an fsync.",
                prometheus::exponential_buckets(1.0, 2.0, 13)
                    .expect("constant bucket parameters are valid"),
            ),
            wal_bytes_written: counter("wal_bytes_written_total", "Bytes appended to the WAL."),
            snapshots: counter("snapshots_total", "Snapshots saved."),
            snapshots_failed: counter(
                "snapshots_failed_total",
                "Snapshots not saved for want of disk space (the node tries again).",
            ),
            snapshot_seconds: histogram(
                "snapshot_seconds",
                "Time to serialize and save a snapshot.",
            ),
            peer_messages_sent: counter_vec(
                "peer_messages_sent_total",
                "Raft messages delivered to a peer.",
                &["peer"],
            ),
            peer_messages_dropped: counter_vec(
                "peer_messages_dropped_total",
                "Raft messages dropped: queue full or peer unreachable.",
                &["peer"],
            ),
            http_requests: counter_vec(
                "http_requests_total",
                "REST requests by route and status code.",
                &["route", "status"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on I/O, which a Vec does not do.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_the_node_label() {
        let m = Metrics::new(7);
        m.proposals_received.inc();
        m.peer_messages_sent.with_label_values(&["2"]).inc_by(3);
        m.wal_sync_seconds.observe(0.001);
        let text = m.render();
        assert!(
            text.contains("raftexample_proposals_received_total{node=\"7\"} 1"),
            "{text}"
        );
        let sent = text
            .lines()
            .find(|l| l.starts_with("raftexample_peer_messages_sent_total{"))
            .expect("the sent counter is rendered");
        assert!(sent.contains("peer=\"2\"") && sent.contains("node=\"7\"") && sent.ends_with(" 3"));
        assert!(text.contains("# TYPE raftexample_wal_sync_seconds histogram"));
    }

    /// The build is a metric (a user's campaign found none): the commit and its date as
    /// labels of a constant 1, beside the node's.
    #[test]
    fn renders_the_build_as_labels() {
        let text = Metrics::new(7).render();
        let build = crate::version::BUILD;
        let info = format!(
            "raftexample_build_info{{commit=\"{}\",date=\"{}\",node=\"7\"}} 1",
            build.commit, build.date
        );
        assert!(text.lines().any(|l| l == info), "{info} in {text}");
    }
}
