//! What this node knows of its peers' builds, for the one difference between builds that
//! changes what they store: a PUT's value that is not UTF-8. Builds before values of any
//! bytes skip a log entry writing one (they log it and move on) where this build stores it, so
//! in a cluster in the middle of a rolling upgrade such a value would be on some members and
//! not on others, without an error.
//!
//! Every peer request of this build and its answer to [`super::PROBE_PATH`] carry
//! [`HEADER_VALUES`]; older builds send neither. The peer server records, for each member whose
//! request it admits, whether the header was there ([`Builds::record`]); a request from a
//! restarted process overwrites what its predecessor said.
//!
//! The leader is the node that knows: every follower sends it its answers, over connections
//! whose opening recorded the sender's build, so its records follow each restart. A follower
//! hears from its leader alone, so before a PUT of a value that is not UTF-8
//! ([`ValuesCheck::older_member`]) it asks the leader, whose probe answer lists the members it
//! knows as older ([`HEADER_OLDER`]). Text values never come here. The in-memory network and
//! the simulator carry no headers and run no check: every node there runs this build.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};

use super::http::PeerRefusal;
use super::probe::Prober;
use super::{HEADER_OLDER, HEADER_VALUES, PeerFilter};
use crate::request::{OwnPart, ProposalError, Waited};

/// What a member's request or probe answer said of its build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// It stores a value of any bytes ([`HEADER_VALUES`] was there).
    AnyBytes,
    /// It skips a value that is not UTF-8: an older build (no [`HEADER_VALUES`]).
    Older,
}

impl Build {
    /// The build a request or answer with `headers` comes from. Only whether the header is
    /// there counts, whatever its value, so that a later build may say more in it.
    pub fn of(headers: &HeaderMap) -> Build {
        if headers.contains_key(HEADER_VALUES) {
            Build::AnyBytes
        } else {
            Build::Older
        }
    }
}

/// The build a member's answer to the probe says it runs: by the answer's headers when it is
/// 200 ([`Build::of`]); [`Build::Older`] when the member does not know the probe
/// ([`PeerRefusal::Unknown`], a build older than the probe); `None` for any other answer.
pub(super) fn build_of(status: StatusCode, headers: &HeaderMap) -> Option<Build> {
    if status == StatusCode::OK {
        return Some(Build::of(headers));
    }
    match PeerRefusal::from_status(status) {
        Some(PeerRefusal::Unknown) => Some(Build::Older),
        _ => None,
    }
}

/// How a member's build was heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// In a request of its own (a message stream, a snapshot, a probe it sent), which the
    /// peer server admitted: its process said it, and a process restarted since opens new
    /// streams that say it again.
    Request,
    /// In an answer to this node's probe, which may not be the member's word: a `404` from
    /// something at its URL that is not its peer server, or a late answer of its previous
    /// process, taken after its new process's stream (review 106).
    ProbeAnswer,
}

/// The build each member last said it runs, and how it was heard.
#[derive(Debug, Default)]
pub struct Builds {
    known: Mutex<HashMap<u64, (Build, Heard)>>,
}

impl Builds {
    /// Records that `peer` just said it runs `build`, `heard` as a request's headers or a
    /// probe's answer, replacing what it said before, but for a probe's answer after a
    /// request: that may not be the member's word ([`Heard::ProbeAnswer`]), and a node that
    /// becomes leader while the member's stream lives gets no new request to replace it, so it
    /// named a member of this build as older for as long as the stream lived (review 111).
    /// An older build is still known so: by its own requests, which say it in every stream it
    /// opens, or by a probe's answer where no request was heard.
    pub fn record(&self, peer: u64, build: Build, heard: Heard) {
        let mut known = self.lock();
        if heard == Heard::ProbeAnswer && matches!(known.get(&peer), Some((_, Heard::Request))) {
            return;
        }
        known.insert(peer, (build, heard));
    }

    /// What `peer` last said of its build, however it was heard: for tests, which check what
    /// was recorded; the node itself asks [`Self::said_by`] or [`Self::older_among`].
    #[cfg(test)]
    pub fn of(&self, peer: u64) -> Option<Build> {
        self.lock().get(&peer).map(|(build, _)| *build)
    }

    /// What `peer` last said of its build, if it said it in a request of its own
    /// ([`Heard::Request`]).
    pub fn said_by(&self, peer: u64) -> Option<Build> {
        match self.lock().get(&peer) {
            Some((build, Heard::Request)) => Some(*build),
            _ => None,
        }
    }

    /// Forgets `peer` (removed from the membership: it is heard afresh if added back).
    pub fn forget(&self, peer: u64) {
        self.lock().remove(&peer);
    }

    /// Those of `members` last heard as an older build, ascending: in a request of their own,
    /// or in a probe's answer where none was heard (see [`Self::record`]), which the member's
    /// next request replaces.
    pub fn older_among(&self, members: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let known = self.lock();
        let mut older: Vec<u64> = members
            .into_iter()
            .filter(|id| matches!(known.get(id), Some((Build::Older, _))))
            .collect();
        older.sort_unstable();
        older
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Build, Heard)>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// [`HEADER_OLDER`]'s value: `older` as `2,3` (empty for none).
pub fn older_header(older: &[u64]) -> String {
    older
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The ids a [`HEADER_OLDER`] value names; `None` if there is no such header, or it is not a
/// list of ids.
pub fn older_of(headers: &HeaderMap) -> Option<Vec<u64>> {
    let value = headers.get(HEADER_OLDER)?.to_str().ok()?;
    if value.is_empty() {
        return Some(Vec::new());
    }
    value.split(',').map(|id| id.parse().ok()).collect()
}

/// Why a value that is not UTF-8 was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// These members (ascending, at least one) run (or last ran) a build that would skip it.
    Older(Vec<u64>),
    /// The leader (this id) did not say which builds the members run within this long: a
    /// second, or what was left of the wait if less.
    LeaderSilent(u64, Duration),
    /// No leader came within the check's wait (what was left of the write's when it began),
    /// to say it: that wait, with how long this node stood still in it (see `stall_in`),
    /// when that was most of it. Judged against the check's wait, the stall is said with it:
    /// "2.6s of that wait of 5s" was most of a 3 s check, not of 5 s (review 116 N2).
    NoLeader(Waited),
    /// A leader (this id, the latest so seen) was known in the check's wait, but not where to
    /// ask it: it is not among the members this node knows (one just added, or one removed);
    /// and the check's wait. Not "no leader was elected", which would be false (review 114
    /// L6), even if it was lost by the check's last look (review 118).
    LeaderUnlisted(u64, Duration),
    /// A leader came only as the wait ended, with less than [`LEAST_PATIENCE`] left to ask
    /// it.
    NoTimeLeft,
}

impl Refusal {
    /// What the client of a write refused so hears, the write's whole wait being `wait`
    /// (what it was not proposed within); a refusal that says how long the check waited
    /// says that. Every one is 503 and "it will not happen" but [`Refusal::Older`] (409).
    pub fn answer(self, wait: Duration) -> ProposalError {
        match self {
            Refusal::Older(members) => ProposalError::OlderBuild(members),
            Refusal::LeaderSilent(leader, waited) => ProposalError::BuildsUnknown(leader, waited),
            Refusal::NoLeader(waited) => ProposalError::NoLeader(waited),
            Refusal::LeaderUnlisted(leader, waited) => {
                ProposalError::LeaderUnlisted(leader, waited)
            }
            Refusal::NoTimeLeft => ProposalError::NotProposed(wait),
        }
    }
}

/// How long a follower reuses its leader's "no member runs an older build": a burst of such
/// writes asks once, not once each over a new connection. A member restarted on an older
/// build in that time passes. A refusal is never reused: the last older member may have been
/// upgraded a moment ago (a test's write was refused so, half a second after the upgrade).
const ANSWER_FRESH: Duration = Duration::from_millis(500);

/// How long the leader may take to say which builds the members run, before a value that is
/// not UTF-8 is refused (a request the client may send again): longer than a probe, as the
/// write waits on it, and a slow answer must not pass for "none". Less when the write's own
/// wait ends sooner (see [`ValuesCheck::older_member`]).
const BUILDS_TIMEOUT: Duration = Duration::from_secs(1);

/// The least time left of a write's wait in which its leader is still asked: with less, the
/// write is refused unasked ([`Refusal::NoTimeLeft`]), not "no answer within 500.0µs" (review
/// 110). The probe opens a new connection, a round trip before the question's own, and the
/// leader answers on its runtime among its other work: well under a millisecond only on one
/// host. And a write let through with less left than this would not be proposed anyway, under
/// a `--proposal-timeout-ms` of 5 or more (the flag takes no less than
/// [`crate::config::MIN_PROPOSAL_TIMEOUT_MS`]): nothing is in the last fifth of a wait (see
/// `raft_node::proposals`).
pub const LEAST_PATIENCE: Duration = Duration::from_millis(1);

/// How often a node that knows no leader looks again, while it waits for one.
const LEADER_POLL: Duration = Duration::from_millis(10);

/// How many looks' time apart two looks must be for the time between them to count as a stall
/// (as two ticks do for the node's loop; more, since a look's timer is a task's, which a busy
/// runtime wakes late far more often than the loop's tick).
const STALL_LOOKS: u32 = 10;

/// How long a node stood still in a `wait` for a leader: `still`, the times between its
/// looks that were [`STALL_LOOKS`] looks' time or more, less a look's, added up (as the
/// node's loop adds up its stalls: two of 1.5 s in a wait of 5 s were never counted, review
/// 116 L1), when that was most of the wait: at least half of it, and two looks' time (the
/// rule of the node's own loop, [`Waited::stood_still_for`]). Then the wait's "no leader" is
/// said of this node, not of a quorum it was not there to hear (review 114 L6: a node paused
/// through this wait said "a quorum may be down").
fn stall_in(wait: Duration, still: Duration) -> OwnPart {
    Waited::stood_still_for(wait, still, LEADER_POLL).own_part
}

/// The check's `wait` as its answer says it: in whole milliseconds, rounded up, as
/// `--proposal-timeout-ms` gives it. The check begins a few microseconds into the write's
/// wait, and "a wait of 4.999987s" would tell its client nothing more than "5s".
fn said(wait: Duration) -> Duration {
    let ms = wait.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(ms.try_into().unwrap_or(u64::MAX))
}

/// A leader's "none": which leader, at which URL, and when.
type Answer = (u64, String, Instant);

/// The check a node makes before it proposes a PUT whose value is not UTF-8: whether another
/// member runs a build that would skip it.
#[derive(Clone)]
pub struct ValuesCheck {
    filter: Arc<PeerFilter>,
    prober: Prober,
    /// The leader's latest "none" (see [`ANSWER_FRESH`]).
    last: Arc<Mutex<Option<Answer>>>,
}

impl ValuesCheck {
    /// Asks the leader with `prober` (the strict reconfiguration check's, which keeps no
    /// connection); reads the members and their builds in `filter`, the prober's.
    pub fn new(prober: Prober, filter: Arc<PeerFilter>) -> ValuesCheck {
        ValuesCheck {
            prober,
            filter,
            last: Arc::default(),
        }
    }

    /// Whether a value that is not UTF-8 may be written, `leader` saying the leader this node
    /// knows (0 for none) at each look:
    ///
    /// - a node that knows no leader, or one no longer a member, waits for one up to `wait`,
    ///   as its write would (judged by its own records, a follower, which hears from its
    ///   leader alone, would let anything through in an election); the whole check ends
    ///   within `wait`, the write's, which then proposes with what is left of it. With none
    ///   by then, it is refused ([`Refusal::NoLeader`]), or, if a look saw a leader not among
    ///   the members, as one this node could not ask ([`Refusal::LeaderUnlisted`]);
    /// - a leader judges by what it heard: the lowest member last heard as an older build is
    ///   named;
    /// - a follower names its leader if the leader's own request last said it runs an older
    ///   build ([`Heard::Request`]; not an earlier probe answer), or else asks it
    ///   ([`super::PROBE_PATH`]) and names the lowest member (not itself) the answer lists as
    ///   older, or the leader if the answer says it is one (no [`HEADER_VALUES`], or the `404`
    ///   of a build without the probe). A leader that does not answer within `BUILDS_TIMEOUT`,
    ///   a second (or what is left of `wait`, if less), or whose answer does not say, refuses
    ///   it too: nothing is written, and the client may try again. One found with less than
    ///   [`LEAST_PATIENCE`] left of `wait` is not asked ([`Refusal::NoTimeLeft`]). A "none" is
    ///   reused for `ANSWER_FRESH`, half a second.
    ///
    /// A member that the leader has not heard since the leader started (down all that time,
    /// or not yet connected to a leader just elected) cannot be told apart from this build,
    /// and is not named. No lock is held while waiting.
    pub async fn older_member(
        &self,
        leader: impl Fn() -> u64,
        wait: Duration,
    ) -> Result<(), Refusal> {
        let builds = self.filter.builds();
        let self_id = self.filter.self_id;
        let began = tokio::time::Instant::now();
        let deadline = began + wait;
        // The latest look, the times between looks that were stalls, added up, and the latest
        // leader seen that this node could not ask.
        let (mut looked, mut still, mut unlisted) = (began, Duration::ZERO, None);
        let (leader, url) = loop {
            let leader = leader();
            if leader == self_id {
                return older(self.filter.older_members());
            }
            if leader != 0 {
                match self.filter.member_url(leader) {
                    Some(url) => break (leader, url),
                    None => unlisted = Some(leader),
                }
            }
            let now = tokio::time::Instant::now();
            let since = now.min(deadline).saturating_duration_since(looked);
            // Only a gap of several looks, and past the look that was due anyway: on a busy
            // machine a 10 ms sleep often wakes 10 ms late, and those gaps, added up whole,
            // said a node whose loop ran on had stood still for most of the wait (review 118).
            if since >= STALL_LOOKS * LEADER_POLL {
                still += since - LEADER_POLL;
            }
            looked = now;
            // A leader seen but not asked is no "no leader was elected", even if lost by the
            // last look: a leader was known in the wait, as the node's own rule has it
            // (review 86; review 118 of the last look's answer that review 116 N2 suggested).
            if now >= deadline {
                return Err(match unlisted {
                    Some(leader) => Refusal::LeaderUnlisted(leader, said(wait)),
                    None => Refusal::NoLeader(Waited {
                        wait: said(wait),
                        own_part: stall_in(wait, still),
                    }),
                });
            }
            tokio::time::sleep(LEADER_POLL).await;
        };
        // Only the leader's own word is taken without asking: a probe's answer may not be its
        // (see `Heard::ProbeAnswer`), and would otherwise stand while the leader's stream
        // lives, refusing every such write.
        if builds.said_by(leader) == Some(Build::Older) {
            return Err(Refusal::Older(vec![leader]));
        }
        if self.fresh_none(leader, &url) {
            return Ok(());
        }
        // A leader found late in the wait has only what is left of it to answer in.
        let patience =
            BUILDS_TIMEOUT.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        if patience < LEAST_PATIENCE {
            return Err(Refusal::NoTimeLeft);
        }
        let answer = match self.builds_known_to(leader, &url, patience).await {
            Some((Build::Older, _)) => Err(Refusal::Older(vec![leader])),
            Some((Build::AnyBytes, Some(listed))) => {
                older(listed.into_iter().filter(|id| *id != self_id).collect())
            }
            // Says this build but not whom it heard as older: it cannot tell, so neither can
            // this node.
            Some((Build::AnyBytes, None)) | None => {
                return Err(Refusal::LeaderSilent(leader, patience));
            }
        };
        if answer.is_ok() {
            *self.lock() = Some((leader, url, Instant::now()));
        }
        answer
    }

    /// The build the leader `id` at peer URL `url` runs, as its answer to the probe says
    /// ([`Build::of`]: a build without the probe answers 404, without the header, as an older
    /// build does), recorded, and the members it last heard as older ([`older_of`], `None` if
    /// it does not say, or not readably); `None` if it does not answer as that member within
    /// `patience`, or answers something else.
    async fn builds_known_to(
        &self,
        id: u64,
        url: &str,
        patience: Duration,
    ) -> Option<(Build, Option<Vec<u64>>)> {
        let (status, headers) = self.prober.ask(id, url, patience).await?;
        let build = build_of(status, &headers)?;
        self.filter.builds().record(id, build, Heard::ProbeAnswer);
        Some((build, older_of(&headers)))
    }

    /// Whether `leader` at `url` said "none" within [`ANSWER_FRESH`].
    fn fresh_none(&self, leader: u64, url: &str) -> bool {
        matches!(&*self.lock(), Some((id, at_url, at))
            if *id == leader && at_url == url && at.elapsed() < ANSWER_FRESH)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Answer>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Refused naming every member of `older`, if any.
fn older(older: Vec<u64>) -> Result<(), Refusal> {
    match older.is_empty() {
        true => Ok(()),
        false => Err(Refusal::Older(older)),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use axum::routing::get;

    use super::*;

    /// The check of node 1, which knows node 2 at a URL where nothing answers if `knows_2`.
    fn check_of_node_1(knows_2: bool) -> ValuesCheck {
        let filter = Arc::new(PeerFilter::new(1, 0xabc));
        if knows_2 {
            filter.set_member(2, Some("http://127.0.0.1:2"));
        }
        let prober = Prober::new(crate::transport::probe_client(None), filter.clone());
        ValuesCheck::new(prober, filter)
    }

    /// Stops this process's clock for `stopped` 25 ms from now (a SIGSTOP, as tokio's paused
    /// clock sees it): after a check's looks at 0, 10 and 20 ms.
    fn stop_at_25_ms_for(stopped: Duration) {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(25)).await;
            tokio::time::advance(stopped).await;
        });
    }

    /// A leader whose answer says this build but lists the members it heard as older in a
    /// form this build cannot read (a later build's syntax, say), or not at all, gets the
    /// write refused as a leader that did not say (503: "no answer within 1.0s, or none it
    /// could read"), not let through as if it had named none (review 106 L-C: a list that did
    /// not parse was read as "no older member"). Naming the leader as older instead would be
    /// false: its answer says this build. A list it can read is still read.
    #[tokio::test]
    async fn a_leader_whose_list_of_older_members_cannot_be_read_refuses_the_write() {
        let filter = Arc::new(PeerFilter::new(1, 0xabc));
        let prober = Prober::new(crate::transport::probe_client(None), filter.clone());
        let check = ValuesCheck::new(prober, filter.clone());
        let silent = Err(Refusal::LeaderSilent(2, BUILDS_TIMEOUT));
        for (older, want) in [
            (Some("3;since=5"), silent.clone()),
            (Some("3,x"), silent.clone()),
            (None, silent.clone()),
            (Some("3"), Err(Refusal::Older(vec![3]))),
            // All of them but the asker, where it named the lowest alone.
            (Some("1,3,4"), Err(Refusal::Older(vec![3, 4]))),
            (Some(""), Ok(())),
        ] {
            let answer = move || async move {
                let mut headers = HeaderMap::new();
                headers.insert(HEADER_VALUES, HeaderValue::from_static("bytes"));
                if let Some(older) = older {
                    headers.insert(HEADER_OLDER, HeaderValue::from_static(older));
                }
                headers
            };
            let router = axum::Router::new().route(super::super::PROBE_PATH, get(answer));
            filter.set_member(2, Some(&crate::transport::tests::serve(router).await));
            let said = check.older_member(|| 2, Duration::from_secs(5)).await;
            assert_eq!(said, want, "x-raftexample-older: {older:?}");
            // What its client hears (README: "or none it could read").
            if let Err(refusal) = said
                && !matches!(refusal, Refusal::Older(_))
            {
                let text = refusal.answer(Duration::from_secs(5)).to_string();
                assert_eq!(
                    text,
                    "the leader (node 2) did not say whether every member runs a build that \
                     stores a value that is not UTF-8 (no answer within 1.0s, or none it could \
                     read), so it was not written: it will not happen; try again",
                    "x-raftexample-older: {older:?}"
                );
            }
        }
    }

    /// A node that stood still for most of a write's wait for a leader (paused with SIGSTOP,
    /// starved of CPU) says that it did, not that a quorum may be down, as the node's own
    /// loop does (review 114 L6). One that looked every 10 ms all along names the quorum.
    #[tokio::test(start_paused = true)]
    async fn a_check_that_stood_still_waiting_for_a_leader_says_so() {
        let check = check_of_node_1(false);
        let wait = Duration::from_secs(5);
        stop_at_25_ms_for(Duration::from_secs(4));
        let said = check.older_member(|| 0, wait).await;
        let Err(Refusal::NoLeader(waited)) = said else {
            panic!("{said:?}");
        };
        let OwnPart::StoodStill(still) = waited.own_part else {
            panic!("did not stand still: {waited:?}");
        };
        assert!(
            (Duration::from_millis(3_950)..Duration::from_millis(4_050)).contains(&still),
            "{still:?}"
        );
        let answer = Refusal::NoLeader(waited).answer(wait);
        assert!(answer.will_not_happen());
        answer.assert_said_of_this_node(
            "this node knew no leader in time for a wait of 5s (it stood still for 4.0s",
        );

        let said = check.older_member(|| 0, wait).await;
        assert_eq!(said, Err(Refusal::NoLeader(wait.into())));
        let text = Refusal::NoLeader(wait.into()).answer(wait).to_string();
        assert!(
            text.starts_with(
                "no leader was elected in time for a wait of 5s (a quorum may be down)"
            ),
            "{text}"
        );
    }

    /// Two stalls of 1.5 s in a check's wait of 5 s stood still for most of it, added up as
    /// the node's loop adds up its own (review 116 L1; the longest alone was counted). Looks
    /// 10 ms apart are the check's pace, not stalls.
    #[tokio::test(start_paused = true)]
    async fn a_check_adds_up_its_stalls() {
        let check = check_of_node_1(false);
        let wait = Duration::from_secs(5);
        tokio::spawn(async {
            for stall in 0..2 {
                tokio::time::sleep(Duration::from_millis(25 + 1_000 * stall)).await;
                tokio::time::advance(Duration::from_millis(1_500)).await;
            }
        });
        let said = check.older_member(|| 0, wait).await;
        let answer = said.expect_err("no leader").answer(wait);
        answer.assert_said_of_this_node(
            "this node knew no leader in time for a wait of 5s (it stood still for 3.0s",
        );
    }

    /// A check whose every sleep of 10 ms wakes 10 ms late (a busy runtime) while no leader
    /// comes did not stand still: its looks went on, twice as far apart. Added up whole, those
    /// gaps said it stood still for the whole wait, and not that a quorum may be down (review
    /// 118).
    #[tokio::test(start_paused = true)]
    async fn a_check_whose_looks_wake_late_did_not_stand_still() {
        let check = check_of_node_1(false);
        let wait = Duration::from_secs(5);
        // After each look, the clock moves on 20 ms before the check's task runs again.
        let looked = Arc::new(tokio::sync::Notify::new());
        let late = tokio::spawn({
            let looked = looked.clone();
            async move {
                loop {
                    looked.notified().await;
                    tokio::time::advance(Duration::from_millis(20)).await;
                }
            }
        });
        let began = tokio::time::Instant::now();
        let looks = std::sync::atomic::AtomicU32::new(0);
        let look = || {
            looks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            looked.notify_one();
            0
        };
        let said = check.older_member(look, wait).await;
        late.abort();
        let looks = looks.into_inner();
        let pace = began.elapsed() / looks;
        assert!(pace >= Duration::from_millis(15), "looks {pace:?} apart");
        // The answer of a check that looked all along, whose text (naming the quorum) the
        // test of a check that stood still checks.
        assert_eq!(said, Err(Refusal::NoLeader(wait.into())));
    }

    /// A leader known all along whose address this node does not know (not among the members
    /// it knows) is not said to be no leader: "no leader was elected" would be false (review
    /// 114 L6). The write will not happen, as then.
    #[tokio::test(start_paused = true)]
    async fn a_leader_not_among_the_known_members_is_not_called_no_leader() {
        let check = check_of_node_1(true);
        let wait = Duration::from_secs(5);
        let said = check.older_member(|| 4, wait).await;
        assert_eq!(said, Err(Refusal::LeaderUnlisted(4, wait)));
        let answer = Refusal::LeaderUnlisted(4, wait).answer(wait);
        assert!(answer.will_not_happen());
        let text = answer.to_string();
        assert!(
            text.starts_with("this node knew the leader (node 4) but not its address")
                && text.ends_with("it will not happen; try again")
                && !text.contains("no leader"),
            "{text}"
        );
    }

    /// A leader seen at a look but not among the members and lost at the next (an election)
    /// is named all the same, as the leader this node knew and could not ask: "no leader was
    /// elected" would be false, and the node's own loop says it only of a wait with no leader
    /// known at any time in it (review 86). Review 116 N2 had the last look decide, which
    /// said "no leader was elected" of it (review 118). One unlisted from a later look on is
    /// named too.
    #[tokio::test(start_paused = true)]
    async fn a_leader_seen_unlisted_and_then_lost_is_named() {
        let check = check_of_node_1(true);
        let wait = Duration::from_secs(5);
        // Node 4 at the first look alone, then none; the process stops for 4 s.
        let began = tokio::time::Instant::now();
        stop_at_25_ms_for(Duration::from_secs(4));
        let first_look = || if began.elapsed().is_zero() { 4 } else { 0 };
        let said = check.older_member(first_look, wait).await;
        assert_eq!(said, Err(Refusal::LeaderUnlisted(4, wait)));

        let began = tokio::time::Instant::now();
        let from_100_ms = || match began.elapsed() < Duration::from_millis(100) {
            true => 0,
            false => 4,
        };
        let said = check.older_member(from_100_ms, wait).await;
        assert_eq!(said, Err(Refusal::LeaderUnlisted(4, wait)));
    }

    /// A check that began with 3 s left of a write's wait of 5 s (the rest spent before it)
    /// judges its stall against those 3 s, and says it with them: "2.0s of that wait of 3s",
    /// not "of 5s", of which 2 s is not most (review 116 N2); so does a leader it could not
    /// ask. It says its wait in whole milliseconds: begun a few microseconds into it, "3s".
    #[tokio::test(start_paused = true)]
    async fn a_check_says_the_wait_it_had() {
        let check = check_of_node_1(false);
        let (write, left) = (Duration::from_secs(5), Duration::from_micros(2_999_993));
        stop_at_25_ms_for(Duration::from_secs(2));
        let said = check.older_member(|| 0, left).await;
        let answer = said.expect_err("no leader").answer(write);
        assert!(answer.will_not_happen());
        answer.assert_said_of_this_node(
            "this node knew no leader in time for a wait of 3s (it stood still for 2.0s",
        );

        let said = check.older_member(|| 4, left).await;
        let text = said.expect_err("unlisted").answer(write).to_string();
        assert!(
            text.starts_with("this node knew the leader (node 4) but not its address")
                && text.contains("could not ask it within 3s whether"),
            "{text}"
        );
    }

    /// A leader names every member it heard run an older build, not the lowest alone (a user's
    /// campaign: with nodes 2 and 3 on an older build, the 409 named node 2, and once node 2
    /// was upgraded, node 3): the 409 says them all, and one in the singular.
    #[tokio::test]
    async fn a_leader_names_every_older_member() {
        let filter = Arc::new(PeerFilter::new(1, 0xabc));
        let prober = Prober::new(crate::transport::probe_client(None), filter.clone());
        let check = ValuesCheck::new(prober, filter.clone());
        for id in [2, 3, 4] {
            filter.set_member(id, Some(&format!("http://127.0.0.1:{id}")));
        }
        filter.builds().record(3, Build::Older, Heard::Request);
        filter.builds().record(2, Build::Older, Heard::Request);
        let refused = check.older_member(|| 1, Duration::from_secs(5)).await;
        assert_eq!(refused, Err(Refusal::Older(vec![2, 3])));
        let said = |older| crate::request::ProposalError::OlderBuild(older).to_string();
        let two = said(vec![2, 3]);
        assert!(
            two.starts_with("nodes 2 and 3 run an older build that "),
            "{two}"
        );
        let one = said(vec![3]);
        assert!(one.starts_with("node 3 runs an older build that "), "{one}");
    }

    /// A probe's answer never replaces what a member's own request said: a follower that took
    /// its leader's URL's `404` as "older", then became leader while that member's stream
    /// lived (no new request), named a member of this build as older to every write of a
    /// value that is not UTF-8 (review 111). A member whose requests say it is older is still
    /// named, whatever a probe answers, until its own request says otherwise; so is one only a
    /// probe's answer has told of.
    #[test]
    fn a_probe_answer_never_replaces_a_members_own_word() {
        let builds = Builds::default();
        builds.record(2, Build::AnyBytes, Heard::Request);
        builds.record(2, Build::Older, Heard::ProbeAnswer);
        assert_eq!(
            builds.older_among([2]),
            Vec::<u64>::new(),
            "its stream said this build"
        );
        assert_eq!(builds.said_by(2), Some(Build::AnyBytes));

        builds.record(3, Build::Older, Heard::Request);
        builds.record(3, Build::AnyBytes, Heard::ProbeAnswer);
        assert_eq!(
            builds.older_among([2, 3]),
            vec![3],
            "its stream said an older build"
        );
        builds.record(3, Build::AnyBytes, Heard::Request);
        assert_eq!(
            builds.older_among([3]),
            Vec::<u64>::new(),
            "restarted on this build"
        );

        builds.record(4, Build::Older, Heard::ProbeAnswer);
        assert_eq!(
            builds.older_among([2, 3, 4]),
            vec![4],
            "no request of its own heard"
        );
        assert_eq!(builds.said_by(4), None, "a probe's answer is not its word");
        builds.record(4, Build::AnyBytes, Heard::Request);
        assert_eq!(
            builds.older_among([4]),
            Vec::<u64>::new(),
            "its request replaces it"
        );
    }
}
