//! Flags hello refuses at start-up, with one clear line from clap and exit
//! status 2, instead of starting a server that does not do what was asked.

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

/// Runs hello with `args` (which must be refused) and returns its stderr.
fn refused(args: &[&str]) -> String {
    let out = std::process::Command::new(HELLO)
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening on"),
        "{args:?}"
    );
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
