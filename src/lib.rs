//! raftexample: placeholder while the crate is scaffolded.
