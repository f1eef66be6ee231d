//! A node whose disk fills up, on the in-memory disk (`raftexample::disk::MemFs`): what it
//! keeps doing, what it says, and that freeing space is all it takes.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{TestCluster, call, wait_for};
use raftexample::{Exit, NodeHandle};

/// A snapshot the disk has no room for does not stop the node (the original, and this port
/// before, stopped, and under a supervisor restarted into the same snapshot, in a loop until
/// someone freed space): the snapshotter leaves no file, the WAL still holds every entry, the
/// node goes on serving and counts the failure, and once there is room again its next try
/// saves the snapshot.
#[tokio::test(start_paused = true)]
async fn a_snapshot_the_disk_has_no_room_for_is_tried_again_later() {
    let mut c = TestCluster::start(3, |c| {
        c.snapshot_count = 40;
        c.snapshot_catchup_entries = 5;
    })
    .await;
    let leader = c.wait_leader().await;
    let node = c.node(leader).clone();
    // A state far larger than the room left below.
    let big = bytes::Bytes::from("b".repeat(16 << 10));
    for i in 0..20 {
        node.put(format!("/big{i}"), big.clone())
            .await
            .expect("put");
    }
    let disk = c.mem_disk(leader);
    disk.set_capacity(Some(disk.used_bytes() + (96 << 10)));
    small_writes_until_a_snapshot_fails(&node).await;
    assert_eq!(node.status().await.expect("status").snapshot_index, 0);
    // Still serving, and writes still commit through it.
    node.put("/after".into(), "yes".into())
        .await
        .expect("the node still serves");
    c.wait_converged("/after", "yes").await;

    disk.set_capacity(None);
    let saved = wait_for(
        Duration::from_secs(60),
        "the node to save a snapshot once there is room",
        || async {
            let index = node.status().await.ok()?.snapshot_index;
            (index > 0).then_some(index)
        },
    )
    .await;
    assert!(saved >= 40, "a snapshot at {saved}");
    assert_eq!(node.metrics().snapshots.get(), 1);
    c.shutdown().await;
}

/// A snapshot taken again in place of a damaged file shows that the disk has room as much as
/// one at a new index does: the next time the disk fills, the node starts over, trying again
/// after the first wait (1 s) and warning again. The retake left the full disk's retry
/// behind, so the next full disk waited twice the last wait (up to 32 s), and said so only in
/// a debug line.
#[tokio::test(start_paused = true)]
async fn a_snapshot_taken_again_ends_a_full_disks_wait() {
    let mut c = TestCluster::snapshotting_often().await;
    let leader = c.wait_leader().await;
    // A state far larger than the room left below.
    let big = bytes::Bytes::from("b".repeat(16 << 10));
    for i in 0..20 {
        c.node(leader)
            .put(format!("/big{i}"), big.clone())
            .await
            .expect("put");
    }
    let setup = c.snapshot_with_a_follower_behind().await;
    let node = c.node(setup.leader).clone();
    let failed = || node.metrics().snapshots_failed.get();
    let disk = c.mem_disk(setup.leader);
    c.damage(&setup);
    disk.set_capacity(Some(disk.used_bytes() + (96 << 10)));
    c.net.heal();
    wait_for(
        Duration::from_secs(30),
        "the snapshot taken again to find no room",
        || async { (failed() >= 1).then_some(()) },
    )
    .await;
    disk.set_capacity(None);
    c.caught_up(
        &setup,
        Duration::from_secs(30),
        "the follower to catch up from the snapshot taken again",
    )
    .await;

    disk.set_capacity(Some(disk.used_bytes() + (96 << 10)));
    let before = small_writes_until_a_snapshot_fails(&node).await;
    wait_for(
        Duration::from_millis(1_500),
        "the next try after the first wait, 1 s",
        || async { (failed() > before + 1).then_some(()) },
    )
    .await;
    disk.set_capacity(None);
    c.shutdown().await;
}

/// A leader whose WAL finds its disk full stops, and its clients hear why, not the words of a
/// clean stop (found by a hands-on campaign: a PUT in flight heard "the node is shutting
/// down", as for a SIGTERM): the write it had proposed "may still happen", one sent after it
/// stopped "will not happen", a read read nothing, and each says to go to another member.
/// The status codes are those of a clean stop.
#[tokio::test(start_paused = true)]
async fn a_node_stopped_by_a_full_disk_tells_its_clients_why() {
    let mut c = TestCluster::start(3, |_| {}).await;
    let leader = c.wait_leader().await;
    let router = c.router(leader);
    let (code, body) = call(&router, Method::PUT, "/before", b"v".to_vec()).await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    let disk = c.mem_disk(leader);
    disk.set_capacity(Some(disk.used_bytes()));
    // Pages of its own: the WAL's write needs room the disk no longer has.
    let value = vec![b'v'; 64 << 10];
    let (code, in_flight) = call(&router, Method::PUT, "/k", value).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{in_flight}");
    for said in [
        "its disk is full",
        "No space left on device",
        "may still happen",
    ] {
        assert!(in_flight.contains(said), "{said:?} not in {in_flight:?}");
    }
    assert!(!in_flight.contains("shutting down"), "{in_flight}");
    match c.wait_exit(leader, Duration::from_secs(5)).await {
        Exit::Fatal(reason) => assert!(reason.contains("The disk is full"), "{reason}"),
        other => panic!("expected a fatal stop, got {other:?}"),
    }

    // The REST API still answers while the process winds down.
    let (code, after) = call(&router, Method::PUT, "/later", b"v".to_vec()).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{after}");
    for said in ["its disk is full", "will not happen", "another member"] {
        assert!(after.contains(said), "{said:?} not in {after:?}");
    }
    let (code, read) = call(&router, Method::GET, "/before", Vec::new()).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{read}");
    for said in ["its disk is full", "nothing was read", "another member"] {
        assert!(read.contains(said), "{said:?} not in {read:?}");
    }
    c.shutdown().await;
}

/// Small writes to `node`, one every 10 ms (at most 60), until it fails a snapshot; returns
/// how many it had failed before.
async fn small_writes_until_a_snapshot_fails(node: &NodeHandle) -> u64 {
    let failed = || node.metrics().snapshots_failed.get();
    let before = failed();
    let mut i = 0;
    while failed() == before {
        assert!(i < 60, "no snapshot was tried");
        node.put(format!("/small{i}"), "s".into())
            .await
            .expect("a small write has room in the WAL");
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    before
}
