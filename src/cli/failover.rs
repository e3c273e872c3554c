//! `nfsbridge unlock-ip`, `unlock-fs` and `grace` (issue 9; `docs/failover.md`): moving a
//! service address or an export to another node, the way `/proc/fs/nfsd/unlock_ip`,
//! `unlock_filesystem` and nfsd's grace period do it for NFS. Root only; they talk to the
//! lease bridge, which asks every smbd connected to it.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use nfsbridge::lease::client::BridgeClient;
use nfsbridge::lease::daemon::DEFAULT_SOCKET;
use nfsbridge::lease::failover::{
    ip_of, ReleaseReport, ReleaseScope, DEFAULT_GRACE, DEFAULT_RELEASE_TIMEOUT,
};

/// Failover: release every SMB lease, oplock and byte-range lock held through server address
/// ADDR (root only).
///
/// Every smbd whose client connection came in through ADDR ends that connection the way smbd
/// ends a connection whose client went away: durable handles stay disconnected for the client
/// to reclaim (on this node or the one taking ADDR over), every other open is closed, its
/// byte-range locks released and the kernel leases backing its caching dropped. Clients of
/// other addresses are untouched. Tear ADDR down first, so that no new client arrives.
///
/// Returns when done. Exit status: 0 released; 1 something was not released within the
/// timeout (it is listed) or the bridge could not be asked; 2 usage errors, not root.
#[derive(Args)]
pub struct UnlockIpArgs {
    /// The server address clients connected to (IPv4 or IPv6).
    #[arg(value_name = "ADDR")]
    address: String,
    /// How long to wait for the smbds concerned to let go.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RELEASE_TIMEOUT.as_secs_f64())]
    timeout: f64,
    /// Print the bridge's report as JSON.
    #[arg(long)]
    json: bool,
    /// The bridge's socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

/// Failover: release every SMB lease, oplock and byte-range lock on the file system of PATH
/// (root only).
///
/// Every smbd with a share on that file system, or an open file on it, ends its client
/// connection (durable handles stay disconnected for reclaim); smbds serving only other file
/// systems are untouched. A client connected to shares on this and on other file systems
/// reconnects to all of them, transparently with durable handles: see docs/failover.md.
///
/// Returns when done. Exit status: 0 released; 1 something was not released within the
/// timeout (it is listed) or the bridge could not be asked; 2 usage errors, not root.
#[derive(Args)]
pub struct UnlockFsArgs {
    /// Any path on the file system (normally its mount point).
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// How long to wait for the smbds concerned to let go.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RELEASE_TIMEOUT.as_secs_f64())]
    timeout: f64,
    /// Print the bridge's report as JSON.
    #[arg(long)]
    json: bool,
    /// The bridge's socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

/// Failover: for N seconds, only reclaims for clients of ADDR on the shares under PATH (root
/// only).
///
/// For N seconds, clients that reach this server through ADDR and open files in shares at or
/// below PATH get their durable handles back (reconnects are served as usual), while a new
/// open of a file that still has a disconnected durable handle waits (SMB2 STATUS_PENDING,
/// then served when the grace period ends). Other files, addresses and shares are
/// unaffected. `--seconds 0` ends a grace period early. Run it on the node taking over, once
/// ADDR is up there. The lease bridge keeps it (a bridge restart ends it) and tells every smbd.
#[derive(Args)]
pub struct GraceArgs {
    /// The server address clients reclaim through.
    #[arg(value_name = "ADDR")]
    address: String,
    /// The export: shares whose path is this directory or below it.
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Length of the grace period (nfsd's default is 90).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_GRACE.as_secs())]
    seconds: u64,
    /// The bridge's socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

fn require_root(command: &str) -> Result<(), ExitCode> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    eprintln!("nfsbridge {command}: only root may release or reclaim other users' leases and locks; run it with sudo");
    Err(ExitCode::from(2))
}

fn timeout_of(command: &str, seconds: f64) -> Result<Duration, ExitCode> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        eprintln!("nfsbridge {command}: --timeout must be a number of seconds, not {seconds}");
        ExitCode::from(2)
    })
}

fn connect(command: &str, socket: &Path) -> Result<BridgeClient, ExitCode> {
    BridgeClient::connect(socket).map_err(|error| {
        eprintln!(
            "nfsbridge {command}: cannot reach the lease bridge at {}: {error} (is \
             nfsbridge-lease-bridge.service running?)",
            socket.display()
        );
        ExitCode::FAILURE
    })
}

pub fn unlock_ip(args: UnlockIpArgs) -> ExitCode {
    let command = "unlock-ip";
    if let Err(code) = require_root(command) {
        return code;
    }
    let Some(ip) = ip_of(&args.address) else {
        eprintln!(
            "nfsbridge {command}: {:?} is not an IP address",
            args.address
        );
        return ExitCode::from(2);
    };
    let timeout = match timeout_of(command, args.timeout) {
        Ok(timeout) => timeout,
        Err(code) => return code,
    };
    release(
        command,
        &args.socket,
        ReleaseScope::ServerAddress(ip.to_string()),
        timeout,
        args.json,
    )
}

pub fn unlock_fs(args: UnlockFsArgs) -> ExitCode {
    let command = "unlock-fs";
    if let Err(code) = require_root(command) {
        return code;
    }
    let timeout = match timeout_of(command, args.timeout) {
        Ok(timeout) => timeout,
        Err(code) => return code,
    };
    let (path, metadata) = match std::fs::canonicalize(&args.path)
        .and_then(|path| std::fs::metadata(&path).map(|metadata| (path, metadata)))
    {
        Ok(found) => found,
        Err(error) => {
            eprintln!("nfsbridge {command}: {}: {error}", args.path.display());
            return ExitCode::from(2);
        }
    };
    let scope = ReleaseScope::FileSystem {
        dev: metadata.dev(),
        path: path.to_string_lossy().into_owned(),
    };
    release(command, &args.socket, scope, timeout, args.json)
}

fn release(
    command: &str,
    socket: &Path,
    scope: ReleaseScope,
    timeout: Duration,
    json: bool,
) -> ExitCode {
    let mut client = match connect(command, socket) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let report = match client.release(scope, timeout) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("nfsbridge {command}: the lease bridge did not release: {error}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("nfsbridge {command}: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", summary(&report));
    }
    if report.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The report for a terminal: one line, then what is left (if anything).
fn summary(report: &ReleaseReport) -> String {
    let mut out = String::new();
    let seconds = report.elapsed_ms as f64 / 1000.0;
    if report.complete {
        out += &format!(
            "{}: released in {seconds:.1}s; {} of {} smbd(s) ended their client connection\n",
            report.scope,
            report.released.len(),
            report.asked
        );
        return out;
    }
    out += &format!("{}: NOT fully released after {seconds:.1}s\n", report.scope);
    for smbd in &report.remaining {
        out += &format!("  smbd {}: {}\n", smbd.smbd_pid, smbd.state);
    }
    for holder in &report.holders {
        out += &format!(
            "  {} {} smbd {} client {} server {}\n",
            holder.path,
            if holder.caching.is_empty() {
                "-"
            } else {
                &holder.caching
            },
            holder.smbd_pid,
            holder.client_address,
            holder.server_address
        );
    }
    out
}

pub fn grace(args: GraceArgs) -> ExitCode {
    let command = "grace";
    if let Err(code) = require_root(command) {
        return code;
    }
    let Some(ip) = ip_of(&args.address) else {
        eprintln!(
            "nfsbridge {command}: {:?} is not an IP address",
            args.address
        );
        return ExitCode::from(2);
    };
    // Shares are matched by their smb.conf `path` as smbd spells it, so an absolute PATH is
    // taken as written (symlinks are not resolved: smb.conf may name one); a relative one is
    // made absolute.
    let path = if args.path.is_absolute() {
        args.path.clone()
    } else {
        std::path::absolute(&args.path).unwrap_or_else(|_| args.path.clone())
    };
    if !path.is_absolute() {
        eprintln!(
            "nfsbridge {command}: {} is not an absolute path",
            path.display()
        );
        return ExitCode::from(2);
    }
    let mut client = match connect(command, &args.socket) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let path_text = path.to_string_lossy();
    match client.set_grace(
        &ip.to_string(),
        &path_text,
        Duration::from_secs(args.seconds),
    ) {
        Ok(()) if args.seconds == 0 => {
            println!("grace period for {ip} on {path_text} ended");
            ExitCode::SUCCESS
        }
        Ok(()) => {
            println!("grace period for {ip} on {path_text}: {} s, only reclaims of disconnected durable handles", args.seconds);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("nfsbridge {command}: the lease bridge refused: {error}");
            ExitCode::FAILURE
        }
    }
}
