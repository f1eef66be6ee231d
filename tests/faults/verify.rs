//! What a run's history and final reads must satisfy, and the files a run leaves behind.
//!
//! [`verify`] is the whole judgement of a run: the history must be linearizable key by key
//! (`lincheck::check`), every node must read the same final value of every key, and that value
//! must end some linearization of the key's history (`lincheck::final_state_agrees`). It also
//! counts lost writes: acknowledged PUTs that the final state proves gone.
//!
//! A history is saved as JSON lines of [`Recorded`] (`history.jsonl`), one operation per line
//! (each of these two is one line in the file, wrapped here):
//!
//! ```text
//! {"node":2,"client":5,"key":"k1","kind":{"Put":{"value":"c5-17"}},
//!  "invoke_ns":812345678,"complete_ns":815012345,"outcome":"Ok"}
//! {"node":1,"client":3,"key":"k1","kind":"Get",
//!  "invoke_ns":820000000,"complete_ns":821500000,"outcome":{"Value":"c5-17"}}
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use crate::client::Recorded;
use crate::lincheck::{self, OpKind, Operation, Outcome, Verdict};

/// How long the checker may search one history.
const CHECK_BUDGET: Duration = Duration::from_secs(60);

/// The final value of each key as each node read it (`None`: 404).
pub type FinalReads = BTreeMap<String, BTreeMap<u64, Option<String>>>;

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Each violation, explained: a non-linearizable history, nodes that disagree, a final
    /// value no linearization ends in. Empty when the run is correct.
    pub violations: Vec<String>,
    /// Acknowledged PUTs that the final state proves lost (see [`lost_writes`]).
    pub lost_writes: usize,
}

/// Judges a run: see the module doc.
pub fn verify(history: &[Operation], finals: &FinalReads) -> Findings {
    let mut findings = Findings::default();
    match lincheck::check(history, CHECK_BUDGET) {
        Verdict::Linearizable => {}
        Verdict::Timeout { key } => findings.violations.push(format!(
            "key {key:?}: the checker gave up after {CHECK_BUDGET:?} (no verdict is not a pass)"
        )),
        other => findings
            .violations
            .push(format!("the history is not linearizable: {other}")),
    }
    for (key, by_node) in finals {
        let mut values: Vec<&Option<String>> = by_node.values().collect();
        values.sort();
        values.dedup();
        if values.len() > 1 {
            findings.violations.push(format!(
                "key {key:?}: the nodes read different final values: {by_node:?}"
            ));
        }
        let mut lost = 0;
        for value in values {
            if !lincheck::final_state_agrees(history, key, value.as_deref()) {
                let why = lincheck::check_final_state(
                    history,
                    key,
                    value.as_deref(),
                    lincheck::DEFAULT_BUDGET,
                );
                findings.violations.push(format!(
                    "key {key:?}: final value {value:?} does not end any linearization of the \
                     history: {why}"
                ));
            }
            // Nodes that disagree are a violation already; count the worst of their values.
            lost = lost.max(lost_writes(history, key, value.as_deref()));
        }
        findings.lost_writes += lost;
    }
    findings
}

/// Whether every node read the same final value of every key: the harness reads again until
/// they do (a write told "may still happen" can land while it reads), and [`verify`] reports
/// nodes that never did.
pub fn agreed(finals: &FinalReads) -> bool {
    finals.values().all(|by_node| {
        let mut values = by_node.values();
        let first = values.next();
        values.all(|value| Some(value) == first)
    })
}

/// Acknowledged PUTs on `key` that cannot be reconciled with the final value `last`: when the
/// key is absent, every acknowledged PUT; when `last` was written by an acknowledged PUT `w`,
/// every acknowledged PUT invoked after `w` completed (it had to take effect after `w`, so a
/// final `last` means it vanished). A final value written by an unknown PUT proves nothing
/// (that PUT may have taken effect at any time), and one nobody wrote is a violation that
/// [`verify`] reports on its own.
pub fn lost_writes(history: &[Operation], key: &str, last: Option<&str>) -> usize {
    let acked = || {
        history.iter().filter(move |op| {
            op.key == key && op.outcome == Outcome::Ok && matches!(op.kind, OpKind::Put { .. })
        })
    };
    match last {
        None => acked().count(),
        Some(value) => {
            let writer = history.iter().find(|op| {
                op.key == key && matches!(&op.kind, OpKind::Put { value: v } if v == value)
            });
            match writer {
                Some(w) if w.outcome == Outcome::Ok => {
                    acked().filter(|op| op.invoke_ns > w.complete_ns).count()
                }
                _ => 0,
            }
        }
    }
}

/// Writes `history` to `path` as JSON lines.
pub fn save_history(path: &Path, history: &[Recorded]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for recorded in history {
        serde_json::to_writer(&mut out, recorded)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a history written by [`save_history`] (or by hand in the same format).
pub fn load_history(path: &Path) -> Result<Vec<Recorded>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut history = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let recorded = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: {e}", path.display(), number + 1))?;
        history.push(recorded);
    }
    Ok(history)
}
