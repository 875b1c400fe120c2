//! Which paths name the same file: weir refuses to write over what it reads.
//!
//! A command that writes files (`-o`, `--late-output`, a checkpoint folder) names every path it
//! will read and write in a [`PathSet`] and calls [`PathSet::check`] before anything is opened
//! for writing. `weir replay x.log -o x.log` would otherwise truncate the log before reading it.
//!
//! What a path is:
//!
//! ```text
//!   exists          its file: device + inode, following symlinks (stat), so a symlink, a hard
//!                   link, ./a/../x.log, /dev/fd/N and /dev/stdout all name the file they reach
//!   `-`             stdin as an input, stdout as an output: the file on fd 0 or 1 (fstat)
//!   does not exist  where it would be created: its folder, canonicalised (symlinks resolved),
//!                   and its name; a dangling symlink is followed to its target's place
//! ```
//!
//! The rules, each refused with a message naming both paths:
//!
//! - an output that is the input;
//! - two outputs that are the same file (they would overwrite each other);
//! - a checkpoint folder that is the input or holds it (by path, or by a hard link to the input
//!   anywhere inside it), and an output inside the checkpoint folder (weir creates, rewrites and
//!   removes files there);
//! - an output that is a folder, and a checkpoint folder that is a file.
//!
//! Character devices are exempt from the same-file rules: `/dev/null` and a terminal are read
//! and written at once without harm (`weir replay /dev/tty` prints to the same terminal, two
//! outputs may both be `/dev/null`).

use std::fs::Metadata;
use std::path::{Component, Path, PathBuf};

/// What kind of file a path is, as far as reading and writing it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file: it can be mapped, rewound, replaced by a rename.
    Regular,
    /// A folder.
    Directory,
    /// A pipe (FIFO), such as `<(…)` or a `mkfifo` path: it can be read once, in order.
    Fifo,
    /// A character device (`/dev/null`, `/dev/zero`, a terminal).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
}

impl FileKind {
    /// The kind of the file `meta` describes.
    pub fn of(meta: &Metadata) -> Self {
        let t = meta.file_type();
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if t.is_fifo() {
                return FileKind::Fifo;
            }
            if t.is_char_device() {
                return FileKind::CharDevice;
            }
            if t.is_block_device() {
                return FileKind::BlockDevice;
            }
            if t.is_socket() {
                return FileKind::Socket;
            }
        }
        if t.is_dir() {
            FileKind::Directory
        } else {
            FileKind::Regular
        }
    }

    /// The kind in words, with its article: `a pipe (FIFO)`.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a pipe (FIFO)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
        }
    }
}

/// What a path names: an existing file, or the place where a new one would be created.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// An existing file (device, inode) and its kind.
    File { dev: u64, ino: u64, kind: FileKind },
    /// A file that does not exist yet, and where it would be created.
    New(PathBuf),
    /// The path cannot be examined (no permission, …): opening it will report why.
    Unknown,
}

impl Identity {
    fn same_as(&self, other: &Identity) -> bool {
        match (self, other) {
            (Identity::File { kind, .. }, _) if *kind == FileKind::CharDevice => false,
            (Identity::Unknown, _) | (_, Identity::Unknown) => false,
            (a, b) => a == b,
        }
    }

    fn kind(&self) -> Option<FileKind> {
        match self {
            Identity::File { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

#[cfg(unix)]
fn file_id(meta: &Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    Identity::File {
        dev: meta.dev(),
        ino: meta.ino(),
        kind: FileKind::of(meta),
    }
}

#[cfg(not(unix))]
fn file_id(_meta: &Metadata) -> Identity {
    Identity::Unknown
}

/// The identity of `-`: the file open on stdin (`input`) or stdout.
fn std_stream(input: bool) -> Identity {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = if input {
            std::io::stdin().as_fd().try_clone_to_owned()
        } else {
            std::io::stdout().as_fd().try_clone_to_owned()
        };
        match fd.map(std::fs::File::from).and_then(|f| f.metadata()) {
            Ok(m) => file_id(&m),
            Err(_) => Identity::Unknown,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = input;
        Identity::Unknown
    }
}

fn identify(path: &Path, input: bool) -> Identity {
    if path.as_os_str() == "-" {
        return std_stream(input);
    }
    match std::fs::metadata(path) {
        Ok(m) => file_id(&m),
        // A missing input is reported when it is opened; a missing output is a place.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !input => {
            where_created(path).map_or(Identity::Unknown, Identity::New)
        }
        Err(_) => Identity::Unknown,
    }
}

/// Removes `.` and resolves `..` lexically (for the part of a path that does not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The longest existing ancestor of `path` canonicalised, followed by the rest lexically.
fn canonical_prefix(path: &Path) -> Option<PathBuf> {
    let path = normalize(&std::path::absolute(path).ok()?);
    let mut base = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = base.canonicalize() {
            let mut out = c;
            out.extend(rest.iter().rev());
            return Some(normalize(&out));
        }
        rest.push(base.file_name()?.to_owned());
        base = base.parent()?;
    }
}

/// Where a file at `path` would be written: `path` with its symlinks followed, as an absolute
/// path (the folder canonicalised); a dangling symlink leads to where its target would be
/// created. `None` when `path` leads through `/proc` or `/dev/fd` (a descriptor's magic link,
/// such as `/dev/stdout`: there is no folder to create a file in, only the open file to write).
pub fn where_created(path: &Path) -> Option<PathBuf> {
    let mut p = normalize(&std::path::absolute(path).ok()?);
    for _ in 0..40 {
        if is_magic(&p) {
            return None;
        }
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p).ok()?;
                p = normalize(&p.parent()?.join(target));
            }
            _ => break,
        }
    }
    let name = p.file_name()?.to_owned();
    let folder = canonical_prefix(p.parent()?)?;
    if is_magic(&folder) {
        return None;
    }
    Some(folder.join(name))
}

/// Paths whose files are a process's open descriptors, not entries of a folder.
fn is_magic(p: &Path) -> bool {
    p.starts_with("/proc") || p.starts_with("/dev/fd")
}

/// The kind of the file at `path` (following symlinks), or `None` if it cannot be examined.
pub fn kind(path: &Path) -> Option<FileKind> {
    std::fs::metadata(path).ok().map(|m| FileKind::of(&m))
}

/// A path that must not be written, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathConflict(pub String);

#[derive(Debug)]
enum Role {
    Input,
    Output(String),
    CheckpointDir(String),
}

#[derive(Debug)]
struct Entry {
    role: Role,
    path: PathBuf,
    id: Identity,
}

impl Entry {
    /// How a message names it: `--output out.csv`, `the input x.log`, `stdout`.
    fn name(&self) -> String {
        let p = self.path.display();
        match &self.role {
            Role::Input if self.path.as_os_str() == "-" => "the input (stdin)".into(),
            Role::Input => format!("the input {p}"),
            Role::Output(_) if self.path.as_os_str() == "-" => "stdout".into(),
            Role::Output(flag) | Role::CheckpointDir(flag) => format!("{flag} {p}"),
        }
    }

    /// Where it is (or would be), for containment checks.
    fn location(&self) -> Option<PathBuf> {
        if self.path.as_os_str() == "-" {
            return None;
        }
        match &self.id {
            Identity::File { .. } => self.path.canonicalize().ok(),
            Identity::New(p) => Some(p.clone()),
            Identity::Unknown => None,
        }
    }
}

/// The paths one command reads and writes, checked together by [`PathSet::check`].
#[derive(Debug, Default)]
pub struct PathSet {
    entries: Vec<Entry>,
}

impl PathSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The input: a path, or `-` for stdin.
    pub fn input(&mut self, path: &Path) -> &mut Self {
        self.push(Role::Input, path, true)
    }

    /// An output file named by `flag` (as the command line spells it, for messages): a path, or
    /// `-` for stdout.
    pub fn output(&mut self, flag: &str, path: &Path) -> &mut Self {
        self.push(Role::Output(flag.into()), path, false)
    }

    /// A checkpoint folder named by `flag`.
    pub fn checkpoint_dir(&mut self, flag: &str, path: &Path) -> &mut Self {
        self.push(Role::CheckpointDir(flag.into()), path, false)
    }

    fn push(&mut self, role: Role, path: &Path, input: bool) -> &mut Self {
        let id = identify(path, input);
        self.entries.push(Entry {
            role,
            path: path.to_owned(),
            id,
        });
        self
    }

    /// Refuses, naming both paths, any output that is the input, two outputs that are one file,
    /// a checkpoint folder that is or holds the input, an output inside the checkpoint folder,
    /// an output that is a folder and a checkpoint folder that is a file.
    pub fn check(&self) -> Result<(), PathConflict> {
        let input = self.entries.iter().find(|e| matches!(e.role, Role::Input));
        let writes: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| !matches!(e.role, Role::Input))
            .collect();
        for w in &writes {
            match (&w.role, w.id.kind()) {
                (Role::Output(_), Some(FileKind::Directory)) => {
                    return Err(PathConflict(format!(
                        "{}: is a directory; name a file to write the results to",
                        w.name()
                    )))
                }
                (Role::CheckpointDir(_), Some(k)) if k != FileKind::Directory => {
                    return Err(PathConflict(format!(
                        "{}: is {}, not a folder; name a folder for the checkpoints (it is \
                         created if missing)",
                        w.name(),
                        k.describe()
                    )))
                }
                _ => {}
            }
        }
        if let Some(i) = input {
            for w in &writes {
                if w.id.same_as(&i.id) {
                    let how = if w.path == i.path {
                        ""
                    } else {
                        " (the same file)"
                    };
                    return Err(PathConflict(format!(
                        "{} is {}{how}: weir would write into the log it is reading and \
                         destroy it; write the results to another path",
                        w.name(),
                        i.name()
                    )));
                }
            }
        }
        for (n, a) in writes.iter().enumerate() {
            for b in &writes[n + 1..] {
                if a.id.same_as(&b.id) {
                    return Err(PathConflict(format!(
                        "{} and {} are the same file: one would overwrite the other; give them \
                         different paths",
                        b.name(),
                        a.name()
                    )));
                }
            }
        }
        for ck in writes
            .iter()
            .filter(|e| matches!(e.role, Role::CheckpointDir(_)))
        {
            let Some(folder) = ck.location() else {
                continue;
            };
            if let Some(i) = input {
                let inside = i.location().is_some_and(|l| l.starts_with(&folder));
                if inside || linked_inside(&folder, &i.id) {
                    return Err(PathConflict(format!(
                        "{} holds {}: weir creates, rewrites and removes files in its checkpoint \
                         folder; keep the log outside it",
                        ck.name(),
                        i.name()
                    )));
                }
            }
            for w in writes.iter().filter(|e| matches!(e.role, Role::Output(_))) {
                if w.location().is_some_and(|l| l.starts_with(&folder)) {
                    return Err(PathConflict(format!(
                        "{} is inside {}: weir creates, rewrites and removes files in its \
                         checkpoint folder; write the results elsewhere",
                        w.name(),
                        ck.name()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Whether a file inside `folder` (three levels deep at most: the layout of a checkpoint
/// folder) is a hard link to `id`.
fn linked_inside(folder: &Path, id: &Identity) -> bool {
    fn walk(dir: &Path, id: &Identity, depth: u32) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let Ok(m) = e.path().symlink_metadata() else {
                return false;
            };
            if m.is_dir() {
                depth > 0 && walk(&e.path(), id, depth - 1)
            } else {
                m.is_file() && file_id(&m) == *id
            }
        })
    }
    matches!(id, Identity::File { .. }) && walk(folder, id, 3)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut PathSet)) -> Result<(), PathConflict> {
        let mut s = PathSet::new();
        f(&mut s);
        s.check()
    }

    #[test]
    fn same_files_are_found_through_links_and_spellings() {
        let dir = std::env::temp_dir().join(format!("weir-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let log = dir.join("x.log");
        std::fs::write(&log, b"line\n").unwrap();
        std::os::unix::fs::symlink(&log, dir.join("link.log")).unwrap();
        std::fs::hard_link(&log, dir.join("hard.log")).unwrap();
        std::os::unix::fs::symlink(dir.join("nowhere.csv"), dir.join("dangling.csv")).unwrap();
        for same in [
            log.clone(),
            dir.join("link.log"),
            dir.join("hard.log"),
            dir.join("sub/../x.log"),
        ] {
            let e = check(|s| {
                s.input(&log).output("--output", &same);
            })
            .unwrap_err();
            assert!(e.0.contains("is the input"), "{e}");
        }
        // Two new outputs at one place, one of them through a dangling symlink.
        let e = check(|s| {
            s.input(&log)
                .output("--output", &dir.join("nowhere.csv"))
                .output("--late-output", &dir.join("dangling.csv"));
        })
        .unwrap_err();
        assert!(e.0.contains("same file"), "{e}");
        let e = check(|s| {
            s.output("--output", &dir.join("sub/a.csv"))
                .output("--late-output", &dir.join("./sub/../sub/a.csv"));
        })
        .unwrap_err();
        assert!(e.0.contains("same file"), "{e}");
        // Checkpoint folders: holding the input, by path or hard link; outputs inside.
        assert!(check(|s| {
            s.input(&log).checkpoint_dir("--checkpoint-dir", &dir);
        })
        .is_err());
        std::fs::hard_link(&log, dir.join("sub/copy")).unwrap();
        let e = check(|s| {
            s.input(&log)
                .checkpoint_dir("--checkpoint-dir", &dir.join("sub"));
        })
        .unwrap_err();
        assert!(e.0.contains("holds the input"), "{e}");
        let e = check(|s| {
            s.input(&dir.join("other.log"))
                .output("--output", &dir.join("ck/new/out.csv"))
                .checkpoint_dir("--checkpoint-dir", &dir.join("ck"));
        })
        .unwrap_err();
        assert!(e.0.contains("is inside --checkpoint-dir"), "{e}");
        // Distinct paths, and devices, pass.
        check(|s| {
            s.input(&log)
                .output("--output", &dir.join("out.csv"))
                .output("--late-output", Path::new("/dev/null"))
                .output("--other", Path::new("/dev/null"))
                .checkpoint_dir("--checkpoint-dir", &dir.join("ck"));
        })
        .unwrap();
        assert_eq!(where_created(Path::new("/dev/stdout")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
