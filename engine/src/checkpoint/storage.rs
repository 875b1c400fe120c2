//! The file operations the checkpoint layer needs, behind one trait, so tests can inject faults.
//!
//! [`FsStorage`] is the real thing (std::fs and memmap2). [`FaultyStorage`] is an in-memory model
//! of a file system that knows what is *durable* and what is only *live*:
//!
//! ```text
//!                 live (what reads see)          durable (what survives a crash)
//!  file data      written / filled bytes   ──sync_file──▶  copied to durable
//!  folder entry   created, renamed, removed ──sync_dir(parent)──▶ copied to durable
//! ```
//!
//! It counts operations and, once a countdown reaches zero, fails that call and every later one
//! (the process "crashed"). [`FaultyStorage::crash`] then builds a fresh file system out of what
//! a power cut could have left: only the durable state ([`CrashMode::LoseUnsynced`]), everything
//! ([`CrashMode::KeepUnsynced`], a process kill), or a seeded mix of the two per folder entry and
//! per 4 KiB page of file data ([`CrashMode::Torn`]). That is the adversarial POSIX model: without
//! an fsync of the folder nothing orders two entry changes, and without an fsync of the file any
//! page may be old or new.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The file operations of the checkpoint layer. Every path is absolute or relative to the process'
/// working folder, as the caller gave it.
pub trait Storage {
    /// Proof that this process holds a folder's lock; released on drop.
    type Lock: Send;

    /// Takes the exclusive lock of the file at `path` (created if needed) without waiting:
    /// `Ok(None)` when someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Self::Lock>>;
    /// Creates a folder and any missing parents; succeeds if it exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates (or truncates) a file and sets its length to `len` bytes of zeros.
    fn create_sized(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Maps the whole file writable, lets `fill` write it in place, and flushes the map (msync).
    /// The data is durable only after [`Storage::sync_file`].
    fn fill_mapped<F: FnOnce(&mut [u8])>(&self, path: &Path, fill: F) -> io::Result<()>;
    /// Makes a file's data and length durable (fsync).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Creates (or truncates) a file holding `bytes`. Not durable until synced.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Renames a file, replacing `to` if it exists. Durable after syncing the folder.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file. Durable after syncing the folder.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a folder and everything in it. Durable after syncing its parent.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of a folder's entries, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// The contents of a file, mapped read-only where the implementation can.
    fn read(&self, path: &Path) -> io::Result<FileBytes>;
    /// Makes a folder's entries durable (fsync of the folder).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// A file open for appending: the exactly-once results file that checkpoints commit a
    /// prefix of (weir-io's `results_file`).
    type Appender: io::Write + Send;
    /// Opens an existing file for appending at its end. What is appended is durable only after
    /// [`Storage::sync_file`].
    fn open_append(&self, path: &Path) -> io::Result<Self::Appender>;
    /// Cuts (or extends with zeros) a file to `len` bytes. Not durable until synced.
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Gives the file `from` a second name `to` (a hard link); fails if `to` exists or is on
    /// another file system. Durable after syncing `to`'s folder.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
}

/// The bytes of a file: a read-only map or an owned buffer.
pub struct FileBytes(Repr);

enum Repr {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Bytes held in memory (an empty file, or a test storage).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self(Repr::Owned(bytes))
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Mapped(map) => map,
            Repr::Owned(vec) => vec,
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            Repr::Mapped(_) => "mapped",
            Repr::Owned(_) => "owned",
        };
        write!(f, "FileBytes({kind}, {} bytes)", self.len())
    }
}

// ---------------------------------------------------------------------------------------------
// The real file system.

/// [`Storage`] over `std::fs` and memmap2.
///
/// Maps assume that nobody else writes or truncates checkpoint files while they are mapped:
/// [`CheckpointDir`](super::CheckpointDir) holds the root's lock for that, and files are never
/// changed after they are written. Another program truncating a mapped file makes reads fault
/// (SIGBUS); that is the price of restoring large state without copying it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsStorage;

impl Storage for FsStorage {
    type Lock = File;
    type Appender = File;

    fn open_append(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().append(true).open(path)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    // `File::try_lock` is stable since Rust 1.89; the workspace still says 1.85 (the integrator
    // raises `rust-version`).
    #[allow(clippy::incompatible_msrv)]
    fn try_lock(&self, path: &Path) -> io::Result<Option<File>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(err)) => Err(err),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn create_sized(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        file.set_len(len)
    }

    fn fill_mapped<F: FnOnce(&mut [u8])>(&self, path: &Path, fill: F) -> io::Result<()> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        if file.metadata()?.len() == 0 {
            fill(&mut []);
            return Ok(());
        }
        // SAFETY: the file was just created by this process inside a folder whose lock it holds,
        // and nothing else writes or truncates it while the map lives (see `FsStorage`).
        let mut map = unsafe { memmap2::MmapMut::map_mut(&file)? };
        fill(&mut map);
        map.flush()
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        std::fs::write(path, bytes)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::from_vec(Vec::new()));
        }
        // SAFETY: checkpoint files are written once and never modified or truncated afterwards,
        // and the root's lock keeps other weir processes out (see `FsStorage`).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(FileBytes(Repr::Mapped(map)))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(path)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            // Folders cannot be opened for fsync elsewhere; renames are journaled by NTFS.
            let _ = path;
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fault-injecting model.

/// What a crash of [`FaultyStorage`] leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only what was synced: unsynced file data and folder entries are all lost (power cut).
    LoseUnsynced,
    /// Everything live survives (the process was killed, the kernel wrote everything back).
    KeepUnsynced,
    /// Each unsynced folder entry, file length and 4 KiB page of data is independently old or
    /// new, chosen by a generator seeded with this value.
    Torn(u64),
}

/// A folder entry. Folders carry a generation so that a folder created again under an old name
/// does not inherit the old one's durable entries (a new folder is a new inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Dir(u64),
    File(usize),
}

/// An entry and the generation of the folder it was created in (0: the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    parent_gen: u64,
    entry: Entry,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct Model {
    /// Always present, never lost.
    root: PathBuf,
    inodes: Vec<Inode>,
    live: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    next_gen: u64,
    locks: BTreeSet<PathBuf>,
    /// Operations left before the crash; `None`: never crash.
    countdown: Option<usize>,
    crashed: bool,
    ops: usize,
}

/// An in-memory file system with injected crashes, for tests (see the module docs).
///
/// Clones share the same file system, so a test keeps one handle to arm the countdown and crash
/// while the code under test owns another. Paths must lie under the root given to
/// [`FaultyStorage::new`]; the root itself always exists.
#[derive(Debug, Clone)]
pub struct FaultyStorage {
    model: Arc<Mutex<Model>>,
}

/// The lock of a [`FaultyStorage`] file; released on drop.
#[derive(Debug)]
pub struct FaultyLock {
    model: Arc<Mutex<Model>>,
    path: PathBuf,
}

impl Drop for FaultyLock {
    fn drop(&mut self) {
        if let Ok(mut model) = self.model.lock() {
            model.locks.remove(&self.path);
        }
    }
}

/// A [`FaultyStorage`] file open for appending: every write is one operation (it may crash).
/// Like a descriptor, it follows the file, not its name (a rename does not redirect it).
#[derive(Debug)]
pub struct FaultyAppender {
    storage: FaultyStorage,
    inode: usize,
}

impl io::Write for FaultyAppender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut model = self.storage.op()?;
        model.inodes[self.inode].live.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn injected() -> io::Error {
    io::Error::other("injected crash: the storage is gone")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl FaultyStorage {
    /// An empty file system holding only the folder `root`, which never crashes until
    /// [`FaultyStorage::set_countdown`] arms it.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let model = Model {
            root: root.into(),
            ..Model::default()
        };
        Self {
            model: Arc::new(Mutex::new(model)),
        }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        // A panic inside a fill callback poisons nothing we rely on: the model stays consistent
        // between operations.
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Crash when `n` more operations have run: the `n`-th from now fails, and every one after it.
    /// `None` disarms the countdown.
    pub fn set_countdown(&self, n: Option<usize>) {
        self.model().countdown = n;
    }

    /// Operations run so far (including failed ones).
    pub fn ops(&self) -> usize {
        self.model().ops
    }

    /// Whether the countdown has run out.
    pub fn crashed(&self) -> bool {
        self.model().crashed
    }

    /// A fresh file system holding what a crash right now could have left behind (see
    /// [`CrashMode`]); it is all durable, unlocked and not armed. This handle is left as it is.
    pub fn crash(&self, mode: CrashMode) -> FaultyStorage {
        let old = self.model();
        let mut rng = SplitMix(match mode {
            CrashMode::Torn(seed) => seed,
            _ => 0,
        });
        let mut take_live = || match mode {
            CrashMode::LoseUnsynced => false,
            CrashMode::KeepUnsynced => true,
            CrashMode::Torn(_) => rng.next() & 1 == 1,
        };
        // Folder entries: each name independently keeps its durable or its live entry.
        let names: BTreeSet<&PathBuf> = old.live.keys().chain(old.durable.keys()).collect();
        let mut chosen: BTreeMap<PathBuf, Node> = BTreeMap::new();
        for name in names {
            let live = old.live.get(name);
            let durable = old.durable.get(name);
            let node = if live == durable || take_live() {
                live
            } else {
                durable
            };
            if let Some(node) = node {
                chosen.insert(name.clone(), *node);
            }
        }
        // Only entries whose every parent folder survived, in the same generation, are reachable.
        let reachable = |path: &Path, node: &Node| {
            let (mut path, mut node) = (path, *node);
            loop {
                let Some(parent) = path.parent() else {
                    return false;
                };
                if parent == old.root {
                    return node.parent_gen == 0;
                }
                match chosen.get(parent) {
                    Some(p) if p.entry == Entry::Dir(node.parent_gen) => {
                        (path, node) = (parent, *p)
                    }
                    _ => return false,
                }
            }
        };
        let mut inodes = Vec::new();
        let mut renumbered: BTreeMap<usize, usize> = BTreeMap::new();
        let mut entries = BTreeMap::new();
        for (path, node) in &chosen {
            if !reachable(path, node) {
                continue;
            }
            let entry = match node.entry {
                Entry::Dir(gen) => Entry::Dir(gen),
                Entry::File(id) => {
                    let next = *renumbered.entry(id).or_insert_with(|| {
                        let bytes = torn_copy(&old.inodes[id], &mut take_live);
                        inodes.push(Inode {
                            live: bytes.clone(),
                            durable: bytes,
                        });
                        inodes.len() - 1
                    });
                    Entry::File(next)
                }
            };
            let node = Node { entry, ..*node };
            entries.insert(path.clone(), node);
        }
        let model = Model {
            root: old.root.clone(),
            inodes,
            durable: entries.clone(),
            live: entries,
            next_gen: old.next_gen,
            ..Model::default()
        };
        FaultyStorage {
            model: Arc::new(Mutex::new(model)),
        }
    }

    /// Overwrites live bytes of a file in place (a test corrupting a file; not counted, no
    /// crash). Returns `false` when there is no such file.
    pub fn corrupt(&self, path: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut model = self.model();
        match model.live.get(path) {
            Some(Node {
                entry: Entry::File(id),
                ..
            }) => {
                let id = *id;
                edit(&mut model.inodes[id].live);
                true
            }
            _ => false,
        }
    }

    /// Counts one operation and fails it if the storage has crashed.
    fn op(&self) -> io::Result<MutexGuard<'_, Model>> {
        let mut model = self.model();
        model.ops += 1;
        if model.crashed {
            return Err(injected());
        }
        if let Some(n) = model.countdown {
            if n == 0 {
                model.crashed = true;
                return Err(injected());
            }
            model.countdown = Some(n - 1);
        }
        Ok(model)
    }
}

impl Model {
    /// The generation of the live folder at `path`, if there is one.
    fn dir_gen(&self, path: &Path) -> Option<u64> {
        if path == self.root {
            return Some(0);
        }
        match self.live.get(path) {
            Some(Node {
                entry: Entry::Dir(gen),
                ..
            }) => Some(*gen),
            _ => None,
        }
    }

    /// The generation of the folder `path` is in.
    fn parent_gen(&self, path: &Path) -> io::Result<u64> {
        path.parent()
            .and_then(|parent| self.dir_gen(parent))
            .ok_or_else(|| not_found(path))
    }

    fn file(&self, path: &Path) -> io::Result<usize> {
        match self.live.get(path).map(|n| n.entry) {
            Some(Entry::File(id)) => Ok(id),
            Some(Entry::Dir(_)) => {
                Err(io::Error::other(format!("{}: is a folder", path.display())))
            }
            None => Err(not_found(path)),
        }
    }

    /// The file at `path`, created empty if missing.
    fn file_or_create(&mut self, path: &Path) -> io::Result<usize> {
        let parent_gen = self.parent_gen(path)?;
        if self.live.contains_key(path) {
            return self.file(path);
        }
        self.inodes.push(Inode::default());
        let id = self.inodes.len() - 1;
        let node = Node {
            parent_gen,
            entry: Entry::File(id),
        };
        self.live.insert(path.to_path_buf(), node);
        Ok(id)
    }
}

impl Storage for FaultyStorage {
    type Lock = FaultyLock;
    type Appender = FaultyAppender;

    fn open_append(&self, path: &Path) -> io::Result<FaultyAppender> {
        let inode = self.op()?.file(path)?;
        Ok(FaultyAppender {
            storage: self.clone(),
            inode,
        })
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut model = self.op()?;
        let id = model.file(path)?;
        model.inodes[id].live.resize(len as usize, 0);
        Ok(())
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut model = self.op()?;
        let id = model.file(from)?;
        let parent_gen = model.parent_gen(to)?;
        if model.live.contains_key(to) {
            let what = format!("{}: exists", to.display());
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, what));
        }
        let entry = Entry::File(id);
        model
            .live
            .insert(to.to_path_buf(), Node { parent_gen, entry });
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<FaultyLock>> {
        // Not counted: locks do not survive a crash and hold no data.
        let mut model = self.model();
        if model.crashed {
            return Err(injected());
        }
        model.file_or_create(path)?;
        if !model.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(FaultyLock {
            model: Arc::clone(&self.model),
            path: path.to_path_buf(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut model = self.op()?;
        if !path.starts_with(&model.root) {
            return Err(not_found(path));
        }
        let mut missing = Vec::new();
        let mut p = path;
        while model.dir_gen(p).is_none() {
            if model.live.contains_key(p) {
                return Err(io::Error::other(format!("{}: is a file", p.display())));
            }
            missing.push(p.to_path_buf());
            p = p.parent().ok_or_else(|| not_found(path))?;
        }
        for dir in missing.into_iter().rev() {
            let parent_gen = model.parent_gen(&dir)?;
            model.next_gen += 1;
            let entry = Entry::Dir(model.next_gen);
            model.live.insert(dir, Node { parent_gen, entry });
        }
        Ok(())
    }

    fn create_sized(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut model = self.op()?;
        let id = model.file_or_create(path)?;
        model.inodes[id].live = vec![0; len as usize];
        Ok(())
    }

    fn fill_mapped<F: FnOnce(&mut [u8])>(&self, path: &Path, fill: F) -> io::Result<()> {
        let id = self.op()?.file(path)?;
        // Fill outside the lock, on a copy, as a map would be written.
        let mut bytes = self.model().inodes[id].live.clone();
        fill(&mut bytes);
        self.model().inodes[id].live = bytes;
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut model = self.op()?;
        let id = model.file(path)?;
        let inode = &mut model.inodes[id];
        inode.durable = inode.live.clone();
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut model = self.op()?;
        let id = model.file_or_create(path)?;
        model.inodes[id].live = bytes.to_vec();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut model = self.op()?;
        let id = model.file(from)?;
        let parent_gen = model.parent_gen(to)?;
        if model.dir_gen(to).is_some() {
            return Err(io::Error::other(format!("{}: is a folder", to.display())));
        }
        model.live.remove(from);
        let entry = Entry::File(id);
        model
            .live
            .insert(to.to_path_buf(), Node { parent_gen, entry });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut model = self.op()?;
        model.file(path)?;
        model.live.remove(path);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut model = self.op()?;
        if path == model.root || model.dir_gen(path).is_none() {
            return Err(not_found(path));
        }
        model.live.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let model = self.op()?;
        if model.dir_gen(path).is_none() {
            return Err(not_found(path));
        }
        Ok(model
            .live
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let model = self.op()?;
        let id = model.file(path)?;
        Ok(FileBytes::from_vec(model.inodes[id].live.clone()))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut model = self.op()?;
        let Some(gen) = model.dir_gen(path) else {
            return Err(not_found(path));
        };
        // The entries of this folder (this generation of it) become what is durable.
        let model = &mut *model;
        let mine = |p: &PathBuf, n: &Node| p.parent() == Some(path) && n.parent_gen == gen;
        model.durable.retain(|p, n| !mine(p, n));
        for (p, n) in &model.live {
            if mine(p, n) {
                model.durable.insert(p.clone(), *n);
            }
        }
        Ok(())
    }
}

/// What survives of a file's data: the durable or the live length, and each 4 KiB page from the
/// durable or the live bytes (zeros past the end of the one chosen).
fn torn_copy(inode: &Inode, take_live: &mut impl FnMut() -> bool) -> Vec<u8> {
    if inode.live == inode.durable {
        return inode.live.clone();
    }
    let len = if take_live() {
        inode.live.len()
    } else {
        inode.durable.len()
    };
    let mut bytes = vec![0; len];
    for (i, page) in bytes.chunks_mut(4096).enumerate() {
        let src = if take_live() {
            &inode.live
        } else {
            &inode.durable
        };
        let start = (i * 4096).min(src.len());
        let end = (start + page.len()).min(src.len());
        page[..end - start].copy_from_slice(&src[start..end]);
    }
    bytes
}

/// A tiny seeded generator (SplitMix64) for [`CrashMode::Torn`]: no dependency, reproducible.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
