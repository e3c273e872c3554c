//! The `nfsbridge:` parametric options of a share, as smb.conf spells them.
//!
//! smbd hands the module each option's raw string (or nothing when unset). Parsing and
//! validation live here so they test without Samba; the module refuses the tree connect when
//! [`ModuleConfig::from_lookup`] returns an error, and logs the error's text.
use std::fmt;

/// How an option's value is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// Samba's boolean spellings: yes/no, true/false, on/off, 1/0 (any case).
    Bool,
    /// One of a fixed list of keywords (any case).
    Keyword(&'static [&'static str]),
    /// An extended attribute name in a namespace an ACL may live in (`security.`, `system.`,
    /// `trusted.`, `user.`), kept as written.
    XattrName,
    /// An absolute file system path, kept as written.
    AbsolutePath,
    /// A whole number of seconds, 0 to [`MAX_SECONDS`].
    Seconds,
}

/// The largest value a [`OptionKind::Seconds`] option takes (one day).
pub const MAX_SECONDS: u64 = 86_400;

/// One `nfsbridge:NAME = VALUE` option: its name as written after the colon, how it is
/// spelled, its default, and what it does (the man page repeats this text).
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: OptionKind,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every option the module reads. Keep `samba-module/vfs_nfsbridge.8` in step with it.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "acls",
        kind: OptionKind::Bool,
        default: "yes",
        help: "The ACL bridge: Windows security descriptors are stored as an NFSv4 ACL in an \
               extended attribute and mirrored into the POSIX ACL and mode that the kernel and \
               nfsd enforce. 'no' passes ACL requests to the next module (Samba's POSIX ACL \
               mapping).",
    },
    OptionSpec {
        name: "acl encoding",
        kind: OptionKind::Keyword(AclEncoding::KEYWORDS),
        default: "ndr",
        help: "How the NFSv4 ACL is encoded in its xattr, as vfs_nfs4acl_xattr's \
               'nfs4acl_xattr:encoding': ndr (Samba's default), xdr (Samba xdr and \
               TrueNAS/OpenZFS nfsacl41i) or nfs (the NFSv4.1 nfsacl41 XDR layout). A share \
               that used vfs_nfs4acl_xattr keeps its ACLs with the same encoding and xattr.",
    },
    OptionSpec {
        name: "acl xattr",
        kind: OptionKind::XattrName,
        default: "",
        help: "The xattr that holds the NFSv4 ACL. Default: vfs_nfs4acl_xattr's name for the \
               encoding: security.nfs4acl_ndr (ndr), security.nfs4acl_xdr (xdr), \
               system.nfs4_acl (nfs).",
    },
    OptionSpec {
        name: "posix mirror",
        kind: OptionKind::Bool,
        default: "yes",
        help: "Mirror every ACL written over SMB into the file's POSIX access (and, for \
               directories, default) ACL and mode, never granting more than the Windows ACL, so \
               that the kernel and nfsd enforce it. 'no' stores only the NFSv4 ACL (then only \
               smbd enforces it, as with vfs_nfs4acl_xattr).",
    },
    OptionSpec {
        name: "idmap cache time",
        kind: OptionKind::Seconds,
        default: "60",
        help: "How many seconds each smbd process remembers an answer of Samba's identity \
               mapping (uid or gid to SID, SID to uid or gid) that the ACL bridge asked for. \
               Every ACL read, and so smbd's access check on every open, maps the file's owner \
               and group; without winbind Samba answers each time from passdb as root. An \
               answer 'no mapping' is remembered for Samba's 'idmap negative cache time' if \
               that is shorter. A changed mapping is seen by a connection after at most this \
               long; 0 asks Samba every time.",
    },
    OptionSpec {
        name: "leases",
        kind: OptionKind::Bool,
        default: "yes",
        help: "The lease bridge: every SMB oplock and lease on a regular file is backed by a \
               kernel lease held by the nfsbridge lease bridge (nfsbridge lease-bridge), so that \
               a local or NFS opener breaks the client's caching first. SMB opens of regular \
               files share one open file description per file, handed out by the bridge. When \
               the bridge cannot be reached, opens work as without the module and nothing smbd \
               grants on them is cached (the grant is reduced before the client sees it). With \
               'yes' the module also sets 'smbd force process locks = yes' for the share. 'no' \
               leaves oplocks and leases to smbd alone (not coherent with NFS or local access).",
    },
    OptionSpec {
        name: "lease bridge socket",
        kind: OptionKind::AbsolutePath,
        default: DEFAULT_LEASE_BRIDGE_SOCKET,
        help: "The unix socket of the lease bridge (nfsbridge lease-bridge --socket).",
    },
    OptionSpec {
        name: "recall timeout",
        kind: OptionKind::Seconds,
        default: "35",
        help: "How long an SMB create waits for a delegation to be given back. An SMB create \
               that may delete, rename or change a file or directory (DELETE, write or attribute \
               access, or an overwriting disposition) finds the delegations nfsd or a local \
               F_SETDELEG holder has on it; the module starts their recall without blocking (for \
               a directory a thread of the module changes its ctime and waits for the recall) \
               and the create waits \
               (STATUS_PENDING, other requests go on) until they are given back, instead of smbd \
               waiting inside the kernel. On a share with the lease bridge, data opens meet the \
               delegation in the bridge, which starts the recall; they are retried as soon as the \
               file is free. After this many seconds the create fails with \
               STATUS_SHARING_VIOLATION. 0 turns the recall off (smbd then waits in the kernel \
               as plain Samba does).",
    },
    OptionSpec {
        name: "directory delegations",
        kind: OptionKind::Bool,
        default: "yes",
        help: "On kernels with F_SETDELEG (Linux 6.19+, on file systems that take leases), \
               back every SMB directory lease with a directory delegation held by the smbd \
               process serving it, so that a local or NFS create, delete or rename in the \
               directory waits in the kernel until smbd has sent the client its lease break. \
               smbd's own changes are announced to the other smbds and never wait for their \
               main loops (only for the holder's signal handler). \
               Elsewhere, and with 'no', the fanotify watch breaks directory leases right \
               after the change.",
    },
    OptionSpec {
        name: "handle lease delegations",
        kind: OptionKind::Bool,
        default: "yes",
        help: "With directory delegations on: the smbd process serving a lease with H (handle \
               caching) on a file or directory also holds a directory delegation on the \
               directory holding its name, so that a local or NFS delete or rename of it waits \
               in the kernel until smbd has sent the client the break of H (RWH to RW, RH to \
               R). The kernel does not say which entry is changing: any local or NFS create, \
               delete or rename in that directory breaks the H of every such lease there that \
               the smbd process serves, a stronger break than SMB needs. With 'no' the fanotify \
               watch breaks only the H of the lease whose name went, right after the change.",
    },
    OptionSpec {
    name: "fault injection",
    kind: OptionKind::Keyword(FaultInjection::KEYWORDS),
    default: "none",
    help: "Testing aid, like vfs_error_inject: make the module fail on purpose so that its \
           error paths can be exercised on a real smbd. 'panic in connect' panics inside the \
           module's connect callback; the panic is caught at the FFI boundary, logged, and \
           only that tree connect fails. Never set this on a production share.",
    },
];

/// Where `nfsbridge lease-bridge` listens unless told otherwise.
pub const DEFAULT_LEASE_BRIDGE_SOCKET: &str = "/run/nfsbridge/lease-bridge.sock";

/// The xattr encoding of the stored NFSv4 ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AclEncoding {
    #[default]
    Ndr,
    Xdr,
    Nfs,
}

impl AclEncoding {
    const KEYWORDS: &'static [&'static str] = &["ndr", "xdr", "nfs"];

    fn from_keyword(word: &str) -> Self {
        match word {
            "xdr" => Self::Xdr,
            "nfs" => Self::Nfs,
            _ => Self::Ndr,
        }
    }

    pub fn keyword(self) -> &'static str {
        match self {
            Self::Ndr => "ndr",
            Self::Xdr => "xdr",
            Self::Nfs => "nfs",
        }
    }

    /// vfs_nfs4acl_xattr's default xattr name for this encoding.
    pub fn default_xattr(self) -> &'static str {
        match self {
            Self::Ndr => "security.nfs4acl_ndr",
            Self::Xdr => "security.nfs4acl_xdr",
            Self::Nfs => "system.nfs4_acl",
        }
    }
}

/// Deliberate failures, for testing the module's error handling inside a real smbd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultInjection {
    #[default]
    None,
    /// Panic inside the connect callback (after the option has been validated).
    PanicInConnect,
}

impl FaultInjection {
    const KEYWORDS: &'static [&'static str] = &["none", "panic in connect"];

    fn from_keyword(word: &str) -> Self {
        match word {
            "panic in connect" => Self::PanicInConnect,
            _ => Self::None,
        }
    }
}

/// The validated `nfsbridge:` configuration of one share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleConfig {
    pub acls: bool,
    pub acl_encoding: AclEncoding,
    /// The xattr name; the encoding's default unless set.
    pub acl_xattr: String,
    pub posix_mirror: bool,
    /// `idmap cache time`, in seconds.
    pub idmap_cache_time: u64,
    pub leases: bool,
    pub lease_bridge_socket: String,
    /// Seconds an SMB create waits for a delegation recall; 0: no recall by the module.
    pub recall_timeout_secs: u32,
    pub directory_delegations: bool,
    pub handle_lease_delegations: bool,
    pub fault_injection: FaultInjection,
}

impl Default for ModuleConfig {
    fn default() -> Self {
        ModuleConfig {
            acls: true,
            acl_encoding: AclEncoding::default(),
            acl_xattr: AclEncoding::default().default_xattr().to_string(),
            posix_mirror: true,
            idmap_cache_time: 60,
            leases: true,
            lease_bridge_socket: DEFAULT_LEASE_BRIDGE_SOCKET.to_string(),
            recall_timeout_secs: 35,
            directory_delegations: true,
            handle_lease_delegations: true,
            fault_injection: FaultInjection::default(),
        }
    }
}

/// A value smb.conf gave that the module cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?} for option 'nfsbridge:{option}': {reason}")]
pub struct ConfigError {
    pub option: &'static str,
    pub value: String,
    pub reason: String,
}

impl ModuleConfig {
    /// Builds the configuration from `lookup(name)`, which returns the raw smb.conf value of
    /// `nfsbridge:name` for the share (global section included), or `None` when unset.
    pub fn from_lookup(mut lookup: impl FnMut(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = ModuleConfig::default();
        let mut xattr = None;
        for spec in OPTIONS {
            let Some(raw) = lookup(spec.name) else { continue };
            let value = parse_value(spec, &raw)?;
            match (spec.name, value) {
                ("acls", Value::Bool(on)) => config.acls = on,
                ("acl encoding", Value::Keyword(word)) => config.acl_encoding = AclEncoding::from_keyword(word),
                ("acl xattr", Value::Text(name)) => xattr = Some(name),
                ("posix mirror", Value::Bool(on)) => config.posix_mirror = on,
                ("idmap cache time", Value::Seconds(seconds)) => config.idmap_cache_time = seconds,
                ("leases", Value::Bool(on)) => config.leases = on,
                ("lease bridge socket", Value::Text(path)) => config.lease_bridge_socket = path,
                ("recall timeout", Value::Seconds(secs)) => config.recall_timeout_secs = secs as u32, // at most MAX_SECONDS
                ("directory delegations", Value::Bool(on)) => config.directory_delegations = on,
                ("handle lease delegations", Value::Bool(on)) => config.handle_lease_delegations = on,
                ("fault injection", Value::Keyword(word)) => {
                    config.fault_injection = FaultInjection::from_keyword(word)
                }
                (other, _) => unreachable!("option table and ModuleConfig disagree on {other}"),
            }
        }
        config.acl_xattr = xattr.unwrap_or_else(|| config.acl_encoding.default_xattr().to_string());
        Ok(config)
    }
}

impl fmt::Display for ModuleConfig {
    /// One line, `name=value` pairs, for the connect log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fault = match self.fault_injection {
            FaultInjection::None => "none",
            FaultInjection::PanicInConnect => "panic in connect",
        };
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "acls={} acl encoding={} acl xattr={} posix mirror={} idmap cache time={} leases={} \
             lease bridge socket={} recall timeout={} directory delegations={} handle lease delegations={} \
             fault injection={fault}",
            yes_no(self.acls),
            self.acl_encoding.keyword(),
            self.acl_xattr,
            yes_no(self.posix_mirror),
            self.idmap_cache_time,
            yes_no(self.leases),
            self.lease_bridge_socket,
            self.recall_timeout_secs,
            yes_no(self.directory_delegations),
            yes_no(self.handle_lease_delegations)
        )
    }
}

/// A parsed option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    /// The canonical (lower-case, single-spaced) keyword from the option's list.
    Keyword(&'static str),
    /// Free text (trimmed, case kept).
    Text(String),
    Seconds(u64),
}

/// Namespaces an ACL xattr may live in.
const XATTR_NAMESPACES: &[&str] = &["security.", "system.", "trusted.", "user."];

/// Parses one raw value the way smbd would read it: surrounding white space ignored, case
/// ignored, runs of inner white space equal to one space.
pub fn parse_value(spec: &OptionSpec, raw: &str) -> Result<Value, ConfigError> {
    let normalized = raw.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    let error = |reason: String| ConfigError { option: spec.name, value: raw.to_string(), reason };
    match spec.kind {
        OptionKind::Bool => match normalized.as_str() {
            "yes" | "true" | "on" | "1" => Ok(Value::Bool(true)),
            "no" | "false" | "off" | "0" => Ok(Value::Bool(false)),
            _ => Err(error("expected yes or no".into())),
        },
        OptionKind::Keyword(words) => words
            .iter()
            .find(|w| **w == normalized)
            .map(|w| Value::Keyword(w))
            .ok_or_else(|| error(format!("expected one of: {}", words.join(", ")))),
        OptionKind::XattrName => {
            let name = raw.trim();
            let namespaced = XATTR_NAMESPACES.iter().any(|ns| name.len() > ns.len() && name.starts_with(ns));
            if !namespaced || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(error(format!(
                    "expected an xattr name in one of the namespaces {} with no spaces",
                    XATTR_NAMESPACES.join(" ")
                )));
            }
            if name.len() > 255 {
                return Err(error("xattr names are at most 255 bytes".into()));
            }
            Ok(Value::Text(name.to_string()))
        }
        OptionKind::AbsolutePath => {
            let path = raw.trim();
            if !path.starts_with('/') || path.contains('\0') || path.len() > 4095 {
                return Err(error("expected an absolute path".into()));
            }
            Ok(Value::Text(path.to_string()))
        }
        OptionKind::Seconds => normalized
            .parse::<u64>()
            .ok()
            .filter(|&seconds| seconds <= MAX_SECONDS && normalized.bytes().all(|b| b.is_ascii_digit()))
            .map(Value::Seconds)
            .ok_or_else(|| error(format!("expected a whole number of seconds from 0 to {MAX_SECONDS}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_from(pairs: &[(&str, &str)]) -> Result<ModuleConfig, ConfigError> {
        ModuleConfig::from_lookup(|name| {
            pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn unset_options_take_their_defaults() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config, ModuleConfig::default());
        assert!(config.acls && config.posix_mirror);
        assert_eq!((config.acl_encoding, config.acl_xattr.as_str()), (AclEncoding::Ndr, "security.nfs4acl_ndr"));
        for spec in OPTIONS.iter().filter(|s| !s.default.is_empty()) {
            assert!(parse_value(spec, spec.default).is_ok(), "default of {} must parse", spec.name);
        }
    }

    #[test]
    fn acl_xattr_defaults_follow_the_encoding_like_nfs4acl_xattr() {
        let xdr = config_from(&[("acl encoding", "XDR")]).unwrap();
        assert_eq!((xdr.acl_encoding, xdr.acl_xattr.as_str()), (AclEncoding::Xdr, "security.nfs4acl_xdr"));
        let nfs = config_from(&[("acl encoding", "nfs")]).unwrap();
        assert_eq!(nfs.acl_xattr, "system.nfs4_acl");
        let named = config_from(&[("acl encoding", "xdr"), ("acl xattr", " system.nfs4_acl_xdr ")]).unwrap();
        assert_eq!(named.acl_xattr, "system.nfs4_acl_xdr");
    }

    #[test]
    fn acl_xattr_names_are_checked() {
        for bad in ["nfs4acl", "security.", "user.a b", "other.x", ""] {
            let err = config_from(&[("acl xattr", bad)]).unwrap_err();
            assert_eq!(err.option, "acl xattr", "{bad:?}");
        }
        let err = config_from(&[("posix mirror", "perhaps")]).unwrap_err();
        assert!(err.to_string().contains("expected yes or no"));
    }

    #[test]
    fn lease_options() {
        let config = config_from(&[]).unwrap();
        assert!(config.leases);
        assert_eq!(config.lease_bridge_socket, DEFAULT_LEASE_BRIDGE_SOCKET);
        let config = config_from(&[("leases", "no"), ("lease bridge socket", " /tmp/x/bridge.sock ")]).unwrap();
        assert!(!config.leases);
        assert_eq!(config.lease_bridge_socket, "/tmp/x/bridge.sock");
        let err = config_from(&[("lease bridge socket", "run/bridge.sock")]).unwrap_err();
        assert_eq!(err.option, "lease bridge socket");
        assert!(err.to_string().contains("absolute path"));
    }

    #[test]
    fn recall_timeout_is_whole_seconds() {
        assert_eq!(config_from(&[]).unwrap().recall_timeout_secs, 35);
        assert_eq!(config_from(&[("recall timeout", " 0 ")]).unwrap().recall_timeout_secs, 0);
        assert_eq!(config_from(&[("recall timeout", "3600")]).unwrap().recall_timeout_secs, 3600);
        for bad in ["86401", "-1", "1.5", "soon", ""] {
            let err = config_from(&[("recall timeout", bad)]).unwrap_err();
            assert!(err.to_string().contains("whole number of seconds"), "{bad}: {err}");
        }
    }

    #[test]
    fn idmap_cache_time_is_whole_seconds() {
        assert_eq!(config_from(&[]).unwrap().idmap_cache_time, 60);
        assert_eq!(config_from(&[("idmap cache time", " 0 ")]).unwrap().idmap_cache_time, 0);
        assert_eq!(config_from(&[("idmap cache time", "86400")]).unwrap().idmap_cache_time, 86_400);
        for bad in ["-1", "1.5", "+5", "60s", "", "86401", "99999999999999999999"] {
            let err = config_from(&[("idmap cache time", bad)]).unwrap_err();
            assert_eq!(err.option, "idmap cache time", "{bad:?}");
            assert!(err.to_string().contains("whole number of seconds"), "{bad:?}");
        }
    }

    #[test]
    fn keywords_ignore_case_and_spacing() {
        let config = config_from(&[("fault injection", "  Panic   IN connect ")]).unwrap();
        assert_eq!(config.fault_injection, FaultInjection::PanicInConnect);
        assert_eq!(config_from(&[("fault injection", "NONE")]).unwrap().fault_injection, FaultInjection::None);
    }

    #[test]
    fn bad_values_name_the_option_and_the_choices() {
        let err = config_from(&[("fault injection", "sometimes")]).unwrap_err();
        assert_eq!(err.option, "fault injection");
        assert_eq!(err.value, "sometimes");
        let text = err.to_string();
        assert!(text.contains("'nfsbridge:fault injection'"), "{text}");
        assert!(text.contains("none, panic in connect"), "{text}");
    }

    #[test]
    fn booleans_use_samba_spellings() {
        let spec = OptionSpec { name: "x", kind: OptionKind::Bool, default: "no", help: "" };
        for yes in ["yes", "True", "ON", "1"] {
            assert_eq!(parse_value(&spec, yes).unwrap(), Value::Bool(true));
        }
        for no in ["no", "FALSE", "off", "0"] {
            assert_eq!(parse_value(&spec, no).unwrap(), Value::Bool(false));
        }
        assert!(parse_value(&spec, "maybe").is_err());
        assert!(parse_value(&spec, "").is_err());
    }

    #[test]
    fn display_lists_every_option() {
        let shown = ModuleConfig::default().to_string();
        for spec in OPTIONS {
            assert!(shown.contains(spec.name), "{shown} lacks {}", spec.name);
        }
    }
}
