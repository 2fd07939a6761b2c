//! The binary as a good citizen of a terminal: under a pseudo-terminal it colours its log
//! lines, and with `NO_COLOR` set (no-color.org) it writes no colour codes at all.

use std::io::Read;
use std::process::Stdio;

use crate::support::Project;

/// What `sweep ARGS` writes to a pseudo-terminal (stdout and stderr both), with `no_color`
/// as NO_COLOR's value, or NO_COLOR unset.
fn under_a_terminal(p: &Project, args: &[&str], no_color: Option<&str>) -> String {
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    let mut cmd = p.sweep(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    cmd.env_remove("NO_COLOR");
    if let Some(value) = no_color {
        cmd.env("NO_COLOR", value);
    }
    let mut child = cmd.spawn().expect("run sweep");
    // The command holds the terminal's other end until it is dropped; then reading stops
    // (EIO) once the child has exited.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    child.wait().unwrap();
    String::from_utf8_lossy(&seen).into_owned()
}

/// Whether `text` holds an SGR (colour) escape sequence, `ESC [ … m`.
fn has_colour(text: &str) -> bool {
    text.match_indices("\u{1b}[").any(|(i, _)| {
        text[i + 2..]
            .chars()
            .find(|c| !(c.is_ascii_digit() || *c == ';'))
            == Some('m')
    })
}

#[test]
fn no_color_means_no_colour_codes_under_a_terminal() {
    let p = Project::new();
    p.write(
        "t.sh",
        "#!/bin/sh\necho '{\"event\":\"result\",\"metrics\":{\"m\":1}}'\n",
    );
    p.write(
        "g.toml",
        "[sweep]\nname = \"c\"\ncommand = [\"sh\", \"t.sh\"]\n[grid]\nx = [1, 2]\n",
    );
    // Coloured without it (so the check below can fail), and not with it, in every
    // command that logs.
    let coloured = under_a_terminal(&p, &["run", "g.toml"], None);
    assert!(has_colour(&coloured), "{coloured:?}");
    for args in [
        &["run", "g.toml"][..],
        &["status", "c"],
        &["report", "c", "--objective", "m:max"],
        &["run", "missing.toml"],
    ] {
        let plain = under_a_terminal(&p, args, Some("1"));
        assert!(!plain.is_empty(), "{args:?} wrote nothing");
        assert!(!has_colour(&plain), "{args:?}: {plain:?}");
    }
}
