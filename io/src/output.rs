//! Output files that appear whole or not at all.
//!
//! ```text
//!   OutputFile::create("out/counts.csv")
//!        └─▶ writes out/.counts.csv.weir-tmp-PID    (same folder: the rename below is atomic)
//!   commit():  fsync ─▶ rename to out/counts.csv ─▶ fsync out/
//!   dropped without commit (the run failed): the temporary is removed, counts.csv untouched
//! ```
//!
//! A failed run (a truncated gzip, a full disk, a parse error in `--strict` mode, a log
//! truncated under weir: see [`crate::sigbus`]) therefore never leaves a partial file under the
//! output's name, and an earlier file there is left as it was, as with `sort -o`. A run killed
//! with SIGKILL leaves its hidden temporary behind, never a partial `counts.csv`.
//!
//! Written in place instead, with no temporary:
//!
//! - what is not a regular file: a character device (`/dev/null`, `/dev/full`, a terminal), a
//!   pipe, a socket. Renaming over one would replace the device node itself;
//! - paths that lead through `/proc` or `/dev/fd`, such as `/dev/stdout`: they name an open
//!   descriptor, not a folder entry that a rename could replace;
//! - outputs opened with [`OutputFile::live`], meant to be read while they grow (`weir serve`).
//!
//! The destination is found through symlinks (the file a link points to is replaced, not the
//! link), and an existing file's permissions are kept.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::paths::{where_created, FileKind};
use crate::sigbus::RemoveOnFatal;

/// fsyncs a folder, so that renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// An output file being written; see the module doc.
#[derive(Debug)]
pub struct OutputFile {
    file: File,
    path: PathBuf,
    temp: Option<Temp>,
}

#[derive(Debug)]
struct Temp {
    path: PathBuf,
    dest: PathBuf,
    _remove: RemoveOnFatal,
}

impl OutputFile {
    /// Starts writing `path`: under a temporary name beside it if it is (or will be) a regular
    /// file, in place otherwise. Errors name `path`: a folder, a missing parent folder, no
    /// permission to create the temporary.
    pub fn create(path: &Path) -> Result<Self> {
        let existing = fs::metadata(path).ok();
        match existing.as_ref().map(FileKind::of) {
            Some(FileKind::Directory) => {
                return Err(Error::io(
                    path,
                    io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
                ))
            }
            Some(FileKind::Regular) | None => {}
            Some(_) => return Self::live(path),
        }
        let Some(dest) = where_created(path) else {
            return Self::live(path);
        };
        let (Some(folder), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Self::live(path);
        };
        let temp = folder.join(format!(
            ".{}.weir-tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        // A leftover of an earlier process with this id; `create_new` then never follows a
        // link planted under the temporary's name.
        let _ = fs::remove_file(&temp);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::io(path, e),
                kind => Error::io(
                    path,
                    io::Error::new(
                        kind,
                        format!(
                            "cannot create the temporary file {} beside it (the output is \
                             written there and renamed when complete): {e}",
                            temp.display()
                        ),
                    ),
                ),
            })?;
        if let Some(m) = &existing {
            let _ = file.set_permissions(m.permissions());
        }
        Ok(Self {
            file,
            path: path.to_owned(),
            temp: Some(Temp {
                _remove: RemoveOnFatal::new(&temp),
                path: temp,
                dest,
            }),
        })
    }

    /// Writes `path` in place (created or truncated now), for outputs read while they grow.
    pub fn live(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            temp: None,
        })
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the file, for a writer owned elsewhere (a sink on another thread);
    /// it writes at the same position.
    pub fn handle(&self) -> Result<File> {
        self.file.try_clone().map_err(|e| Error::io(&self.path, e))
    }

    /// Makes the output visible: fsyncs it, renames it into place and fsyncs the folder (a
    /// regular file written in place is only fsynced). Every handle's writes must be done.
    pub fn commit(mut self) -> Result<()> {
        let Some(temp) = self.temp.take() else {
            if self.file.metadata().is_ok_and(|m| m.is_file()) {
                self.file.sync_all().map_err(|e| Error::io(&self.path, e))?;
            }
            return Ok(());
        };
        let done = self
            .file
            .sync_all()
            .and_then(|()| fs::rename(&temp.path, &temp.dest))
            .map_err(|e| Error::io(&self.path, e));
        if done.is_err() {
            let _ = fs::remove_file(&temp.path);
        }
        done?;
        sync_dir(temp.dest.parent().unwrap_or(Path::new("/")))
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = fs::remove_file(&t.path);
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn appears_on_commit_and_is_removed_on_failure() {
        let dir = std::env::temp_dir().join(format!("weir-output-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.csv");
        fs::write(&out, "earlier\n").unwrap();

        let mut f = OutputFile::create(&out).unwrap();
        f.write_all(b"partial").unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "earlier\n");
        drop(f); // the run failed
        assert_eq!(names(&dir), ["out.csv"]);
        assert_eq!(fs::read_to_string(&out).unwrap(), "earlier\n");

        // Through a symlink: the file it points to is replaced, the link stays.
        std::os::unix::fs::symlink(&out, dir.join("link.csv")).unwrap();
        let f = OutputFile::create(&dir.join("link.csv")).unwrap();
        f.handle().unwrap().write_all(b"whole\n").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "whole\n");
        assert!(fs::symlink_metadata(dir.join("link.csv"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(names(&dir), ["link.csv", "out.csv"]);

        // Devices are written in place.
        let mut null = OutputFile::create(Path::new("/dev/null")).unwrap();
        null.write_all(b"x").unwrap();
        null.commit().unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());

        let e = OutputFile::create(&dir).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
