//! The text form Samba's `smbcacls` prints and accepts (`source3/lib/util_sd.c`,
//! `source3/utils/smbcacls.c`).
//!
//! [`format()`] writes what `smbcacls` prints for a descriptor, one item per line:
//!
//! ```text
//! REVISION:1
//! CONTROL:SR|DP
//! OWNER:S-1-5-32-544
//! GROUP:S-1-22-2-100
//! ACL:S-1-1-0:ALLOWED/OI|CI/FULL
//! ```
//!
//! ACE by ACE: type `ALLOWED`/`DENIED`; flags `OI|CI|NP|IO|I` in that order, or `0x<hex>`
//! when there are none or when bits without an smbcacls name are set (Samba silently drops
//! SA/FA there; hex keeps them and Samba reads it back); mask `READ`, `CHANGE` or `FULL` on
//! an exact match, else the letters `RWXDPO` when the mask is exactly the union of the
//! letters' masks it contains, else `0x%08x`. A zero mask is written `0x00000000` (Samba
//! prints an empty field its own parser refuses). With `numeric`, SIDs are `S-1-...`, the
//! control word is hex and ACEs are `<type>/0x<flags>/0x<mask>` as `smbcacls --numeric`
//! prints. Otherwise SIDs go through the optional name function and stay numeric when it has
//! no name, like smbcacls when a lookup fails. Like smbcacls, no SACL is shown.
//!
//! [`parse`] reads that output and the `-S`/`--set` argument form
//! (`REVISION:1,OWNER:...,GROUP:...,ACL:...`): items separated by `,`, tab, CR or LF. Names
//! that are not `S-1-...` go through the optional resolver and are an error when it is absent
//! or has no answer. The `CONTROL:` item (hex or the names printed) is optional; without it,
//! as with `smbcacls -S`, the control word is SELF_RELATIVE plus DACL_PRESENT when there are
//! ACL items. With DACL_PRESENT and no ACL items the DACL is empty (deny all): a NULL DACL has
//! no smbcacls form and is never produced. SACL_PRESENT is cleared, as no SACL is carried.
//! ACL flags accept `SA` and `FA` by name as well; ACE types accept `ALLOWED`, `DENIED` and
//! the numbers 0 and 1 (hex or decimal). Parsing is stricter than Samba's: tokens must match
//! exactly (Samba accepts `ALLOWEDxyz` and trailing junk after numbers).
use crate::acl::sd::{ace_flags, control, Ace, AceType, Acl, SdInvalid, SecurityDescriptor};
use crate::acl::sid::Sid;

/// Resolves an account name to its SID (a `DOMAIN\user` lookup, for example).
pub type NameResolver<'a> = &'a dyn Fn(&str) -> Option<Sid>;
/// Gives the account name of a SID, for printing.
pub type SidNamer<'a> = &'a dyn Fn(&Sid) -> Option<String>;

/// Where smbcacls text went wrong: byte offset into the text and what was found there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("smbcacls text byte {offset}: {problem}")]
pub struct SmbcaclsError {
    pub offset: usize,
    pub problem: String,
}

fn fail<T>(offset: usize, problem: impl Into<String>) -> Result<T, SmbcaclsError> {
    Err(SmbcaclsError { offset, problem: problem.into() })
}

// SEC_RIGHTS_* of Samba's security.idl.
const RIGHTS_FILE_READ: u32 = 0x0012_0089;
const RIGHTS_FILE_WRITE: u32 = 0x0012_0116;
const RIGHTS_FILE_EXECUTE: u32 = 0x0012_00a0;

/// Masks printed by name on an exact match.
const STANDARD_MASKS: &[(&str, u32)] = &[
    ("READ", RIGHTS_FILE_READ | 0x20),
    ("CHANGE", RIGHTS_FILE_READ | 0x20 | 0x0001_0000 | 0x40 | RIGHTS_FILE_WRITE),
    ("FULL", 0x001f_01ff),
];

/// Single-letter masks, printed when they add up to the mask exactly.
const SPECIAL_MASKS: &[(char, u32)] = &[
    ('R', RIGHTS_FILE_READ),
    ('W', RIGHTS_FILE_WRITE),
    ('X', RIGHTS_FILE_EXECUTE),
    ('D', 0x0001_0000),
    ('P', 0x0004_0000),
    ('O', 0x0008_0000),
];

/// ACE flag names smbcacls prints, in its order.
const FLAG_NAMES: &[(&str, u8)] = &[
    ("OI", ace_flags::OBJECT_INHERIT),
    ("CI", ace_flags::CONTAINER_INHERIT),
    ("NP", ace_flags::NO_PROPAGATE_INHERIT),
    ("IO", ace_flags::INHERIT_ONLY),
    ("I", ace_flags::INHERITED),
];

/// Extra flag names accepted when parsing.
const AUDIT_FLAG_NAMES: &[(&str, u8)] = &[("SA", ace_flags::SUCCESSFUL_ACCESS), ("FA", ace_flags::FAILED_ACCESS)];

/// Control bit names, highest bit first (the order smbcacls prints them). "SR" is both
/// SELF_RELATIVE and SACL_AUTO_INHERIT_REQ, told apart by position.
const CONTROL_NAMES: &[(&str, u16)] = &[
    ("SR", control::SELF_RELATIVE),
    ("RM", control::RM_CONTROL_VALID),
    ("PS", control::SACL_PROTECTED),
    ("PD", control::DACL_PROTECTED),
    ("SI", control::SACL_AUTO_INHERITED),
    ("DI", control::DACL_AUTO_INHERITED),
    ("SR", control::SACL_AUTO_INHERIT_REQ),
    ("DR", control::DACL_AUTO_INHERIT_REQ),
    ("SS", control::SERVER_SECURITY),
    ("DT", control::DACL_TRUSTED),
    ("SD", control::SACL_DEFAULTED),
    ("SP", control::SACL_PRESENT),
    ("DD", control::DACL_DEFAULTED),
    ("DP", control::DACL_PRESENT),
    ("GD", control::GROUP_DEFAULTED),
    ("OD", control::OWNER_DEFAULTED),
];

fn format_sid(sid: &Sid, numeric: bool, names: Option<SidNamer<'_>>) -> String {
    match names {
        Some(namer) if !numeric => namer(sid).unwrap_or_else(|| sid.to_string()),
        _ => sid.to_string(),
    }
}

fn format_control(value: u16, numeric: bool) -> String {
    let ambiguous = value & control::SACL_AUTO_INHERIT_REQ != 0 && value & control::SELF_RELATIVE == 0;
    if numeric || ambiguous {
        return format!("{value:#x}");
    }
    CONTROL_NAMES.iter().filter(|(_, bit)| value & bit != 0).map(|(name, _)| *name).collect::<Vec<_>>().join("|")
}

fn format_flags(flags: u8) -> String {
    let named = FLAG_NAMES.iter().fold(0, |acc, (_, bit)| acc | bit);
    if flags == 0 || flags & !named != 0 {
        return format!("{flags:#x}");
    }
    FLAG_NAMES.iter().filter(|(_, bit)| flags & bit != 0).map(|(name, _)| *name).collect::<Vec<_>>().join("|")
}

fn format_mask(mask: u32) -> String {
    if let Some((name, _)) = STANDARD_MASKS.iter().find(|(_, bits)| *bits == mask) {
        return name.to_string();
    }
    let contained: Vec<_> = SPECIAL_MASKS.iter().filter(|(_, bits)| mask & bits == *bits).collect();
    let union = contained.iter().fold(0, |acc, (_, bits)| acc | bits);
    if mask != 0 && union == mask {
        return contained.iter().map(|(letter, _)| *letter).collect();
    }
    format!("0x{mask:08x}")
}

/// One ACE as smbcacls prints it after `ACL:`. Only ALLOWED and DENIED ACEs have a form
/// smbcacls reads back; other types are an error.
pub fn format_ace(ace: &Ace, numeric: bool, names: Option<SidNamer<'_>>) -> Result<String, SdInvalid> {
    let type_name = match ace.ace_type {
        AceType::AccessAllowed => "ALLOWED",
        AceType::AccessDenied => "DENIED",
        _ => {
            return Err(SdInvalid {
                location: "ace".into(),
                problem: format!("ACE type {} has no smbcacls form (only ALLOWED and DENIED)", ace.ace_type.code()),
            })
        }
    };
    let sid = format_sid(&ace.sid, numeric, names);
    Ok(if numeric {
        format!("{sid}:{}/{:#x}/0x{:08x}", ace.ace_type.code(), ace.flags, ace.mask)
    } else {
        format!("{sid}:{type_name}/{}/{}", format_flags(ace.flags), format_mask(ace.mask))
    })
}

/// The descriptor as smbcacls prints it (see the module docs). Fails on a descriptor that
/// [`SecurityDescriptor::validate`] refuses and on DACL ACEs other than ALLOWED/DENIED.
pub fn format(sd: &SecurityDescriptor, numeric: bool, names: Option<SidNamer<'_>>) -> Result<String, SdInvalid> {
    sd.validate()?;
    let mut out = format!("REVISION:{}\nCONTROL:{}\n", sd.revision, format_control(sd.control, numeric));
    let owner = sd.owner.as_ref().map(|s| format_sid(s, numeric, names)).unwrap_or_default();
    let group = sd.group.as_ref().map(|s| format_sid(s, numeric, names)).unwrap_or_default();
    out.push_str(&format!("OWNER:{owner}\nGROUP:{group}\n"));
    for (index, ace) in sd.dacl.iter().flat_map(|d| d.aces.iter()).enumerate() {
        let line = format_ace(ace, numeric, names).map_err(|e| SdInvalid { location: format!("dacl.aces[{index}]"), ..e })?;
        out.push_str("ACL:");
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Splits on smbcacls' item separators, skipping empty items; yields (offset, item).
fn items(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split([',', '\t', '\r', '\n']).filter_map(move |item| {
        let at = offset;
        offset += item.len() + 1;
        (!item.is_empty()).then_some((at, item))
    })
}

fn resolve_sid(text: &str, at: usize, names: Option<NameResolver<'_>>) -> Result<Sid, SmbcaclsError> {
    if text.starts_with("S-") || text.starts_with("s-") {
        return text.parse().or_else(|error| fail(at, format!("{error}")));
    }
    if text.is_empty() {
        return fail(at, "missing SID or name");
    }
    match names {
        None => fail(at, format!("{text:?} is not a SID and no name resolver was given")),
        Some(resolve) => resolve(text).map_or_else(|| fail(at, format!("name {text:?} cannot be resolved to a SID")), Ok),
    }
}

/// A number as smbcacls writes it: `0x<hex>` or decimal, strictly (no sign, no junk).
fn parse_number(text: &str) -> Option<u32> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

fn parse_type(text: &str, at: usize) -> Result<AceType, SmbcaclsError> {
    match text {
        "ALLOWED" => return Ok(AceType::AccessAllowed),
        "DENIED" => return Ok(AceType::AccessDenied),
        _ => {}
    }
    match parse_number(text).map(|n| n.try_into().unwrap_or(u8::MAX)) {
        Some(AceType::ACCESS_ALLOWED) => Ok(AceType::AccessAllowed),
        Some(AceType::ACCESS_DENIED) => Ok(AceType::AccessDenied),
        Some(_) => fail(at, format!("ACE type {text} is not ALLOWED (0) or DENIED (1)")),
        None => fail(at, format!("ACE type {text:?}: expected ALLOWED, DENIED, 0 or 1")),
    }
}

fn parse_flags(text: &str, at: usize) -> Result<u8, SmbcaclsError> {
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return match parse_number(text).map(u8::try_from) {
            Some(Ok(flags)) => Ok(flags),
            _ => fail(at, format!("ACE flags {text:?}: not a number from 0 to 0xff")),
        };
    }
    let mut flags = 0;
    let mut offset = at;
    for name in text.split('|') {
        match FLAG_NAMES.iter().chain(AUDIT_FLAG_NAMES).find(|(n, _)| *n == name) {
            Some((_, bit)) => flags |= bit,
            None => return fail(offset, format!("unknown ACE flag {name:?} (expected OI, CI, NP, IO, I, SA, FA or a number)")),
        }
        offset += name.len() + 1;
    }
    Ok(flags)
}

fn parse_mask(text: &str, at: usize) -> Result<u32, SmbcaclsError> {
    if text.starts_with("0x") || text.starts_with("0X") {
        return parse_number(text).map_or_else(|| fail(at, format!("access mask {text:?} is not a 32-bit hex number")), Ok);
    }
    if let Some((_, mask)) = STANDARD_MASKS.iter().find(|(name, _)| *name == text) {
        return Ok(*mask);
    }
    if text.is_empty() {
        return fail(at, "empty access mask");
    }
    let mut mask = 0;
    for (i, c) in text.char_indices() {
        match SPECIAL_MASKS.iter().find(|(letter, _)| *letter == c) {
            Some((_, bits)) => mask |= bits,
            None => return fail(at + i, format!("unknown permission {c:?} (expected R, W, X, D, P, O, READ, CHANGE, FULL or 0x...)")),
        }
    }
    Ok(mask)
}

/// Parses one ACE, `SID:TYPE/FLAGS/MASK` (an `ACL:` prefix is allowed), with `at` the offset
/// of `text` in a larger input.
fn parse_ace_at(text: &str, at: usize, names: Option<NameResolver<'_>>) -> Result<Ace, SmbcaclsError> {
    let (text, at) = match text.strip_prefix("ACL:") {
        Some(rest) => (rest, at + 4),
        None => (text, at),
    };
    let Some(colon) = text.find(':') else {
        return fail(at, format!("ACE {text:?} has no ':' between the SID and TYPE/FLAGS/MASK"));
    };
    let sid = resolve_sid(&text[..colon], at, names)?;
    let rest = &text[colon + 1..];
    let rest_at = at + colon + 1;
    let fields: Vec<&str> = rest.split('/').collect();
    if fields.len() != 3 {
        return fail(rest_at, format!("{rest:?}: expected TYPE/FLAGS/MASK"));
    }
    let flags_at = rest_at + fields[0].len() + 1;
    let mask_at = flags_at + fields[1].len() + 1;
    let ace_type = parse_type(fields[0], rest_at)?;
    let flags = parse_flags(fields[1], flags_at)?;
    let mask = parse_mask(fields[2], mask_at)?;
    Ok(Ace { ace_type, flags, mask, sid })
}

/// Parses one ACE as `smbcacls` prints it: `SID:TYPE/FLAGS/MASK`, optionally after `ACL:`.
/// Never panics.
pub fn parse_ace(text: &str, names: Option<NameResolver<'_>>) -> Result<Ace, SmbcaclsError> {
    parse_ace_at(text, 0, names)
}

/// Parses the argument of `smbcacls -a`, `-M` or `-D`: `ACL:` items separated by `,` (or
/// tab, CR, LF). Any other item is an error. Never panics.
pub fn parse_aces(text: &str, names: Option<NameResolver<'_>>) -> Result<Vec<Ace>, SmbcaclsError> {
    let mut aces = Vec::new();
    for (at, item) in items(text) {
        if !item.starts_with("ACL:") {
            return fail(at, format!("{item:?}: expected ACL:SID:TYPE/FLAGS/MASK"));
        }
        aces.push(parse_ace_at(item, at, names)?);
    }
    Ok(aces)
}

fn parse_control(text: &str, at: usize) -> Result<u16, SmbcaclsError> {
    if text.starts_with("0x") || text.starts_with("0X") {
        return match parse_number(text).map(u16::try_from) {
            Some(Ok(value)) => Ok(value),
            _ => fail(at, format!("control {text:?} is not a 16-bit hex number")),
        };
    }
    let mut value = 0;
    // Names must come in printed order; each takes the highest remaining bit it names.
    let mut next = 0;
    let mut offset = at;
    for name in text.split('|').filter(|n| !text.is_empty() || !n.is_empty()) {
        match CONTROL_NAMES[next..].iter().position(|(n, _)| *n == name) {
            Some(found) => {
                value |= CONTROL_NAMES[next + found].1;
                next += found + 1;
            }
            None => return fail(offset, format!("control bit {name:?} unknown or out of order")),
        }
        offset += name.len() + 1;
    }
    Ok(value)
}

/// Parses smbcacls output or a `-S` argument into a descriptor (see the module docs).
/// Never panics.
pub fn parse(text: &str, names: Option<NameResolver<'_>>) -> Result<SecurityDescriptor, SmbcaclsError> {
    let mut control_word = None;
    let mut revision_seen = false;
    let (mut owner, mut group) = (None, None);
    let mut aces = Vec::new();
    for (at, item) in items(text) {
        let Some(colon) = item.find(':') else {
            return fail(at, format!("{item:?}: expected REVISION:, CONTROL:, OWNER:, GROUP: or ACL:"));
        };
        let (key, value, value_at) = (&item[..colon], &item[colon + 1..], at + colon + 1);
        let duplicate = || fail(at, format!("{key}: given twice"));
        match key {
            "REVISION" => {
                if std::mem::replace(&mut revision_seen, true) {
                    return duplicate();
                }
                if parse_number(value) != Some(u32::from(SecurityDescriptor::REVISION)) {
                    return fail(value_at, format!("revision {value:?}, expected 1"));
                }
            }
            "CONTROL" => {
                if control_word.replace(parse_control(value, value_at)?).is_some() {
                    return duplicate();
                }
            }
            "OWNER" | "GROUP" => {
                let slot = if key == "OWNER" { &mut owner } else { &mut group };
                if slot.is_some() {
                    return duplicate();
                }
                // Printed empty when absent.
                *slot = Some((!value.is_empty()).then(|| resolve_sid(value, value_at, names)).transpose()?);
            }
            "ACL" => aces.push(parse_ace_at(item, at, names)?),
            _ => return fail(at, format!("unknown item {key:?} (expected REVISION, CONTROL, OWNER, GROUP or ACL)")),
        }
    }
    let mut sd = SecurityDescriptor::new();
    sd.owner = owner.flatten();
    sd.group = group.flatten();
    let control_word = match control_word {
        Some(value) => {
            if !aces.is_empty() && value & control::DACL_PRESENT == 0 {
                return fail(0, "ACL items given but CONTROL lacks DP (DACL_PRESENT)");
            }
            value
        }
        None if aces.is_empty() => 0,
        None => control::DACL_PRESENT,
    };
    sd.control = (control_word | control::SELF_RELATIVE) & !control::SACL_PRESENT;
    if sd.control & control::DACL_PRESENT != 0 {
        sd.dacl = Some(Acl::new(aces));
    }
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::sd::access;
    use crate::acl::sd::strategies::{arb_security_descriptor, arb_smbcacls_security_descriptor};
    use proptest::prelude::*;

    fn names(name: &str) -> Option<Sid> {
        match name {
            "Everyone" => Some(Sid::world()),
            "BUILTIN\\Administrators" => Some(Sid::builtin_administrators()),
            _ => None,
        }
    }

    fn sid_names(sid: &Sid) -> Option<String> {
        if *sid == Sid::world() {
            Some("Everyone".into())
        } else {
            None
        }
    }

    fn sample() -> SecurityDescriptor {
        let mut sd = SecurityDescriptor::new();
        sd.control |= control::DACL_PRESENT | control::DACL_AUTO_INHERITED;
        sd.owner = Some(Sid::builtin_administrators());
        sd.group = Some(Sid::unix_group(100));
        sd.dacl = Some(Acl::new(vec![
            Ace::allowed(Sid::world(), access::FILE_ALL_ACCESS, 0x03),
            Ace::denied(Sid::unix_user(5), access::WRITE_DAC | access::WRITE_OWNER, 0),
            Ace::allowed(Sid::unix_user(6), 0x0012_00a9, ace_flags::INHERITED),
            Ace::allowed(Sid::unix_user(7), access::FILE_READ_DATA, 0x0b),
            Ace::allowed(Sid::unix_user(8), 0x0012_01bf | 0x0001_0000, ace_flags::SUCCESSFUL_ACCESS | 1),
        ]));
        sd
    }

    #[test]
    fn prints_like_smbcacls() {
        let expected = "REVISION:1\nCONTROL:SR|DI|DP\nOWNER:S-1-5-32-544\nGROUP:S-1-22-2-100\n\
            ACL:Everyone:ALLOWED/OI|CI/FULL\n\
            ACL:S-1-22-1-5:DENIED/0x0/PO\n\
            ACL:S-1-22-1-6:ALLOWED/I/READ\n\
            ACL:S-1-22-1-7:ALLOWED/OI|CI|IO/0x00000001\n\
            ACL:S-1-22-1-8:ALLOWED/0x41/RWXD\n";
        assert_eq!(format(&sample(), false, Some(&sid_names)).unwrap(), expected);
        assert_eq!(parse(expected, Some(&names)).unwrap(), sample());
    }

    #[test]
    fn prints_numeric_like_smbcacls() {
        let text = format(&sample(), true, Some(&sid_names)).unwrap();
        assert!(text.starts_with("REVISION:1\nCONTROL:0x8404\nOWNER:S-1-5-32-544\n"), "{text}");
        assert!(text.contains("ACL:S-1-1-0:0/0x3/0x001f01ff\n"), "{text}");
        assert!(text.contains("ACL:S-1-22-1-5:1/0x0/0x000c0000\n"), "{text}");
        assert_eq!(parse(&text, None).unwrap(), sample());
    }

    #[test]
    fn parses_set_argument() {
        let sd = parse("REVISION:1,OWNER:BUILTIN\\Administrators,GROUP:S-1-22-2-100,ACL:Everyone:ALLOWED/OI|CI/FULL,ACL:S-1-22-1-5:DENIED/0/0x000c0000", Some(&names)).unwrap();
        assert_eq!(sd.control, control::SELF_RELATIVE | control::DACL_PRESENT);
        assert_eq!(sd.owner, Some(Sid::builtin_administrators()));
        assert_eq!(sd.dacl.unwrap().aces, sample().dacl.unwrap().aces[..2].to_vec());
        let bare = parse("OWNER:S-1-1-0", None).unwrap();
        assert_eq!((bare.dacl, bare.control), (None, control::SELF_RELATIVE));
    }

    #[test]
    fn parses_ace_arguments() {
        let aces = parse_aces("ACL:Everyone:ALLOWED/OI|CI|SA/CHANGE,ACL:S-1-1-0:0x1/16/RX", Some(&names)).unwrap();
        assert_eq!(aces[0], Ace::allowed(Sid::world(), 0x0013_01ff, 0x43));
        assert_eq!(aces[1], Ace::denied(Sid::world(), RIGHTS_FILE_READ | RIGHTS_FILE_EXECUTE, ace_flags::INHERITED));
        assert_eq!(parse_ace("S-1-1-0:DENIED/IO/D", None).unwrap(), Ace::denied(Sid::world(), access::DELETE, 8));
    }

    #[test]
    fn errors_name_offset_and_token() {
        let cases: &[(&str, usize, &str)] = &[
            ("ACL:Nobody:ALLOWED/0x0/FULL", 4, "Nobody"),
            ("ACL:S-1-1-0:ALLOWEDX/0x0/FULL", 12, "ALLOWEDX"),
            ("ACL:S-1-1-0:2/0x0/FULL", 12, "not ALLOWED"),
            ("ACL:S-1-1-0:ALLOWED/OI|XX/FULL", 23, "XX"),
            ("ACL:S-1-1-0:ALLOWED/0x100/FULL", 20, "0x100"),
            ("ACL:S-1-1-0:ALLOWED/0x0/RQ", 25, "'Q'"),
            ("ACL:S-1-1-0:ALLOWED/0x0/", 24, "empty"),
            ("ACL:S-1-1-0:ALLOWED/0x0/0x1g", 24, "0x1g"),
            ("ACL:S-1-1-0:ALLOWED/FULL", 12, "TYPE/FLAGS/MASK"),
            ("OWNER:S-1-1-0,OWNER:S-1-1-0", 14, "twice"),
            ("REVISION:2", 9, "revision"),
            ("CONTROL:DP|SR", 11, "out of order"),
            ("CONTROL:SR,ACL:S-1-1-0:ALLOWED/0x0/FULL", 0, "DP"),
            ("GARBAGE", 0, "expected"),
            ("MODE:1", 0, "unknown item"),
        ];
        for (text, offset, needle) in cases {
            let error = parse(text, None).unwrap_err();
            assert_eq!(error.offset, *offset, "{text}: {error}");
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
        assert!(parse_aces("OWNER:S-1-1-0", None).is_err());
        assert!(parse("ACL:Everyone:ALLOWED/0x0/FULL", None).unwrap_err().problem.contains("no name resolver"));
    }

    #[test]
    fn control_names_tell_the_two_srs_apart() {
        let both = control::SELF_RELATIVE | control::SACL_AUTO_INHERIT_REQ | control::DACL_PRESENT;
        assert_eq!(format_control(both, false), "SR|SR|DP");
        assert_eq!(parse_control("SR|SR|DP", 0), Ok(both));
        assert_eq!(format_control(control::SACL_AUTO_INHERIT_REQ, false), "0x200");
        assert_eq!(parse_control("", 0), Ok(0));
    }

    #[test]
    fn refuses_to_print_what_it_cannot_read_back() {
        let mut sd = sample();
        sd.dacl.as_mut().unwrap().aces.push(Ace::new(AceType::SystemAudit, 0, 1, Sid::world()));
        assert!(format(&sd, false, None).unwrap_err().location.contains("dacl.aces[5]"));
    }

    proptest! {
        #[test]
        fn round_trips(sd in arb_smbcacls_security_descriptor(), numeric in any::<bool>()) {
            let text = format(&sd, numeric, None).unwrap();
            prop_assert_eq!(parse(&text, None).unwrap(), sd, "{}", text);
        }

        #[test]
        fn round_trips_through_names(sd in arb_smbcacls_security_descriptor()) {
            let text = format(&sd, false, Some(&sid_names)).unwrap();
            prop_assert_eq!(parse(&text, Some(&names)).unwrap(), sd, "{}", text);
        }

        #[test]
        fn format_never_panics(sd in arb_security_descriptor()) {
            let _ = format(&sd, false, None);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,80}") {
            let _ = parse(&text, Some(&names));
            let _ = parse_aces(&text, None);
        }

        #[test]
        fn parse_never_panics_on_near_text(text in "(ACL:|OWNER:|CONTROL:|S-1-|[0-9x/|:,OICNPRWXDFULSA])*") {
            let _ = parse(&text, Some(&names));
        }
    }
}
