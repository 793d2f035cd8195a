//! A program that leaves its process group, for the shell tests: `detach wait|exit MARKER`
//! starts a copy of itself that calls `setsid` and sleeps with MARKER in its command line,
//! then sleeps too (`wait`) or exits at once (`exit`). Written in Rust so it needs to run
//! nothing but itself (the shell lets a program run only itself).

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(me), Some(mode), Some(marker)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: detach wait|exit|detached MARKER");
        std::process::exit(2);
    };
    if mode == "detached" {
        let _ = nix::unistd::setsid();
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let spawned = std::process::Command::new(me)
        .args(["detached", marker])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("cannot start the detached copy: {e}");
        std::process::exit(1);
    }
    if mode == "wait" {
        std::thread::sleep(Duration::from_secs(30));
    }
}
