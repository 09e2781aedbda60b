//! Project tasks, run as `cargo xtask TASK`:
//! - `ci`: format check, clippy with `-D warnings`, every test;
//! - `demo`: issue certificates with `sshca` and check them with OpenSSH;
//! - `bench [--list] [--only NAME]... [--runs N]`: the benchmarks, each
//!   group run N times (default 3), figures as median and spread;
//! - `fuzz [--time SECS]`: every cargo-fuzz target (default 60 s each).

use std::env;
use std::process::ExitCode;

mod bench;
mod bench_login;
mod bench_runs;
mod ci;
mod demo;
mod fuzz;
mod slim;
mod util;

fn main() -> ExitCode {
    let task = env::args().nth(1).unwrap_or_default();
    let res = match task.as_str() {
        "ci" => ci::ci(),
        "demo" => demo::demo(),
        "bench" => bench::bench(&env::args().skip(2).collect::<Vec<_>>()),
        "fuzz" => {
            let args: Vec<String> = env::args().skip(2).collect();
            match args.as_slice() {
                [] => fuzz::fuzz(60),
                [flag, v] if flag == "--time" => match v.parse() {
                    Ok(secs) => fuzz::fuzz(secs),
                    Err(_) => Err(format!("--time takes seconds, not `{v}`")),
                },
                _ => Err("usage: cargo xtask fuzz [--time SECS]".into()),
            }
        }
        _ => Err(format!(
            "unknown task `{task}`; tasks: ci (format, clippy, tests, docs), demo (issue and check certificates), bench [--list] [--only NAME]... [--runs N] (benchmarks, median of N runs), fuzz [--time SECS] (every fuzz target)"
        )),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
