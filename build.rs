//! Build script of the `weir` package: records the commit it was built from, for
//! `weir --version` (`0.1.0 (3f2a9c1)`, `0.1.0 (3f2a9c1-dirty)`, or `0.1.0 (unknown)` outside a
//! git checkout, e.g. from a source tarball).
//!
//! It reruns only when HEAD moves: when `HEAD` itself changes (a checkout) or the ref it points
//! to does (a commit), or `packed-refs` (a ref packed away), not on every build (the branch's
//! loose ref file disappearing when it is packed also counts as a change). So "-dirty"
//! tells whether the tree had uncommitted changes to tracked files when HEAD last moved;
//! editing a file afterwards does not rerun git.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).map(|hash| {
        // Tracked files only: untracked ones (data, build outputs) do not make a build dirty.
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
        if dirty {
            format!("{hash}-dirty")
        } else {
            hash
        }
    });
    println!(
        "cargo:rustc-env=WEIR_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );

    // What to watch. In a worktree, HEAD lives in the worktree's git dir and branch refs in the
    // common one; `git rev-parse` knows both.
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let abs = |p: String| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            manifest.join(p)
        }
    };
    let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]).map(abs),
        git(&["rev-parse", "--git-common-dir"]).map(abs),
    ) else {
        // Not a checkout: watch the build script alone (no rerun on every build).
        println!("cargo:rerun-if-changed=build.rs");
        return;
    };
    watch(&git_dir.join("HEAD"));
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&common.join(&reference));
        watch(&git_dir.join(&reference));
    }
    watch(&common.join("packed-refs"));
}

/// Reruns the build script when `path` changes. Only paths that exist: cargo reruns a build
/// script on every build while a watched path is missing.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
