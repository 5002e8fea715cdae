//! One process per SQLite file: an exclusive advisory lock on `<database>.lock`, held for as
//! long as the store is open.
//!
//! Two gateways writing one SQLite file would each keep keys and spend in memory and
//! overwrite each other's rows, so the second is refused at start. The lock is the
//! operating system's (`flock` on Unix, `LockFileEx` on Windows), taken on a file of its
//! own next to the database (`llmgate.db.lock`), never on the database file (SQLite's own
//! locks live there). The lock file holds the owner's process id, so a refusal can name
//! it. The kernel drops the lock when its process ends, however it ends: a lock file left
//! by a killed gateway does not block the next one.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The held lock on a database; released when dropped (or when the process ends).
#[derive(Debug)]
pub(super) struct DbLock {
    /// The open lock file; the lock belongs to it.
    _file: File,
}

/// `<database>.lock`: the lock file of the database at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = OsString::from(db.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock of the database at `db` without waiting (creating the lock file and the
/// database's folder if missing) and writes this process's id into it. Fails, naming the
/// database, the other process's id (when it wrote one) and the lock file, if another
/// process holds it.
pub(super) fn acquire(db: &Path) -> anyhow::Result<DbLock> {
    if db.is_dir() {
        bail!("{} is a folder, not a database file", db.display());
    }
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the folder {}", parent.display()))?;
    }
    let path = lock_path(db);
    // Not truncated on open: until the lock is ours, the id in it is the holder's.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => bail!(in_use(db, &path, holder(&mut file))),
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    write_pid(&mut file).with_context(|| format!("writing {}", path.display()))?;
    Ok(DbLock { _file: file })
}

/// The refusal: which file, who holds it, what to do instead.
fn in_use(db: &Path, lock: &Path, pid: Option<u32>) -> String {
    let by = pid.map_or_else(
        || "another llmgate process".to_owned(),
        |pid| format!("another llmgate process, pid {pid}"),
    );
    format!(
        "the database {} is in use by {by} (lock file {}): one gateway per SQLite file; \
         stop the other one, give this one its own file (LLMGATE_DB, llmgate.database_path), \
         or share one PostgreSQL database between instances",
        db.display(),
        lock.display()
    )
}

/// The process id the holder wrote, if it wrote one yet.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_writes_its_pid_and_a_dropped_lock_is_free_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub").join("llmgate.db");
        let held = acquire(&db).unwrap();
        assert_eq!(
            lock_path(&db),
            dir.path().join("sub").join("llmgate.db.lock")
        );
        let text = std::fs::read_to_string(lock_path(&db)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        let err = acquire(&db).unwrap_err().to_string();
        assert!(err.contains(&db.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        // The lock file stays; only the lock matters.
        drop(acquire(&db).unwrap());
        let err = acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a folder"), "{err}");
    }
}
