//! Names and ports no other test uses: tests share one broker and run in
//! parallel, so nothing they create may collide.

use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test uses, in this run or an earlier one on the same broker.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    )
}

/// A loopback port nothing listens on right now, for a process that must be told
/// its port before it starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
