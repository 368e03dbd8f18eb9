//! Records the build's git commit for provenance (reports, evidence manifests): `SIMBOXD_BUILD_COMMIT`
//! is the commit hash, with `-dirty` when tracked files differ from it, or `unknown` when the
//! source is not a git checkout (or git is missing).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty());
    let value = match &commit {
        Some(c) => {
            let dirty = Command::new("git")
                .args(["diff", "--quiet", "HEAD", "--"])
                .status()
                .map(|s| !s.success())
                .unwrap_or(false);
            if dirty {
                format!("{c}-dirty")
            } else {
                c.clone()
            }
        }
        None => "unknown".to_string(),
    };
    // Rebuild when HEAD moves, the branch advances or the index changes (staged edits).
    for p in ["HEAD", "index", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", p]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env=SIMBOXD_BUILD_COMMIT={value}");
}
