//! Locates the public capture corpus used by tests (`SIMBOXD_CORPUS`, else
//! `../shared/captures/public` beside the crate). Absent corpus: tests skip, except under CI.

use std::path::PathBuf;

/// The corpus directory, or `None` (after saying so on stderr) when it is absent outside CI.
/// Panics under `CI=true` when it is absent: there its absence is a failure.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SIMBOXD_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/public")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("capture corpus not found at {} (CI=true)", dir.display()); // ok: test-only guard
    }
    eprintln!("SKIP: capture corpus not found at {}", dir.display());
    None
}

/// Every file under `dir` (recursively), sorted, for corpus-wide tests.
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
