//! Binary upgrades played by a test: a copy of a server binary in a
//! temporary directory ([`Release`]), started from there, whose file is
//! then replaced by a "new build" (a shell script put in its place) before
//! the master gets `SIGUSR2`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wait_until;

/// A temporary "installation": `DIR/app` (a copy of the binary the
/// master is started from), `DIR/app.real` (the same binary, kept for
/// wrapper scripts), and `DIR/app.pid` for `--pid-file`.
#[derive(Debug)]
pub struct Release {
    dir: tempfile::TempDir,
}

impl Release {
    /// Copies `bin` to `DIR/app` and `DIR/app.real`.
    pub fn new(bin: &str) -> Release {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Release { dir };
        fs::copy(bin, r.app()).expect("copy the binary");
        fs::copy(bin, r.real()).expect("copy the binary");
        r
    }

    /// `DIR/app`: start the master from here.
    pub fn app(&self) -> PathBuf {
        self.dir.path().join("app")
    }

    /// `DIR/app` as a `&str` (for `ServerTree::start`).
    pub fn app_str(&self) -> String {
        self.app().to_str().expect("a UTF-8 path").to_owned()
    }

    /// `DIR/app.real`: the binary, for wrappers to `exec`.
    pub fn real(&self) -> PathBuf {
        self.dir.path().join("app.real")
    }

    /// `DIR/app.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("app.pid")
    }

    /// `DIR/app.pid` as a `&str`.
    pub fn pid_file_str(&self) -> String {
        self.pid_file().to_str().expect("a UTF-8 path").to_owned()
    }

    /// `DIR/app.pid.oldbin`.
    pub fn oldbin(&self) -> PathBuf {
        self.dir.path().join("app.pid.oldbin")
    }

    /// The pid in `path`, if it holds one.
    pub fn read_pid(path: &Path) -> Option<i32> {
        fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// The pid in the pid file, if any.
    pub fn pid(&self) -> Option<i32> {
        Release::read_pid(&self.pid_file())
    }

    /// Waits (up to `limit`) until the pid file holds a pid other than
    /// `old`; returns it.
    pub fn wait_new_pid(&self, old: i32, limit: Duration) -> Option<i32> {
        let mut pid = None;
        wait_until(limit, || {
            pid = self.pid().filter(|&p| p != old);
            pid.is_some()
        });
        pid
    }

    /// Replaces `DIR/app` by a shell script with `body` after its `#!/bin/sh`
    /// line (written beside it, then renamed over it, like a deploy), so
    /// the next `SIGUSR2` starts the script. `{real}` in `body` stands for
    /// the path of the real binary.
    pub fn install_script(&self, body: &str) {
        let tmp = self.dir.path().join("app.new");
        let real = self.real();
        let text = format!(
            "#!/bin/sh\n{}\n",
            body.replace("{real}", real.to_str().expect("a UTF-8 path"))
        );
        fs::write(&tmp, text).expect("write the script");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::rename(&tmp, self.app()).expect("rename over the binary");
    }

    /// A new build that differs visibly: the real binary with the same
    /// arguments plus `--version-tag TAG` (the last one given wins).
    pub fn install_tagged(&self, tag: &str) {
        self.install_script(&format!("exec {{real}} \"$@\" --version-tag {tag}"));
    }
}
