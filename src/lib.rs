//! raftexample: etcd's contrib/raftexample ported to Rust, a replicated key-value store on raft-rs.
pub mod fsutil;
pub mod snapshotter;
pub mod wal;
