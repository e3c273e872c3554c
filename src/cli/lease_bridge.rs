//! `nfsbridge lease-bridge`: runs the lease bridge daemon (`nfsbridge::lease::daemon`).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use nfsbridge::lease::daemon::{self, DaemonConfig, DEFAULT_SOCKET};

use super::stderr_log;

/// The lease bridge daemon: holds one open file description per inode for every smbd of the
/// nfsbridge shares and backs SMB caching with kernel leases. Run it as root under systemd
/// (samba-module/nfsbridge-lease-bridge.service), before smbd. Logs to stderr.
#[derive(Args)]
pub struct LeaseBridgeArgs {
    /// The socket smbd connects to (its directory is created; the socket is mode 0600).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// A share root (smb.conf `path` of an nfsbridge share), exactly as smb.conf spells it;
    /// repeat for every share. Requests for files elsewhere are refused.
    #[arg(long = "share", value_name = "ROOT")]
    shares: Vec<String>,
    /// A uid allowed to connect besides root (smbd connects as root); repeatable.
    #[arg(long = "allow-uid", value_name = "UID")]
    allow_uids: Vec<u32>,
    /// Seconds to wait for smbd to answer a kernel lease break before forcing its clients down
    /// (fractions allowed). Keep it above smbd's 35 s break timeout and below the kernel's
    /// lease-break-time (45 s).
    #[arg(long, value_name = "SECS", default_value = "40", value_parser = parse_seconds)]
    break_timeout: Duration,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("{text:?}: the timeout must be positive"))
}

pub fn run(args: LeaseBridgeArgs) -> ExitCode {
    stderr_log::install();
    let mut allowed_uids = vec![0];
    allowed_uids.extend(args.allow_uids.iter().filter(|uid| **uid != 0));
    let config = DaemonConfig {
        socket_path: args.socket,
        share_roots: args.shares,
        allowed_uids,
        break_timeout: args.break_timeout,
    };
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            daemon::log_fatal(&error);
            ExitCode::FAILURE
        }
    }
}
