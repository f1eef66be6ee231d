//! Fault-injection tests of the raftexample store.

mod lincheck;
