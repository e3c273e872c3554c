//! `nfsbridge acl`: look at, set, convert, check and repair ACLs on files.
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use nfsbridge::acl::bridge::{AccessChange, Bridge, CheckReport, Origin, Ownership, WritePlan};
use nfsbridge::acl::idmap::Chain;
use nfsbridge::acl::mapping::FileContext;
use nfsbridge::acl::nfs4::Nfs4Encoding;
use nfsbridge::acl::store::{AclStore, FileHandle, StoreConfig, TreeWalk, WriteScope};

use super::formats::{self, AclValue, Binary, Format};
use super::winbind;

const AFTER_HELP: &str = "\
The Windows ACL of a file is stored as an NFSv4 ACL in an xattr (default: Samba's
vfs_nfs4acl_xattr layout, ndr in security.nfs4acl_ndr) and mirrored into the POSIX ACL and
mode that the kernel and nfsd enforce, never granting more than the NFSv4 ACL.

When the POSIX side was changed outside SMB, the file's ACL is rebuilt from it: after a
chmod, the stored ACL narrowed to the mode (named entries kept); after a setfacl, what the
POSIX ACL means. `check` lists such files, `repair` makes both sides agree again.

Exit status: 0 success; 1 `check` found files that disagree; 2 errors (every error names
the file and why; per-file errors do not stop -R).";

/// Look at, set, convert, check and repair the Windows (NFSv4) ACLs of files.
#[derive(Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct AclArgs {
    #[command(subcommand)]
    command: AclCommand,
    #[command(flatten)]
    options: CommonOptions,
}

#[derive(Args)]
struct CommonOptions {
    /// Layout of the stored NFSv4 ACL: ndr (Samba's default), xdr (Samba/TrueNAS nfsacl41i),
    /// nfs (NFSv4.1 nfsacl41) or nfs40 (NFSv4.0 nfsace4 array).
    #[arg(long, global = true, value_enum, default_value_t = EncodingArg::Ndr)]
    encoding: EncodingArg,
    /// Xattr holding the NFSv4 ACL. Default by encoding: ndr security.nfs4acl_ndr, xdr
    /// security.nfs4acl_xdr, nfs and nfs40 system.nfs4_acl.
    #[arg(long, global = true, value_name = "NAME")]
    xattr: Option<String>,
    /// SID ↔ uid/gid mapping file (`<SID> uid|gid|both <id>` per line), asked first.
    #[arg(long, global = true, value_name = "FILE")]
    idmap: Option<PathBuf>,
    /// Do not ask winbind even when `wbinfo -p` succeeds.
    #[arg(long, global = true)]
    no_winbind: bool,
    /// How binary formats (sd, xdr, ndr, nfs40, nfs41) are written and read.
    #[arg(long, global = true, value_enum, default_value_t = Binary::Hex)]
    binary: Binary,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EncodingArg {
    Ndr,
    Xdr,
    Nfs,
    Nfs40,
}

impl EncodingArg {
    fn encoding(self) -> Nfs4Encoding {
        match self {
            EncodingArg::Ndr => Nfs4Encoding::Ndr,
            EncodingArg::Xdr => Nfs4Encoding::Xdr,
            EncodingArg::Nfs => Nfs4Encoding::Nfs41,
            EncodingArg::Nfs40 => Nfs4Encoding::Nfs40,
        }
    }
}

#[derive(Subcommand)]
enum AclCommand {
    /// Print a file's ACL: the stored NFSv4 ACL, or, without one, what its POSIX ACL and mode
    /// mean. If the POSIX side changed outside SMB, the ACL rebuilt from it (see `check`).
    Get {
        /// File or directory (a symbolic link is refused, not followed).
        path: PathBuf,
        /// Output format; sddl, smbcacls and json show the NT security descriptor the NFSv4
        /// ACL maps to (owner and group from the file).
        #[arg(long, short, value_enum, default_value_t = Format::Nfs4)]
        format: Format,
    },
    /// Set a file's ACL: write the NFSv4 xattr and its POSIX mirror (ACL and mode), and
    /// report what POSIX had to narrow. An NT descriptor's owner and group are applied too.
    Set {
        /// File or directory (a symbolic link is refused, not followed).
        path: PathBuf,
        /// The ACL in any format, or `-` to read it from stdin.
        spec: String,
        /// Format of SPEC; guessed from the text when absent (binary formats must be given).
        #[arg(long, short, value_enum)]
        format: Option<Format>,
    },
    /// Convert an ACL from stdin to stdout. NT ↔ NFSv4 conversions need the file's owner
    /// and group (--uid, --gid) and, for directories, --dir. Refuses output that would read
    /// back differently (e.g. a SACL in smbcacls text) unless --lossy.
    Convert {
        #[arg(long, value_enum)]
        from: Format,
        #[arg(long, value_enum)]
        to: Format,
        /// Owner uid of the file the ACL is for (NT ↔ NFSv4 only).
        #[arg(long)]
        uid: Option<u32>,
        /// Owning gid of the file the ACL is for (NT ↔ NFSv4 only).
        #[arg(long)]
        gid: Option<u32>,
        /// The ACL is for a directory.
        #[arg(long)]
        dir: bool,
        /// Write the output even if it does not read back as the same ACL.
        #[arg(long)]
        lossy: bool,
    },
    /// List files whose stored NFSv4 ACL and POSIX ACL/mode disagree, and why. Exit 1 when
    /// any do, 0 when none, 2 on errors.
    Check {
        /// Walk directories recursively (symbolic links are never followed).
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Files or directories to check.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Make the POSIX ACL and mode the mirror of the stored NFSv4 ACL again (undoing chmod
    /// and setfacl done outside SMB), or with --from-posix keep those changes: store the
    /// ACL rebuilt from the POSIX side (see `get`) and mirror it.
    Repair {
        /// Walk directories recursively (symbolic links are never followed).
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Rebuild the stored NFSv4 ACL from the POSIX side instead.
        #[arg(long)]
        from_posix: bool,
        /// Files or directories to repair.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// Exit status 2: something failed.
const EXIT_ERROR: u8 = 2;
const EXIT_DIFFERS: u8 = 1;

struct Context {
    bridge: Bridge,
    store: AclStore,
    idmap: Chain,
}

pub fn run(args: AclArgs) -> ExitCode {
    let options = &args.options;
    let encoding = options.encoding.encoding();
    let (idmap, _with_winbind) = match winbind::identity_map(options.idmap.as_deref(), !options.no_winbind) {
        Ok(map) => map,
        Err(error) => return fail(&error),
    };
    let context = Context {
        bridge: Bridge::new(encoding),
        store: AclStore::new(StoreConfig::new(encoding, options.xattr.as_deref())),
        idmap,
    };
    match args.command {
        AclCommand::Get { path, format } => report(get(&context, &path, format, options.binary)),
        AclCommand::Set { path, spec, format } => report(set(&context, &path, &spec, format, options.binary)),
        AclCommand::Convert {
            from,
            to,
            uid,
            gid,
            dir,
            lossy,
        } => report(convert(&context, from, to, uid.zip(gid), dir, lossy, options.binary)),
        AclCommand::Check { recursive, paths } => {
            for_each_file(&paths, recursive, Walk::Check, |file, out| check(&context, file, out))
        }
        AclCommand::Repair {
            recursive,
            from_posix,
            paths,
        } => for_each_file(&paths, recursive, Walk::Repair, |file, out| {
            repair(&context, file, from_posix, out)
        }),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("nfsbridge: {message}");
    ExitCode::from(EXIT_ERROR)
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing to stdout: {e}"))
}

fn file_context(meta: &nfsbridge::acl::bridge::FileMeta) -> FileContext {
    FileContext {
        uid: meta.uid,
        gid: meta.gid,
        is_directory: meta.is_dir,
    }
}

fn get(context: &Context, path: &Path, format: Format, binary: Binary) -> Result<(), String> {
    let file = FileHandle::open(path).map_err(|e| e.to_string())?;
    let state = context.store.read(&file).map_err(|e| e.to_string())?;
    let effective = context
        .bridge
        .effective_nfs4(&state)
        .map_err(|e| in_xattr(context, path, e))?;
    match effective.origin {
        Origin::Stored => {}
        Origin::PosixOnly => eprintln!(
            "nfsbridge: note: {}: no stored NFSv4 ACL in {}; showing what the POSIX ACL and mode mean",
            path.display(),
            context.store.config.xattr_name
        ),
        Origin::Rebuilt {
            access,
            default_changed,
        } => eprintln!(
            "nfsbridge: note: {}: {}; showing the ACL rebuilt from the POSIX side (`nfsbridge acl check` for details)",
            path.display(),
            describe_change(access, default_changed)
        ),
    }
    let value = if format.is_nt() {
        let sd = formats::nfs4_to_nt(&effective.acl, &file_context(&state.meta), &context.idmap).map_err(|e| {
            format!(
                "{}: mapping the NFSv4 ACL to a security descriptor: {e}",
                path.display()
            )
        })?;
        if format == Format::Smbcacls && sd.sacl.is_some() {
            eprintln!(
                "nfsbridge: note: {}: smbcacls text shows no SACL (audit ACEs); use sddl or json",
                path.display()
            );
        }
        AclValue::Nt(sd)
    } else {
        AclValue::Nfs4(effective.acl)
    };
    let bytes = formats::render(format, &value, binary).map_err(|e| format!("{}: as {format}: {e}", path.display()))?;
    write_stdout(&bytes)
}

fn in_xattr(context: &Context, path: &Path, error: impl std::fmt::Display) -> String {
    format!(
        "{}: {} ({}): {error}",
        path.display(),
        context.store.config.xattr_name,
        context.bridge.encoding_name()
    )
}

fn describe_change(access: AccessChange, default_changed: bool) -> String {
    match (access, default_changed) {
        (AccessChange::Unchanged, _) => "default ACL changed outside SMB (setfacl -d)".into(),
        (access, false) => access.to_string(),
        (access, true) => format!("{access}, and the default ACL too"),
    }
}

fn read_spec(spec: &str) -> Result<Vec<u8>, String> {
    if spec == "-" {
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .map_err(|e| format!("reading the ACL from stdin: {e}"))?;
        Ok(input)
    } else {
        Ok(spec.as_bytes().to_vec())
    }
}

fn set(context: &Context, path: &Path, spec: &str, format: Option<Format>, binary: Binary) -> Result<(), String> {
    let input = read_spec(spec)?;
    let format = match format {
        Some(format) => format,
        None => formats::detect(&input),
    };
    let value = formats::parse(format, &input, binary)
        .map_err(|e| format!("{}: the ACL to set ({format}): {e}", path.display()))?;
    let file = FileHandle::open(path).map_err(|e| e.to_string())?;
    // Reading first proves the xattr name works on this file system before anything is
    // written; the old value itself is not needed.
    let state = context.store.read(&file).map_err(|e| e.to_string())?;
    let (acl, ownership) = match value {
        AclValue::Nfs4(acl) => (acl, Ownership::default()),
        AclValue::Nt(sd) => {
            let mapped = formats::nt_to_nfs4(&sd, &file_context(&state.meta), &context.idmap)
                .map_err(|e| format!("{}: mapping the security descriptor to NFSv4: {e}", path.display()))?;
            (
                mapped.acl,
                Ownership {
                    uid: mapped.uid,
                    gid: mapped.gid,
                },
            )
        }
    };
    let plan = context
        .bridge
        .plan_write(&state.meta, &acl, ownership)
        .map_err(|e| in_xattr(context, path, e))?;
    context
        .store
        .write(&file, &plan, WriteScope::Everything)
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    describe_plan(context, path, &plan, "wrote", &mut out);
    write_stdout(out.as_bytes())
}

fn describe_plan(context: &Context, path: &Path, plan: &WritePlan, verb: &str, out: &mut String) {
    let access = nfsbridge::acl::bridge::posix_acl_to_short_text(&plan.access);
    out.push_str(&format!(
        "{}: {verb} NFSv4 ACL ({} ACEs) to {}; POSIX mode {:04o}, access ACL {access}",
        path.display(),
        plan.acl.aces.len(),
        context.store.config.xattr_name,
        plan.mode
    ));
    if let Some(default) = &plan.default {
        out.push_str(&format!(
            ", default ACL {}",
            nfsbridge::acl::bridge::posix_acl_to_short_text(default)
        ));
    }
    if let Some((uid, gid)) = plan.chown {
        out.push_str(&format!(", owner {uid}:{gid}"));
    }
    out.push('\n');
    for narrowed in &plan.narrowed {
        out.push_str(&format!(
            "  narrowed: {}{} ({}) grants {}, the NFSv4 ACL gives up to {}: {}\n",
            if narrowed.kind == nfsbridge::acl::posix::AclKind::Default {
                "default:"
            } else {
                ""
            },
            narrowed.tag,
            narrowed.kind.xattr_name(),
            narrowed.posix,
            narrowed.nfs4_best,
            narrowed.reason
        ));
    }
    for note in &plan.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
}

fn convert(
    context: &Context,
    from: Format,
    to: Format,
    owner: Option<(u32, u32)>,
    is_dir: bool,
    lossy: bool,
    binary: Binary,
) -> Result<(), String> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| format!("reading stdin: {e}"))?;
    let value = formats::parse(from, &input, binary).map_err(|e| format!("stdin ({from}): {e}"))?;
    let needs_owner = || {
        owner.map(|(uid, gid)| FileContext { uid, gid, is_directory: is_dir }).ok_or_else(|| {
            format!("converting {from} to {to} maps between NT and NFSv4 and needs the file's owner and group: --uid and --gid (and --dir for a directory)")
        })
    };
    let converted = match (value, to.is_nt()) {
        (AclValue::Nt(sd), true) => AclValue::Nt(sd),
        (AclValue::Nfs4(acl), false) => AclValue::Nfs4(acl),
        (AclValue::Nt(sd), false) => {
            let file = needs_owner()?;
            let mapped = formats::nt_to_nfs4(&sd, &file, &context.idmap)?;
            if mapped.uid.is_some_and(|uid| uid != file.uid) || mapped.gid.is_some_and(|gid| gid != file.gid) {
                eprintln!(
                    "nfsbridge: note: the descriptor's owner/group ({}:{}) differ from --uid/--gid; OWNER@/GROUP@ refer to the descriptor's",
                    mapped.uid.map_or("-".into(), |u| u.to_string()),
                    mapped.gid.map_or("-".into(), |g| g.to_string())
                );
            }
            AclValue::Nfs4(mapped.acl)
        }
        (AclValue::Nfs4(acl), true) => AclValue::Nt(formats::nfs4_to_nt(&acl, &needs_owner()?, &context.idmap)?),
    };
    let bytes = formats::render(to, &converted, binary).map_err(|e| format!("as {to}: {e}"))?;
    if !lossy {
        let read_back =
            formats::parse(to, &bytes, binary).map_err(|e| format!("{to} output does not read back: {e}"))?;
        if read_back != converted {
            return Err(format!(
                "{to} cannot carry this ACL exactly (it reads back differently); use a format that can (json, sd, nfs4-json, nfs41) or --lossy"
            ));
        }
    }
    write_stdout(&bytes)
}

/// Which command walks, for its summary line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    Check,
    Repair,
}

/// What one file contributed to the exit status.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileOutcome {
    Fine,
    Differs,
    Changed,
}

/// Runs `visit` on every path (and, with `recursive`, every file below), streaming; per-file
/// errors are printed and set exit status 2, disagreements exit status 1.
fn for_each_file(
    paths: &[PathBuf],
    recursive: bool,
    walk_kind: Walk,
    mut visit: impl FnMut(&FileHandle, &mut String) -> Result<FileOutcome, String>,
) -> ExitCode {
    let bar = progress_bar(recursive);
    let (mut files, mut differing, mut changed, mut errors, mut links) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut out = String::new();
    let mut handle_item = |item: Result<FileHandle, String>, bar: &ProgressBar| {
        files += 1;
        bar.inc(1);
        out.clear();
        let result = item.and_then(|file| visit(&file, &mut out));
        let error = match result {
            Ok(FileOutcome::Fine) => None,
            Ok(FileOutcome::Differs) => {
                differing += 1;
                None
            }
            Ok(FileOutcome::Changed) => {
                changed += 1;
                None
            }
            Err(message) => {
                errors += 1;
                Some(message)
            }
        };
        // Hiding and redrawing the bar costs a terminal write: only around real output.
        if !out.is_empty() || error.is_some() {
            bar.suspend(|| {
                print!("{out}");
                if let Some(message) = &error {
                    eprintln!("nfsbridge: {message}");
                }
            });
        }
    };
    for path in paths {
        if recursive {
            let mut walk = TreeWalk::new(path);
            for item in walk.by_ref() {
                handle_item(item.map_err(|e| e.to_string()), &bar);
            }
            links += walk.skipped_links();
        } else {
            handle_item(FileHandle::open(path).map_err(|e| e.to_string()), &bar);
        }
    }
    bar.finish_and_clear();
    if std::io::stdout().flush().is_err() {
        errors += 1;
    }
    if recursive {
        let outcome = match walk_kind {
            Walk::Check => format!("{differing} disagree"),
            Walk::Repair => format!("{changed} repaired"),
        };
        eprintln!("nfsbridge: {files} files: {outcome}, {errors} errors, {links} symbolic links skipped");
    }
    if errors > 0 {
        ExitCode::from(EXIT_ERROR)
    } else if differing > 0 {
        ExitCode::from(EXIT_DIFFERS)
    } else {
        ExitCode::SUCCESS
    }
}

/// A spinner with the count of files, on stderr, only when stderr is a terminal.
fn progress_bar(recursive: bool) -> ProgressBar {
    if !recursive || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(ProgressStyle::with_template("{spinner} {pos} files, {per_sec}").expect("valid template"));
    bar
}

fn check(context: &Context, file: &FileHandle, out: &mut String) -> Result<FileOutcome, String> {
    let state = context.store.read(file).map_err(|e| e.to_string())?;
    let report = context
        .bridge
        .check(&state)
        .map_err(|e| in_xattr(context, file.path(), e))?;
    match report {
        CheckReport::NoStoredAcl | CheckReport::Coherent => Ok(FileOutcome::Fine),
        CheckReport::Differs { .. } => {
            out.push_str(&format!("{}: {report}\n", file.path().display()));
            Ok(FileOutcome::Differs)
        }
    }
}

fn repair(context: &Context, file: &FileHandle, from_posix: bool, out: &mut String) -> Result<FileOutcome, String> {
    let state = context.store.read(file).map_err(|e| e.to_string())?;
    let path = file.path();
    let report = context.bridge.check(&state).map_err(|e| in_xattr(context, path, e))?;
    let CheckReport::Differs { access, differences } = &report else {
        return Ok(FileOutcome::Fine);
    };
    let default_changed = differences
        .iter()
        .any(|d| matches!(d, nfsbridge::acl::bridge::Difference::Default { .. }));
    let (acl, scope, verb) = if from_posix {
        let effective = context
            .bridge
            .effective_nfs4(&state)
            .map_err(|e| in_xattr(context, path, e))?;
        (
            effective.acl,
            WriteScope::Everything,
            format!(
                "rebuilt from POSIX ({}); wrote",
                describe_change(*access, default_changed)
            ),
        )
    } else {
        let stored = effective_stored(context, &state, path)?;
        (
            stored,
            WriteScope::PosixMirror,
            format!(
                "mirrored stored ACL again ({}); kept",
                describe_change(*access, default_changed)
            ),
        )
    };
    let plan = context
        .bridge
        .plan_write(&state.meta, &acl, Ownership::default())
        .map_err(|e| in_xattr(context, path, e))?;
    context.store.write(file, &plan, scope).map_err(|e| e.to_string())?;
    describe_plan(context, path, &plan, &verb, out);
    Ok(FileOutcome::Changed)
}

fn effective_stored(
    context: &Context,
    state: &nfsbridge::acl::bridge::FileAclState,
    path: &Path,
) -> Result<nfsbridge::acl::nfs4::Nfs4Acl, String> {
    let bytes = state.stored.as_deref().expect("check reported a stored ACL");
    context
        .bridge
        .decode_stored(bytes)
        .map_err(|e| in_xattr(context, path, e))
}
