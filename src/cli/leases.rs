//! `nfsbridge leases`: what the lease bridge holds, per file (issue 9): the kernel lease, every
//! SMB holder (smbd pid, file id, client and server address, lease key or oplock, caching) and
//! the break in progress. Think `smbstatus -L` and `/proc/locks`. Root only.
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use nfsbridge::lease::client::BridgeClient;
use nfsbridge::lease::daemon::DEFAULT_SOCKET;
use nfsbridge::lease::listing::{InodeRow, LeaseListing};

/// List the leases the lease bridge holds for SMB clients (root only).
#[derive(Args)]
pub struct LeasesArgs {
    /// Print the table as JSON (the bridge's listing, filtered).
    #[arg(long)]
    json: bool,
    /// Only holders whose client connected from, or to, this address.
    #[arg(long, value_name = "ADDR")]
    ip: Option<String>,
    /// Only files at or below this path.
    #[arg(long, value_name = "PREFIX")]
    path: Option<String>,
    /// The bridge's socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

pub fn run(args: LeasesArgs) -> ExitCode {
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "nfsbridge leases: only root may list leases (the table names every client and \
             file); run it with sudo"
        );
        return ExitCode::from(2);
    }
    let listing = BridgeClient::connect(&args.socket).and_then(|mut client| client.list_leases());
    let mut listing = match listing {
        Ok(listing) => listing,
        Err(error) => {
            eprintln!(
                "nfsbridge leases: cannot read the lease table from the bridge at {}: {error} \
                 (is nfsbridge-lease-bridge.service running?)",
                args.socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    filter(&mut listing, args.ip.as_deref(), args.path.as_deref());
    if args.json {
        match serde_json::to_string_pretty(&listing) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("nfsbridge leases: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", table(&listing));
    }
    ExitCode::SUCCESS
}

/// The IP of a Samba address string (`ipv4:10.0.0.1:445`, `ipv6:fd00::1:445`: the port is
/// always last, IPv6 without brackets) or of a plain address.
fn ip_of(address: &str) -> Option<IpAddr> {
    match address
        .strip_prefix("ipv4:")
        .or_else(|| address.strip_prefix("ipv6:"))
    {
        Some(rest) => {
            let (host, _port) = rest.rsplit_once(':')?;
            host.parse().ok()
        }
        None => address.parse().ok(),
    }
}

fn is_at_or_below(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn filter(listing: &mut LeaseListing, ip: Option<&str>, path: Option<&str>) {
    if let Some(prefix) = path {
        listing
            .inodes
            .retain(|row| is_at_or_below(&row.path, prefix));
    }
    if let Some(ip) = ip {
        let wanted = ip_of(ip);
        let matches = |address: &str| match (wanted, ip_of(address)) {
            (Some(wanted), Some(found)) => wanted == found,
            _ => address == ip,
        };
        for row in &mut listing.inodes {
            row.holders.retain(|holder| {
                matches(&holder.client_address) || matches(&holder.server_address)
            });
        }
        listing.inodes.retain(|row| !row.holders.is_empty());
    }
}

/// `YYYY-MM-DD HH:MM:SS` UTC for milliseconds since the epoch.
fn utc(unix_ms: u64) -> String {
    let seconds = (UNIX_EPOCH + Duration::from_millis(unix_ms))
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

fn break_cell(row: &InodeRow) -> String {
    match &row.pending_break {
        None => "-".to_string(),
        Some(pending) => format!(
            "to {} since {} UTC ({:.1} s, {} waiting)",
            pending.kernel_target.as_deref().unwrap_or("none"),
            utc(pending.started_unix_ms),
            pending.age_ms as f64 / 1000.0,
            pending.waiting.len()
        ),
    }
}

/// One line per holder (or per file without holders), columns aligned.
fn table(listing: &LeaseListing) -> String {
    let header = [
        "PATH",
        "KERNEL",
        "PID",
        "FILE-ID",
        "CLIENT",
        "SERVER",
        "LEASE-KEY",
        "CACHING",
        "BREAK",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in &listing.inodes {
        let mut kernel = row.kernel_lease.clone().unwrap_or_else(|| "-".to_string());
        if let Some(pid) = row.break_signal_pid {
            // The kernel signals that smbd's break directly (direct breaks).
            kernel.push_str(&format!("@{pid}"));
        }
        if row.holders.is_empty() {
            lines.push(vec![
                row.path.clone(),
                kernel.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("({} opens)", row.opens.len()),
                break_cell(row),
            ]);
        }
        for holder in &row.holders {
            lines.push(vec![
                row.path.clone(),
                kernel.clone(),
                holder.smbd_pid.to_string(),
                holder.file_id.to_string(),
                or_dash(&holder.client_address),
                or_dash(&holder.server_address),
                holder
                    .lease_key
                    .clone()
                    .unwrap_or_else(|| "oplock".to_string()),
                or_dash(&holder.caching),
                break_cell(row),
            ]);
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            lines
                .iter()
                .map(|line| line[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if listing.inodes.is_empty() {
        out.push_str("(no leases or opens)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samba_addresses_give_their_ip() {
        assert_eq!(ip_of("ipv4:127.0.0.2:50000"), "127.0.0.2".parse().ok());
        assert_eq!(ip_of("ipv6:fd00::1:445"), "fd00::1".parse().ok());
        assert_eq!(ip_of("10.1.2.3"), "10.1.2.3".parse().ok());
        assert_eq!(ip_of("not an address"), None);
    }

    #[test]
    fn path_prefixes_stop_at_components() {
        assert!(is_at_or_below("/srv/share/a", "/srv/share"));
        assert!(is_at_or_below("/srv/share", "/srv/share/"));
        assert!(!is_at_or_below("/srv/shared/a", "/srv/share"));
    }

    #[test]
    fn the_kernel_column_names_the_smbd_a_break_signal_goes_to() {
        let row = |break_signal_pid| InodeRow {
            dev: 1,
            ino: 2,
            share_path: "/srv".into(),
            path: "/srv/a".into(),
            description_writable: true,
            kernel_lease: Some("write".into()),
            break_signal_pid,
            opens: Vec::new(),
            holders: Vec::new(),
            pending_break: None,
        };
        let listing = LeaseListing {
            version: 1,
            bridge_pid: 9,
            inodes: vec![row(Some(4242)), row(None)],
        };
        let text = table(&listing);
        let kernel: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(kernel, ["write@4242", "write"], "{text}");
        // A listing from a bridge without the field reads as "the bridge".
        let old: InodeRow = serde_json::from_str(
            r#"{"dev":1,"ino":2,"share_path":"/srv","path":"/srv/a","description_writable":true,
                "kernel_lease":"write","opens":[],"holders":[],"pending_break":null}"#,
        )
        .unwrap();
        assert_eq!(old.break_signal_pid, None);
    }

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03");
        assert_eq!(utc(1_764_084_000_000), "2025-11-25 15:20:00");
    }
}
