//! The SQLite store: one connection per worker process, opened after the
//! fork, on a database file in WAL mode so that every worker can read while
//! one of them writes.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// The schema, created on first start (every worker runs it; it is
/// idempotent).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS todos (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT    NOT NULL,
    done INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1))
);
";

/// One todo item, as stored and as sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Todo {
    /// The row id, assigned by SQLite and never reused.
    pub(crate) id: i64,
    /// What to do.
    pub(crate) text: String,
    /// Whether it is done.
    pub(crate) done: bool,
}

fn todo_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Todo> {
    Ok(Todo {
        id: row.get(0)?,
        text: row.get(1)?,
        done: row.get(2)?,
    })
}

/// An open connection with the schema in place.
#[derive(Debug)]
pub(crate) struct Db {
    conn: Connection,
}

impl Db {
    /// Opens (creating if needed) the database at `path`: sets the busy
    /// timeout first, so that workers starting together wait for each
    /// other instead of failing, then WAL mode and the schema.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Db> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!(
                "{}: journal mode is {mode:?}, not WAL: workers will block each other",
                path.display()
            );
        }
        // Safe with WAL: a crash can lose the last commits, never corrupt.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db { conn })
    }

    /// Every todo, oldest first.
    pub(crate) fn list(&self) -> rusqlite::Result<Vec<Todo>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, text, done FROM todos ORDER BY id")?;
        let rows = stmt.query_map([], todo_from_row)?;
        rows.collect()
    }

    /// One todo, if it exists.
    pub(crate) fn get(&self, id: i64) -> rusqlite::Result<Option<Todo>> {
        self.conn
            .prepare_cached("SELECT id, text, done FROM todos WHERE id = ?1")?
            .query_row([id], todo_from_row)
            .optional()
    }

    /// Adds a todo (not done) and returns it.
    pub(crate) fn insert(&self, text: &str) -> rusqlite::Result<Todo> {
        self.conn
            .prepare_cached(
                "INSERT INTO todos (text, done) VALUES (?1, 0) RETURNING id, text, done",
            )?
            .query_row([text], todo_from_row)
    }

    /// Changes the given fields of a todo; `None` when there is no such id.
    pub(crate) fn update(
        &self,
        id: i64,
        text: Option<&str>,
        done: Option<bool>,
    ) -> rusqlite::Result<Option<Todo>> {
        self.conn
            .prepare_cached(
                "UPDATE todos SET text = COALESCE(?1, text), done = COALESCE(?2, done) \
                 WHERE id = ?3 RETURNING id, text, done",
            )?
            .query_row(params![text, done, id], todo_from_row)
            .optional()
    }

    /// Deletes a todo; whether it existed.
    pub(crate) fn delete(&self, id: i64) -> rusqlite::Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM todos WHERE id = ?1")?
            .execute([id])?;
        Ok(n > 0)
    }
}

/// The per-worker store kept in tine's worker state: the connection,
/// opened when the worker starts, or again on a later request if that
/// failed (another worker holding the lock too long at start-up, say).
#[derive(Debug)]
pub(crate) struct Store {
    path: PathBuf,
    busy_timeout: Duration,
    db: RefCell<Option<Db>>,
}

impl Store {
    /// A store for the database at `path`, not opened yet.
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Store {
        Store {
            path,
            busy_timeout,
            db: RefCell::new(None),
        }
    }

    /// Opens the connection now, retrying briefly while the file is busy
    /// (several workers creating the schema at once). A failure is logged
    /// and left for the first request to retry.
    pub(crate) fn open_now(&self) {
        for attempt in 1..=3 {
            match self.with(|_| Ok(())) {
                Ok(()) => return,
                Err(e) if attempt < 3 && is_busy(&e) => {
                    std::thread::sleep(Duration::from_millis(100 * attempt))
                }
                Err(e) => {
                    log::error!("cannot open {}: {e}", self.path.display());
                    return;
                }
            }
        }
    }

    /// Runs `f` on the connection, opening it first if needed.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Db) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut slot = self.db.borrow_mut();
        let db = match &mut *slot {
            Some(db) => db,
            None => slot.insert(Db::open(&self.path, self.busy_timeout)?),
        };
        f(db)
    }
}

/// Whether `path` names a database private to the connection that opens
/// it (SQLite's `:memory:`, `""` for a temporary file, a `file:` URI in
/// memory): each worker process would get its own.
pub(crate) fn is_private(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.is_empty()
        || name == ":memory:"
        || (name.starts_with("file:")
            && (name.contains(":memory:") || name.contains("mode=memory")))
}

/// Checks, before the workers start, that the database at `path` can be
/// used: opened or created, with the schema, and written (a write lock
/// taken and given back at once). A directory that does not exist, a
/// directory, a file that is not a database or a read-only one would
/// otherwise start a server answering 500 to everything. The connection is
/// closed again: none may cross the fork.
pub(crate) fn check(path: &Path, busy_timeout: Duration) -> Result<(), String> {
    let db = Db::open(path, busy_timeout).map_err(|e| e.to_string())?;
    if db
        .conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| e.to_string())?
    {
        return Err("read-only (the file or its directory cannot be written)".into());
    }
    db.conn
        .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
        .map_err(|e| format!("cannot be written: {e}"))
}

/// Whether an SQLite error means "another connection holds the lock":
/// worth retrying later, so a 503 rather than a 500.
pub(crate) fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crud_on_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), Duration::from_millis(100)).unwrap();
        assert_eq!(db.list().unwrap(), vec![]);
        let a = db.insert("a").unwrap();
        let b = db.insert("b").unwrap();
        assert!(b.id > a.id);
        let a2 = db.update(a.id, None, Some(true)).unwrap().unwrap();
        assert_eq!((a2.text.as_str(), a2.done), ("a", true));
        let a3 = db.update(a.id, Some("A"), None).unwrap().unwrap();
        assert_eq!((a3.text.as_str(), a3.done), ("A", true));
        assert_eq!(db.update(999, Some("x"), None).unwrap(), None);
        assert!(db.delete(b.id).unwrap());
        assert!(!db.delete(b.id).unwrap());
        assert_eq!(db.get(b.id).unwrap(), None);
        assert_eq!(db.list().unwrap(), vec![a3]);
        // Ids are never reused, even after the newest row is deleted.
        assert!(db.insert("c").unwrap().id > b.id);
    }

    #[test]
    fn a_second_connection_sees_wal_mode_and_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let one = Db::open(&path, Duration::from_millis(100)).unwrap();
        let two = Db::open(&path, Duration::from_millis(100)).unwrap();
        one.insert("x").unwrap();
        assert_eq!(two.list().unwrap().len(), 1);
        let mode: String = two
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn only_a_usable_database_passes_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_millis(100);
        let fresh = dir.path().join("fresh.db");
        assert_eq!(check(&fresh, t), Ok(()));
        assert!(fresh.is_file(), "created with its schema");
        assert_eq!(check(&fresh, t), Ok(()), "and used again");
        let err = check(&dir.path().join("missing").join("t.db"), t).unwrap_err();
        assert!(err.contains("unable to open"), "{err}");
        let err = check(dir.path(), t).unwrap_err();
        assert!(err.contains("unable to open"), "{err}");
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
        let err = check(&garbage, t).unwrap_err();
        assert!(err.contains("not a database"), "{err}");
        // A read-only file (not for root, who writes whatever the mode
        // says).
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro.db");
        check(&ro, t).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
        if std::fs::OpenOptions::new().write(true).open(&ro).is_err() {
            let err = check(&ro, t).unwrap_err();
            assert!(err.contains("read-only"), "{err}");
        }
    }

    #[test]
    fn private_databases_are_told_apart() {
        for private in [
            "",
            ":memory:",
            "file::memory:",
            "file:x?mode=memory&cache=shared",
        ] {
            assert!(is_private(Path::new(private)), "{private:?}");
        }
        for shared in ["todo.db", "/var/lib/todo/:memory:.db", "./:memory:"] {
            assert!(!is_private(Path::new(shared)), "{shared:?}");
        }
    }

    #[test]
    fn a_held_write_lock_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path, Duration::from_millis(50)).unwrap();
        let locker = Connection::open(&path).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let err = db.insert("x").unwrap_err();
        assert!(is_busy(&err), "{err}");
        // WAL: readers are not blocked by the writer.
        assert_eq!(db.list().unwrap(), vec![]);
        locker.execute_batch("COMMIT").unwrap();
        db.insert("x").unwrap();
    }
}
