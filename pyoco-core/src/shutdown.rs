//! Stopping things: the process's own stop request ([`shutdown_signal`], SIGINT or SIGTERM)
//! and asking child processes to stop ([`terminate_process`], [`signal_group`]).
//!
//! Child processes are signalled with a syscall (`rustix`, a safe API: the workspace forbids
//! `unsafe`) rather than by spawning `kill`, which cost a fork per signal and failed silently
//! where no `kill` binary is on `PATH`.

/// Resolves when the process receives SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                tokio::signal::ctrl_c().await.ok();
            }
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok();
    }
}

/// Which signal to send to a child process or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopSignal {
    /// SIGTERM: lets the process clean up.
    Term,
    /// SIGKILL: cannot be ignored.
    Kill,
}

#[cfg(unix)]
fn to_rustix(signal: StopSignal) -> rustix::process::Signal {
    match signal {
        StopSignal::Term => rustix::process::Signal::TERM,
        StopSignal::Kill => rustix::process::Signal::KILL,
    }
}

/// A process (or group) id as rustix takes it; `None` for 0 or one beyond `i32`.
#[cfg(unix)]
fn to_pid(raw: u32) -> Option<rustix::process::Pid> {
    i32::try_from(raw)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
}

/// Sends SIGTERM to process `pid`. A process that is already gone is not an error worth
/// reporting (the caller reaps or kills it next), so failures are only traced.
pub fn terminate_process(pid: u32) {
    #[cfg(unix)]
    {
        let Some(target) = to_pid(pid) else { return };
        if let Err(e) = rustix::process::kill_process(target, to_rustix(StopSignal::Term)) {
            tracing::debug!(pid, error = %e, "SIGTERM not delivered");
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// Sends `signal` to every process of process group `pgid`.
pub fn signal_group(signal: StopSignal, pgid: u32) {
    #[cfg(unix)]
    {
        let Some(target) = to_pid(pgid) else { return };
        if let Err(e) = rustix::process::kill_process_group(target, to_rustix(signal)) {
            tracing::debug!(pgid, ?signal, error = %e, "group signal not delivered");
        }
    }
    #[cfg(not(unix))]
    let _ = (signal, pgid);
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn terminate_stops_a_child_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep starts");
        terminate_process(child.id());
        let status = child.wait().expect("child is reaped");
        assert!(!status.success(), "{status:?}");
    }

    #[test]
    fn signalling_a_missing_process_is_harmless() {
        terminate_process(u32::MAX);
        signal_group(StopSignal::Kill, 0x7fff_fff0);
    }
}
