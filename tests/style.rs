//! The house style's line length, which no tool checks: rustfmt keeps code within 100
//! columns but leaves comments and string literals as written, and about 70 lines had drifted
//! past it. (Missing doc comments are a compile error: `deny(missing_docs)` in src/lib.rs.)

use std::path::{Path, PathBuf};

/// The longest line, in characters: a box-drawing character is one column, not its three bytes
/// (src/lib.rs's data-flow diagram fits in 100 columns and runs past 100 bytes).
const MAX_COLUMNS: usize = 100;

/// Every `.rs` file under `dir`, recursively, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
                .path()
        })
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
    found
}

/// The lines of `text` longer than `max` characters, as `(1-based line, length)`.
fn long_lines(text: &str, max: usize) -> Vec<(usize, usize)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.chars().count()))
        .filter(|&(_, len)| len > max)
        .collect()
}

/// No line of `src/**/*.rs` or `tests/**/*.rs` is longer than 100 characters. Each one that
/// is, is named `file:line` with its length, so the failure is the list to fix.
#[test]
fn no_line_of_rust_is_longer_than_100_characters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut too_long = Vec::new();
    let mut files = 0;
    for dir in ["src", "tests"] {
        for path in rust_files(&root.join(dir)) {
            files += 1;
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            for (line, len) in long_lines(&text, MAX_COLUMNS) {
                too_long.push(format!("{name}:{line}: {len} characters"));
            }
        }
    }
    // A wrong root would find nothing and pass.
    assert!(files > 50, "only {files} .rs files under src/ and tests/");
    assert!(
        too_long.is_empty(),
        "{} lines longer than {MAX_COLUMNS} characters (comments and string literals, which \
         rustfmt leaves alone: rewrap them; a long literal splits with a `\\` at the end of \
         a line):\n{}",
        too_long.len(),
        too_long.join("\n")
    );
}

/// Characters are counted, not bytes: a line of 100 box-drawing characters (300 bytes) is
/// within the limit, one of 101 is not.
#[test]
fn a_line_is_measured_in_characters() {
    let fits = "─".repeat(MAX_COLUMNS);
    let over = "─".repeat(MAX_COLUMNS + 1);
    let text = format!("{fits}\n{over}\nshort\n");
    assert_eq!(long_lines(&text, MAX_COLUMNS), vec![(2, MAX_COLUMNS + 1)]);
}
