//! Flags hello refuses at start-up, with one clear line from clap and exit
//! status 2, instead of starting a server that does not do what was asked.

use testkit::procs::ServerTree;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

/// Runs hello with `args` (which must be refused) and returns its stderr.
/// A hello that starts serving instead fails the test (and is stopped).
fn refused(args: &[&str]) -> String {
    let mut all = vec!["--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let (status, err) = match ServerTree::try_start(HELLO, &all) {
        Ok(s) => panic!("{args:?} started a server:\n{}", s.stderr()),
        Err(refused) => refused,
    };
    assert_eq!(status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

/// A limit of no connection at all: a worker that never accepts (clients
/// hang in the queue), or every connection reset without a word.
#[test]
fn zero_connection_limits_are_refused() {
    for flag in ["--max-connections", "--max-connections-per-ip"] {
        let err = refused(&[flag, "0"]);
        assert!(
            err.contains(flag) && err.contains("the least is 1"),
            "{err}"
        );
    }
}

/// No time at all for a request head would refuse every request not read
/// whole at once (the library panics on it; the flag is refused first).
#[test]
fn a_zero_header_timeout_is_refused() {
    let err = refused(&["--header-timeout-ms", "0"]);
    assert!(err.contains("--header-timeout-ms"), "{err}");
}

/// Flags that only mean something beside another were ignored without a
/// word: no access log file at all (even in a directory that does not
/// exist), no open-file cache.
#[test]
fn flags_that_need_another_are_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("missing-dir").join("access.log");
    let err = refused(&["--access-log-file", log.to_str().unwrap()]);
    assert!(
        err.contains("--access-log-file") && err.contains("--access-log <ACCESS_LOG>"),
        "{err}"
    );
    let err = refused(&["--open-file-cache-ms", "1000"]);
    assert!(
        err.contains("--open-file-cache-ms") && err.contains("--static <STATIC_DIR>"),
        "{err}"
    );
}
