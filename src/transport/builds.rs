//! What this node knows of its peers' builds, for the one difference between builds that
//! changes what they store: a PUT's value that is not UTF-8. Builds before values of any
//! bytes skip a log entry writing one (they log it and move on) where this build stores it, so
//! in a cluster in the middle of a rolling upgrade such a value would be on some members and
//! not on others, without an error.
//!
//! Every peer request of this build and its answer to [`super::PROBE_PATH`] carry
//! [`HEADER_VALUES`]; older builds send neither. The peer server records, for each member whose
//! request it admits, whether the header was there ([`Builds::record`]), and so does the
//! [`Prober`] for each answer; a request from a restarted process overwrites what its
//! predecessor said. Before a PUT of a value that is not UTF-8, [`ValuesCheck::older_member`]
//! looks at every other member: text values never come here. The in-memory network and the
//! simulator carry no headers and run no check: every node there runs this build.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use super::probe::Prober;
use super::{HEADER_VALUES, HttpClient, PeerFilter};

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

/// How long a member's build, once learned, is taken as it was without asking again, unless
/// the member keeps speaking: its messages arrive over a connection whose opening recorded the
/// build of the process that sends them. A member restarted on another build within this long,
/// and silent since, is the window this leaves (as is a member that cannot be reached: see
/// [`ValuesCheck::older_member`]).
pub const BUILD_FRESH: Duration = Duration::from_secs(5);

/// The build each member last said it runs, and when it said so.
#[derive(Debug, Default)]
pub struct Builds {
    known: Mutex<HashMap<u64, (Build, Instant)>>,
}

impl Builds {
    /// Records that `peer` just said it runs `build` (a request's headers, or a probe's
    /// answer), replacing what it said before.
    pub fn record(&self, peer: u64, build: Build) {
        self.lock().insert(peer, (build, Instant::now()));
    }

    /// What `peer` last said of its build, and when.
    pub fn of(&self, peer: u64) -> Option<(Build, Instant)> {
        self.lock().get(&peer).copied()
    }

    /// Forgets `peer` (removed from the membership: it is asked again if added back).
    pub fn forget(&self, peer: u64) {
        self.lock().remove(&peer);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Build, Instant)>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What to do about member `id` before a value that is not UTF-8 is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It stores such a value, as recently learned.
    Stores,
    /// Ask it; if it does not answer, refuse (`true`: it was last known as an older build) or
    /// allow (`false`: nothing says it is one).
    Ask { refuse_if_silent: bool },
}

/// The check a node makes before it proposes a PUT whose value is not UTF-8: whether another
/// member runs a build that would skip it.
#[derive(Clone)]
pub struct ValuesCheck {
    filter: Arc<PeerFilter>,
    prober: Prober,
}

impl ValuesCheck {
    /// Asks members with `client` (the strict reconfiguration check's kind, which keeps no
    /// connection), naming what `filter` knows; reads the members and their builds there.
    pub fn new(client: HttpClient, filter: Arc<PeerFilter>) -> ValuesCheck {
        ValuesCheck {
            prober: Prober::new(client, filter.clone()),
            filter,
        }
    }

    /// The lowest id of a member that runs a build that would skip a value that is not UTF-8,
    /// if any, of the other members this node sends to (voters and learners alike):
    ///
    /// - one whose build said so, when asked now ([`super::PROBE_PATH`]), or when last heard
    ///   and unreachable now: it may well come back as it was. One that answers as this build
    ///   was upgraded since;
    /// - one never heard from (a follower hears from its leader alone), or not lately, is
    ///   asked; one that does not answer cannot tell, and counts as none: refusing such values
    ///   while any member is down would refuse what the original stored;
    /// - one heard as this build within [`BUILD_FRESH`], or speaking still, is not asked.
    ///
    /// The members are asked at once, each for at most the probe's timeout; what they answer
    /// is recorded (by the [`Prober`]). No lock is held while waiting.
    pub async fn older_member(&self) -> Option<u64> {
        let mut asks = tokio::task::JoinSet::new();
        for (id, url) in self.filter.other_members() {
            let Verdict::Ask { refuse_if_silent } = self.verdict(id) else {
                continue;
            };
            let prober = self.prober.clone();
            asks.spawn(async move {
                let older = match prober.build_of(id, &url).await {
                    Some(build) => build == Build::Older,
                    None => refuse_if_silent,
                };
                older.then_some(id)
            });
        }
        let mut older = None;
        while let Some(answer) = asks.join_next().await {
            if let Ok(Some(id)) = answer {
                older = Some(older.map_or(id, |o: u64| o.min(id)));
            }
        }
        older
    }

    fn verdict(&self, id: u64) -> Verdict {
        let recent = |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < BUILD_FRESH);
        match self.filter.builds().of(id) {
            Some((Build::AnyBytes, at))
                if recent(Some(at)) || recent(self.filter.last_heard(id)) =>
            {
                Verdict::Stores
            }
            Some((Build::Older, _)) => Verdict::Ask {
                refuse_if_silent: true,
            },
            _ => Verdict::Ask {
                refuse_if_silent: false,
            },
        }
    }
}
