//! `nfsbridge`: the administrator's command line tool.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nfsbridge::config::{OptionKind, OPTIONS};

mod cli;

/// Keeps one Linux file system coherent when it is served over SMB and NFS at once.
///
/// The smbd side is the VFS module (`vfs objects = nfsbridge`, see vfs_nfsbridge(8)); this
/// tool is for administrators.
#[derive(Parser)]
#[command(name = "nfsbridge", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the module's `nfsbridge:` smb.conf options with their values and defaults.
    Options,
    /// Look at, set, convert, check and repair the Windows (NFSv4) ACLs of files.
    Acl(cli::acl::AclArgs),
    /// Run the lease bridge daemon (root; started by nfsbridge-lease-bridge.service).
    LeaseBridge(cli::lease_bridge::LeaseBridgeArgs),
    /// List the leases the lease bridge holds for SMB clients (root only).
    Leases(cli::leases::LeasesArgs),
    // Failover (docs/failover.md); the help text is on each command's arguments.
    UnlockIp(cli::failover::UnlockIpArgs),
    UnlockFs(cli::failover::UnlockFsArgs),
    Grace(cli::failover::GraceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Options => {
            print_options();
            ExitCode::SUCCESS
        }
        Command::Acl(args) => cli::acl::run(args),
        Command::LeaseBridge(args) => cli::lease_bridge::run(args),
        Command::Leases(args) => cli::leases::run(args),
        Command::UnlockIp(args) => cli::failover::unlock_ip(args),
        Command::UnlockFs(args) => cli::failover::unlock_fs(args),
        Command::Grace(args) => cli::failover::grace(args),
    }
}

fn print_options() {
    for spec in OPTIONS {
        let values = match spec.kind {
            OptionKind::Bool => "yes|no".to_string(),
            OptionKind::Keyword(words) => words.join("|"),
            OptionKind::XattrName => "XATTR-NAME".to_string(),
            OptionKind::AbsolutePath => "PATH".to_string(),
            OptionKind::Seconds => "SECONDS".to_string(),
        };
        let default = if spec.default.is_empty() { "see below" } else { spec.default };
        println!("nfsbridge:{} = {}   (default: {})", spec.name, values, default);
        println!("    {}", spec.help);
    }
}
