//! Benchmarks live in `benches/`; run them with `cargo xtask bench`. This
//! library holds what several of them share.

use std::time::Duration;

/// CPU time (user + system) a process has used so far; `pid` is a process
/// id or `self`. Zero when /proc cannot be read.
pub fn cpu_time_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 (utime, stime) are 11 and 12 after the command name; 100 ticks/s.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// CPU time of a process and its direct children (PostgreSQL's postmaster
/// and its backends).
pub fn cpu_time_of_tree(pid: &str) -> Duration {
    let mut total = cpu_time_of(pid);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
            // Field 4 (ppid) is the second after the command name.
            if after.split_whitespace().nth(1) == Some(pid) {
                total += cpu_time_of(&name);
            }
        }
    }
    total
}
