//! Linearizability checker for the histories that the fault harness records.
//!
//! Every key of the store is an independent register, and linearizability is
//! compositional, so a history is split by key and each key's sub-history is
//! checked on its own against a register that starts absent (a GET answers
//! 404 until the first PUT).
//!
//! The search is Wing & Gong's, with Lowe's memoization, as Porcupine and
//! Knossos implement it: the invocations and completions of a key's
//! operations form one list sorted by time; a depth-first search linearizes
//! one of the operations that may come next (those invoked before the first
//! completion still in the list), and backtracks when none fits the register.
//! A set of (operations linearized so far, register state) pairs already
//! explored prunes the search, and a time budget makes a pathological history
//! end in [`Verdict::Timeout`] instead of hanging the test. A few rules that
//! hold for registers cut the search further without changing the verdict
//! (see `search`): a 3000-operation history checks in milliseconds.
//!
//! A violation is explained by the first completion at which the key's
//! history stops being linearizable, the longest order found for the
//! operations up to then, and why none of the others can follow it.
//!
//! Outcomes mean:
//! - [`Outcome::Failed`]: the operation did not take effect; it is left out.
//! - [`Outcome::Unknown`] on a GET: nothing was learnt; it is left out.
//! - [`Outcome::Unknown`] on a PUT: it may take effect at any time after its
//!   invocation, also long after the client gave up, or never. It is checked
//!   as an operation that never completes.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

/// What a client asked of the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    Put { value: String },
    Get,
}

/// What the client learnt about its operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A PUT was acknowledged (204).
    Ok,
    /// A GET returned 200 with this value.
    Value(String),
    /// A GET returned 404.
    NotFound,
    /// A definite failure: the operation did not take effect (e.g. 503 "no
    /// leader" before proposing).
    Failed,
    /// Timeout or connection cut: a PUT may or may not have taken effect, at
    /// any time after its invocation; a GET with this outcome is ignored.
    Unknown,
}

/// One operation of a recorded history. Times are in nanoseconds on one clock
/// shared by all clients. For an [`Outcome::Unknown`] operation the completion
/// time is when the client gave up, and the checker does not use it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub kind: OpKind,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub outcome: Outcome,
}

/// The result of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history has a linearization.
    Linearizable,
    /// This key's history has none; `explanation` names the first completion
    /// at which the history stops being linearizable, one of the longest
    /// orders the search found, and the operations that could not follow it.
    Violation { key: String, explanation: String },
    /// The budget ran out while checking this key, before any violation was
    /// found (keys are checked smallest first, so the others were either
    /// checked or not reached).
    Timeout { key: String },
    /// `history[index]` cannot have been recorded from the store (e.g. a PUT
    /// that returned a value, or a completion before the invocation): a bug of
    /// the recording, not of the store.
    Malformed { index: usize, explanation: String },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::Violation { explanation, .. } => write!(f, "{explanation}"),
            Verdict::Timeout { key } => {
                write!(
                    f,
                    "key {key:?}: the checker's budget ran out before a verdict"
                )
            }
            Verdict::Malformed { index, explanation } => {
                write!(f, "malformed history[{index}]: {explanation}")
            }
        }
    }
}

/// The budget that [`final_state_agrees`] uses.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

/// Checks each key's sub-history independently, starting from absent.
///
/// `budget` bounds the whole call. Keys are checked from the smallest
/// sub-history to the largest, so that a pathological key does not use up the
/// budget before the others are seen; the first violation found is returned.
pub fn check(history: &[Operation], budget: Duration) -> Verdict {
    let deadline = Deadline::after(budget);
    if let Some(malformed) = validate(history.iter().enumerate()) {
        return malformed;
    }
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        by_key.entry(op.key.as_str()).or_default().push(index);
    }
    let mut keys: Vec<(&str, Vec<usize>)> = by_key.into_iter().collect();
    // Stable sort: equal sizes stay in key order, so the order is reproducible.
    keys.sort_by_key(|(_, indices)| indices.len());
    for (key, indices) in keys {
        let key_history = KeyHistory::new(history, key, &indices, None);
        match key_history.check(&deadline) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Violation(explanation) => {
                return Verdict::Violation {
                    key: key.to_owned(),
                    explanation,
                };
            }
            KeyVerdict::Timeout => {
                return Verdict::Timeout {
                    key: key.to_owned(),
                };
            }
        }
    }
    Verdict::Linearizable
}

/// Checks `key`'s sub-history followed by a read of `final_value` (`None`:
/// absent) after every operation completed. Linearizable means that some
/// linearization of the history ends in that value. Unknown PUTs may take
/// effect after that read too, so their values are never required in it.
pub fn check_final_state(
    history: &[Operation],
    key: &str,
    final_value: Option<&str>,
    budget: Duration,
) -> Verdict {
    let deadline = Deadline::after(budget);
    let of_key = || history.iter().enumerate().filter(|(_, op)| op.key == key);
    if let Some(malformed) = validate(of_key()) {
        return malformed;
    }
    let indices: Vec<usize> = of_key().map(|(index, _)| index).collect();
    let key_history = KeyHistory::new(history, key, &indices, Some(final_value));
    match key_history.check(&deadline) {
        KeyVerdict::Linearizable => Verdict::Linearizable,
        KeyVerdict::Violation(explanation) => Verdict::Violation {
            key: key.to_owned(),
            explanation,
        },
        KeyVerdict::Timeout => Verdict::Timeout {
            key: key.to_owned(),
        },
    }
}

/// Whether some linearization of `key`'s history ends in `final_value`
/// (`None`: absent). False also when the history itself is not linearizable,
/// and when [`DEFAULT_BUDGET`] runs out (a check that did not finish is not a
/// pass); [`check_final_state`] tells these apart.
pub fn final_state_agrees(history: &[Operation], key: &str, final_value: Option<&str>) -> bool {
    check_final_state(history, key, final_value, DEFAULT_BUDGET) == Verdict::Linearizable
}

/// Returns the first operation that the store cannot have produced.
fn validate<'a>(ops: impl Iterator<Item = (usize, &'a Operation)>) -> Option<Verdict> {
    for (index, op) in ops {
        let problem = match (&op.kind, &op.outcome) {
            (OpKind::Put { .. }, Outcome::Value(_) | Outcome::NotFound) => {
                Some("a PUT cannot return a value or not-found")
            }
            (OpKind::Get, Outcome::Ok) => Some("a GET answers with a value or not-found, not ok"),
            // The completion of an unknown operation is not used.
            (_, Outcome::Unknown) => None,
            _ if op.complete_ns < op.invoke_ns => Some("it completed before it was invoked"),
            _ => None,
        };
        if let Some(problem) = problem {
            return Some(Verdict::Malformed {
                index,
                explanation: format!("{problem}: {op:?}"),
            });
        }
    }
    None
}

/// When the search must give up; `None` when the budget is too large to
/// represent, i.e. never.
struct Deadline(Option<Instant>);

impl Deadline {
    fn after(budget: Duration) -> Self {
        Deadline(Instant::now().checked_add(budget))
    }

    fn passed(&self) -> bool {
        self.0.is_some_and(|deadline| Instant::now() >= deadline)
    }
}

/// Register state: `ABSENT`, or the id of an interned value.
type State = usize;
const ABSENT: State = 0;

/// Completion time of an operation that may take effect at any time after its
/// invocation, or never: it sorts after every real completion, so every later
/// operation may be linearized before it, and once only such operations are
/// left they all fit (they are PUTs), which stands for "never".
const OPEN: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Sets the register to this state.
    Put(State),
    /// Requires the register to be in this state.
    Get(State),
}

impl Step {
    fn apply(self, state: State) -> Option<State> {
        match self {
            Step::Put(value) => Some(value),
            Step::Get(expected) => (expected == state).then_some(state),
        }
    }
}

/// An operation of one key, as the search sees it.
#[derive(Clone, Copy, Debug)]
struct KeyOp {
    /// Position in the recorded history; `None` for the final read that
    /// [`check_final_state`] adds.
    index: Option<usize>,
    invoke: u64,
    /// `OPEN` for an unknown PUT.
    complete: u64,
    step: Step,
}

enum KeyVerdict {
    Linearizable,
    Violation(String),
    Timeout,
}

/// One key's operations, ready for the search.
struct KeyHistory<'a> {
    key: &'a str,
    history: &'a [Operation],
    /// Every operation of the key, also those left out of the search, to
    /// explain a read of a value that only a failed PUT wrote.
    all: Vec<usize>,
    ops: Vec<KeyOp>,
    /// Interned values: state `i > 0` is `values[i - 1]`.
    values: Vec<String>,
    /// States that some GET requires.
    read: HashSet<State>,
}

impl<'a> KeyHistory<'a> {
    /// `final_read`: `Some(v)` adds a read of `v` after every completion.
    fn new(
        history: &'a [Operation],
        key: &'a str,
        indices: &[usize],
        final_read: Option<Option<&'a str>>,
    ) -> Self {
        let mut ids: HashMap<&str, State> = HashMap::new();
        let mut values: Vec<String> = Vec::new();
        let mut intern = |value: &'a str| -> State {
            *ids.entry(value).or_insert_with(|| {
                values.push(value.to_owned());
                values.len()
            })
        };
        let mut ops = Vec::with_capacity(indices.len() + 1);
        let mut last_time = 0;
        for &index in indices {
            let op = &history[index];
            let (step, complete) = match (&op.kind, &op.outcome) {
                (_, Outcome::Failed) | (OpKind::Get, Outcome::Unknown) => continue,
                (OpKind::Put { value }, Outcome::Unknown) => (Step::Put(intern(value)), OPEN),
                (OpKind::Put { value }, _) => (Step::Put(intern(value)), op.complete_ns),
                (OpKind::Get, Outcome::Value(value)) => (Step::Get(intern(value)), op.complete_ns),
                (OpKind::Get, _) => (Step::Get(ABSENT), op.complete_ns),
            };
            last_time = last_time.max(op.invoke_ns);
            if complete != OPEN {
                last_time = last_time.max(complete);
            }
            ops.push(KeyOp {
                index: Some(index),
                invoke: op.invoke_ns,
                complete,
                step,
            });
        }
        if let Some(final_value) = final_read {
            // Strictly after every completion, so every acknowledged PUT
            // precedes it; `OPEN - 1` keeps it before the unknown PUTs' ends.
            let time = last_time.saturating_add(1).min(OPEN - 1);
            ops.push(KeyOp {
                index: None,
                invoke: time,
                complete: time,
                step: Step::Get(final_value.map_or(ABSENT, &mut intern)),
            });
        }
        let read = ops
            .iter()
            .filter_map(|op| match op.step {
                Step::Get(state) => Some(state),
                Step::Put(_) => None,
            })
            .collect();
        KeyHistory {
            key,
            history,
            all: indices.to_vec(),
            ops,
            values,
            read,
        }
    }

    fn check(&self, deadline: &Deadline) -> KeyVerdict {
        let ops = self.prefix(OPEN);
        match search(&ops, deadline, Mode::Check) {
            Search::Linearizable => KeyVerdict::Linearizable,
            Search::Timeout(_) => KeyVerdict::Timeout,
            Search::Violation(longest) => {
                KeyVerdict::Violation(self.explain(deadline, ops, longest))
            }
        }
    }

    /// The history as it stood at time `t`: operations invoked by then; those
    /// still running are treated like unknown ones (a PUT may take effect
    /// later or never, a GET is left out). If the whole history is
    /// linearizable, so is every such prefix, which lets [`Self::explain`]
    /// search for the first one that is not.
    ///
    /// A PUT that may never take effect and whose value no GET returns is
    /// left out as well: taking effect could only make later reads fail, so
    /// "never" is always at least as good, and leaving it out keeps it from
    /// multiplying the states the search explores.
    fn prefix(&self, t: u64) -> Vec<KeyOp> {
        self.ops
            .iter()
            .filter(|op| op.invoke <= t)
            .filter_map(|op| {
                if op.complete != OPEN && op.complete <= t {
                    return Some(*op);
                }
                match op.step {
                    Step::Get(_) => None,
                    Step::Put(value) => self.read.contains(&value).then_some(KeyOp {
                        complete: OPEN,
                        ..*op
                    }),
                }
            })
            .collect()
    }

    /// Narrows a violation down to the first completion after which the
    /// history is no longer linearizable, and describes it.
    fn explain(&self, deadline: &Deadline, full: Vec<KeyOp>, longest: Vec<usize>) -> String {
        let mut times: Vec<u64> = self
            .ops
            .iter()
            .map(|op| op.complete)
            .filter(|&complete| complete != OPEN)
            .collect();
        times.sort_unstable();
        times.dedup();
        // The prefix at the last completion is the whole history (what is
        // invoked after it can only be unknown PUTs nobody read), so it fails.
        let mut failing = (times.last().copied().unwrap_or(OPEN), full, longest);
        let (mut lo, mut hi) = (0, times.len().saturating_sub(1));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let ops = self.prefix(times[mid]);
            match search(&ops, deadline, Mode::Check) {
                Search::Linearizable => lo = mid + 1,
                Search::Violation(longest) => {
                    hi = mid;
                    failing = (times[mid], ops, longest);
                }
                // Out of budget: a wider prefix still shows the violation.
                Search::Timeout(_) => break,
            }
        }
        let (t, ops, mut longest) = failing;
        let dive = search(&ops, deadline, Mode::Dive);
        if let Search::Violation(dive) | Search::Timeout(dive) = dive
            && dive.len() > longest.len()
        {
            longest = dive;
        }
        self.describe(t, &ops, &longest)
    }

    fn describe(&self, t: u64, ops: &[KeyOp], longest: &[usize]) -> String {
        const SHOWN: usize = 20;
        let mut out = format!(
            "key {:?}: not linearizable. Its history is linearizable up to just before t={t}, \
             and no longer once these operations complete at t={t}:\n",
            self.key
        );
        for op in ops.iter().filter(|op| op.complete == t) {
            out += &format!("  {}\n", self.describe_op(op));
            if let Some(note) = self.value_note(op) {
                out += &format!("    ({note})\n");
            }
        }
        let mut state = ABSENT;
        let mut lines = Vec::with_capacity(longest.len());
        for &position in longest {
            let Some(op) = ops.get(position) else {
                continue;
            };
            state = op.step.apply(state).unwrap_or(state);
            lines.push(format!(
                "  {}  => register {}",
                self.describe_op(op),
                self.describe_state(state)
            ));
        }
        out += &format!(
            "One of the longest orders the search found for the {} operations up to then \
             ({} placed), with the register after each:\n",
            ops.len(),
            longest.len()
        );
        if lines.is_empty() {
            out += "  (none; the register starts absent)\n";
        }
        if lines.len() > SHOWN {
            out += &format!("  ... {} earlier operations\n", lines.len() - SHOWN);
        }
        for line in lines.iter().skip(lines.len().saturating_sub(SHOWN)) {
            out += line;
            out += "\n";
        }
        let placed: HashSet<usize> = longest.iter().copied().collect();
        let left: Vec<&KeyOp> = ops
            .iter()
            .enumerate()
            .filter(|(position, _)| !placed.contains(position))
            .map(|(_, op)| op)
            .collect();
        out += &format!(
            "From there, with the register {}, none of the {} operations left can come next:\n",
            self.describe_state(state),
            left.len()
        );
        for op in left.iter().take(SHOWN) {
            out += &format!("  {}\n", self.describe_op(op));
            out += &format!("    {}\n", self.why_not_next(op, state, &left));
        }
        if left.len() > SHOWN {
            out += &format!("  ... and {} more\n", left.len() - SHOWN);
        }
        out
    }

    /// Why `op` cannot come next after the operations not in `left`, with
    /// the register in `state`: the reasons the search has to reject it.
    fn why_not_next(&self, op: &KeyOp, state: State, left: &[&KeyOp]) -> String {
        if let Some(first) = left
            .iter()
            .filter(|other| other.complete != OPEN)
            .min_by_key(|other| other.complete)
            .filter(|first| first.complete < op.invoke)
        {
            return format!(
                "must come after {}, which completed at {} before this was invoked",
                self.short_op(first),
                first.complete
            );
        }
        let value = match op.step {
            Step::Get(expected) if expected != state => {
                let returned = match expected {
                    ABSENT => "not found".to_owned(),
                    _ => self.describe_state(expected),
                };
                return format!(
                    "returns {returned}, but the register holds {}",
                    self.describe_state(state)
                );
            }
            Step::Get(_) => return "every order that starts with it fails further on".to_owned(),
            Step::Put(value) => value,
        };
        // A GET left whose value would then be gone for good.
        let writes = |wanted: State| {
            left.iter()
                .filter(|other| !std::ptr::eq(**other, op))
                .any(|other| other.step == Step::Put(wanted))
        };
        let orphan = left.iter().find_map(|other| match other.step {
            Step::Get(wanted) if wanted != value && !writes(wanted) => Some((other, wanted)),
            _ => None,
        });
        let Some((read, wanted)) = orphan else {
            return "every order that starts with it fails further on".to_owned();
        };
        let gone = if wanted == ABSENT {
            "nothing makes a key absent again".to_owned()
        } else {
            format!("no PUT of {} is left", self.describe_state(wanted))
        };
        format!(
            "then {} could never be satisfied: {gone}",
            self.short_op(read)
        )
    }

    fn short_op(&self, op: &KeyOp) -> String {
        let what = match op.step {
            Step::Put(value) => format!("PUT {}", self.describe_state(value)),
            Step::Get(value) => format!("GET -> {}", self.describe_state(value)),
        };
        match op.index {
            Some(index) => format!("history[{index}] ({what})"),
            None => format!("the final read ({what})"),
        }
    }

    /// Who wrote the value a read returned.
    fn value_note(&self, op: &KeyOp) -> Option<String> {
        let Step::Get(expected) = op.step else {
            return None;
        };
        let value = self.values.get(expected.checked_sub(1)?)?;
        let writers: Vec<usize> = self
            .all
            .iter()
            .copied()
            .filter(|&index| {
                matches!(&self.history[index].kind, OpKind::Put { value: v } if v == value)
            })
            .collect();
        let list = |writers: &[usize]| {
            let mut names: Vec<String> = writers
                .iter()
                .take(5)
                .map(|i| format!("history[{i}]"))
                .collect();
            if writers.len() > 5 {
                names.push(format!("and {} more", writers.len() - 5));
            }
            names.join(", ")
        };
        if writers.is_empty() {
            return Some(format!("no PUT of this key ever wrote {value:?}"));
        }
        if writers
            .iter()
            .all(|&index| self.history[index].outcome == Outcome::Failed)
        {
            return Some(format!(
                "only PUTs reported as failed wrote {value:?}: {}",
                list(&writers)
            ));
        }
        Some(format!("{value:?} was written by {}", list(&writers)))
    }

    fn describe_state(&self, state: State) -> String {
        match state.checked_sub(1).and_then(|i| self.values.get(i)) {
            Some(value) => format!("{value:?}"),
            None => "absent".to_owned(),
        }
    }

    fn describe_op(&self, op: &KeyOp) -> String {
        let Some(index) = op.index else {
            let Step::Get(state) = op.step else {
                return "the final read".to_owned();
            };
            return format!(
                "final read -> {} (after every operation completed)",
                self.describe_state(state)
            );
        };
        let Some(recorded) = self.history.get(index) else {
            return format!("history[{index}]");
        };
        let what = match (&recorded.kind, &recorded.outcome) {
            (OpKind::Put { value }, outcome) => format!("PUT {value:?} -> {outcome:?}"),
            (OpKind::Get, Outcome::Value(value)) => format!("GET -> {value:?}"),
            (OpKind::Get, outcome) => format!("GET -> {outcome:?}"),
        };
        let when = if recorded.outcome == Outcome::Unknown {
            format!(
                "invoked at {}, outcome unknown (may take effect any time later, or never)",
                recorded.invoke_ns
            )
        } else {
            format!(
                "invoked at {}, completed at {}",
                recorded.invoke_ns, recorded.complete_ns
            )
        };
        format!(
            "history[{index}]: client {} {what}, {when}",
            recorded.client
        )
    }
}

enum Search {
    Linearizable,
    /// Carries one of the longest partial linearizations found, as positions
    /// in the searched operations.
    Violation(Vec<usize>),
    /// Carries the longest partial linearization found so far.
    Timeout(Vec<usize>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Find the verdict as fast as possible.
    Check,
    /// For explaining a violation: without the dead-end rule for GETs that
    /// can no longer be satisfied, the search's first dive goes as deep as
    /// it can and stops where the history really breaks, instead of
    /// backtracking at the first PUT that would break it later. Stops after
    /// `DIVE_STEPS` steps: only the longest order matters here.
    Dive,
}

const DIVE_STEPS: u64 = 100_000;

/// The search gives up as on a timeout once its cache holds this many
/// configurations (16 bytes each, about 1 GiB with the table's overhead), so
/// that a pathological history cannot exhaust the machine's memory before
/// the budget runs out.
const CACHE_ENTRIES: usize = 1 << 25;

const NIL: usize = usize::MAX;
const HEAD: usize = 0;
/// What the cache records for a state that no GET left expects.
const DEAD: State = usize::MAX;

/// Wing & Gong / Lowe's search over `ops`, as Porcupine's `checkSingle` does
/// it, with changes that cut the work without changing the verdict:
///
/// - A GET that may come next and returns the current state is linearized at
///   once, without trying the alternatives: if any order of the remaining
///   operations works, the one that starts with this GET works too (it does
///   not change the state, and nothing left completed before it began).
/// - A configuration in which a GET left can no longer be satisfied is a dead
///   end at once: its value is not the state and no PUT left writes it (no
///   operation makes a key absent again, so a 404 left means a dead end as
///   soon as any PUT is linearized). Without this, a PUT placed too early is
///   found wrong only when the search reaches that GET's completion, after
///   trying every order of what lies in between.
/// - States that no GET left expects lead to the same futures, so the cache
///   records them as one.
/// - The operations that never complete (unknown PUTs) are kept out of the
///   event list and tried after every other candidate. Porcupine tries them
///   first, since they were invoked early; but an unknown PUT placed too
///   early is often found wrong only much later, after a search of all that
///   lies in between, while tried last it is placed when a read needs it.
fn search(ops: &[KeyOp], deadline: &Deadline, mode: Mode) -> Search {
    let mut search = Searcher::new(ops, mode == Mode::Check);
    let mut longest: Vec<usize> = Vec::new();
    // A configuration reached for the first time: look for a GET to force.
    let mut fresh = true;
    let mut cursor = Cursor::Main(search.main.next[HEAD]);
    let mut steps: u64 = 0;
    loop {
        steps += 1;
        let out_of_steps = mode == Mode::Dive && steps > DIVE_STEPS;
        if out_of_steps
            || steps.is_multiple_of(1024)
                && (deadline.passed() || search.cache.len() > CACHE_ENTRIES)
        {
            if search.stack.len() > longest.len() {
                longest = search.stack.iter().map(|frame| frame.position).collect();
            }
            return Search::Timeout(longest);
        }
        let mut dead_end = false;
        if fresh {
            // Every operation that completes is linearized: the unknown PUTs
            // left can all take effect after them, which stands for "never".
            if search.main.next[HEAD] == NIL {
                return Search::Linearizable;
            }
            fresh = false;
            cursor = Cursor::Main(search.main.next[HEAD]);
            if let Some(position) = search.matching_read() {
                // The only child of this configuration; explored already if
                // the cache has it.
                fresh = search.advance(position, true);
                dead_end = !fresh;
            }
        } else {
            match search.next_candidate(&mut cursor) {
                Some(position) => fresh = search.advance(position, false),
                None => dead_end = true,
            }
        }
        if fresh {
            continue;
        }
        if dead_end {
            if search.stack.len() > longest.len() {
                longest = search.stack.iter().map(|frame| frame.position).collect();
            }
            // Undo steps up to one that had alternatives, and go on with the
            // candidates after it.
            loop {
                let Some(frame) = search.undo() else {
                    return Search::Violation(longest);
                };
                if !frame.forced {
                    cursor = search.cursor_after(frame.position);
                    break;
                }
            }
        }
    }
}

/// One linearized operation.
struct Frame {
    position: usize,
    /// The state before it.
    before: State,
    /// Linearized as a forced read: its configuration had no other child.
    forced: bool,
}

/// Where the search looks for its next candidate.
#[derive(Clone, Copy)]
enum Cursor {
    /// At this node of the event list.
    Main(usize),
    /// At this node of the list of open operations, trying those invoked by
    /// the given time.
    Open(usize, u64),
}

/// The search's data: the operations not yet linearized, in two lists, and
/// the configurations already explored.
struct Searcher<'a> {
    ops: &'a [KeyOp],
    /// The invocations and completions of the operations that complete,
    /// sorted by time, an invocation before a completion at the same time
    /// (operations that touch at one instant are concurrent); node i + 1 is
    /// the i-th event.
    main: Links,
    node_time: Vec<u64>,
    node_op: Vec<usize>,
    is_call: Vec<bool>,
    call_node: Vec<usize>,
    return_node: Vec<usize>,
    /// The operations that never complete, by invocation time.
    open: Links,
    open_op: Vec<usize>,
    /// Node in `open` of each operation, `NIL` for those in `main`.
    open_node: Vec<usize>,
    state: State,
    stack: Vec<Frame>,
    /// Each operation's random key: the fingerprint of a set of operations is
    /// the XOR of their keys (Zobrist hashing), updated in O(1) per step.
    keys: Vec<u128>,
    linearized: u128,
    /// How many PUTs left write each state, and how many GETs left expect it.
    puts_left: Vec<u32>,
    gets_left: Vec<u32>,
    /// How many states some GET left expects and no PUT left writes: all
    /// but the current state make a dead end.
    orphans: usize,
    prune: bool,
    /// Fingerprints of the (linearized set, state) configurations explored.
    /// 128 random bits stand for the configuration, as model checkers' state
    /// stores do (TLC keeps 64): two configurations of one search share a
    /// fingerprint with a probability near n² / 2^128, for n configurations,
    /// and only then could a branch be wrongly skipped.
    cache: HashSet<u128, BuildHasherDefault<FingerprintHasher>>,
}

impl<'a> Searcher<'a> {
    /// `prune`: apply the dead-end rule for GETs that can no longer be
    /// satisfied.
    fn new(ops: &'a [KeyOp], prune: bool) -> Self {
        let n = ops.len();
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        let mut open: Vec<(u64, usize)> = Vec::new();
        for (position, op) in ops.iter().enumerate() {
            if op.complete == OPEN {
                open.push((op.invoke, position));
            } else {
                events.push((op.invoke, false, position));
                events.push((op.complete, true, position));
            }
        }
        events.sort_unstable();
        open.sort_unstable();
        let mut node_time = vec![0; events.len() + 1];
        let mut node_op = vec![NIL; events.len() + 1];
        let mut is_call = vec![false; events.len() + 1];
        let mut call_node = vec![NIL; n];
        let mut return_node = vec![NIL; n];
        for (i, &(time, is_return, position)) in events.iter().enumerate() {
            let node = i + 1;
            node_time[node] = time;
            node_op[node] = position;
            is_call[node] = !is_return;
            if is_return {
                return_node[position] = node;
            } else {
                call_node[position] = node;
            }
        }
        let open_op: Vec<usize> = std::iter::once(NIL)
            .chain(open.iter().map(|&(_, position)| position))
            .collect();
        let mut open_node = vec![NIL; n];
        for (node, &position) in open_op.iter().enumerate().skip(1) {
            open_node[position] = node;
        }
        // Fixed seeds: a run can be replayed exactly.
        let keys = (0..n as u64).map(|i| random_key(i, 0x5EED)).collect();
        let states = ops
            .iter()
            .map(|op| match op.step {
                Step::Put(state) | Step::Get(state) => state + 1,
            })
            .max()
            .unwrap_or(1);
        let (mut puts_left, mut gets_left) = (vec![0; states], vec![0; states]);
        for op in ops {
            match op.step {
                Step::Put(state) => puts_left[state] += 1,
                Step::Get(state) => gets_left[state] += 1,
            }
        }
        let orphans = (0..states)
            .filter(|&state| gets_left[state] > 0 && puts_left[state] == 0)
            .count();
        Searcher {
            ops,
            main: Links::new(events.len()),
            node_time,
            node_op,
            is_call,
            call_node,
            return_node,
            open: Links::new(open.len()),
            open_op,
            open_node,
            state: ABSENT,
            stack: Vec::new(),
            keys,
            linearized: 0,
            puts_left,
            gets_left,
            orphans,
            prune,
            cache: HashSet::default(),
        }
    }

    /// A GET among the candidates that returns the current state.
    fn matching_read(&self) -> Option<usize> {
        let mut node = self.main.next[HEAD];
        while node != NIL && self.is_call[node] {
            let position = self.node_op[node];
            if self.ops[position].step == Step::Get(self.state) {
                return Some(position);
            }
            node = self.main.next[node];
        }
        None
    }

    /// The candidate at `cursor` or after it, moving `cursor` past it: the
    /// calls before the first completion in the event list, then the open
    /// operations invoked by that completion.
    fn next_candidate(&self, cursor: &mut Cursor) -> Option<usize> {
        loop {
            match *cursor {
                Cursor::Main(node) if node != NIL && self.is_call[node] => {
                    *cursor = Cursor::Main(self.main.next[node]);
                    return Some(self.node_op[node]);
                }
                Cursor::Main(node) => {
                    let limit = if node == NIL {
                        OPEN
                    } else {
                        self.node_time[node]
                    };
                    *cursor = Cursor::Open(self.open.next[HEAD], limit);
                }
                Cursor::Open(node, limit)
                    if node != NIL && self.ops[self.open_op[node]].invoke <= limit =>
                {
                    *cursor = Cursor::Open(self.open.next[node], limit);
                    return Some(self.open_op[node]);
                }
                Cursor::Open(..) => return None,
            }
        }
    }

    /// Where the candidates after `position` start, once it is put back.
    fn cursor_after(&self, position: usize) -> Cursor {
        let node = self.open_node[position];
        if node == NIL {
            return Cursor::Main(self.main.next[self.call_node[position]]);
        }
        let mut first_return = self.main.next[HEAD];
        while first_return != NIL && self.is_call[first_return] {
            first_return = self.main.next[first_return];
        }
        let limit = if first_return == NIL {
            OPEN
        } else {
            self.node_time[first_return]
        };
        Cursor::Open(self.open.next[node], limit)
    }

    /// Linearizes `ops[position]` next, if it fits the state and leads to a
    /// configuration not explored yet.
    fn advance(&mut self, position: usize, forced: bool) -> bool {
        let step = self.ops[position].step;
        let Some(state) = step.apply(self.state) else {
            return false;
        };
        self.count(step, false);
        if self.prune && self.orphans > usize::from(self.is_orphan(state)) {
            self.count(step, true);
            return false;
        }
        let linearized = self.linearized ^ self.keys[position];
        let seen = if self.gets_left[state] > 0 {
            state
        } else {
            DEAD
        };
        if !self
            .cache
            .insert(linearized ^ random_key(seen as u64, 0x57A7E))
        {
            self.count(step, true);
            return false;
        }
        self.linearized = linearized;
        self.stack.push(Frame {
            position,
            before: self.state,
            forced,
        });
        self.state = state;
        if self.open_node[position] != NIL {
            self.open.unlink(self.open_node[position]);
        } else {
            self.main.unlink(self.call_node[position]);
            self.main.unlink(self.return_node[position]);
        }
        true
    }

    /// Counts `step` out of the operations left (or back in, on undo).
    fn count(&mut self, step: Step, undo: bool) {
        let (Step::Put(state) | Step::Get(state)) = step;
        let was_orphan = self.gets_left[state] > 0 && self.puts_left[state] == 0;
        let left = match step {
            Step::Put(_) => &mut self.puts_left[state],
            Step::Get(_) => &mut self.gets_left[state],
        };
        if undo {
            *left += 1;
        } else {
            *left = left.saturating_sub(1);
        }
        match (was_orphan, self.is_orphan(state)) {
            (false, true) => self.orphans += 1,
            (true, false) => self.orphans = self.orphans.saturating_sub(1),
            _ => {}
        }
    }

    fn is_orphan(&self, state: State) -> bool {
        self.gets_left[state] > 0 && self.puts_left[state] == 0
    }

    fn undo(&mut self) -> Option<Frame> {
        let frame = self.stack.pop()?;
        let position = frame.position;
        self.count(self.ops[position].step, true);
        self.state = frame.before;
        self.linearized ^= self.keys[position];
        if self.open_node[position] != NIL {
            self.open.relink(self.open_node[position]);
        } else {
            // The reverse order of unlinking.
            self.main.relink(self.return_node[position]);
            self.main.relink(self.call_node[position]);
        }
        Some(frame)
    }
}

/// 128 pseudo-random bits for `i` (SplitMix64 twice), fixed per seed.
fn random_key(i: u64, seed: u64) -> u128 {
    let mix = |x: u64| {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let high = mix(i ^ seed.rotate_left(32));
    let low = mix(high ^ i);
    (u128::from(high) << 64) | u128::from(low)
}

/// The cache's keys are random already: hashing them again would only cost.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = (value as u64) ^ ((value >> 64) as u64);
    }
}

/// A doubly linked list over nodes `1..=len` in order, after a head node 0,
/// so that lifting an operation out and putting it back are O(1). Dancing
/// links: a node unlinked keeps its own pointers, so relinking nodes in the
/// reverse order of unlinking restores the list.
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    fn new(len: usize) -> Self {
        Links {
            next: (1..=len).chain([NIL]).collect(),
            prev: std::iter::once(NIL).chain(0..len).collect(),
        }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BUDGET: Duration = Duration::from_secs(30);

    fn op(client: usize, kind: OpKind, span: (u64, u64), outcome: Outcome) -> Operation {
        Operation {
            client,
            key: "k".to_owned(),
            kind,
            invoke_ns: span.0,
            complete_ns: span.1,
            outcome,
        }
    }

    fn put(client: usize, value: &str, span: (u64, u64)) -> Operation {
        put_with(client, value, span, Outcome::Ok)
    }

    fn put_with(client: usize, value: &str, span: (u64, u64), outcome: Outcome) -> Operation {
        let kind = OpKind::Put {
            value: value.to_owned(),
        };
        op(client, kind, span, outcome)
    }

    fn get(client: usize, value: Option<&str>, span: (u64, u64)) -> Operation {
        let outcome = match value {
            Some(value) => Outcome::Value(value.to_owned()),
            None => Outcome::NotFound,
        };
        op(client, OpKind::Get, span, outcome)
    }

    fn on_key(key: &str, mut op: Operation) -> Operation {
        op.key = key.to_owned();
        op
    }

    /// Asserts a violation on key "k" and returns its explanation.
    fn violation(history: &[Operation]) -> String {
        match check(history, BUDGET) {
            Verdict::Violation { key, explanation } => {
                assert_eq!(key, "k");
                println!("{explanation}");
                explanation
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check(&[], BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let history = [
            get(0, None, (0, 10)),
            put(0, "a", (20, 30)),
            get(1, Some("a"), (40, 50)),
            put(2, "b", (60, 70)),
            get(0, Some("b"), (80, 90)),
            put(1, "a", (100, 110)),
            get(2, Some("a"), (120, 130)),
        ];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn overlapping_get_may_see_either_value() {
        for seen in ["a", "b"] {
            let history = [
                put(0, "a", (0, 10)),
                put(1, "b", (20, 60)),
                get(2, Some(seen), (30, 50)),
            ];
            assert_eq!(check(&history, BUDGET), Verdict::Linearizable, "{seen}");
        }
        // Before the first write completes, absent is possible too.
        let history = [put(0, "a", (0, 50)), get(1, None, (10, 20))];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn operations_touching_at_one_instant_are_concurrent() {
        let history = [put(0, "a", (0, 10)), get(1, None, (10, 20))];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
        // Also an unknown PUT invoked when a read of its value completes.
        let history = [
            put_with(0, "a", (10, 20), Outcome::Unknown),
            get(1, Some("a"), (0, 10)),
        ];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_writes_may_take_effect_in_reverse_order() {
        let history = [
            put(0, "a", (0, 100)),
            put(1, "b", (0, 100)),
            put(2, "c", (0, 100)),
            get(3, Some("c"), (10, 20)),
            get(3, Some("b"), (30, 40)),
            get(3, Some("a"), (50, 60)),
        ];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn same_operations_in_another_order_are_another_configuration() {
        // The search first tries "b" then "a", which fails at the read; the
        // order "a" then "b" linearizes the same set with another state and
        // must not be skipped as already explored. (The unknown PUT keeps
        // the read of "b" satisfiable for the dead-end rule.)
        let history = [
            put(0, "b", (0, 5)),
            put(1, "a", (5, 5)),
            get(2, Some("b"), (6, 6)),
            put_with(3, "b", (7, 8), Outcome::Unknown),
        ];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn unknown_put_read_later_is_linearizable() {
        let history = [
            put(0, "a", (0, 10)),
            put_with(1, "b", (20, 30), Outcome::Unknown),
            get(2, Some("b"), (1_000, 1_010)),
            get(2, Some("b"), (1_020, 1_030)),
        ];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn unknown_put_never_seen_is_linearizable() {
        let history = [
            put(0, "a", (0, 10)),
            put_with(1, "b", (20, 30), Outcome::Unknown),
            get(2, Some("a"), (40, 50)),
            get(2, Some("a"), (1_000, 1_010)),
        ];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn unknown_put_may_take_effect_after_the_client_gave_up() {
        // "a" times out at 30 but is applied after "b", which was
        // acknowledged later.
        let history = [
            put_with(0, "a", (0, 30), Outcome::Unknown),
            put(1, "b", (40, 50)),
            get(2, Some("b"), (60, 70)),
            get(2, Some("a"), (80, 90)),
        ];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn unknown_put_takes_effect_at_most_once() {
        let history = [
            put_with(0, "a", (0, 10), Outcome::Unknown),
            get(1, Some("a"), (20, 30)),
            put(1, "b", (40, 50)),
            get(1, Some("a"), (60, 70)),
        ];
        violation(&history);
    }

    #[test]
    fn failed_operations_and_unknown_gets_are_left_out() {
        let history = [
            put(0, "a", (0, 10)),
            put_with(1, "b", (20, 30), Outcome::Failed),
            op(2, OpKind::Get, (40, 50), Outcome::Unknown),
            op(2, OpKind::Get, (60, 70), Outcome::Failed),
            get(0, Some("a"), (80, 90)),
        ];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_of_older_value_is_a_violation() {
        let history = [
            put(0, "a", (0, 10)),
            put(1, "b", (20, 30)),
            get(2, Some("a"), (40, 50)),
            put(0, "c", (60, 70)),
        ];
        let explanation = violation(&history);
        // The culprit is named, with what the register held instead.
        assert!(
            explanation.contains("history[2]: client 2 GET -> \"a\""),
            "{explanation}"
        );
        assert!(
            explanation.contains("returns \"a\", but the register holds \"b\""),
            "{explanation}"
        );
        // The minimal failing prefix ends at t=50: the later PUT is not part of it.
        assert!(explanation.contains("t=50"), "{explanation}");
        assert!(!explanation.contains("history[3]"), "{explanation}");
    }

    #[test]
    fn stale_read_of_absent_is_a_violation() {
        let history = [put(0, "a", (0, 10)), get(1, None, (20, 30))];
        let explanation = violation(&history);
        assert!(explanation.contains("history[1]"), "{explanation}");
    }

    #[test]
    fn acknowledged_write_that_vanished_is_a_violation() {
        let history = [
            put(0, "a", (0, 10)),
            get(1, Some("a"), (20, 30)),
            put(2, "x", (40, 50)),
            get(1, Some("a"), (60, 70)),
            get(0, Some("a"), (80, 90)),
            get(2, Some("a"), (100, 110)),
        ];
        let explanation = violation(&history);
        assert!(explanation.contains("t=70"), "{explanation}");
        assert!(explanation.contains("history[3]"), "{explanation}");
    }

    #[test]
    fn read_of_a_value_never_written_is_a_violation() {
        let history = [put(0, "a", (0, 10)), get(1, Some("zzz"), (5, 30))];
        let explanation = violation(&history);
        assert!(
            explanation.contains("no PUT of this key ever wrote \"zzz\""),
            "{explanation}"
        );
        // Written to another key does not count.
        let history = [
            on_key("other", put(0, "zzz", (0, 10))),
            get(1, Some("zzz"), (20, 30)),
        ];
        violation(&history);
    }

    #[test]
    fn read_of_a_value_only_a_failed_put_wrote_is_a_violation() {
        let history = [
            put_with(0, "a", (0, 10), Outcome::Failed),
            get(1, Some("a"), (20, 30)),
        ];
        let explanation = violation(&history);
        assert!(
            explanation.contains("only PUTs reported as failed wrote \"a\": history[0]"),
            "{explanation}"
        );
    }

    #[test]
    fn reads_going_back_in_time_are_a_violation() {
        let history = [
            put(0, "a", (0, 10)),
            put(1, "b", (20, 100)),
            get(2, Some("b"), (30, 40)),
            get(3, Some("a"), (50, 60)),
        ];
        let explanation = violation(&history);
        assert!(explanation.contains("t=60"), "{explanation}");
    }

    #[test]
    fn sequentially_consistent_but_not_linearizable_is_a_violation() {
        let history = [
            put(0, "a", (0, 100)),
            get(1, Some("a"), (10, 20)),
            get(2, None, (30, 40)),
        ];
        violation(&history);
    }

    #[test]
    fn keys_are_checked_independently() {
        // Each key alone is fine; mixed into one register it would not be.
        let history = [
            on_key("x", put(0, "a", (0, 10))),
            on_key("y", put(1, "b", (20, 30))),
            on_key("x", get(2, Some("a"), (40, 50))),
            on_key("y", get(2, Some("b"), (60, 70))),
            on_key("z", get(3, None, (80, 90))),
        ];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
        // A violation is reported on the key that has it.
        let mut bad = history.to_vec();
        bad.push(on_key("y", get(3, None, (100, 110))));
        match check(&bad, BUDGET) {
            Verdict::Violation { key, explanation } => {
                assert_eq!(key, "y");
                assert!(explanation.contains("history[5]"), "{explanation}");
            }
            other => panic!("expected a violation on y, got {other:?}"),
        }
    }

    #[test]
    fn malformed_operations_are_reported() {
        let cases = [
            op(0, OpKind::Get, (0, 10), Outcome::Ok),
            put_with(0, "a", (0, 10), Outcome::NotFound),
            put_with(0, "a", (0, 10), Outcome::Value("a".to_owned())),
            put(0, "a", (10, 5)),
        ];
        for case in cases {
            let history = [put(1, "b", (0, 1)), case.clone()];
            match check(&history, BUDGET) {
                Verdict::Malformed { index: 1, .. } => {}
                other => panic!("{case:?}: expected malformed, got {other:?}"),
            }
        }
        // An unknown operation's completion time is not used.
        let history = [put_with(0, "a", (10, 5), Outcome::Unknown)];
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn pathological_history_times_out() {
        // 30 concurrent writes of "a" and "b", and one client reading a, b,
        // a, b, ... 32 times meanwhile: that needs 32 alternating writes, and
        // refuting it means trying a good part of the subsets of the writes.
        let mut history: Vec<Operation> = (0..30)
            .map(|i| put(i, ["a", "b"][i % 2], (0, 10_000)))
            .collect();
        for i in 0..32 {
            let t = 10 + 100 * i;
            history.push(get(99, Some(["a", "b"][i as usize % 2]), (t, t + 50)));
        }
        let started = Instant::now();
        match check(&history, Duration::from_millis(200)) {
            Verdict::Timeout { key } => assert_eq!(key, "k"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        println!("timed out after {:?}", started.elapsed());
    }

    #[test]
    fn final_state_agrees_with_possible_final_values() {
        let history = [
            put(0, "a", (0, 10)),
            put(1, "b", (20, 60)),
            put(2, "c", (30, 40)),
            put_with(3, "d", (70, 80), Outcome::Unknown),
            put_with(3, "e", (90, 100), Outcome::Failed),
        ];
        // "b" and "c" overlap, so either may be last; "d" may or may not
        // have taken effect.
        for value in ["b", "c", "d"] {
            assert!(final_state_agrees(&history, "k", Some(value)), "{value}");
        }
        // "a" was overwritten by acknowledged writes; "e" failed; "zzz" was
        // never written; absent is impossible after an acknowledged write.
        for value in [Some("a"), Some("e"), Some("zzz"), None] {
            assert!(!final_state_agrees(&history, "k", value), "{value:?}");
        }
        match check_final_state(&history, "k", Some("a"), BUDGET) {
            Verdict::Violation { key, explanation } => {
                assert_eq!(key, "k");
                assert!(explanation.contains("final read -> \"a\""), "{explanation}");
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn final_state_of_an_untouched_key_is_absent() {
        let history = [on_key("other", put(0, "a", (0, 10)))];
        assert!(final_state_agrees(&history, "k", None));
        assert!(!final_state_agrees(&history, "k", Some("a")));
        // Only unknown writes: absent or any of their values.
        let history = [
            put_with(0, "a", (0, 10), Outcome::Unknown),
            put_with(1, "b", (5, 15), Outcome::Unknown),
        ];
        for value in [None, Some("a"), Some("b")] {
            assert!(final_state_agrees(&history, "k", value), "{value:?}");
        }
    }

    #[test]
    fn final_state_needs_a_linearizable_history() {
        let history = [put(0, "a", (0, 10)), get(1, None, (20, 30))];
        assert!(!final_state_agrees(&history, "k", Some("a")));
        assert!(!final_state_agrees(&history, "k", None));
    }

    /// A small deterministic generator (SplitMix64), so the generated
    /// histories do not depend on any crate's algorithm.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn percent(&mut self, p: u64) -> bool {
            self.below(100) < p
        }
    }

    /// A history of `clients` clients doing `total` random operations on
    /// `keys` keys against a simulated sequential register: each operation
    /// takes effect at a random instant of its interval, so the history is
    /// linearizable by construction. `unknown` percent of the operations
    /// time out (a PUT among them then takes effect at a random later time,
    /// possibly after the timeout, or never); 2% fail. Returns the history and
    /// each key's final value.
    fn simulated_history(
        seed: u64,
        clients: usize,
        keys: usize,
        total: usize,
        unknown: u64,
    ) -> (Vec<Operation>, BTreeMap<String, Option<String>>) {
        let mut rng = SplitMix(seed);
        let mut history = Vec::with_capacity(total);
        // (instant it takes effect, position in history)
        let mut effects: Vec<(u64, usize)> = Vec::new();
        let mut clock = vec![0u64; clients];
        for n in 0..total {
            let client = n % clients;
            let invoke = clock[client] + rng.below(50);
            let complete = invoke + 1 + rng.below(200);
            clock[client] = complete;
            let key = format!("key{}", rng.below(keys as u64));
            let kind = if rng.percent(50) {
                OpKind::Put {
                    value: format!("c{client}-{n}"),
                }
            } else {
                OpKind::Get
            };
            let outcome = if rng.percent(unknown) {
                if matches!(kind, OpKind::Put { .. }) && rng.percent(50) {
                    effects.push((invoke + rng.below(2_000), history.len()));
                }
                Outcome::Unknown
            } else if rng.percent(2) {
                Outcome::Failed
            } else {
                effects.push((invoke + rng.below(complete - invoke + 1), history.len()));
                Outcome::Ok
            };
            history.push(Operation {
                client,
                key,
                kind,
                invoke_ns: invoke,
                complete_ns: complete,
                outcome,
            });
        }
        effects.sort_unstable();
        let mut registers: BTreeMap<String, Option<String>> =
            (0..keys).map(|k| (format!("key{k}"), None)).collect();
        for (_, position) in effects {
            let op = &mut history[position];
            let register = registers.entry(op.key.clone()).or_default();
            match &op.kind {
                OpKind::Put { value } => *register = Some(value.clone()),
                OpKind::Get => {
                    op.outcome = match register {
                        Some(value) => Outcome::Value(value.clone()),
                        None => Outcome::NotFound,
                    }
                }
            }
        }
        (history, registers)
    }

    #[test]
    fn random_linearizable_history_checks_quickly() {
        let (history, finals) = simulated_history(7, 8, 3, 3_000, 5);
        let unknown = history
            .iter()
            .filter(|op| op.outcome == Outcome::Unknown)
            .count();
        let started = Instant::now();
        let verdict = check(&history, BUDGET);
        let checked = started.elapsed();
        assert_eq!(verdict, Verdict::Linearizable);
        let started = Instant::now();
        for (key, value) in &finals {
            assert!(final_state_agrees(&history, key, value.as_deref()), "{key}");
        }
        println!(
            "{} operations ({unknown} unknown) on {} keys: checked in {checked:?}, final states in \
             {:?}",
            history.len(),
            finals.len(),
            started.elapsed()
        );
    }

    #[test]
    fn hot_key_with_heavy_overlap_checks_quickly() {
        // Everything on one key, 16 clients, a fifth of the operations
        // unknown: the shape of a history recorded through a partition.
        let (history, finals) = simulated_history(3, 16, 1, 3_000, 20);
        let started = Instant::now();
        assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
        for (key, value) in &finals {
            assert!(final_state_agrees(&history, key, value.as_deref()), "{key}");
        }
        println!(
            "3000 operations on one key checked in {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn stale_read_at_the_end_of_a_long_history_is_caught() {
        let (mut history, _) = simulated_history(11, 8, 3, 3_000, 5);
        // An acknowledged PUT followed, strictly later, by another
        // acknowledged PUT of the same key: reading the first one's value
        // after everything completed is stale (values are unique).
        let acked =
            |op: &Operation| matches!(op.kind, OpKind::Put { .. }) && op.outcome == Outcome::Ok;
        let stale = history
            .iter()
            .enumerate()
            .filter(|(_, op)| op.key == "key0" && acked(op))
            .find(|(_, first)| {
                history
                    .iter()
                    .any(|op| op.key == "key0" && acked(op) && first.complete_ns < op.invoke_ns)
            })
            .map(|(_, op)| op.kind.clone());
        let Some(OpKind::Put { value }) = stale else {
            panic!("the simulated history has no two sequential acknowledged PUTs");
        };
        let end = history.iter().map(|op| op.complete_ns).max().unwrap_or(0);
        let mut read = get(0, Some(&value), (end + 10, end + 20));
        read.key = "key0".to_owned();
        history.push(read);
        let started = Instant::now();
        match check(&history, BUDGET) {
            Verdict::Violation { key, explanation } => {
                assert_eq!(key, "key0");
                assert!(
                    explanation.contains(&format!("history[{}]", history.len() - 1)),
                    "{explanation}"
                );
                println!("{explanation}");
            }
            other => panic!("expected a violation, got {other:?}"),
        }
        println!("found and explained in {:?}", started.elapsed());
    }

    /// Whether `key`'s history (plus a final read of `final_read`, when
    /// given) has a linearization, by trying every order of every subset of
    /// the unknown PUTs with the rest: the definition, with no cleverness.
    fn brute_force(history: &[Operation], key: &str, final_read: Option<Option<&str>>) -> bool {
        // (invoke, complete or None for never, PUT value or GET expectation)
        type Brute = (u64, Option<u64>, Result<String, Option<String>>);
        let mut mandatory: Vec<Brute> = Vec::new();
        let mut optional: Vec<Brute> = Vec::new();
        let mut end = 0;
        for op in history.iter().filter(|op| op.key == key) {
            end = end.max(op.invoke_ns).max(op.complete_ns);
            let span = (op.invoke_ns, Some(op.complete_ns));
            match (&op.kind, &op.outcome) {
                (_, Outcome::Failed) | (OpKind::Get, Outcome::Unknown) => {}
                (OpKind::Put { value }, Outcome::Unknown) => {
                    optional.push((op.invoke_ns, None, Ok(value.clone())))
                }
                (OpKind::Put { value }, _) => mandatory.push((span.0, span.1, Ok(value.clone()))),
                (OpKind::Get, Outcome::Value(v)) => {
                    mandatory.push((span.0, span.1, Err(Some(v.clone()))))
                }
                (OpKind::Get, _) => mandatory.push((span.0, span.1, Err(None))),
            }
        }
        if let Some(value) = final_read {
            mandatory.push((end + 1, Some(end + 1), Err(value.map(str::to_owned))));
        }
        fn orders(left: &mut Vec<Brute>, state: Option<String>) -> bool {
            if left.is_empty() {
                return true;
            }
            for i in 0..left.len() {
                let (invoke, _, step) = left[i].clone();
                // Something left that completed before this began must come first.
                if left.iter().any(|other| other.1.is_some_and(|c| c < invoke)) {
                    continue;
                }
                let next = match &step {
                    Ok(value) => Some(value.clone()),
                    Err(expected) if *expected == state => state.clone(),
                    Err(_) => continue,
                };
                let taken = left.remove(i);
                let found = orders(left, next);
                left.insert(i, taken);
                if found {
                    return true;
                }
            }
            false
        }
        (0..1u32 << optional.len()).any(|mask| {
            let mut left = mandatory.clone();
            left.extend(
                optional
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, op)| op.clone()),
            );
            orders(&mut left, None)
        })
    }

    fn small_operation() -> impl Strategy<Value = Operation> {
        let value = prop::sample::select(vec!["a", "b"]);
        let put = (value.clone(), 0..4u8).prop_map(|(value, outcome)| {
            let kind = OpKind::Put {
                value: value.to_owned(),
            };
            let outcome = match outcome {
                0 => Outcome::Failed,
                1 => Outcome::Unknown,
                _ => Outcome::Ok,
            };
            (kind, outcome)
        });
        let get = (prop::option::of(value), 0..6u8).prop_map(|(value, outcome)| {
            let outcome = match (outcome, value) {
                (0, _) => Outcome::Failed,
                (1, _) => Outcome::Unknown,
                (_, Some(value)) => Outcome::Value(value.to_owned()),
                (_, None) => Outcome::NotFound,
            };
            (OpKind::Get, outcome)
        });
        (
            prop_oneof![put, get],
            prop::sample::select(vec!["k", "k", "k", "j"]),
            0..20u64,
            0..15u64,
        )
            .prop_map(|((kind, outcome), key, invoke, length)| Operation {
                client: 0,
                key: key.to_owned(),
                kind,
                invoke_ns: invoke,
                complete_ns: invoke + length,
                outcome,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_brute_force(
            history in prop::collection::vec(small_operation(), 0..11),
            final_value in prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        ) {
            let expected = brute_force(&history, "k", None) && brute_force(&history, "j", None);
            let verdict = check(&history, BUDGET);
            prop_assert_eq!(verdict == Verdict::Linearizable, expected, "{:?}", verdict);
            let decided = !matches!(verdict, Verdict::Timeout { .. } | Verdict::Malformed { .. });
            prop_assert!(decided, "{:?}", verdict);
            prop_assert_eq!(
                final_state_agrees(&history, "k", final_value),
                brute_force(&history, "k", Some(final_value))
            );
        }

        #[test]
        fn simulated_histories_are_linearizable(seed in any::<u64>(), unknown in 0..30u64) {
            let (history, finals) = simulated_history(seed, 4, 2, 60, unknown);
            prop_assert_eq!(check(&history, BUDGET), Verdict::Linearizable);
            for (key, value) in &finals {
                prop_assert!(final_state_agrees(&history, key, value.as_deref()));
            }
        }
    }
}
