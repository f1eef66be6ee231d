//! Start-up: everything the raft node needs comes back from its two folders, in the order of
//! the original's `replayWAL`: lock the data dir, open the snapshotter, replay the WAL from the
//! newest snapshot it names, and fill raft's storage. A first start instead bootstraps the
//! membership from `--cluster`; a `--join` start begins empty and waits for the leader.
//!
//! Before any network I/O, a WAL left by another node or another cluster is refused with a
//! message that says whose it is and what to do about it.

use std::collections::BTreeSet;
use std::path::Path;

use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, HardState,
    Snapshot, SnapshotMetadata,
};
use raft::storage::MemStorage;

use super::storage::NodeStorage;
use crate::config::Config;
use crate::disk::{FileSystem, SharedFs, StdFs};
use crate::fsutil::DirLock;
use crate::incarnation::Incarnation;
use crate::kvstore::{ClusterState, read_snapshot};
use crate::membership::{
    Members, cluster_id, decode_conf_change, normalize_url, same_url, validate_peer_url,
};
use crate::snapshotter::Snapshotter;
use crate::wal::{Metadata, Wal, WalContents};

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The flags contradict each other.
    #[error("{0}")]
    BadFlags(String),
    /// The data dir belongs to another node or cluster.
    #[error("{0}")]
    ForeignDataDir(String),
    /// The data dir is in use by another process.
    #[error(transparent)]
    Lock(#[from] crate::fsutil::Error),
    /// The WAL cannot be read or written.
    #[error(transparent)]
    Wal(#[from] crate::wal::Error),
    /// The snapshots cannot be read.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshotter::Error),
    /// The recovered state is inconsistent (raft-rs would panic on it).
    #[error("{0}")]
    Inconsistent(String),
    /// The data dir lacks what it needs: entries its WAL says are committed, or that only a
    /// damaged or missing snapshot held.
    #[error("{0}")]
    Damaged(String),
    /// A member says this id has run since it was added: its data was lost (see
    /// `transport::join`).
    #[error("{0}")]
    LostData(String),
    /// Asked to stop before it started, while it waited for the other members to say
    /// whether its id has run (see `transport::join`).
    #[error("{0}")]
    Stopped(String),
    /// raft-rs refused the configuration or the state.
    #[error("raft: {0}")]
    Raft(raft::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<crate::transport::join::NotAnew> for StartError {
    fn from(err: crate::transport::join::NotAnew) -> StartError {
        use crate::transport::join::NotAnew;
        match err {
            NotAnew::HasRun(reason) => StartError::LostData(reason),
            NotAnew::Stopped(reason) => StartError::Stopped(reason),
        }
    }
}

/// What start-up recovered, ready to build the node from.
pub struct Recovered {
    /// The file system the node's storage is on (a joining node creates its WAL there later).
    pub fs: SharedFs,
    /// The WAL; `None` on a joining node until it learns its cluster.
    pub wal: Option<Wal>,
    /// raft's storage, filled.
    pub storage: NodeStorage,
    /// Members as of the snapshot (the log replay brings them up to date).
    pub members: Members,
    /// The exactly-once table as of the snapshot (likewise).
    pub sessions: crate::proposal::Sessions,
    /// The cluster's incarnation as of the snapshot (likewise).
    pub incarnation: Incarnation,
    /// The incarnation once the committed entries the WAL holds are applied again: what the
    /// transport checks its peers with from the start.
    pub incarnation_at_start: Incarnation,
    /// The key-value map as of the snapshot.
    pub kv: crate::kvstore::Map,
    /// Index of the snapshot loaded (0 if none).
    pub snapshot_index: u64,
    /// Bytes of application data in that snapshot (0 if none).
    pub snapshot_bytes: u64,
    /// Its conf state.
    pub conf_state: ConfState,
    /// The cluster identity; 0 on a joining node that has not heard from its cluster.
    pub cluster_id: u64,
    /// The commit index in the WAL: `/-/ready` waits until it is applied again.
    pub commit_at_start: u64,
    /// Held for the life of the process: one owner per data dir. Last, so that it is released
    /// only after the WAL has been dropped (and has written what it held back).
    pub lock: DirLock,
}

impl StartError {
    /// What to do about a data dir that cannot be used as it is (damaged or missing files),
    /// for the line that reports the error; `None` where the error itself says it. Written for
    /// the node `config` describes, with its id, peer URL and folders, so that it can be
    /// followed as printed (found by a user's campaign: it said `/<id>`).
    pub fn remedy(&self, config: &Config) -> Option<String> {
        use crate::{snapshotter, wal};
        if let StartError::Snapshot(snapshotter::Error::Decode { .. }) = self {
            // Intact, so not damage: most likely a newer build's snapshot (a downgrade). Taken
            // for damage, the node would be added back only to meet the same snapshot again.
            return Some(
                "the snapshot is whole but this build cannot read it: if a newer build of \
                 raftexample wrote it, start this node with that build"
                    .into(),
            );
        }
        if let StartError::Wal(wal::Error::NewerBuild { .. }) = self {
            // As for that snapshot: the lost-disk remedy would rebuild a healthy WAL (an
            // older build gave it for a newer build's type 10: review 111).
            return Some(format!(
                "the WAL is not damaged: a newer build of raftexample wrote it; start this \
                 node with that build (or a newer one), and do not remove or move {} or {}, \
                 nor remove the node from the cluster",
                config.wal_dir().display(),
                config.snap_dir().display(),
            ));
        }
        let damaged = match self {
            StartError::Wal(e) => matches!(
                e,
                wal::Error::Corrupt { .. }
                    | wal::Error::MissingSegments { .. }
                    | wal::Error::MissingEntries { .. }
            ),
            StartError::Snapshot(e) => matches!(
                e,
                snapshotter::Error::Corrupt { .. } | snapshotter::Error::NotFound { .. }
            ),
            StartError::Damaged(_) => true,
            _ => false,
        };
        if !damaged {
            return None;
        }
        let id = config.id;
        // The URL it listens on, as `check_flags` reads it: the one to add it back at.
        let url = config.own_peer_url().unwrap_or("its peer URL");
        // As for a lost disk: a voter that starts on less than it had must first be removed
        // and added back, and a backup is less than it had (it forgot votes and entries it
        // acknowledged since), so it is no remedy where others hold the data (found by a
        // user's campaign); a node alone holds it nowhere else.
        Some(format!(
            "to bring this node back, if the other members are healthy: remove it and add it \
             back (DELETE /{id}, then POST /{id} with {url}, on a member; a 404 to the DELETE \
             means it was removed already: go on with the POST), move {} and {} aside, and \
             start it again with --join (under ./cluster.sh: ./cluster.sh start \
             raftexample{id} --join); it then copies everything from them. A backup of a \
             member of a larger cluster will not do (it has forgotten votes it cast and entries \
             it acknowledged since); a cluster of one node has only its backup",
            config.wal_dir().display(),
            config.snap_dir().display(),
        ))
    }
}

/// Opens (or creates) the node's storage as `config` asks, on the real file system.
pub fn replay_wal(config: &Config) -> Result<Recovered, StartError> {
    replay_wal_on(config, StdFs::shared())
}

/// [`replay_wal`] on the file system `fs` (a simulation's, in memory): checks the flags,
/// takes the data dir's lock and opens the snapshotter, then takes one of the three paths of
/// the original's `replayWAL`: a restart from the WAL, a `--join` on an empty data dir, or the
/// first start of an initial member.
pub fn replay_wal_on(config: &Config, fs: SharedFs) -> Result<Recovered, StartError> {
    let own_url = check_flags(config)?;
    let wal_dir = config.wal_dir();
    let lock = DirLock::acquire_on(&*fs, &wal_dir)?;
    let snapshotter = Snapshotter::new_on(fs.clone(), &config.snap_dir(), config.max_snapshots)?;
    if Wal::exists_on(&*fs, &wal_dir) {
        restart(config, &own_url, fs, lock, snapshotter)
    } else if config.join {
        Ok(join_empty(fs, lock, snapshotter))
    } else {
        bootstrap(config, own_url, fs, lock, snapshotter)
    }
}

/// A restart: the WAL, the newest snapshot it names, and the entries after it, checked for
/// damage (a commit index or a snapshot marker past the entries held) before raft sees them.
fn restart(
    config: &Config,
    own_url: &str,
    fs: SharedFs,
    lock: DirLock,
    snapshotter: Snapshotter,
) -> Result<Recovered, StartError> {
    let wal_dir = config.wal_dir();
    let (mut wal, contents) = open_wal(config, own_url, &fs)?;
    warn_if_join_ignored(config, &contents);
    let mem = MemStorage::new();
    // Before the load, which passes over a damaged file (and says so): these were gone already.
    let missing = snapshotter.missing_named(&contents.snapshot_markers, 0);
    let snapshot = load_snapshot(&snapshotter, &contents, &mem)?;
    let (snapshot_index, snap_meta) = (snapshot.index(), snapshot.meta.as_ref());
    let (entries, hs) = replayed_log(&wal_dir, &snapshotter, &contents, snap_meta)?;
    warn_of_missing_snapshots(snapshotter.dir(), &missing, snap_meta);
    let conf_state = snap_meta
        .map(|m| m.get_conf_state().clone())
        .unwrap_or_default();
    let ClusterState {
        members,
        sessions,
        incarnation,
    } = snapshot.state;
    check_sole_voter(
        config, &wal_dir, own_url, &members, snap_meta, entries, hs.commit,
    )?;
    // Known before the transport sends or takes a message: a node that answered its
    // peers before it had applied its committed entries again could unseat their leader
    // with its term, before its incarnation told them apart (see crate::incarnation).
    let committed = entries.partition_point(|e| e.index <= hs.commit);
    let incarnation_at_start = incarnation.after(&entries[..committed]);
    mem.wl().append(entries).map_err(StartError::Raft)?;
    mem.wl().set_hardstate(hs.clone());
    tracing::info!(
        snapshot_index,
        entries = entries.len(),
        term = hs.term,
        commit = hs.commit,
        "replayed the WAL"
    );
    let segment_size = config.wal_options().segment_size;
    if let Some(warning) = low_space_warning(&*fs, &wal_dir, segment_size, snapshot.bytes) {
        tracing::warn!("{warning}");
    }
    // Only now, every check passed: a start refused above leaves the snapshot folder as it
    // was, so that the next start refuses in the same words and the data dir can be copied
    // for help as the refusal found it (a hands-on campaign: the damaged files were set
    // aside first, and the next refusal named them as missing); and an older build's WAL as
    // that build can start on it again (review 115, M1). Still before the node serves.
    snapshotter.set_damaged_aside()?;
    wal.seal_format()?;
    Ok(Recovered {
        wal: Some(wal),
        members,
        sessions,
        incarnation,
        incarnation_at_start,
        kv: snapshot.kv,
        snapshot_index,
        snapshot_bytes: snapshot.bytes,
        conf_state,
        cluster_id: contents.metadata.cluster_id,
        commit_at_start: hs.commit,
        ..Recovered::empty(lock, fs, NodeStorage::new(mem, snapshotter, snapshot.meta))
    })
}

/// Opens the WAL of a restart and checks that it is this node's. A first start that stopped
/// before it saved the cluster's first entries is finished here (see [`unfinished_bootstrap`]).
fn open_wal(
    config: &Config,
    own_url: &str,
    fs: &SharedFs,
) -> Result<(Wal, WalContents), StartError> {
    let wal_dir = config.wal_dir();
    let options = config.wal_options();
    let (mut wal, contents) = Wal::open_on(fs.clone(), &wal_dir, options)?;
    check_metadata(config, &wal_dir, own_url, &contents.metadata)?;
    if !unfinished_bootstrap(&contents) {
        return Ok((wal, contents));
    }
    // The first start stopped between creating the WAL and syncing its first entries and
    // hard state (a power loss, or a kill: the batch waits in memory for its sync). Started
    // as it is, the node has no members and never elects a leader, which a restart does not
    // mend (found by a review). It has promised nothing, so its first start is finished.
    tracing::warn!(
        wal = %wal_dir.display(),
        "the first start stopped before it saved the cluster's first entries; saving them now"
    );
    let (hs, entries) = bootstrap_log(&contents.metadata.initial_cluster);
    wal.save(Some(&hs), &entries, true)?;
    drop(wal);
    Ok(Wal::open_on(fs.clone(), &wal_dir, options)?)
}

/// Warns that `--join` is ignored where the WAL holds a cluster this node started itself.
fn warn_if_join_ignored(config: &Config, contents: &WalContents) {
    if !config.join || contents.metadata.initial_cluster.is_empty() {
        return;
    }
    // As in the original, a data dir decides; but a new member started once without
    // --join made a cluster of its own there, which the members refuse for good.
    let wal_dir = config.wal_dir();
    tracing::warn!(
        "--join is ignored: {} holds a cluster this node started itself (--cluster {}, \
         without --join), and the node restarts as its member. If it is meant to join \
         a cluster it was added to (POST /{} on a member), stop it, remove {} and {}, \
         and start it again with --join",
        wal_dir.display(),
        contents.metadata.initial_cluster.join(","),
        config.id,
        wal_dir.display(),
        config.snap_dir().display()
    );
}

/// The newest snapshot the WAL names, or the empty state where it names none.
struct LoadedSnapshot {
    /// Members, sessions and incarnation as of the snapshot.
    state: ClusterState,
    /// The key-value map as of the snapshot.
    kv: crate::kvstore::Map,
    /// Its metadata; `None` without a snapshot.
    meta: Option<SnapshotMetadata>,
    /// Bytes of application data in it.
    bytes: u64,
}

impl LoadedSnapshot {
    /// The snapshot's index: 0 without one.
    fn index(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.index)
    }
}

/// Loads the newest snapshot that the WAL's markers name and applies it to raft's storage
/// `mem`.
fn load_snapshot(
    snapshotter: &Snapshotter,
    contents: &WalContents,
    mem: &MemStorage,
) -> Result<LoadedSnapshot, StartError> {
    // Streamed from the file into the map: a big store's snapshot is never whole in memory.
    let snapshot = snapshotter
        .load_newest_available_with(&contents.snapshot_markers, |r, len| {
            read_snapshot(r, len).map(|loaded| (loaded, len))
        })?;
    let Some((meta, ((state, kv), bytes))) = snapshot else {
        return Ok(LoadedSnapshot {
            state: ClusterState::default(),
            kv: crate::kvstore::Map::default(),
            meta: None,
            bytes: 0,
        });
    };
    let mut snap = Snapshot::default();
    snap.set_metadata(meta.clone());
    mem.wl().apply_snapshot(snap).map_err(StartError::Raft)?;
    Ok(LoadedSnapshot {
        state,
        kv,
        meta: Some(meta),
        bytes,
    })
}

/// Warns of the snapshot files the WAL names above `loaded` (the snapshot the node starts
/// from) that were `missing` from `dir` before the start (deleted by hand, or set aside as
/// damaged at an earlier start, which the line says, naming the copy). Called once the replay
/// has found the log whole after `loaded`: it then holds every entry those snapshots covered,
/// so nothing is lost, but without this line the node would start silently from an older
/// snapshot than its WAL names last (found by a hands-on campaign), as it does not for a file
/// it sets aside as damaged.
fn warn_of_missing_snapshots(
    dir: &Path,
    missing: &[crate::snapshotter::Missing],
    loaded: Option<&SnapshotMetadata>,
) {
    let loaded_index = loaded.map_or(0, |m| m.index);
    let missing: Vec<&crate::snapshotter::Missing> =
        missing.iter().filter(|m| m.index > loaded_index).collect();
    let Some(newest) = missing.last() else {
        return;
    };
    let paths: Vec<String> = missing
        .iter()
        .map(|m| m.path.display().to_string())
        .collect();
    // Where an earlier start put them: else its operator looks for a deletion, and the line
    // comes back at every start until a newer snapshot is taken.
    let set_aside: Vec<String> = missing
        .iter()
        .filter_map(|m| {
            let aside = m.set_aside.as_ref()?;
            Some(format!(
                "{} was set aside as {} by an earlier start because it was damaged",
                crate::snapshotter::snap_name(m.term, m.index),
                aside.display()
            ))
        })
        .collect();
    let why = if set_aside.is_empty() {
        String::new()
    } else {
        format!(" ({})", set_aside.join("; "))
    };
    let started_from = loaded.map_or_else(
        || "no snapshot".to_string(),
        |m| {
            dir.join(crate::snapshotter::snap_name(m.term, m.index))
                .display()
                .to_string()
        },
    );
    tracing::warn!(
        path = %paths.join(", "),
        term = newest.term,
        index = newest.index,
        started_from = %started_from,
        "snapshot file the WAL names is missing{why}; started from an older one, and the WAL \
         holds every entry after that"
    );
}

/// The entries after the snapshot `snap_meta` and the hard state to start from, as
/// [`log_after_snapshot`] finds them. Entries missing because the snapshot that covered them
/// is damaged (passed over by the load) or gone: the error says so, naming the file (and the
/// offset of the damage), beside what the WAL holds.
fn replayed_log<'c>(
    wal_dir: &Path,
    snapshotter: &Snapshotter,
    contents: &'c WalContents,
    snap_meta: Option<&SnapshotMetadata>,
) -> Result<(&'c [Entry], HardState), StartError> {
    let snapshot_index = snap_meta.map_or(0, |m| m.index);
    let naming_damage = |error: StartError| {
        naming_snapshot_damage(
            error,
            &snapshotter.damaged(),
            (wal_dir, contents),
            snap_meta,
            || snapshotter.gaps(&contents.snapshot_markers, snapshot_index),
        )
    };
    log_after_snapshot(wal_dir, contents, snap_meta, naming_damage)
}

/// `error`, a log (the WAL in `wal_dir`, read as `contents`) that lacks entries after the
/// snapshot `loaded`, with what the snapshots can say of them: the damaged files the load
/// passed over (`damaged`, each naming its file and offset), or else what `gaps` says (the
/// files the WAL names that are not there, or were set aside at an earlier start).
fn naming_snapshot_damage(
    error: StartError,
    damaged: &[String],
    (wal_dir, contents): (&Path, &WalContents),
    loaded: Option<&SnapshotMetadata>,
    gaps: impl FnOnce() -> crate::snapshotter::Gaps,
) -> StartError {
    if !damaged.is_empty() {
        return StartError::Damaged(format!(
            "{error}; the snapshot that covered them is damaged: {}",
            damaged.join("; ")
        ));
    }
    // Damaged at an earlier start (set aside then), or the files are gone.
    let gaps = gaps();
    let others = (!gaps.other_set_aside.is_empty()).then(|| {
        format!(
            "{} holds snapshot files set aside as damaged: {}",
            gaps.dir.display(),
            gaps.other_set_aside.join(", ")
        )
    });
    let Some(newest) = gaps.missing.last() else {
        return match others {
            Some(others) => StartError::Damaged(format!("{error}; {others}")),
            None => error,
        };
    };
    // Not `error`'s own words: where a snapshot from the leader replaced the log, the log
    // held is empty, and it said "holds entries only up to 0" of a WAL whose entries run to
    // thousands (a hands-on campaign). What is missing is the files, and the WAL's numbers
    // are the ones `dump` shows.
    let above = loaded.map_or_else(String::new, |m| {
        format!(
            " above {}, the newest it has",
            crate::snapshotter::snap_name(m.term, m.index)
        )
    });
    let listed: Vec<String> = gaps.missing.iter().rev().map(|m| m.to_string()).collect();
    let mut said = format!(
        "{} lacks the snapshot file(s) that {} names{above}: {}; the log the node acknowledged \
         cannot be rebuilt without them: the WAL's own entries end at index {}, its commit \
         index is {}, and its newest snapshot marker is at index {}",
        gaps.dir.display(),
        wal_dir.display(),
        listed.join(", "),
        contents.last_written(),
        contents.hard_state.commit,
        contents
            .snapshot_markers
            .last()
            .map_or(newest.index, |m| m.index),
    );
    if let Some(others) = others {
        said += &format!("; {others}");
    }
    said += "; put those files back if they were moved or copied elsewhere, or else bring \
             the node back as for a lost disk";
    StartError::Damaged(said)
}

/// What a restart would make of the log in `contents` (of `config`'s WAL) after it loaded
/// the snapshot `loaded`, passing over the damaged files `damaged` (each said as the load
/// says it): the refusal [`replay_wal`] would give, or `Ok`. For `raftexample dump`, which
/// judges a data dir as a start does but must not touch it: this reads only the snapshot
/// folder's listing, and sets nothing aside.
pub fn check_log_unreplayed(
    config: &Config,
    contents: &WalContents,
    loaded: Option<&SnapshotMetadata>,
    damaged: &[String],
) -> Result<(), StartError> {
    let snapshot_index = loaded.map_or(0, |m| m.index);
    let wal_dir = config.wal_dir();
    let naming_damage = |error: StartError| {
        naming_snapshot_damage(error, damaged, (&wal_dir, contents), loaded, || {
            crate::snapshotter::gaps_in(
                &config.snap_dir(),
                &contents.snapshot_markers,
                snapshot_index,
            )
        })
    };
    log_after_snapshot(&wal_dir, contents, loaded, naming_damage).map(drop)
}

/// The entries of `contents` after the snapshot `snap_meta` and the hard state to start from,
/// once [`check_replayed_log`] has found that they are the log the node acknowledged. Errors
/// go through `naming_damage`. Touches nothing: [`check_data_dir`] finds the log with it too.
fn log_after_snapshot<'c>(
    wal_dir: &Path,
    contents: &'c WalContents,
    snap_meta: Option<&SnapshotMetadata>,
    naming_damage: impl Fn(StartError) -> StartError,
) -> Result<(&'c [Entry], HardState), StartError> {
    let snapshot_index = snap_meta.map_or(0, |m| m.index);
    let entries = contents
        .entries_after(snapshot_index)
        .map_err(|e| naming_damage(StartError::from(e)))?;
    let last_index = entries.last().map_or(snapshot_index, |e| e.index);
    let mut hs = contents.hard_state.clone();
    if let Some(meta) = snap_meta {
        // A crash between saving a leader's snapshot (file, then marker) and writing that
        // Ready's hard state leaves a commit index below the snapshot. The snapshot proves
        // its entries committed; raft-rs would refuse a commit below its first index.
        if meta.term > hs.term {
            hs.term = meta.term;
            hs.vote = 0;
        }
        hs.commit = hs.commit.max(meta.index);
    }
    check_replayed_log(
        wal_dir,
        hs.commit,
        last_index,
        contents.snapshot_markers.last(),
        naming_damage,
    )?;
    Ok((entries, hs))
}

/// The two checks that the log replayed is the one this node acknowledged: its commit index
/// (`commit`) and its newest snapshot marker reach no further than the entries held, which end
/// at `last_index`. Errors go through `naming_damage`, which names a damaged snapshot.
fn check_replayed_log(
    wal_dir: &Path,
    commit: u64,
    last_index: u64,
    newest_marker: Option<&SnapshotMetadata>,
    naming_damage: impl Fn(StartError) -> StartError,
) -> Result<(), StartError> {
    if commit > last_index {
        return Err(naming_damage(StartError::Damaged(format!(
            "{} says entries up to {} are committed but holds entries only up to {}; \
             the WAL lost entries it had acknowledged",
            wal_dir.display(),
            commit,
            last_index
        ))));
    }
    // The WAL's newest snapshot marker is part of the log the node acknowledged: a
    // snapshot installed from the leader (a reset marker) replaced every entry before
    // it. If its file is damaged and an older snapshot was loaded instead, the entries
    // held may end below it, and the node would come back with a shorter log than it
    // acknowledged (found by a review).
    if let Some(newest) = newest_marker
        && newest.index > last_index
    {
        return Err(naming_damage(StartError::Damaged(format!(
            "{} names a snapshot at index {} (term {}), but it cannot be loaded and the \
             entries held end at {last_index}; the node would lose entries it had \
             acknowledged",
            wal_dir.display(),
            newest.index,
            newest.term
        ))));
    }
    Ok(())
}

/// `--join` on an empty data dir: nothing to replay; the WAL is created once the cluster's
/// first message arrives (see `RaftNode::wal_mut`).
fn join_empty(fs: SharedFs, lock: DirLock, snapshotter: Snapshotter) -> Recovered {
    tracing::info!("joining: waiting for the leader to send the log");
    let storage = NodeStorage::new(MemStorage::new(), snapshotter, None);
    Recovered::empty(lock, fs, storage)
}

/// The first start of an initial member: refused over snapshots left without their WAL, else
/// the WAL is created holding the cluster's first entries.
fn bootstrap(
    config: &Config,
    own_url: String,
    fs: SharedFs,
    lock: DirLock,
    snapshotter: Snapshotter,
) -> Result<Recovered, StartError> {
    let wal_dir = config.wal_dir();
    let options = config.wal_options();
    let mem = MemStorage::new();
    // Snapshots without the WAL that names them: the WAL was lost or moved, and bootstrapping
    // would start a new, empty cluster and in time overwrite them. (A joining node may leave
    // some behind legitimately: it adopts the leader's snapshot just before it creates its
    // WAL. Joining again replaces them.)
    let orphans = snapshotter.list()?;
    if let Some(newest) = orphans.last() {
        return Err(StartError::Inconsistent(format!(
            "{} holds no WAL, but {} holds {} snapshot file(s) (newest {}): the WAL was lost \
             or moved, and starting would begin an empty log and overwrite them. Put the WAL \
             back; or, to make this node a fresh copy of the others, start it again with \
             --join",
            wal_dir.display(),
            config.snap_dir().display(),
            orphans.len(),
            newest.display()
        )));
    }

    check_initial_urls(config)?;

    // First start of an initial member: write the membership as the first entries of the
    // log, committed at term 1, the way etcd's StartNode does. Every initial member writes
    // the same entries, so their logs agree from the start; a node that later joins
    // replays them from the leader and learns every member's URL.
    let cluster = cluster_id(&config.cluster_token, &config.cluster);
    let meta = Metadata {
        node_id: config.id,
        cluster_id: cluster,
        peer_url: own_url,
        initial_cluster: config.cluster.clone(),
        joined_at: None,
    };
    let (hs, entries) = bootstrap_log(&config.cluster);
    let mut wal = Wal::create_on(fs.clone(), &wal_dir, &meta, options)?;
    wal.save(Some(&hs), &entries, true)?;
    mem.wl().append(&entries).map_err(StartError::Raft)?;
    mem.wl().set_hardstate(hs);
    let voters: Vec<u64> = (1..=config.cluster.len() as u64).collect();
    let conf_state = ConfState::from((voters, vec![]));
    mem.wl().set_conf_state(conf_state.clone());
    tracing::info!(
        cluster = format!("{cluster:x}"),
        members = config.cluster.len(),
        "bootstrapped a new cluster"
    );
    Ok(Recovered {
        wal: Some(wal),
        conf_state,
        cluster_id: cluster,
        ..Recovered::empty(lock, fs, NodeStorage::new(mem, snapshotter, None))
    })
}

impl Recovered {
    /// What a start with nothing to replay begins from: no WAL (yet), no members, sessions or
    /// snapshot, no cluster known.
    fn empty(lock: DirLock, fs: SharedFs, storage: NodeStorage) -> Recovered {
        Recovered {
            lock,
            fs,
            wal: None,
            storage,
            members: Members::default(),
            sessions: Default::default(),
            incarnation: Incarnation::NotYet,
            incarnation_at_start: Incarnation::NotYet,
            kv: crate::kvstore::Map::default(),
            snapshot_index: 0,
            snapshot_bytes: 0,
            conf_state: ConfState::default(),
            cluster_id: 0,
            commit_at_start: 0,
        }
    }
}

/// The log an initial member of `cluster` starts with: [`bootstrap_entries`], committed at
/// term 1.
fn bootstrap_log(cluster: &[String]) -> (HardState, Vec<Entry>) {
    let entries = bootstrap_entries(cluster);
    let hs = HardState {
        term: 1,
        commit: entries.len() as u64,
        ..Default::default()
    };
    (hs, entries)
}

/// Whether `contents` is a WAL an initial member created at its first start and holds
/// nothing else: no hard state, no snapshot marker, and no entry but the first ones the
/// first start writes (its batch is one record of entries then one of the hard state, and
/// a power loss may keep the first without the second, when they lie in two sectors: the
/// node then had the entries uncommitted and no members). A node that joined has no
/// initial list; one that ran holds a hard state (a term, at least) after its first entries.
fn unfinished_bootstrap(contents: &WalContents) -> bool {
    let initial = &contents.metadata.initial_cluster;
    !initial.is_empty()
        && contents.hard_state == HardState::default()
        && contents.snapshot_markers.is_empty()
        && contents
            .entries_after(0)
            .is_ok_and(|e| bootstrap_entries(initial).starts_with(e))
}

/// Entries 1..=n: one AddNode per initial member, its URL as the change's context.
pub(crate) fn bootstrap_entries(cluster: &[String]) -> Vec<Entry> {
    use protobuf::Message as _;
    cluster
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let id = i as u64 + 1;
            let mut single = ConfChangeSingle {
                node_id: id,
                ..Default::default()
            };
            single.set_change_type(ConfChangeType::AddNode);
            let mut cc = ConfChangeV2 {
                context: normalize_url(url).as_bytes().to_vec().into(),
                ..Default::default()
            };
            cc.mut_changes().push(single);
            let mut e = Entry {
                term: 1,
                index: id,
                data: cc
                    .write_to_bytes()
                    .expect("encoding a ConfChangeV2 into memory cannot fail")
                    .into(),
                ..Default::default()
            };
            e.set_entry_type(EntryType::EntryConfChangeV2);
            e
        })
        .collect()
}

/// Checks the flags on their own, touching nothing; returns this node's peer URL. The flags'
/// parser has spelled every `--cluster` entry without blanks or a trailing `/` already (see
/// `config::cluster_entry`), so the URL is returned as listed: every user of it, and of
/// `config.cluster`, then has the same form.
pub fn check_flags(config: &Config) -> Result<String, StartError> {
    if config.id == 0 {
        return Err(StartError::BadFlags(
            "--id 0: ids start at 1 (node N uses the N-th URL of --cluster)".into(),
        ));
    }
    for url in &config.cluster {
        validate_peer_url(url).map_err(|e| StartError::BadFlags(format!("--cluster: {e}")))?;
    }
    let Some(url) = config.own_peer_url() else {
        return Err(StartError::BadFlags(format!(
            "--id {id} has no peer URL: --cluster lists {} URL(s), and node N uses the N-th; \
             list at least {id}, this node's own at place {id} (a node started with --join asks \
             the others whether it was added, so a place that is no member's may hold any URL)",
            config.cluster.len(),
            id = config.id,
        )));
    };
    Ok(url.to_string())
}

/// Refuses an initial cluster whose `--cluster` lists one URL twice: its members would each
/// take the other's messages for misrouted ones, and never reach a quorum. (Only for a new
/// cluster: later, a member added at the URL of one removed before is listed at both
/// positions, since node N uses the N-th URL.)
fn check_initial_urls(config: &Config) -> Result<(), StartError> {
    for (i, url) in config.cluster.iter().enumerate() {
        if let Some(j) = config.cluster[..i].iter().position(|u| same_url(u, url)) {
            return Err(StartError::BadFlags(format!(
                "--cluster lists {} twice (for nodes {} and {}): each member of a new cluster \
                 needs its own peer URL",
                url,
                j + 1,
                i + 1
            )));
        }
    }
    Ok(())
}

/// Refuses a data dir in which this node is the only voter when `--cluster` names peers that
/// the data never knew: started, the node would elect itself and serve alone beside them (the
/// other nodes refuse its messages, as it is another cluster, but clients would not notice).
/// Peers that were members and were removed are fine: that is a cluster shrunk to one node.
fn check_sole_voter(
    config: &Config,
    wal_dir: &Path,
    own_url: &str,
    snap_members: &Members,
    snap_meta: Option<&SnapshotMetadata>,
    entries: &[Entry],
    commit: u64,
) -> Result<(), StartError> {
    if !sole_voter_check_applies(config) {
        return Ok(());
    }
    let (voters, named) = committed_voters(snap_meta, entries, commit);
    if !only_voter(config, &voters) {
        return Ok(());
    }
    let known: BTreeSet<u64> = snap_members
        .urls
        .keys()
        .chain(&snap_members.removed)
        .chain(&named)
        .copied()
        .collect();
    let strangers: Vec<String> = (1..=config.cluster.len() as u64)
        .filter(|id| *id != config.id && !known.contains(id))
        .map(|id| id.to_string())
        .collect();
    if strangers.is_empty() {
        return Ok(());
    }
    let folder = wal_dir.display();
    Err(StartError::ForeignDataDir(format!(
        "{folder} holds a cluster of one node (node {} alone), but --cluster lists {} peers and \
         node(s) {} were never members of it: started, node {} would elect itself and serve on \
         its own beside them. Either remove {folder} and {} to start this node with no data, \
         or start it alone (--cluster {own_url}) and add the others with POST /<id>.",
        config.id,
        config.cluster.len(),
        strangers.join(", "),
        config.id,
        config.snap_dir().display()
    )))
}

/// The voters once the committed conf changes of `entries` (those up to `commit`) are applied
/// to the snapshot's (`snap_meta`; none without one), and every node that the snapshot's
/// voters and those changes name. The walk of [`check_sole_voter`], which
/// [`check_sole_voter_unreplayed`] takes first on the WAL alone.
fn committed_voters(
    snap_meta: Option<&SnapshotMetadata>,
    entries: &[Entry],
    commit: u64,
) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let mut voters: BTreeSet<u64> = snap_meta
        .map(|m| m.get_conf_state().voters.iter().copied().collect())
        .unwrap_or_default();
    let mut named = voters.clone();
    let changes = entries
        .iter()
        .filter(|e| e.index <= commit && e.get_entry_type() != EntryType::EntryNormal)
        .filter_map(|e| decode_conf_change(e).ok());
    for cc in changes {
        for c in cc.get_changes() {
            named.insert(c.node_id);
            match c.get_change_type() {
                ConfChangeType::AddNode => {
                    voters.insert(c.node_id);
                }
                ConfChangeType::RemoveNode => {
                    voters.remove(&c.node_id);
                }
                ConfChangeType::AddLearnerNode => {}
            }
        }
    }
    (voters, named)
}

/// Whether `voters` are this node alone: the only case [`check_sole_voter`] refuses.
fn only_voter(config: &Config, voters: &BTreeSet<u64>) -> bool {
    voters.len() == 1 && voters.contains(&config.id)
}

/// Whether [`check_sole_voter`] can refuse a start with `config`: one that joins brings no
/// cluster of its own, and a `--cluster` of one node names no peer.
fn sole_voter_check_applies(config: &Config) -> bool {
    !config.join && config.cluster.len() >= 2
}

/// Refuses a data dir that a restart would refuse as another node's or another cluster's
/// (`check_metadata`), or as a cluster of one node that `--cluster` would put beside
/// strangers (`check_sole_voter`), with the same message: before the node serves its peer
/// port, which would say it holds data and keep a new cluster's other members waiting for a
/// node that then exits (review 115, L1). Read-only. Passes where there is no WAL, or where the
/// WAL or the snapshot cannot be read: the replay judges that damage, and refuses it in full.
pub fn check_data_dir(config: &Config, own_url: &str) -> Result<(), StartError> {
    check_data_dir_on(config, own_url, &StdFs)
}

/// [`check_data_dir`] on the file system `fs`.
fn check_data_dir_on(
    config: &Config,
    own_url: &str,
    fs: &dyn FileSystem,
) -> Result<(), StartError> {
    let wal_dir = config.wal_dir();
    let Some(meta) = crate::wal::read_metadata_on(fs, &wal_dir) else {
        return Ok(());
    };
    check_metadata(config, &wal_dir, own_url, &meta)?;
    // The metadata compares the lists only as far as the shorter goes. A WAL made from `n`
    // URLs holds the additions of nodes 1 to n, committed at its first start, in its log or
    // under a snapshot, so a restart finds no stranger among them: only a longer --cluster,
    // or one given to a node that joined (its list is empty), can name one. Only then is the
    // log read ahead of the replay, which reads it again (the snapshot too, rarely: see
    // `check_sole_voter_unreplayed`).
    if sole_voter_check_applies(config) && meta.initial_cluster.len() < config.cluster.len() {
        check_sole_voter_unreplayed(config, &wal_dir, own_url, fs)?;
    }
    Ok(())
}

/// [`check_sole_voter`] on what a restart would give it, read without replaying: the WAL's
/// committed entries (or the first entries that a first start stopped before saving, as the
/// restart saves them) and the membership in the snapshot the restart would load. Passes
/// where any of it cannot be read, or the log is not whole: the replay refuses that damage.
/// The snapshot is read only where the WAL leaves this node the only voter.
fn check_sole_voter_unreplayed(
    config: &Config,
    wal_dir: &Path,
    own_url: &str,
    fs: &dyn FileSystem,
) -> Result<(), StartError> {
    let Ok(Some(contents)) = crate::wal::read_contents_on(fs, wal_dir) else {
        return Ok(());
    };
    if unfinished_bootstrap(&contents) {
        // The restart saves the first start's entries and hard state, then replays them: no
        // snapshot yet, so no members but those entries'.
        let (hs, entries) = bootstrap_log(&contents.metadata.initial_cluster);
        let members = Members::default();
        return check_sole_voter(
            config, wal_dir, own_url, &members, None, &entries, hs.commit,
        );
    }
    let markers = &contents.snapshot_markers;
    if !only_voter_by_the_wal(config, wal_dir, &contents, fs) {
        return Ok(());
    }
    // Only the membership at the front of the data is decoded (the rest is checksummed):
    // the map would take as much memory again as the replay's.
    let snapshot = crate::snapshotter::read_newest_available_on(
        fs,
        &config.snap_dir(),
        markers,
        crate::kvstore::read_cluster_state,
    );
    let Ok(snapshot) = snapshot else {
        return Ok(());
    };
    let (snap_meta, members) = match snapshot {
        Some((meta, state)) => (Some(meta), state.members),
        None => (None, Members::default()),
    };
    let Ok((entries, hs)) = log_after_snapshot(wal_dir, &contents, snap_meta.as_ref(), |e| e)
    else {
        return Ok(());
    };
    check_sole_voter(
        config,
        wal_dir,
        own_url,
        &members,
        snap_meta.as_ref(),
        entries,
        hs.commit,
    )
}

/// Whether this node may be the only voter of the data dir as the WAL `contents` and a
/// listing of the snapshot folder tell, with no snapshot file opened: the voters of the
/// marker that names the file the load would use (the file's own metadata: see
/// `snapshotter::newest_named_marker_on`), changed by the committed conf changes after it.
/// Where they are not this node alone, [`check_sole_voter`] passes whatever the snapshot's
/// members are; reading them would read the whole file for its checksum, as big as the
/// store, at every restart of a node that joined without `--join` (review 123, R1). False
/// where the folder cannot be listed or the log after the marker is not whole: the full
/// check fails there the same way (the same listing, the same log after the same metadata),
/// and passes.
fn only_voter_by_the_wal(
    config: &Config,
    wal_dir: &Path,
    contents: &WalContents,
    fs: &dyn FileSystem,
) -> bool {
    let markers = &contents.snapshot_markers;
    let marker = crate::snapshotter::newest_named_marker_on(fs, &config.snap_dir(), markers);
    let Ok(marker) = marker else {
        return false;
    };
    let Ok((entries, hs)) = log_after_snapshot(wal_dir, contents, marker, |e| e) else {
        return false;
    };
    only_voter(config, &committed_voters(marker, entries, hs.commit).0)
}

/// Refuses a WAL written by another node or cluster, before any network I/O.
fn check_metadata(
    config: &Config,
    wal_dir: &Path,
    own_url: &str,
    meta: &Metadata,
) -> Result<(), StartError> {
    let folder = wal_dir.display();
    let snap = config.snap_dir();
    let snap = snap.display();
    // Restarting with the old flags comes first: for a member of a running cluster, removing
    // its data is the lost-disk case, which then takes a DELETE and POST to mend.
    let ways_out = |flags: &str| {
        format!(
            "Start it with the flags its data was created with ({flags}); or, only if this data \
             is of no use (the node is no member of a running cluster), remove {folder} and \
             {snap} to start it with no data"
        )
    };
    // A node asked to join brings no data: whatever is there is of an earlier life (a node
    // removed and added back, at its old URL or a new one), and the old flags would restart
    // that life, stuck if its URL changed since.
    let join_instead = || {
        StartError::ForeignDataDir(format!(
            "{folder} holds the data of node {} at peer URL {}, but --join asks this node to join \
             at {own_url}, and a node joins with no data. Remove {folder} and {snap}, then start \
             it again with the same flags (its data is of no use once it was removed and added \
             back). To restart it as it was instead, if it is still a member at {}: the flags \
             its data was created with, without --join.",
            meta.node_id, meta.peer_url, meta.peer_url
        ))
    };
    // Joining another cluster empties the folders first: the node joins with no data.
    let join_other = format!(
        "To make it join another cluster instead, remove {folder} and {snap} and start it with \
         --join"
    );
    if meta.node_id != config.id {
        // `--id` also names the folders, so the owner's flags alone would read other ones.
        let owner = Config {
            id: meta.node_id,
            ..config.clone()
        };
        return Err(StartError::ForeignDataDir(format!(
            "{folder} belongs to node {}, but --id is {}. If it is node {}'s data, move {folder} \
             and {snap} to {} and {} and start node {} with --id {}; or, only if this data is of \
             no use (the node is no member of a running cluster), remove {folder} and {snap} to \
             start node {} with no data.",
            meta.node_id,
            config.id,
            meta.node_id,
            owner.wal_dir().display(),
            owner.snap_dir().display(),
            meta.node_id,
            meta.node_id,
            config.id
        )));
    }
    // A node that joined never knew the bootstrap list (it is empty); its peers check its
    // cluster identity on every message instead.
    let list_matches = meta
        .initial_cluster
        .iter()
        .zip(&config.cluster)
        .all(|(a, b)| same_url(a, b));
    let own_url_moved = !same_url(&meta.peer_url, own_url);
    // A member moved to a new URL (removed, then added back there) joins with no data: the
    // old flags start it as the removed member, whose own log then says to add it back, as it
    // already was (found by a hands-on test).
    let moved = || {
        format!(
            "If node {} was moved to {own_url} (removed, then added back there), this data is \
             of no use: remove {folder} and {snap} and start it with --join. ",
            config.id
        )
    };
    if !list_matches && config.join && own_url_moved {
        return Err(join_instead());
    }
    if !list_matches {
        return Err(StartError::ForeignDataDir(format!(
            "{folder} belongs to a cluster started with --cluster {} (cluster {}), but the \
             flags ask for --cluster {}. It was probably left by an earlier run with other \
             flags. {}. {}{join_other}.",
            meta.initial_cluster.join(","),
            crate::incarnation::hex(meta.cluster_id),
            config.cluster.join(","),
            ways_out(&format!("--cluster {}", meta.initial_cluster.join(","))),
            if own_url_moved {
                moved()
            } else {
                String::new()
            }
        )));
    }
    if !meta.initial_cluster.is_empty()
        && cluster_id(&config.cluster_token, &meta.initial_cluster) != meta.cluster_id
    {
        return Err(StartError::ForeignDataDir(format!(
            "{folder} belongs to cluster {}, which was started with another --cluster-token \
             than {:?}. {}.",
            crate::incarnation::hex(meta.cluster_id),
            config.cluster_token,
            ways_out("the same --cluster-token")
        )));
    }
    if own_url_moved {
        if config.join {
            return Err(join_instead());
        }
        return Err(StartError::ForeignDataDir(format!(
            "{folder} belongs to node {} at peer URL {}, but --cluster puts node {} at {own_url}. \
             {}. {}{join_other}.",
            meta.node_id,
            meta.peer_url,
            config.id,
            ways_out(&format!(
                "--cluster with {} in position {}",
                meta.peer_url, config.id
            )),
            moved()
        )));
    }
    Ok(())
}

/// What to say when a node starts again on a disk with less room than its WAL's next segment
/// (`segment_size`) and a snapshot as big as its last (`snapshot_bytes`) need: it would
/// start, serve, and stop at the first write that finds no room, which without this reads as
/// a failure out of the blue (found by a hands-on test: a node restarted on a disk still
/// full).
fn low_space_warning(
    fs: &dyn FileSystem,
    wal_dir: &Path,
    segment_size: u64,
    snapshot_bytes: u64,
) -> Option<String> {
    let free = fs.free_bytes(wal_dir).ok().flatten()?;
    let wanted = segment_size.saturating_add(snapshot_bytes);
    (free < wanted).then(|| {
        format!(
            "only {free} bytes are free on the disk that holds {}, and this node wants about \
             {wanted} (a WAL segment and a snapshot as big as its last): it stops when a write \
             finds no room, keeping what it synced. Free space on it",
            wal_dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A damaged data dir gets the advice for a lost disk: removed and added back (a 404 to
    /// the DELETE: a node removed already), then started with `--join`. It advised restoring a
    /// backup (a voter that forgot what it promised) or starting with `--join` alone, which the
    /// members refuse. The advice names this node's id, peer URL and folders, not `<id>`, so
    /// that it can be pasted (a user's campaign). A snapshot that is whole but does not decode
    /// is not damage: most likely a newer build's.
    #[test]
    fn a_damaged_data_dir_is_advised_as_a_lost_disk() {
        let config = Config {
            id: 3,
            cluster: [
                "http://127.0.0.1:23001",
                "http://127.0.0.1:23002",
                "http://127.0.0.1:23003",
            ]
            .map(String::from)
            .to_vec(),
            data_dir: PathBuf::from("/srv/d3"),
            ..Config::default()
        };
        let remedy = StartError::Damaged("a record is corrupt".into())
            .remedy(&config)
            .expect("advice for a damaged data dir");
        assert!(
            remedy.contains("DELETE /3, then POST /3 with http://127.0.0.1:23003, on a member")
                && remedy.contains("a 404 to the DELETE means it was removed already")
                && remedy
                    .contains("move /srv/d3/raftexample-3 and /srv/d3/raftexample-3-snap aside")
                && remedy.contains("./cluster.sh start raftexample3 --join")
                && remedy.contains("larger cluster will not do"),
            "{remedy}"
        );
        let unreadable = StartError::Snapshot(crate::snapshotter::Error::Decode {
            path: "raftexample-1-snap/0000000000000002-0000000000000007.snap".into(),
            reason: "a cluster state of a newer format".into(),
        });
        let remedy = unreadable
            .remedy(&config)
            .expect("advice for an unreadable snapshot");
        assert!(
            remedy.contains("start this node with that build"),
            "{remedy}"
        );
    }

    /// A node whose WAL holds a record a newer build wrote (a whole one, of a type this build
    /// does not know) is refused as written by a newer build, with the advice to start it
    /// with that build and to remove nothing. Before, it was damage, and the advice that of
    /// a lost disk: remove the node, move its folders aside (review 111: what an older build
    /// says of type 10).
    #[test]
    fn a_wal_a_newer_build_wrote_is_not_advised_as_a_lost_disk() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let config = config(tmp.path());
        drop(replay_wal(&config).expect("bootstrap"));
        let (path, at) = crate::wal::tests::put_newer_record(&config.wal_dir());
        let Err(err) = replay_wal(&config) else {
            panic!("a start on a newer build's WAL went on");
        };
        let text = err.to_string();
        let place = format!("at {} offset {at}", path.display());
        assert!(
            text.contains("written by a newer build") && text.contains(&place),
            "{text}"
        );
        let remedy = err.remedy(&config).expect("advice");
        assert!(
            remedy.contains("not damaged")
                && remedy.contains("start this node with that build")
                && remedy.contains("do not remove or move")
                && !remedy.contains("DELETE")
                && !remedy.contains("--join"),
            "{remedy}"
        );
    }

    /// A first start cut short after it created the WAL and before it synced the first
    /// entries (a power loss; a kill, in direct-I/O mode) left a WAL holding nothing: the
    /// next start had no members and never elected a leader, restart after restart (found by
    /// a review). It now finishes the first start: the log is the one a whole first start
    /// writes.
    #[test]
    fn a_first_start_cut_short_before_its_first_entries_is_finished_by_the_next() {
        use raft::{GetEntriesContext, Storage as _};
        let whole = tempfile::TempDir::new().expect("temp dir");
        let cut = tempfile::TempDir::new().expect("temp dir");
        let log = |config: &Config| {
            let recovered = replay_wal(config).expect("started");
            let storage = &recovered.storage;
            let state = storage.initial_state().expect("the hard state");
            let last = storage.last_index().expect("the last index");
            // raft-rs's storage panics when asked for entries it does not hold.
            let entries = match last {
                0 => Vec::new(),
                _ => storage
                    .entries(1, last + 1, None, GetEntriesContext::empty(false))
                    .expect("the entries"),
            };
            (state.hard_state, entries)
        };
        let want = log(&config(whole.path()));
        assert_eq!(want.1.len(), config(whole.path()).cluster.len());

        let config = config(cut.path());
        let own_url = check_flags(&config).expect("the flags");
        let meta = Metadata {
            node_id: config.id,
            cluster_id: cluster_id(&config.cluster_token, &config.cluster),
            peer_url: own_url,
            initial_cluster: config.cluster.clone(),
            joined_at: None,
        };
        drop(
            Wal::create_on(
                StdFs::shared(),
                &config.wal_dir(),
                &meta,
                config.wal_options(),
            )
            .expect("the WAL created"),
        );
        assert_eq!(log(&config), want, "the first start finished");
        assert_eq!(log(&config), want, "and saved: the next start replays it");

        // The entries kept and the hard state after them lost (they lay in two sectors): the
        // node had them uncommitted and no members (found by a review).
        let torn = tempfile::TempDir::new().expect("temp dir");
        let config = super::tests::config(torn.path());
        let mut wal = Wal::create_on(
            StdFs::shared(),
            &config.wal_dir(),
            &meta,
            config.wal_options(),
        )
        .expect("the WAL created");
        wal.save(None, &bootstrap_entries(&config.cluster), true)
            .expect("the first entries saved");
        drop(wal);
        assert_eq!(
            log(&config),
            want,
            "the first start finished after a torn batch"
        );
        assert_eq!(log(&config), want, "and saved");
    }

    /// A start knows the incarnation before it applies anything: from the first registration
    /// among the committed entries its WAL holds, never from one beyond the commit (which a
    /// new leader may overwrite). The replayed state itself starts where its snapshot was.
    #[test]
    fn a_start_knows_the_incarnation_from_its_committed_entries() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = config(dir.path());
        let mut wal = replay_wal(&config)
            .expect("bootstrap")
            .wal
            .expect("a bootstrapped node has a WAL");
        let first = bootstrap_entries(&config.cluster).len() as u64;
        let registration = |index: u64, nonce: u64| Entry {
            index,
            term: 2,
            data: crate::proposal::encode_register(1, nonce).into(),
            ..Default::default()
        };
        let hs = |commit: u64| HardState {
            term: 2,
            vote: 1,
            commit,
            ..Default::default()
        };
        let entries = [registration(first + 1, 0xaa), registration(first + 2, 0xbb)];
        wal.save(Some(&hs(first)), &entries, true)
            .expect("entries saved");
        drop(wal);
        let recovered = replay_wal(&config).expect("restart");
        assert_eq!(recovered.incarnation_at_start, Incarnation::NotYet);
        let mut wal = recovered.wal.expect("a WAL");
        wal.save(Some(&hs(first + 2)), &[], true)
            .expect("commit saved");
        // The WAL first, then the rest (its lock last), as a node stops.
        drop(wal);
        drop(recovered.lock);
        let recovered = replay_wal(&config).expect("restart");
        assert_eq!(recovered.incarnation_at_start, Incarnation::Known(0xaa));
        assert_eq!(recovered.incarnation, Incarnation::NotYet, "no snapshot");
    }

    /// A restart on a disk with less room than a WAL segment and the last snapshot want is
    /// warned of; with room, or on a disk that cannot tell, nothing is said.
    #[test]
    fn a_restart_on_a_nearly_full_disk_is_warned_of() {
        let fs = crate::disk::MemFs::new(1);
        let dir = Path::new("/data/raftexample-1");
        assert_eq!(low_space_warning(&fs, dir, 1 << 20, 0), None, "no limit");
        fs.set_capacity(Some(fs.used_bytes() + (2 << 20)));
        assert_eq!(low_space_warning(&fs, dir, 1 << 20, 512 << 10), None);
        let warning = low_space_warning(&fs, dir, 1 << 20, 2 << 20).expect("a warning");
        assert!(
            warning.contains("/data/raftexample-1") && warning.contains("Free space on it"),
            "{warning}"
        );
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let free = StdFs::shared().free_bytes(tmp.path()).expect("statvfs");
        assert!(free.is_some_and(|f| f > 0), "{free:?}");
    }

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        }
    }

    /// Saves a snapshot at index 7 of term 3 (file, then marker) on a bootstrapped node, node 1
    /// its only member, and with `commit` the hard state that says so; returns the snapshot
    /// file.
    fn snapshot_at_7(config: &Config, commit: bool) -> PathBuf {
        let mut members = Members::default();
        members.add(1, config.cluster[0].clone(), 1);
        snapshot_at_7_of(config, commit, members)
    }

    /// [`snapshot_at_7`] of a cluster whose members are `members` (its voters).
    fn snapshot_at_7_of(config: &Config, commit: bool, members: Members) -> PathBuf {
        let recovered = replay_wal(config).expect("bootstrap");
        let mut wal = recovered.wal.expect("a bootstrapped node has a WAL");
        let voters: Vec<u64> = members.urls.keys().copied().collect();
        let mut map = crate::kvstore::Map::default();
        map.insert("/k", "v");
        let mut meta = SnapshotMetadata {
            index: 7,
            term: 3,
            ..Default::default()
        };
        meta.set_conf_state(ConfState::from((voters, vec![])));
        let mut snap = Snapshot {
            data: crate::kvstore::encode_snapshot(
                &ClusterState {
                    members,
                    sessions: Default::default(),
                    incarnation: Incarnation::NotYet,
                },
                &map,
            )
            .into(),
            ..Default::default()
        };
        snap.set_metadata(meta.clone());
        let snapshotter = recovered.storage.snapshotter();
        let before: Vec<_> = list(&config.snap_dir());
        snapshotter.save(&snap).expect("snapshot saved");
        wal.save_snapshot_marker(&meta).expect("marker written");
        if commit {
            let hs = HardState {
                term: 3,
                vote: 1,
                commit: 7,
                ..Default::default()
            };
            wal.save(Some(&hs), &[], true).expect("hard state written");
        }
        let file = list(&config.snap_dir())
            .into_iter()
            .find(|f| !before.contains(f))
            .expect("the snapshot's file");
        config.snap_dir().join(file)
    }

    /// `config` as node 1 of three: its `--cluster` with two URLs after its own.
    fn one_of_three(config: &Config) -> Config {
        let mut cluster = config.cluster.clone();
        cluster.extend(["http://127.0.0.1:9022", "http://127.0.0.1:9023"].map(String::from));
        Config {
            cluster,
            ..config.clone()
        }
    }

    /// [`check_data_dir`] on `config`'s data dir, which it must leave as it was (a missing
    /// snapshot folder included).
    fn checked_early(config: &Config) -> Result<(), StartError> {
        let own_url = check_flags(config).expect("valid flags");
        let files = |dir: PathBuf| dir.is_dir().then(|| files_in(&dir));
        let folders = || (files(config.wal_dir()), files(config.snap_dir()));
        let before = folders();
        let checked = check_data_dir(config, &own_url);
        assert!(folders() == before, "the early check wrote to the data dir");
        checked
    }

    /// The replay's refusal of `config`'s data dir, which [`check_data_dir`] must make before
    /// it, in the same words (both are asserted). Returns them.
    fn refused_early_as_by_the_replay(config: &Config) -> String {
        let early = checked_early(config).expect_err("refused before the replay");
        let Err(replayed) = replay_wal(config) else {
            panic!("the replay started on {}", config.wal_dir().display());
        };
        assert!(matches!(early, StartError::ForeignDataDir(_)), "{early}");
        assert_eq!(early.to_string(), replayed.to_string());
        early.to_string()
    }

    /// The data dir of a cluster of one node (the README's walk-through), started again as
    /// node 1 of three whose `--cluster` begins with its URL: the lists agree as far as the
    /// shorter goes, so its metadata passes, and only the replay refused it, after the peer
    /// port had said it held data and the other two had waited for it (seen in a test run:
    /// fa03123). The early check refuses it now, from its log or from its snapshot, with the
    /// replay's own message.
    #[test]
    fn a_lone_nodes_data_started_as_one_of_three_is_refused_early_as_by_the_replay() {
        for snapshot in [false, true] {
            let dir = tempfile::TempDir::new().expect("temp dir");
            let alone = config(dir.path());
            if snapshot {
                snapshot_at_7(&alone, true);
            } else {
                drop(replay_wal(&alone).expect("node 1 alone"));
            }
            let why = refused_early_as_by_the_replay(&one_of_three(&alone));
            assert!(
                why.contains("node 1 alone") && why.contains("node(s) 2, 3 were never members"),
                "snapshot {snapshot}: {why}"
            );
        }
    }

    /// A node that joined (its WAL has no `--cluster` list) and was left the only voter,
    /// started without `--join` by a `--cluster` naming an id it never knew: the metadata has
    /// no list to compare, and the early check refuses it from the log, as the replay does.
    #[test]
    fn a_joined_node_left_alone_is_refused_early_beside_a_stranger() {
        use crate::raft_node::tests::conf_change;
        let dir = tempfile::TempDir::new().expect("temp dir");
        let urls = [
            "http://127.0.0.1:9021",
            "http://127.0.0.1:9022",
            "http://127.0.0.1:9023",
        ]
        .map(String::from);
        let config = Config {
            id: 2,
            cluster: urls.to_vec(),
            ..config(dir.path())
        };
        let meta = joined(&config, &urls[..1], &urls[1]);
        let mut wal = Wal::create(&config.wal_dir(), &meta, config.wal_options()).expect("WAL");
        // Node 2 added to node 1's cluster, then node 1 removed: node 3 was never a member.
        let mut log = bootstrap_entries(&urls[..2]);
        log.push(conf_change(3, 1, ConfChangeType::RemoveNode, 1, ""));
        let hs = HardState {
            term: 1,
            commit: 3,
            ..Default::default()
        };
        wal.save(Some(&hs), &log, true).expect("the log saved");
        drop(wal);
        let why = refused_early_as_by_the_replay(&config);
        assert!(why.contains("node(s) 3 were never members"), "{why}");
    }

    /// The WAL metadata of node `config.id`, which joined at `peer_url` a cluster started
    /// with `--cluster` `founders`: it records no list of its own.
    fn joined(config: &Config, founders: &[String], peer_url: &str) -> Metadata {
        Metadata {
            node_id: config.id,
            cluster_id: cluster_id(&config.cluster_token, founders),
            peer_url: peer_url.to_string(),
            initial_cluster: Vec::new(),
            joined_at: None,
        }
    }

    /// Node 4, which joined at one URL, then was moved (removed, and added back at another),
    /// started on its old data dir with the new URL in --cluster: the refusal says what a
    /// moved member does, join with no data. It said only "the flags its data was created
    /// with", which start it as the member it was, removed, and which then says to add it
    /// back, as it already was (found by a hands-on test).
    #[test]
    fn a_moved_member_started_on_its_old_data_is_told_to_join_with_none() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let urls =
            ["9021", "9022", "9023", "9024", "9025"].map(|p| format!("http://127.0.0.1:{p}"));
        let moved = Config {
            id: 4,
            cluster: [&urls[..3], &urls[4..]].concat(),
            ..config(dir.path())
        };
        let meta = joined(&moved, &urls[..3], &urls[3]);
        drop(Wal::create(&moved.wal_dir(), &meta, moved.wal_options()).expect("WAL"));
        let Err(StartError::ForeignDataDir(why)) = checked_early(&moved) else {
            panic!("node 4 started on its data at a new URL");
        };
        let told = format!(
            "If node 4 was moved to {} (removed, then added back there), this data is of no \
             use: remove {} and {} and start it with --join.",
            urls[4],
            moved.wal_dir().display(),
            moved.snap_dir().display()
        );
        assert!(why.contains(&told), "{why}");
    }

    /// A cluster of one node grown to three with POST /2 and POST /3 (their additions committed
    /// in its log), or grown and shrunk back to node 1 under a snapshot (its members name 2 and
    /// 3 as removed), restarted with the three URLs: the longer `--cluster` is legitimate
    /// there, and the early check passes it, as the replay starts it.
    #[test]
    fn a_lone_node_grown_to_three_passes_the_early_check_with_the_longer_list() {
        for shrunk in [false, true] {
            let dir = tempfile::TempDir::new().expect("temp dir");
            let alone = config(dir.path());
            let three = one_of_three(&alone);
            if shrunk {
                let mut members = Members::default();
                for (id, url) in (1..).zip(&three.cluster) {
                    members.add(id, url.clone(), id);
                }
                members.remove(2);
                members.remove(3);
                snapshot_at_7_of(&alone, true, members);
            } else {
                grow_to(&alone, &three);
            }
            checked_early(&three).expect("the early check passes");
            drop(replay_wal(&three).expect("the replay starts it"));
        }
    }

    /// Node 2, which joined node 1's cluster (its WAL records no `--cluster`) and came from the
    /// leader's snapshot at index 7 (voters 1 and 2), restarted without `--join` by a
    /// `--cluster` of three URLs, as the Procfile's command is after a lost-disk rejoin: the
    /// early check passes from the WAL and a listing of the snapshot folder, and opens no
    /// snapshot file (it read the newest whole for its checksum, as big as the store, before
    /// the ports answered: review 123, R1). The replay reads it: it starts on the whole file
    /// and refuses the damaged one, naming it, as before.
    #[test]
    fn a_joined_nodes_restart_checks_early_without_reading_its_snapshot() {
        for damaged in [false, true] {
            let dir = tempfile::TempDir::new().expect("temp dir");
            let config = Config {
                id: 2,
                ..one_of_three(&config(dir.path()))
            };
            let urls = &config.cluster;
            let meta = joined(&config, &urls[..1], &urls[1]);
            let mut wal = Wal::create(&config.wal_dir(), &meta, config.wal_options()).expect("WAL");
            let mut members = Members::default();
            members.add(1, urls[0].clone(), 1);
            members.add(2, urls[1].clone(), 2);
            let file = save_snapshot_at_7(&config, &mut wal, members);
            drop(wal);
            if damaged {
                // The data's last byte, after the header, before the checksum.
                let mut bytes = std::fs::read(&file).expect("the snapshot file");
                let last = bytes.len() - 5;
                bytes[last] ^= 0xff;
                std::fs::write(&file, bytes).expect("the snapshot file damaged");
            }
            let own_url = check_flags(&config).expect("valid flags");
            let fs = ReadsNoted::default();
            check_data_dir_on(&config, &own_url, &fs).expect("the early check passes");
            let read = fs.read.lock().expect("no panic while noting").clone();
            assert!(
                read.iter().any(|p| p.starts_with(config.wal_dir())),
                "{read:?}"
            );
            assert!(
                !read.iter().any(|p| p.starts_with(config.snap_dir())),
                "damaged {damaged}: the early check opened a snapshot file: {read:?}"
            );
            match replay_wal(&config) {
                Ok(recovered) => {
                    assert!(!damaged, "the replay started on a damaged snapshot");
                    assert_eq!(recovered.snapshot_index, 7);
                }
                Err(StartError::Damaged(why)) => {
                    assert!(damaged, "the replay refused a whole snapshot: {why}");
                    assert!(
                        why.contains("the snapshot that covered them is damaged"),
                        "{why}"
                    );
                }
                Err(other) => panic!("damaged {damaged}: {other}"),
            }
        }
    }

    /// Saves, in `config`'s data dir, the snapshot at index 7 of term 3 that a leader sent
    /// (file, then the WAL's reset marker), of voters `members`, with the hard state that
    /// commits it; returns the snapshot file.
    fn save_snapshot_at_7(config: &Config, wal: &mut Wal, members: Members) -> PathBuf {
        let voters: Vec<u64> = members.urls.keys().copied().collect();
        let mut meta = SnapshotMetadata {
            index: 7,
            term: 3,
            ..Default::default()
        };
        meta.set_conf_state(ConfState::from((voters, vec![])));
        let state = ClusterState {
            members,
            sessions: Default::default(),
            incarnation: Incarnation::NotYet,
        };
        let map = crate::kvstore::Map::default();
        let mut snap = Snapshot {
            data: crate::kvstore::encode_snapshot(&state, &map).into(),
            ..Default::default()
        };
        snap.set_metadata(meta.clone());
        let snapshotter = Snapshotter::new(&config.snap_dir(), 5).expect("snapshotter");
        snapshotter.save(&snap).expect("snapshot saved");
        wal.save_snapshot_reset(&meta).expect("marker written");
        let hs = HardState {
            term: 3,
            commit: 7,
            ..Default::default()
        };
        wal.save(Some(&hs), &[], true).expect("hard state written");
        config.snap_dir().join(crate::snapshotter::snap_name(3, 7))
    }

    /// The real file system, noting every file opened through it: for a test that a check
    /// leaves a file unread.
    #[derive(Debug, Default)]
    struct ReadsNoted {
        read: std::sync::Mutex<Vec<PathBuf>>,
    }

    impl ReadsNoted {
        fn note(&self, path: &Path) {
            let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
            read.push(path.to_path_buf());
        }
    }

    impl FileSystem for ReadsNoted {
        fn create(&self, path: &Path) -> std::io::Result<Box<dyn crate::disk::DiskFile>> {
            StdFs.create(path)
        }
        fn open(&self, path: &Path) -> std::io::Result<Box<dyn crate::disk::DiskFile>> {
            self.note(path);
            StdFs.open(path)
        }
        fn open_direct(
            &self,
            path: &Path,
        ) -> std::io::Result<Option<(Box<dyn crate::disk::DiskFile>, usize)>> {
            self.note(path);
            StdFs.open_direct(path)
        }
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            self.note(path);
            StdFs.read(path)
        }
        fn open_read(&self, path: &Path) -> std::io::Result<(Box<dyn std::io::Read + Send>, u64)> {
            self.note(path);
            StdFs.open_read(path)
        }
        fn exists(&self, path: &Path) -> std::io::Result<bool> {
            StdFs.exists(path)
        }
        fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<String>> {
            StdFs.list_dir(dir)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            StdFs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> std::io::Result<()> {
            StdFs.remove_file(path)
        }
        fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
            StdFs.create_dir_all(dir)
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            StdFs.sync_dir(dir)
        }
        fn try_lock(&self, path: &Path) -> std::io::Result<crate::disk::LockGuard> {
            StdFs.try_lock(path)
        }
    }

    /// Commits, in the log of node 1 alone (`alone`), the additions of the other nodes of
    /// `grown`, as POST /<id> would.
    fn grow_to(alone: &Config, grown: &Config) {
        let recovered = replay_wal(alone).expect("node 1 alone");
        let mut wal = recovered.wal.expect("a bootstrapped node has a WAL");
        let added = bootstrap_entries(&grown.cluster).split_off(alone.cluster.len());
        let hs = HardState {
            term: 1,
            commit: grown.cluster.len() as u64,
            ..Default::default()
        };
        wal.save(Some(&hs), &added, true)
            .expect("the additions saved");
    }

    fn list(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("snapshot folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// A crash after a leader's snapshot was saved (file and marker) but before that Ready's
    /// hard state was written leaves a commit index below the snapshot: the node must still
    /// start, with the snapshot's entries counted as committed.
    #[test]
    fn a_snapshot_above_the_recorded_commit_still_starts() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = config(dir.path());
        // The crash: the hard state that would have said commit=7, term=3 never lands.
        snapshot_at_7(&config, false);
        let recovered = replay_wal(&config).expect("restart after the crash");
        let hs = recovered.storage.mem.rl().hard_state().clone();
        assert_eq!((hs.term, hs.commit), (3, 7));
        assert_eq!(recovered.snapshot_index, 7);
        assert_eq!(recovered.kv.get("/k"), Some("v".as_bytes()));
    }

    /// Host names are not case-sensitive: a restart whose `--cluster` spells them otherwise
    /// is the same node of the same cluster; another port is another node.
    #[test]
    fn a_restart_may_spell_host_names_in_any_case() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let with = |urls: &[&str]| Config {
            cluster: urls.iter().map(|u| u.to_string()).collect(),
            ..config(dir.path())
        };
        let first = with(&["http://localhost:12379", "http://node2:22379"]);
        drop(replay_wal(&first).expect("bootstrap"));
        let recovered = replay_wal(&with(&["http://LocalHost:12379/", "http://NODE2:22379"]))
            .expect("the same URLs, spelled otherwise");
        assert_eq!(recovered.snapshot_index, 0);
        drop(recovered);
        for moved in [
            ["http://localhost:12380", "http://node2:22379"],
            ["http://localhost:12379", "http://node3:22379"],
        ] {
            match replay_wal(&with(&moved)) {
                Err(StartError::ForeignDataDir(why)) => {
                    assert!(why.contains("belongs to"), "{why}");
                    // For a member of a running cluster, removing its data is the lost-disk
                    // case: the old flags come first, the removal only with its condition.
                    let old_flags = why.find("Start it with the flags its data was created with");
                    let removal = why.find("only if this data is of no use");
                    assert!(old_flags.is_some() && old_flags < removal, "{why}");
                    // Joining elsewhere takes empty folders: said in a sentence of its own.
                    assert!(
                        why.contains("join another cluster instead, remove"),
                        "{why}"
                    );
                    // Node 1's own URL moved (the first list): a moved member joins with no
                    // data, said before the sentence on joining another cluster.
                    let own_moved = moved[0] == "http://localhost:12380";
                    let told = why.find(
                        "If node 1 was moved to http://localhost:12380 (removed, then added \
                         back there), this data is of no use: remove",
                    );
                    assert_eq!(told.is_some(), own_moved, "{why}");
                    assert!(told < why.find("To make it join another cluster"), "{why}");
                }
                other => panic!("{moved:?}: {:?}", other.map(|_| "started")),
            }
        }
    }

    /// Folders of node 2 under node 1's names: `--id 2` alone would read `raftexample-2`, so
    /// the advice is to move them there, not to start with the owner's flags (review 111).
    #[test]
    fn another_nodes_folders_are_told_to_move_to_its_names() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let owner = Config {
            id: 2,
            cluster: vec![
                "http://127.0.0.1:9021".into(),
                "http://127.0.0.1:9022".into(),
            ],
            ..config(dir.path())
        };
        drop(replay_wal(&owner).expect("bootstrap node 2"));
        let moved = Config {
            id: 1,
            ..owner.clone()
        };
        std::fs::rename(owner.wal_dir(), moved.wal_dir()).expect("rename the WAL folder");
        std::fs::rename(owner.snap_dir(), moved.snap_dir()).expect("rename the snap folder");
        let why = match replay_wal(&moved) {
            Err(StartError::ForeignDataDir(why)) => why,
            other => panic!(
                "started on node 2's folders: {:?}",
                other.map(|_| "started")
            ),
        };
        let to = format!(
            "move {} and {} to {} and {} and start node 2 with --id 2",
            moved.wal_dir().display(),
            moved.snap_dir().display(),
            owner.wal_dir().display(),
            owner.snap_dir().display()
        );
        assert!(why.contains(&to), "lacks {to:?}: {why}");
    }

    /// A refused start names the data's cluster in 16 hex digits, leading zeros and all, as
    /// the dump and the incarnation beside it do: a cluster id that begins with a zero read
    /// one digit short (review 116 N3).
    #[test]
    fn a_refused_start_names_the_cluster_in_16_hex_digits() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut config = config(dir.path());
        config.cluster = vec!["http://127.0.0.1:9031".into()];
        // One id in 16 begins with a zero digit: the first such token, found the same way
        // on every run.
        config.cluster_token = (0..)
            .map(|i| format!("token-{i}"))
            .find(|token| crate::membership::cluster_id(token, &config.cluster) >> 60 == 0)
            .expect("some token");
        let id = crate::membership::cluster_id(&config.cluster_token, &config.cluster);
        drop(replay_wal(&config).expect("bootstrap"));
        let refusal = |config: &Config| match replay_wal(config) {
            Err(StartError::ForeignDataDir(why)) => why,
            other => panic!("{:?}: {:?}", config.cluster, other.map(|_| "started")),
        };
        let shown = format!("{id:016x}");
        let mut other_token = config.clone();
        other_token.cluster_token.push('x');
        let why = refusal(&other_token);
        assert!(
            why.contains(&format!("belongs to cluster {shown},")),
            "{why}"
        );
        config.cluster[0] = "http://127.0.0.1:9032".into();
        let why = refusal(&config);
        assert!(why.contains(&format!("(cluster {shown})")), "{why}");
    }

    /// `--join` on the data of an earlier life at another URL (a node removed and added back
    /// at a new one) is told to remove the data and join with the same flags: the flags the
    /// data was created with would restart that earlier life, stuck unheard at its old URL
    /// (found by a hands-on test). With the flags the data was made with, `--join` is
    /// ignored, as in the original (and the node says so in its log).
    #[test]
    fn joining_on_the_data_of_an_earlier_life_says_to_remove_it() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut config = config(dir.path());
        config.cluster = vec![
            "http://127.0.0.1:9021".into(),
            "http://127.0.0.1:9022".into(),
        ];
        drop(replay_wal(&config).expect("bootstrap"));
        let refusal = |config: &Config| match replay_wal(config) {
            Err(StartError::ForeignDataDir(why)) => why,
            other => panic!("{:?}: {:?}", config.cluster, other.map(|_| "started")),
        };
        config.join = true;
        drop(replay_wal(&config).expect("--join with the flags the data was made with"));
        // Another member's place changed, not this node's: the list's own refusal.
        config.cluster[1] = "http://127.0.0.1:9098".into();
        let why = refusal(&config);
        assert!(why.contains("belongs to a cluster started with"), "{why}");
        config.cluster[1] = "http://127.0.0.1:9022".into();
        let old_url = config.cluster[0].clone();
        config.cluster[0] = "http://127.0.0.1:9099".into();
        let why = refusal(&config);
        for needle in [
            "a node joins with no data",
            "start it again with the same flags",
            &format!("if it is still a member at {old_url}"),
            &config.wal_dir().display().to_string(),
            &config.snap_dir().display().to_string(),
        ] {
            assert!(why.contains(needle), "lacks {needle:?}: {why}");
        }
        config.join = false;
        let why = refusal(&config);
        assert!(why.contains("belongs to a cluster started with"), "{why}");
    }

    /// A new cluster whose `--cluster` names one URL twice (in any spelling the peer URL check
    /// takes as one) is refused before a WAL is written: the two nodes would take each
    /// other's messages for misrouted ones and never reach a quorum (found by a review).
    #[test]
    fn a_cluster_listing_one_url_twice_is_refused() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut config = config(dir.path());
        config.cluster = vec![
            "http://127.0.0.1:9051".into(),
            "http://127.0.0.1:9052".into(),
            "http://LOCALHOST:9053".into(),
            "http://localhost:9053/".into(),
        ];
        let Err(err) = replay_wal(&config) else {
            panic!("started with one URL listed twice");
        };
        let text = err.to_string();
        assert!(text.contains("twice (for nodes 3 and 4)"), "{text}");
        assert!(
            !Wal::exists_on(&StdFs, &config.wal_dir()),
            "no WAL was written"
        );
        // Joining, the list may name a removed member's URL again for a new id.
        config.join = true;
        replay_wal(&config).expect("a joining node's list may repeat a removed member's URL");
    }

    /// `--id 0` is told that ids start at 1 (it was told to list at least 0 URLs, with its
    /// own at place 0: found by a user).
    #[test]
    fn id_0_is_told_that_ids_start_at_1() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut config = config(dir.path());
        config.id = 0;
        let text = check_flags(&config).expect_err("refused").to_string();
        assert!(text.contains("ids start at 1"), "{text}");
    }

    /// A node whose id is past the end of `--cluster` (a member added as node 7 to a cluster
    /// of five URLs) is told how to list it, not only that it has no URL.
    #[test]
    fn an_id_past_the_cluster_list_is_told_how_to_list_it() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut config = config(dir.path());
        config.id = config.cluster.len() as u64 + 2;
        config.join = true;
        let text = check_flags(&config).expect_err("refused").to_string();
        let id = config.id;
        assert!(
            text.contains(&format!("--id {id} has no peer URL")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "list at least {id}, this node's own at place {id}"
            )),
            "{text}"
        );
    }

    /// Snapshots left without their WAL (it was deleted or moved): the node refuses to start,
    /// names both folders and says what to do, instead of bootstrapping an empty cluster that
    /// would overwrite them (found by a review). With --join it starts, to become a copy of
    /// the others (a joining node killed between adopting the leader's snapshot and creating
    /// its WAL leaves the same behind).
    #[test]
    fn snapshots_without_their_wal_are_refused_unless_joining() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut config = config(dir.path());
        let file = snapshot_at_7(&config, true);
        std::fs::remove_dir_all(config.wal_dir()).expect("the WAL is lost");
        let Err(err) = replay_wal(&config) else {
            panic!("started without the WAL beside {}", file.display());
        };
        let text = err.to_string();
        assert!(
            text.contains("holds no WAL") && text.contains("--join") && text.contains("1 snapshot"),
            "{text}"
        );
        assert!(file.exists(), "the snapshot is left alone");
        config.join = true;
        let joining = replay_wal(&config).expect("joining starts");
        assert!(
            joining.wal.is_none(),
            "a joining node waits for the leader's log"
        );
    }

    /// A damaged snapshot that held the only copy of committed entries: the node refuses to
    /// start, and the error names the snapshot file (found by the simulator, seed 1000555 of
    /// the long schedules before its world changed: the error blamed only the WAL). The
    /// refusal leaves the folder as it found it, so that a second start refuses in the same
    /// words: the first set the file aside, and the second named it set aside, where a copy
    /// of the data dir for help no longer showed it in place (a hands-on campaign).
    #[test]
    fn a_damaged_snapshot_of_committed_entries_is_named_when_the_node_refuses() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = config(dir.path());
        let file = snapshot_at_7(&config, true);
        damage(&file);
        let before = files_in(&config.snap_dir());
        let first = refused_naming(&config, &file, "are committed but holds entries only up to");
        assert!(
            files_in(&config.snap_dir()) == before,
            "the refusal changed the folder"
        );
        let second = refused_naming(&config, &file, "are committed but holds entries only up to");
        assert_eq!(first, second, "started again, the same refusal");
    }

    /// A snapshot from the leader replaced the log (a reset marker), the crash came before
    /// that Ready's hard state (so the recorded commit is below it), and its file is then
    /// found damaged: the node must refuse, naming the file, not start with the shorter log
    /// it held before (found by a review: nothing compared the log with the marker).
    #[test]
    fn a_damaged_snapshot_above_the_recorded_commit_is_named_when_the_node_refuses() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = config(dir.path());
        let file = snapshot_at_7(&config, false);
        damage(&file);
        refused_naming(&config, &file, "names a snapshot at index 7");
    }

    /// Flips a bit of the last byte of the snapshot `file` (its checksum's).
    fn damage(file: &Path) {
        let mut bytes = std::fs::read(file).expect("snapshot file");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        std::fs::write(file, bytes).expect("damaged");
    }

    /// The refusal of a start that needs the snapshot `file`, which is damaged or gone: it
    /// must say `lacks` and name the file.
    fn refused_naming(config: &Config, file: &Path, lacks: &str) -> String {
        let Err(err) = replay_wal(config) else {
            panic!("a node whose acknowledged log needs a damaged or missing snapshot started");
        };
        let text = err.to_string();
        let name = file.file_name().expect("name").to_string_lossy();
        assert!(
            text.contains(lacks) && text.contains(&*name),
            "the error must say what the WAL lacks and name the snapshot: {text}"
        );
        text
    }

    /// The snapshot files a WAL names deleted: the refusal says they are missing, not only
    /// what the WAL lacks (found by a review: it blamed a deleted WAL segment).
    #[test]
    fn missing_snapshot_files_are_named_when_the_node_refuses() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = config(dir.path());
        let file = snapshot_at_7(&config, true);
        std::fs::remove_file(&file).expect("the snapshot file is lost");
        refused_naming(&config, &file, "lacks the snapshot file(s) that");
    }

    /// A snapshot from the leader replaced the log (a reset marker at 7, after the WAL's
    /// entries up to 5), and the snapshot folder was emptied: the refusal names the file the
    /// WAL needs with its term and index, says where the WAL's own entries end, and what to
    /// do. It said the WAL "holds entries only up to 0" (the log after a reset is empty), of
    /// a WAL whose entries ran to 6615 (a hands-on campaign).
    #[test]
    fn an_emptied_snapshot_folder_under_a_leaders_snapshot_names_what_is_missing() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = config(dir.path());
        let file = {
            let recovered = replay_wal(&config).expect("bootstrap");
            let mut wal = recovered.wal.expect("a bootstrapped node has a WAL");
            let entries: Vec<Entry> = (2..=5)
                .map(|index| Entry {
                    index,
                    term: 2,
                    ..Default::default()
                })
                .collect();
            wal.save(None, &entries, true).expect("entries saved");
            let mut members = Members::default();
            members.add(1, config.cluster[0].clone(), 1);
            save_snapshot_at_7(&config, &mut wal, members)
        };
        std::fs::remove_file(&file).expect("the snapshot file is lost");
        let text = refused_naming(&config, &file, "lacks the snapshot file(s) that");
        for said in [
            "0000000000000003-0000000000000007.snap (term 3, index 7)",
            "the WAL's own entries end at index 5, its commit index is 7",
            "put those files back",
        ] {
            assert!(text.contains(said), "{said:?} not in {text}");
        }
        assert!(!text.contains("up to 0"), "{text}");
    }

    /// The snapshot file the WAL names last deleted (by hand), where the WAL still holds
    /// every entry after the snapshot before it: the node starts from that one, having lost
    /// nothing, and says so in one WARN line naming the missing file and the one it started
    /// from (a hands-on campaign: it started silently). A start with every file there says
    /// nothing of the kind.
    #[test]
    fn a_missing_newest_snapshot_the_wal_covers_starts_from_the_older_one_with_a_warning() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = config(dir.path());
        let [older, newest] = snapshots_at_4_and_8(&config);
        let (started, logged) = warnings_of(|| replay_wal(&config));
        let started = started.expect("every file there");
        assert_eq!(started.snapshot_index, 8);
        drop(started);
        assert!(!logged.contains("missing"), "{logged}");

        std::fs::remove_file(&newest).expect("the newest snapshot file is lost");
        let (started, logged) = warnings_of(|| replay_wal(&config));
        let started = started.expect("the WAL holds every entry after the older snapshot");
        assert_eq!(
            (started.snapshot_index, started.commit_at_start),
            (4, 10),
            "started from the older snapshot, with the entries after it"
        );
        let warned: Vec<&str> = logged.lines().filter(|l| l.contains("missing")).collect();
        assert_eq!(warned.len(), 1, "{logged}");
        for said in [
            "WARN".to_string(),
            format!("path={}", newest.display()),
            "term=2 index=8".to_string(),
            format!("started_from={}", older.display()),
            "the WAL holds every entry after that".to_string(),
        ] {
            assert!(warned[0].contains(&said), "{said:?} not in {logged}");
        }
    }

    /// The newest snapshot damaged: a start goes on from the one before and sets it aside.
    /// Every later start warns, once, that the WAL's newest snapshot is missing, and says
    /// where it went: it said only "missing", and its operator looked for a deletion, at every
    /// start until a newer snapshot was taken (a hands-on campaign).
    #[test]
    fn a_newest_snapshot_set_aside_as_damaged_is_named_so_at_later_starts() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = config(dir.path());
        let [_, newest] = snapshots_at_4_and_8(&config);
        damage(&newest);
        let started = replay_wal(&config).expect("the WAL holds every entry after the older");
        assert_eq!(started.snapshot_index, 4);
        drop(started);
        let mut aside = newest.clone().into_os_string();
        aside.push(".broken");
        let aside = PathBuf::from(aside);
        assert!(
            !newest.exists() && aside.exists(),
            "set aside once the start went on"
        );

        for _ in 0..2 {
            let (started, logged) = warnings_of(|| replay_wal(&config));
            assert_eq!(started.expect("started again").snapshot_index, 4);
            let warned: Vec<&str> = logged.lines().filter(|l| l.contains("missing")).collect();
            assert_eq!(warned.len(), 1, "{logged}");
            let said = format!(
                "0000000000000002-0000000000000008.snap was set aside as {} by an earlier start \
                 because it was damaged",
                aside.display()
            );
            assert!(warned[0].contains(&said), "{said:?} not in {logged}");
        }
    }

    /// A bootstrapped node 1 alone whose WAL holds entries 2 to 10 of term 2, all committed,
    /// and the markers of snapshots at 4 and at 8 (each file saved before its marker, as the
    /// node does). Returns the two files.
    fn snapshots_at_4_and_8(config: &Config) -> [PathBuf; 2] {
        let recovered = replay_wal(config).expect("bootstrap");
        let mut wal = recovered.wal.expect("a bootstrapped node has a WAL");
        let entries: Vec<Entry> = (2..=10)
            .map(|index| Entry {
                index,
                term: 2,
                ..Default::default()
            })
            .collect();
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 10,
            ..Default::default()
        };
        wal.save(Some(&hs), &entries, true).expect("entries saved");
        let mut members = Members::default();
        members.add(1, config.cluster[0].clone(), 1);
        [4, 8].map(|index| {
            let mut meta = SnapshotMetadata {
                index,
                term: 2,
                ..Default::default()
            };
            meta.set_conf_state(ConfState::from((vec![1], vec![])));
            let state = ClusterState {
                members: members.clone(),
                sessions: Default::default(),
                incarnation: Incarnation::NotYet,
            };
            let mut snap = Snapshot {
                data: crate::kvstore::encode_snapshot(&state, &Default::default()).into(),
                ..Default::default()
            };
            snap.set_metadata(meta.clone());
            let snapshotter = recovered.storage.snapshotter();
            snapshotter.save(&snap).expect("snapshot saved");
            wal.save_snapshot_marker(&meta).expect("marker written");
            snapshotter
                .dir()
                .join(crate::snapshotter::snap_name(2, index))
        })
    }

    /// What `run` logs at WARN and above on this thread, as the node's log prints it (no
    /// colours), with what it returns.
    fn warnings_of<T>(run: impl FnOnce() -> T) -> (T, String) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let returned = tracing::subscriber::with_default(subscriber, run);
        let bytes = captured.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (returned, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A log writer that keeps what it is given, for [`warnings_of`].
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
            kept.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A WAL segment deleted from the middle: the start refuses it, saying which sequence
    /// is missing between which segments, and advises as for any damaged data dir (removed,
    /// added back, started with --join). It said the segment after the hole was corrupt at
    /// offset 0, and gave the hole as "2..3" with 3 there (a hands-on campaign).
    #[test]
    fn a_deleted_middle_wal_segment_is_refused_as_missing_with_the_lost_disk_advice() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = Config {
            wal_segment_bytes: 4096,
            ..config(dir.path())
        };
        let mut wal = replay_wal(&config)
            .expect("bootstrap")
            .wal
            .expect("a bootstrapped node has a WAL");
        for index in 2..=40 {
            let entry = Entry {
                index,
                term: 1,
                data: vec![b'x'; 512].into(),
                ..Default::default()
            };
            wal.save(None, &[entry], true).expect("entry saved");
        }
        let segments = wal.segment_paths();
        drop(wal);
        assert!(segments.len() >= 4, "{segments:?}");
        std::fs::remove_file(&segments[2]).expect("a middle segment is lost");
        let Err(err) = replay_wal(&config) else {
            panic!("started without a middle WAL segment");
        };
        let name = |p: &PathBuf| p.file_name().expect("name").to_string_lossy().into_owned();
        let text = err.to_string();
        assert!(
            text.contains("lacks the WAL segment with sequence 2, between")
                && text.contains(&name(&segments[1]))
                && text.contains(&name(&segments[3]))
                && !text.contains("corrupt"),
            "{text}"
        );
        let remedy = err.remedy(&config).expect("advice for a lost segment");
        assert!(
            remedy.contains("DELETE /1, then POST /1") && remedy.contains("--join"),
            "{remedy}"
        );
    }

    /// The files of folder `dir` but its lock, each with its bytes.
    fn files_in(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .expect("a folder")
            .map(|e| e.expect("an entry"))
            .filter(|e| e.file_name() != "LOCK")
            .map(|e| {
                let bytes = std::fs::read(e.path()).expect("a file");
                (e.file_name().to_string_lossy().into_owned(), bytes)
            })
            .collect()
    }

    /// A start refused on the WAL of an older build (b738d10's: its headers lack the `chained`
    /// record), here another node's by `--id` or another cluster's by `--cluster`, leaves it
    /// as that build can start on it again: no segment added, none changed, no `next`
    /// written (review 115, M1: an operator goes back to the old binary after such a refusal).
    #[test]
    fn a_refused_start_leaves_an_older_builds_wal_as_it_was() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal-b738d10/clean");
        // The fixture is node 1's, at http://127.0.0.1:12379, alone in its cluster.
        let cluster = |urls: &[&str]| urls.iter().map(|u| u.to_string()).collect();
        for (id, cluster, refusal) in [
            (
                2,
                cluster(&["http://127.0.0.1:9021", "http://127.0.0.1:9022"]),
                "belongs to node 1",
            ),
            (
                1,
                cluster(&["http://127.0.0.1:9021"]),
                "belongs to a cluster started with",
            ),
        ] {
            let dir = tempfile::TempDir::new().expect("temp dir");
            let config = Config {
                id,
                cluster,
                ..config(dir.path())
            };
            std::fs::create_dir_all(config.wal_dir()).expect("the WAL folder");
            for (name, bytes) in files_in(&fixture) {
                std::fs::write(config.wal_dir().join(name), bytes).expect("a copied segment");
            }
            let before = files_in(&config.wal_dir());
            match replay_wal(&config) {
                Err(StartError::ForeignDataDir(why)) => assert!(why.contains(refusal), "{why}"),
                other => panic!("--id {id}: {:?}", other.map(|_| "started")),
            }
            let after = files_in(&config.wal_dir());
            let names = |f: &std::collections::BTreeMap<String, Vec<u8>>| {
                f.keys().cloned().collect::<Vec<_>>()
            };
            assert_eq!(names(&after), names(&before), "--id {id}: segments added");
            // The open may still sync what it replayed and say so with a sync mark, which
            // b738d10 reads; nothing else.
            let (newest, old) = before.last_key_value().expect("the fixture has segments");
            for (name, bytes) in &after {
                let what = format!("--id {id}: {name}");
                if name != newest {
                    assert!(bytes == &before[name], "{what} was changed");
                    continue;
                }
                assert!(
                    bytes[..old.len()] == old[..],
                    "{what}: its records were changed"
                );
                let mut added = Vec::new();
                crate::wal::scan(&config.wal_dir(), |path, off, _, rec| {
                    if path.ends_with(name) && off >= old.len() as u64 {
                        added.push(rec.kind());
                    }
                })
                .expect("the WAL scans");
                assert!(added.iter().all(|k| *k == "synced"), "{what}: {added:?}");
            }
        }
    }

    /// A restart this build accepts on a WAL whose only segment an older build wrote seals it
    /// before the node serves: one segment more, of this build's format (its header holds the
    /// `chained` record, which that build refuses), so that the older build cannot start
    /// there again and skip the entries it cannot read.
    #[test]
    fn an_accepted_restart_on_an_older_builds_wal_seals_it() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = config(dir.path());
        let meta = Metadata {
            node_id: config.id,
            cluster_id: cluster_id(&config.cluster_token, &config.cluster),
            peer_url: check_flags(&config).expect("valid flags"),
            initial_cluster: config.cluster.clone(),
            joined_at: None,
        };
        let (hs, entries) = bootstrap_log(&config.cluster);
        let old = crate::wal::tests::older_build_segment(&meta, &entries, &hs);
        std::fs::create_dir_all(config.wal_dir()).expect("the WAL folder");
        let first = crate::wal::segment_name(0, 0);
        std::fs::write(config.wal_dir().join(&first), &old).expect("the old segment");
        drop(replay_wal(&config).expect("the node's own WAL, restarted"));
        let segments = files_in(&config.wal_dir());
        assert_eq!(segments.len(), 2, "{:?}", segments.keys());
        assert_eq!(&segments[&first][..old.len()], &old[..], "the old records");
        let newest = segments.keys().last().expect("two segments");
        let mut header = Vec::new();
        crate::wal::scan(&config.wal_dir(), |path, _, _, rec| {
            if path.ends_with(newest) {
                header.push(rec.kind());
            }
        })
        .expect("the WAL scans");
        assert!(header.contains(&"chained"), "{header:?}");
    }
}
