//! `sweep-guard`: the guard alone (`sweep_scheduler::guard`), the first process of every local
//! attempt. A small program of its own because it starts once per trial: the whole `sweep`
//! binary (hundreds of megabytes, a full command line to parse) cost every trivial trial about
//! two milliseconds more. `sweep` uses it when it sits beside it, and its own `guard`
//! subcommand otherwise.

fn main() {
    std::process::exit(sweep_scheduler::guard::main(std::env::args().skip(1)));
}
