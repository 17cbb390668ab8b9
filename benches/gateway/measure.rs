//! What a scenario cost: CPU time of this process (the load generator), the
//! machine's busy share, and the gateway's memory.

use kafka_gateway_test_kit::{cpu_time, status_kib, GatewayProcess};
use std::time::Duration;

/// Resident memory of the gateway now, in KiB.
pub fn rss_kib(gateway: &GatewayProcess) -> u64 {
    status_kib(gateway.child.id(), "VmRSS:").unwrap_or(0)
}

/// The gateway's peak resident memory so far, in KiB.
pub fn peak_rss_kib(gateway: &GatewayProcess) -> u64 {
    status_kib(gateway.child.id(), "VmHWM:").unwrap_or(0)
}

/// CPU time (user + system) of this process, the load generator.
pub fn own_cpu() -> Duration {
    cpu_time("self")
}

/// Busy and total jiffies of the whole machine.
pub fn machine() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let jiffies: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let total: u64 = jiffies.iter().sum();
    // idle and iowait
    (total - jiffies[3] - jiffies[4], total)
}

/// Percent of the machine's CPU busy since `then`.
pub fn busy_since(then: (u64, u64)) -> f64 {
    let now = machine();
    (now.0 - then.0) as f64 * 100.0 / (now.1 - then.1).max(1) as f64
}
