//! SDDL, the Security Descriptor Definition Language (MS-DTYP 2.5.1), for file system
//! descriptors.
//!
//! Parsing accepts `O:`, `G:`, `D:` and `S:` sections in any order, each at most once.
//! ACL flags `P`, `AR`, `AI` and `NO_ACCESS_CONTROL` (a NULL ACL: the PRESENT bit without an
//! ACL); ACE types `A`, `D`, `AU`, `AL` (object, callback, resource-attribute and label types
//! are refused with an error, as are the GUID fields and a 7th, conditional, field); ACE
//! flags `OI CI NP IO ID SA FA`; rights as a number (`0x` hex, `0` octal or decimal, at most
//! 32 bits) or a run of abbreviations (`GA GR GW GX RC SD WD WO RP WP CC DC LC SW LO DT CR
//! FA FR FW FX KA KR KW KX`; an empty field is 0); SIDs as `S-1-...` or a two-letter alias.
//! Domain-relative aliases (`DA`, `DU`, `LA`, `EA`...) need the domain SID argument and are
//! an error without it. As in Samba, spaces are accepted only after `D:`/`S:` and before or
//! between rights abbreviations (Windows' other leniencies, lower case, spaces around SIDs,
//! are refused, as Samba refuses them). SIDs must have decimal sub-authorities (Samba also
//! takes `0x` sub-authorities, normalising them). Parsed ACLs have revision 2;
//! the control word is SELF_RELATIVE, the PRESENT bits and the ACL flags.
//!
//! Formatting follows Samba's `sddl_encode` (which matches Windows): sections in the order
//! O, G, D, S; ACL flags in the order P, AR, AI; an alias for every SID that has one (the
//! domain-relative ones only when a domain SID is given); rights as abbreviations when the
//! mask is exactly a combination of `CC DC LC SW RP WP DT LO CR SD RC WD WO GA GX GW GR`,
//! else `FA`/`FR`/`FW`/`FX` when it is exactly one of those, else `0x` lower-case hex (mask 0
//! is the empty field, as Samba writes it). Where Samba drops a NULL DACL, this writes
//! `D:NO_ACCESS_CONTROL` like Windows. Control bits SDDL has no syntax for (the DEFAULTED
//! bits, DACL_TRUSTED, SERVER_SECURITY, RM_CONTROL_VALID, and ACL flags of an absent ACL)
//! are not written. ACEs SDDL cannot carry (unknown types, flag 0x20) are an error, never
//! dropped.
use std::fmt::Write as _;

use crate::acl::sd::{ace_flags, control, Ace, AceType, Acl, SdInvalid, SecurityDescriptor};
use crate::acl::sid::Sid;

/// Where SDDL text went wrong: byte offset into the text and what was found there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDDL byte {offset}: {problem}")]
pub struct SddlError {
    pub offset: usize,
    pub problem: String,
}

fn fail<T>(offset: usize, problem: impl Into<String>) -> Result<T, SddlError> {
    Err(SddlError { offset, problem: problem.into() })
}

/// How an alias maps to a SID.
#[derive(Clone, Copy)]
enum AliasSid {
    Fixed(u64, &'static [u32]),
    /// A RID in the domain (Samba distinguishes machine, domain and forest; one domain SID
    /// stands for all three here, as in Samba's public entry points).
    DomainRid(u32),
}

use AliasSid::{DomainRid, Fixed};

/// SID aliases in Samba's table order (libcli/security/sddl.c), which decides the alias
/// printed when several could apply.
const SID_ALIASES: &[(&str, AliasSid)] = &[
    ("WD", Fixed(1, &[0])),
    ("CO", Fixed(3, &[0])),
    ("CG", Fixed(3, &[1])),
    ("OW", Fixed(3, &[4])),
    ("NU", Fixed(5, &[2])),
    ("IU", Fixed(5, &[4])),
    ("SU", Fixed(5, &[6])),
    ("AN", Fixed(5, &[7])),
    ("ED", Fixed(5, &[9])),
    ("PS", Fixed(5, &[10])),
    ("AU", Fixed(5, &[11])),
    ("RC", Fixed(5, &[12])),
    ("SY", Fixed(5, &[18])),
    ("LS", Fixed(5, &[19])),
    ("NS", Fixed(5, &[20])),
    ("WR", Fixed(5, &[33])),
    ("BA", Fixed(5, &[32, 544])),
    ("BU", Fixed(5, &[32, 545])),
    ("BG", Fixed(5, &[32, 546])),
    ("PU", Fixed(5, &[32, 547])),
    ("AO", Fixed(5, &[32, 548])),
    ("SO", Fixed(5, &[32, 549])),
    ("PO", Fixed(5, &[32, 550])),
    ("BO", Fixed(5, &[32, 551])),
    ("RE", Fixed(5, &[32, 552])),
    ("RU", Fixed(5, &[32, 554])),
    ("RD", Fixed(5, &[32, 555])),
    ("NO", Fixed(5, &[32, 556])),
    ("MU", Fixed(5, &[32, 558])),
    ("LU", Fixed(5, &[32, 559])),
    ("IS", Fixed(5, &[32, 568])),
    ("CY", Fixed(5, &[32, 569])),
    ("ER", Fixed(5, &[32, 573])),
    ("CD", Fixed(5, &[32, 574])),
    ("RA", Fixed(5, &[32, 575])),
    ("ES", Fixed(5, &[32, 576])),
    ("MS", Fixed(5, &[32, 577])),
    ("HA", Fixed(5, &[32, 578])),
    ("AA", Fixed(5, &[32, 579])),
    ("RM", Fixed(5, &[32, 580])),
    ("UD", Fixed(5, &[84, 0, 0, 0, 0, 0])),
    ("AC", Fixed(15, &[2, 1])),
    ("LW", Fixed(16, &[4096])),
    ("ME", Fixed(16, &[8192])),
    ("MP", Fixed(16, &[8448])),
    ("HI", Fixed(16, &[12288])),
    ("SI", Fixed(16, &[16384])),
    ("AS", Fixed(18, &[1])),
    ("SS", Fixed(18, &[2])),
    ("RO", DomainRid(498)),
    ("LA", DomainRid(500)),
    ("LG", DomainRid(501)),
    ("DA", DomainRid(512)),
    ("DU", DomainRid(513)),
    ("DG", DomainRid(514)),
    ("DC", DomainRid(515)),
    ("DD", DomainRid(516)),
    ("CA", DomainRid(517)),
    ("SA", DomainRid(518)),
    ("EA", DomainRid(519)),
    ("PA", DomainRid(520)),
    ("CN", DomainRid(522)),
    ("AP", DomainRid(525)),
    ("KA", DomainRid(526)),
    ("EK", DomainRid(527)),
    ("RS", DomainRid(553)),
];

/// Access right abbreviations, in Samba's order (the order they are printed in).
const RIGHTS: &[(&str, u32)] = &[
    ("CC", 0x0000_0001),
    ("DC", 0x0000_0002),
    ("LC", 0x0000_0004),
    ("SW", 0x0000_0008),
    ("RP", 0x0000_0010),
    ("WP", 0x0000_0020),
    ("DT", 0x0000_0040),
    ("LO", 0x0000_0080),
    ("CR", 0x0000_0100),
    ("SD", 0x0001_0000),
    ("RC", 0x0002_0000),
    ("WD", 0x0004_0000),
    ("WO", 0x0008_0000),
    ("GA", 0x1000_0000),
    ("GX", 0x2000_0000),
    ("GW", 0x4000_0000),
    ("GR", 0x8000_0000),
];

/// Composite file rights: printed only on an exact match.
const FILE_RIGHTS: &[(&str, u32)] = &[
    ("FA", crate::acl::sd::access::FILE_ALL_ACCESS),
    ("FR", crate::acl::sd::access::FILE_GENERIC_READ),
    ("FW", crate::acl::sd::access::FILE_GENERIC_WRITE),
    ("FX", crate::acl::sd::access::FILE_GENERIC_EXECUTE),
];

/// Registry rights Windows accepts in SDDL; parsed, never printed.
const KEY_RIGHTS: &[(&str, u32)] = &[("KA", 0x000f_003f), ("KR", 0x0002_0019), ("KW", 0x0002_0006), ("KX", 0x0002_0019)];

const ACE_FLAGS: &[(&str, u8)] = &[
    ("OI", ace_flags::OBJECT_INHERIT),
    ("CI", ace_flags::CONTAINER_INHERIT),
    ("NP", ace_flags::NO_PROPAGATE_INHERIT),
    ("IO", ace_flags::INHERIT_ONLY),
    ("ID", ace_flags::INHERITED),
    ("SA", ace_flags::SUCCESSFUL_ACCESS),
    ("FA", ace_flags::FAILED_ACCESS),
];

const ACE_TYPES: &[(&str, AceType)] = &[
    ("A", AceType::AccessAllowed),
    ("D", AceType::AccessDenied),
    ("AU", AceType::SystemAudit),
    ("AL", AceType::SystemAlarm),
];

/// ACE types SDDL knows but file ACLs do not use.
const UNSUPPORTED_ACE_TYPES: &[&str] = &["OA", "OD", "OU", "OL", "XA", "XD", "ZA", "XU", "RA", "ML", "SP"];

/// DACL flags; the SACL ones are the same bits shifted left by one.
const ACL_FLAGS: &[(&str, u16)] = &[
    ("P", control::DACL_PROTECTED),
    ("AR", control::DACL_AUTO_INHERIT_REQ),
    ("AI", control::DACL_AUTO_INHERITED),
];

const NO_ACCESS_CONTROL: &str = "NO_ACCESS_CONTROL";

fn alias_sid(spec: AliasSid, domain: Option<&Sid>) -> Option<Sid> {
    match spec {
        Fixed(authority, subs) => Sid::new(authority, subs).ok(),
        DomainRid(rid) => domain.and_then(|d| Sid::with_rid(d, rid)),
    }
}

/// Parses a SID as SDDL writes it: `S-1-...` or a two-letter alias (case-sensitive).
pub fn parse_sid(text: &str, domain: Option<&Sid>) -> Result<Sid, SddlError> {
    parse_sid_token(text, 0, domain)
}

/// `text` is exactly one SID token, found at `offset` of the whole input.
fn parse_sid_token(text: &str, offset: usize, domain: Option<&Sid>) -> Result<Sid, SddlError> {
    if text.starts_with("S-") || text.starts_with("s-") {
        return text.parse().or_else(|error| fail(offset, format!("SID {text:?}: {error}")));
    }
    match SID_ALIASES.iter().find(|(code, _)| *code == text) {
        Some(&(code, spec)) => alias_sid(spec, domain).map_or_else(
            || match domain {
                None => fail(offset, format!("SID alias {code} is relative to a domain; no domain SID was given")),
                Some(d) => fail(offset, format!("SID alias {code} cannot be built from domain {d} (too many sub-authorities)")),
            },
            Ok,
        ),
        None if text.is_empty() => fail(offset, "missing SID"),
        None => fail(offset, format!("unknown SID {text:?}: neither S-1-... nor a known alias")),
    }
}

/// The SDDL form of a SID: its alias when it has one, else `S-1-...`.
pub fn format_sid(sid: &Sid, domain: Option<&Sid>) -> String {
    let in_domain = domain.is_some_and(|d| sid.is_in_domain(d));
    for &(code, spec) in SID_ALIASES {
        let matches = match spec {
            Fixed(authority, subs) => sid.authority() == authority && sid.sub_authorities() == subs,
            DomainRid(rid) => in_domain && sid.rid() == Some(rid),
        };
        if matches {
            return code.to_string();
        }
    }
    sid.to_string()
}

/// Parses an SDDL rights field: a number or a run of abbreviations; empty is 0.
pub fn parse_access_mask(text: &str) -> Result<u32, SddlError> {
    parse_rights(text, 0)
}

fn parse_rights(text: &str, offset: usize) -> Result<u32, SddlError> {
    // Like Samba and Windows: spaces before the rights and between abbreviations, not after.
    let lead = text.len() - text.trim_start_matches(' ').len();
    let (text, offset) = (&text[lead..], offset + lead);
    let bytes = text.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_digit) {
        let (digits, radix) = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
        // from_str_radix alone would accept a leading '+'.
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return fail(offset, format!("bad number {text:?} in access rights"));
        }
        return u32::from_str_radix(digits, radix)
            .or_else(|_| fail(offset, format!("access rights {text:?} do not fit in 32 bits")));
    }
    let mut mask = 0;
    let mut at = 0;
    while at < bytes.len() {
        while bytes.get(at) == Some(&b' ') {
            at += 1;
        }
        if at == bytes.len() {
            return fail(offset + at - 1, "trailing space in access rights");
        }
        let token = bytes.get(at..at + 2).unwrap_or(&bytes[at..]);
        let found = RIGHTS.iter().chain(FILE_RIGHTS).chain(KEY_RIGHTS).find(|(name, _)| name.as_bytes() == token);
        match found {
            Some((_, bits)) => mask |= bits,
            None => {
                let shown = String::from_utf8_lossy(token);
                return fail(offset + at, format!("unknown access right {shown:?}"));
            }
        }
        at += 2;
    }
    Ok(mask)
}

/// The SDDL rights field for `mask` (see the module docs for the rule).
pub fn format_access_mask(mask: u32) -> String {
    if let Some((name, _)) = RIGHTS.iter().find(|(_, bits)| *bits == mask) {
        return name.to_string();
    }
    let covered = RIGHTS.iter().fold(0, |acc, (_, bits)| acc | bits);
    if mask & !covered == 0 {
        return RIGHTS.iter().filter(|(_, bits)| mask & bits != 0).map(|(name, _)| *name).collect();
    }
    if let Some((name, _)) = FILE_RIGHTS.iter().find(|(_, bits)| *bits == mask) {
        return name.to_string();
    }
    format!("{mask:#x}")
}

/// Parses SDDL text. `domain` resolves domain-relative aliases. Never panics.
pub fn parse(text: &str, domain: Option<&Sid>) -> Result<SecurityDescriptor, SddlError> {
    let bytes = text.as_bytes();
    let mut sd = SecurityDescriptor::new();
    let (mut seen_dacl, mut seen_sacl) = (false, false);
    let mut at = 0;
    while at < bytes.len() {
        let section = bytes[at];
        if bytes.get(at + 1) != Some(&b':') || !matches!(section, b'O' | b'G' | b'D' | b'S') {
            return fail(at, "expected a section start O:, G:, D: or S:");
        }
        let start = at;
        at += 2;
        let duplicate = || fail(start, format!("second {}: section", char::from(section)));
        match section {
            b'O' | b'G' => {
                let end = header_sid_end(bytes, at);
                let sid = parse_sid_token(&text[at..end], at, domain)?;
                let slot = if section == b'O' { &mut sd.owner } else { &mut sd.group };
                if slot.is_some() {
                    return duplicate();
                }
                *slot = Some(sid);
                at = end;
            }
            _ => {
                let is_dacl = section == b'D';
                if std::mem::replace(if is_dacl { &mut seen_dacl } else { &mut seen_sacl }, true) {
                    return duplicate();
                }
                let (flags, acl, end) = parse_acl(text, at, domain)?;
                if is_dacl {
                    sd.control |= flags | control::DACL_PRESENT;
                    sd.dacl = acl;
                } else {
                    sd.control |= (flags << 1) | control::SACL_PRESENT;
                    sd.sacl = acl;
                }
                at = end;
            }
        }
    }
    Ok(sd)
}

/// End of the SID that starts at `at` in an O: or G: section.
fn header_sid_end(bytes: &[u8], at: usize) -> usize {
    let rest = &bytes[at..];
    if rest.starts_with(b"S-") || rest.starts_with(b"s-") {
        let run = rest[2..].iter().take_while(|b| b.is_ascii_hexdigit() || matches!(b, b'-' | b'x' | b'X')).count();
        let mut end = at + 2 + run;
        // "...-5D:" is the SID followed by a D: section, not a hex digit D (Samba does the same).
        if bytes[end - 1] == b'D' && bytes.get(end) == Some(&b':') {
            end -= 1;
        }
        end
    } else {
        // An alias is two characters; anything shorter is left for the SID parser to refuse.
        let mut end = at;
        while end < bytes.len() && end < at + 2 && bytes[end].is_ascii_alphanumeric() {
            end += 1;
        }
        end
    }
}

/// Parses ACL flags and ACEs from `at`; returns the flags (as DACL control bits), the ACL
/// (None for NO_ACCESS_CONTROL) and where the ACL ends.
fn parse_acl(text: &str, mut at: usize, domain: Option<&Sid>) -> Result<(u16, Option<Acl>, usize), SddlError> {
    let bytes = text.as_bytes();
    let mut flags = 0;
    let mut null_acl = false;
    // Samba and Windows allow spaces between "D:" and the ACL flags.
    while bytes.get(at) == Some(&b' ') {
        at += 1;
    }
    loop {
        let rest = &bytes[at..];
        if rest.starts_with(NO_ACCESS_CONTROL.as_bytes()) {
            null_acl = true;
            at += NO_ACCESS_CONTROL.len();
        } else if let Some((name, bit)) = ACL_FLAGS.iter().find(|(name, _)| rest.starts_with(name.as_bytes())) {
            flags |= bit;
            at += name.len();
        } else {
            break;
        }
    }
    let mut aces = Vec::new();
    while bytes.get(at) == Some(&b'(') {
        if null_acl {
            return fail(at, "NO_ACCESS_CONTROL (a NULL ACL) cannot have ACEs");
        }
        let Some(close) = bytes[at..].iter().position(|&b| b == b')').map(|p| at + p) else {
            return fail(at, "ACE has no closing ')'");
        };
        aces.push(parse_ace(text, at + 1, close, domain)?);
        at = close + 1;
    }
    if at < bytes.len() && bytes.get(at + 1) != Some(&b':') {
        return fail(at, "expected '(' to start an ACE, an ACL flag or the next section");
    }
    Ok((flags, (!null_acl).then(|| Acl::new(aces)), at))
}

/// Parses the ACE between `start` and `end` (exclusive, the parentheses excluded).
fn parse_ace(text: &str, start: usize, end: usize, domain: Option<&Sid>) -> Result<Ace, SddlError> {
    let mut fields = Vec::with_capacity(6);
    let mut field_start = start;
    for (i, b) in text.as_bytes()[start..end].iter().enumerate() {
        if *b == b';' {
            fields.push((field_start, &text[field_start..start + i]));
            field_start = start + i + 1;
        }
    }
    fields.push((field_start, &text[field_start..end]));
    // The type first: an unsupported type explains an unexpected field count best.
    let (type_at, type_text) = fields[0];
    let ace_type = match ACE_TYPES.iter().find(|(name, _)| *name == type_text) {
        Some((_, ace_type)) => ace_type.clone(),
        None if UNSUPPORTED_ACE_TYPES.contains(&type_text) => {
            return fail(type_at, format!("ACE type {type_text} (object, callback, resource or label ACE) is not supported in file ACLs"))
        }
        None => return fail(type_at, format!("unknown ACE type {type_text:?}")),
    };
    if fields.len() > 6 {
        return fail(fields[6].0, "a 7th ACE field (conditional expression or resource attribute) is not supported");
    }
    if fields.len() < 6 {
        return fail(start, format!("ACE has {} ';'-separated fields, expected 6", fields.len()));
    }
    let (flags_at, flags_text) = fields[1];
    let mut flags = 0;
    for (i, token) in flags_text.as_bytes().chunks(2).enumerate() {
        match ACE_FLAGS.iter().find(|(name, _)| name.as_bytes() == token) {
            Some((_, bit)) => flags |= bit,
            None => return fail(flags_at + 2 * i, format!("unknown ACE flag {:?}", String::from_utf8_lossy(token))),
        }
    }
    let (mask_at, mask_text) = fields[2];
    let mask = parse_rights(mask_text, mask_at)?;
    for &(guid_at, guid) in &fields[3..5] {
        if !guid.is_empty() {
            return fail(guid_at, "object GUIDs belong to object ACEs, which are not supported");
        }
    }
    let (sid_at, sid_text) = fields[5];
    let sid = parse_sid_token(sid_text, sid_at, domain)?;
    Ok(Ace { ace_type, flags, mask, sid })
}

/// Formats `sd` as SDDL (see the module docs). Fails on a descriptor that
/// [`SecurityDescriptor::validate`] refuses and on ACEs SDDL cannot carry.
pub fn format(sd: &SecurityDescriptor, domain: Option<&Sid>) -> Result<String, SdInvalid> {
    sd.validate()?;
    let mut out = String::new();
    if let Some(owner) = &sd.owner {
        out.push_str("O:");
        out.push_str(&format_sid(owner, domain));
    }
    if let Some(group) = &sd.group {
        out.push_str("G:");
        out.push_str(&format_sid(group, domain));
    }
    if sd.control & control::DACL_PRESENT != 0 {
        out.push_str("D:");
        format_acl(&mut out, sd.dacl.as_ref(), sd.control, domain, "dacl")?;
    }
    if sd.control & control::SACL_PRESENT != 0 {
        out.push_str("S:");
        format_acl(&mut out, sd.sacl.as_ref(), sd.control >> 1, domain, "sacl")?;
    }
    Ok(out)
}

fn format_acl(out: &mut String, acl: Option<&Acl>, flags: u16, domain: Option<&Sid>, location: &str) -> Result<(), SdInvalid> {
    for (name, bit) in ACL_FLAGS {
        if flags & bit != 0 {
            out.push_str(name);
        }
    }
    let Some(acl) = acl else {
        out.push_str(NO_ACCESS_CONTROL);
        return Ok(());
    };
    for (index, ace) in acl.aces.iter().enumerate() {
        let unrepresentable = |problem: String| SdInvalid { location: format!("{location}.aces[{index}]"), problem };
        let type_name = ACE_TYPES
            .iter()
            .find(|(_, t)| *t == ace.ace_type)
            .map(|(name, _)| *name)
            .ok_or_else(|| unrepresentable(format!("ACE type {} has no SDDL form here", ace.ace_type.code())))?;
        let named = ACE_FLAGS.iter().fold(0, |acc, (_, bit)| acc | bit);
        if ace.flags & !named != 0 {
            return Err(unrepresentable(format!("ACE flags {:#04x} include bits SDDL cannot name", ace.flags)));
        }
        let flag_names: String = ACE_FLAGS.iter().filter(|(_, bit)| ace.flags & bit != 0).map(|(name, _)| *name).collect();
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "({type_name};{flag_names};{};;;{})",
            format_access_mask(ace.mask),
            format_sid(&ace.sid, domain)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::sd::access;
    use crate::acl::sd::strategies::{arb_sddl_security_descriptor, arb_security_descriptor, arb_sid};
    use proptest::prelude::*;

    fn domain() -> Sid {
        "S-1-5-21-2212615479-2695158682-2101375467".parse().unwrap()
    }

    #[test]
    fn parses_a_typical_file_descriptor() {
        let sd = parse("O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICIIO;GA;;;CO)(D;;WDWO;;;S-1-5-21-1-2-3-1000)(A;ID;0x1200a9;;;BU)", None)
            .unwrap();
        assert_eq!(sd.owner, Some(Sid::builtin_administrators()));
        assert_eq!(sd.group, Some(Sid::local_system()));
        assert_eq!(
            sd.control,
            control::SELF_RELATIVE | control::DACL_PRESENT | control::DACL_PROTECTED | control::DACL_AUTO_INHERITED
        );
        let dacl = sd.dacl.as_ref().unwrap();
        assert_eq!(dacl.revision, Acl::REVISION);
        assert_eq!(dacl.aces[0], Ace::allowed(Sid::local_system(), access::FILE_ALL_ACCESS, 0x03));
        assert_eq!(dacl.aces[1], Ace::allowed(Sid::creator_owner(), access::GENERIC_ALL, 0x0b));
        assert_eq!(dacl.aces[2], Ace::denied("S-1-5-21-1-2-3-1000".parse().unwrap(), 0x000c_0000, 0));
        assert_eq!(dacl.aces[3], Ace::allowed(Sid::builtin_users(), 0x0012_00a9, ace_flags::INHERITED));
        assert_eq!(sd.sacl, None);
    }

    #[test]
    fn formats_like_samba() {
        // Vectors from Samba's python/samba/tests/sddl.py and security descriptors Windows prints.
        for text in [
            "O:BAG:BAD:PAI(A;OICI;FA;;;SY)(A;OICIIO;GA;;;CO)(A;ID;0x1200a9;;;BU)",
            "D:(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;WD)",
            "O:S-1-5-21-1-2-3-1000G:S-1-22-2-100D:AI(D;;FW;;;S-1-22-1-5)(A;OICI;0x1301bf;;;AU)",
            "D:(A;;;;;WD)",
            "S:AI(AU;SAFA;FA;;;WD)(AL;NP;GR;;;NU)",
            "O:SYD:NO_ACCESS_CONTROL",
            "D:PS:P",
        ] {
            assert_eq!(format(&parse(text, None).unwrap(), None).unwrap(), text);
        }
        // Rights: abbreviation runs in Samba's order, hex when not exactly representable.
        assert_eq!(format_access_mask(0x000f_01ff), "CCDCLCSWRPWPDTLOCRSDRCWDWO");
        assert_eq!(format_access_mask(access::FILE_GENERIC_READ), "FR");
        assert_eq!(format_access_mask(access::GENERIC_READ | access::GENERIC_EXECUTE), "GXGR");
        assert_eq!(format_access_mask(0x0010_0000), "0x100000");
    }

    /// Input and the form Samba prints, from Samba's python/samba/tests/sddl.py (domain
    /// S-1-2-3-4 as there).
    #[test]
    fn samba_test_vectors() {
        let domain: Sid = "S-1-2-3-4".parse().unwrap();
        let pairs = [
            ("D:(A;;CC;;;BA)(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;SY)(A;;RPLCLORC;;;AU)",
             "D:(A;;CC;;;BA)(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)(A;;LCRPLORC;;;AU)"),
            ("S:D:P", "D:PS:"),
            ("D:(A;;123456789;;;LG)", "D:(A;;0x75bcd15;;;LG)"),
            ("D:(A;;01234567;;;LG)", "D:(A;;0x53977;;;LG)"),
            ("D:(A;;17;;;LG)", "D:(A;;CCRP;;;LG)"),
            ("D:(A;;0xe00f0000;;;LG)", "D:(A;;SDRCWDWOGXGWGR;;;LG)"),
            ("D:ARPAI(A;;GA;;;SY)", "D:PARAI(A;;GA;;;SY)"),
            ("D:PPPPPPPPPPPP(A;;GA;;;SY)", "D:P(A;;GA;;;SY)"),
            ("D:(A;;GA;;;S-1-0x20-3-4)", "D:(A;;GA;;;S-1-32-3-4)"),
            ("D:AI(A;CI;RP LCLO  RC;;;AU)", "D:AI(A;CI;LCRPLORC;;;AU)"),
            ("D: P(A;;GA;;;LG)", "D:P(A;;GA;;;LG)"),
            ("O:LAG:BAD:P(A;OICI;0x1f01ff;;;BA)", "O:LAG:BAD:P(A;OICI;FA;;;BA)"),
            ("D:(A;;FAGX;;;SY)", "D:(A;;0x201f01ff;;;SY)"),
            ("O:S-1-5-21-1225132014-296224811-2507946102-512G:S-1-5-21-1225132014-296224811-2507946102-512D:P",
             "O:S-1-5-21-1225132014-296224811-2507946102-512G:S-1-5-21-1225132014-296224811-2507946102-512D:P"),
            ("D:(A;;0x401200a0;;;LG)", "D:(A;;0x401200a0;;;LG)"),
            ("D:P(A;;GA;;;LG)(A;;GX;;;AA)", "D:P(A;;GA;;;LG)(A;;GX;;;AA)"),
            ("S:(AU;SA;CR;;;WD)(AU;SA;CR;;;WD)", "S:(AU;SA;CR;;;WD)(AU;SA;CR;;;WD)"),
        ];
        for (input, printed) in pairs {
            let sd = parse(input, Some(&domain)).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(format(&sd, Some(&domain)).unwrap(), printed, "{input}");
        }
        for refused in [
            "Z:(A;;GA;;;SY)", "D:(Antlers;;GA;;;SY)", "d:(A;;GA;;;LG)", "D:((A;;GA;;;LG))", "D:(A;;GA;;)",
            "D :S:", "S:(AU;SA;CROOO;;;WD)", "D:(A;;GA;;;S-1-0x1313131313131-513)", "D:P:S:", "D:(Ā;;GA;;;LG)",
            "D:(A;;123456789 ;;;LG)", "D:(A;;0x 75bcd15;;;LG)", "D:(A;;RP ;;;LG)", "D:(A;;GA;;;LG;)",
            "D:(A;;GA;;;S-1-3-4 )", "D:AI(A;CI;RP LC\tLORC;;;AU)", "O:S", "O:S-", "O:S-1", "O:S-1-", "O:S-0x1",
            "O:", "O:XX", "D:(D:()D:())D:(A;;0x75bcd15;;;LG))",
        ] {
            assert!(parse(refused, Some(&domain)).is_err(), "{refused} accepted");
        }
    }

    #[test]
    fn numbers_and_key_rights() {
        assert_eq!(parse_access_mask("0x1f01ff"), Ok(access::FILE_ALL_ACCESS));
        assert_eq!(parse_access_mask("2032127"), Ok(access::FILE_ALL_ACCESS));
        assert_eq!(parse_access_mask("07600777"), Ok(0o7600777));
        assert_eq!(parse_access_mask("KA"), Ok(0xf003f));
        assert_eq!(parse_access_mask(""), Ok(0));
        assert_eq!(parse_access_mask("FRFW"), Ok(access::FILE_GENERIC_READ | access::FILE_GENERIC_WRITE));
        assert_eq!(parse_access_mask(" RP LCLO  RC"), parse_access_mask("RPLCLORC"));
        assert_eq!(parse_access_mask(" 0x75bcd15"), Ok(0x75bcd15));
        for bad in ["0x100000000", "4294967296", "0x", "08", "0x+1", "1a", "F", "FAX", "fa", "FA ", "0x1 "] {
            assert!(parse_access_mask(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn domain_aliases() {
        let d = domain();
        let admins = Sid::with_rid(&d, 512).unwrap();
        let sd = parse("O:DAG:DUD:(A;;FA;;;LA)", Some(&d)).unwrap();
        assert_eq!(sd.owner, Some(admins.clone()));
        assert_eq!(format(&sd, Some(&d)).unwrap(), "O:DAG:DUD:(A;;FA;;;LA)");
        // Without the domain the same descriptor prints numerically, and the alias is refused.
        assert_eq!(format_sid(&admins, None), admins.to_string());
        let error = parse("O:DA", None).unwrap_err();
        assert_eq!(error.offset, 2);
        assert!(error.problem.contains("domain"), "{error}");
    }

    #[test]
    fn errors_name_offset_and_token() {
        let cases: &[(&str, usize, &str)] = &[
            ("X:BA", 0, "section"),
            ("O:BAO:SY", 4, "second O:"),
            ("D:(A;;FA;;;QQ)", 11, "QQ"),
            ("D:(OA;;FA;;;WD)", 3, "OA"),
            ("D:(XA;;FA;;;WD;(x))", 3, "XA"),
            ("D:(A;;FA;;;WD;x)", 14, "7th"),
            ("D:(A;;FA;;WD)", 3, "fields"),
            ("D:(A;OIXX;FA;;;WD)", 7, "XX"),
            ("D:(A;;FA;bf967aba-0de6-11d0-a285-00aa003049e2;;WD)", 9, "GUID"),
            ("D:(A;;FA;;;WD", 2, "closing"),
            ("D:NO_ACCESS_CONTROL(A;;FA;;;WD)", 19, "NULL ACL"),
            ("D:(A;;FA;;;WD)x", 14, "expected"),
            ("O:S-1-5-x", 2, "S-1-5-x"),
            ("O:", 2, "missing SID"),
            ("D:(A;;FA;;;S-1-5-21-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16)", 11, "S-1-5-21"),
        ];
        for (text, offset, needle) in cases {
            let error = parse(text, None).unwrap_err();
            assert_eq!(error.offset, *offset, "{text}: {error}");
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn refuses_to_format_what_it_cannot_carry() {
        let mut sd = SecurityDescriptor::new();
        sd.control |= control::DACL_PRESENT;
        sd.dacl = Some(Acl::new(vec![Ace::other(5, 0, vec![0; 4])]));
        assert!(format(&sd, None).unwrap_err().to_string().contains("dacl.aces[0]"));
        sd.dacl = Some(Acl::new(vec![Ace::allowed(Sid::world(), 1, 0x20)]));
        assert!(format(&sd, None).is_err());
    }

    #[test]
    fn owner_sid_before_dacl_section() {
        // The SID ends before a "D:" section; a stray hex letter before it is refused.
        assert!(parse("O:S-1-5-21-1-2-3-4DD:(A;;FA;;;WD)", None).unwrap_err().problem.contains("S-1-5-21-1-2-3-4D"));
        let sd = parse("O:S-1-5-21-1-2-3-4D:(A;;FA;;;WD)", None).unwrap();
        assert_eq!(sd.owner.unwrap().to_string(), "S-1-5-21-1-2-3-4");
    }

    proptest! {
        #[test]
        fn round_trips(sd in arb_sddl_security_descriptor()) {
            let text = format(&sd, None).unwrap();
            prop_assert_eq!(parse(&text, None).unwrap(), sd, "{}", text);
        }

        #[test]
        fn round_trips_with_domain(sd in arb_sddl_security_descriptor(), rid in 498u32..560) {
            let d = domain();
            let mut sd = sd;
            sd.owner = Sid::with_rid(&d, rid);
            let text = format(&sd, Some(&d)).unwrap();
            prop_assert_eq!(parse(&text, Some(&d)).unwrap(), sd, "{}", text);
        }

        #[test]
        fn sids_round_trip(sid in arb_sid()) {
            prop_assert_eq!(parse_sid(&format_sid(&sid, None), None).unwrap(), sid);
        }

        #[test]
        fn format_never_panics(sd in arb_security_descriptor()) {
            let _ = format(&sd, None);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,80}") {
            let _ = parse(&text, None);
        }

        #[test]
        fn parse_never_panics_on_near_sddl(text in "[OGDS:()AIPNRUL;ICFXW0-9xSYBAWD\\-]{0,60}") {
            let _ = parse(&text, Some(&domain()));
        }

        #[test]
        fn parse_never_panics_on_mutated_sddl(sd in arb_sddl_security_descriptor(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let text = format(&sd, None).unwrap();
            let mut bytes = text.into_bytes();
            if !bytes.is_empty() {
                let i = cut.index(bytes.len());
                bytes[i] = byte;
            }
            let _ = parse(&String::from_utf8_lossy(&bytes), None);
        }
    }
}
