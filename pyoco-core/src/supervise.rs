//! Supervision by systemd (`Type=notify`, `WatchdogSec=`): the binaries say `READY=1` once
//! they serve, `STOPPING=1` when a signal starts their shutdown, and `WATCHDOG=1` at half the
//! watchdog interval from a task on their async runtime — so a hung runtime stops the pings
//! and systemd restarts the process, not only a dead one. Messages go to `$NOTIFY_SOCKET`
//! through the `sd-notify` crate; without that variable (not under systemd) nothing is sent.

use std::time::Duration;

/// The watchdog interval systemd asked for: `WATCHDOG_USEC` microseconds, when
/// `WATCHDOG_PID` is unset or names this process (as `sd_watchdog_enabled` reads them).
pub fn watchdog_interval() -> Option<Duration> {
    parse_watchdog(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => {}
        Some(Ok(p)) if p == me => {}
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec))
}

fn send(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// `READY=1` with a one-line status.
pub fn ready(status: &str) {
    send(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// `STOPPING=1`: the shutdown has started.
pub fn stopping() {
    send(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping"),
    ]);
}

/// Pings the watchdog at half its interval until the returned task is aborted or the
/// runtime ends; `None` when systemd asked for no watchdog.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let every = watchdog_interval()? / 2;
    tracing::info!(?every, "pinging the systemd watchdog");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            send(&[sd_notify::NotifyState::Watchdog]);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_ours_when_its_pid_is_unset_or_ours() {
        assert_eq!(
            parse_watchdog(Some("2000000"), None, 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_watchdog(Some("500000"), Some("7"), 7),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_watchdog(Some("500000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
    }
}
