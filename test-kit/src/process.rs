//! Other processes, seen and signalled from outside: a child gateway's memory and
//! CPU are its own, which is why tests and benchmarks run it apart.

use std::time::Duration;

/// Sends `signal` (e.g. "TERM", "STOP") to the process `pid`, through kill(1) so
/// that the tests need no unsafe code.
pub fn send_signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "signal {signal} to {pid}");
}

/// A size in KiB from `/proc/<pid>/status`, e.g. `field` "VmRSS:" or "VmHWM:";
/// `None` once the process has gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident memory of a process, in bytes.
pub fn rss(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:").expect("VmRSS") * 1024
}

/// CPU time (user + system) that process `pid` (or "self") used so far.
pub fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / 100.0)
}
