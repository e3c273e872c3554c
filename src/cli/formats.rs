//! Every ACL format the CLI reads and writes, and the NT ↔ NFSv4 conversions between them.
use std::fmt;

use base64::Engine as _;
use clap::ValueEnum;

use nfsbridge::acl::idmap::IdMap;
use nfsbridge::acl::mapping::{nfs4_to_sd, sd_to_nfs4, FileContext, MappingOptions, Nfs4Acls};
use nfsbridge::acl::nfs4::{self, acl_flags, Nfs4Acl, Nfs4Encoding};
use nfsbridge::acl::sd::{self, SecurityDescriptor};

/// An ACL format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// NFSv4 ACL as nfs4_getfacl/nfs4_setfacl text (`A:fd:OWNER@:rwaDxtTnNcCoy`).
    Nfs4,
    /// NFSv4 ACL as JSON.
    #[value(name = "nfs4-json")]
    Nfs4Json,
    /// NT security descriptor as SDDL (`O:..G:..D:(A;;FA;;;WD)`).
    Sddl,
    /// NT security descriptor as smbcacls text (`REVISION:1,OWNER:..,ACL:..`).
    Smbcacls,
    /// NT security descriptor as JSON.
    Json,
    /// NT security descriptor, self-relative binary (MS-DTYP 2.4.6). Binary.
    Sd,
    /// NFSv4 ACL, Samba/TrueNAS `nfsacl41i` XDR. Binary.
    Xdr,
    /// NFSv4 ACL, Samba `nfs4acl` NDR. Binary.
    Ndr,
    /// NFSv4 ACL, NFSv4.0 `nfsace4<>` (Linux client `system.nfs4_acl`). Binary.
    Nfs40,
    /// NFSv4 ACL, NFSv4.1 `nfsacl41`. Binary.
    Nfs41,
}

/// How binary formats travel through a terminal or a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Binary {
    /// Lower-case hex (whitespace ignored on input).
    #[default]
    Hex,
    /// Standard base64 (whitespace ignored on input).
    Base64,
    /// The bytes themselves.
    Raw,
}

/// A parsed ACL of either model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclValue {
    Nt(SecurityDescriptor),
    Nfs4(Nfs4Acl),
}

impl Format {
    pub fn is_binary(self) -> bool {
        matches!(
            self,
            Format::Sd | Format::Xdr | Format::Ndr | Format::Nfs40 | Format::Nfs41
        )
    }

    pub fn is_nt(self) -> bool {
        matches!(self, Format::Sddl | Format::Smbcacls | Format::Json | Format::Sd)
    }

    fn encoding(self) -> Option<Nfs4Encoding> {
        match self {
            Format::Xdr => Some(Nfs4Encoding::Xdr),
            Format::Ndr => Some(Nfs4Encoding::Ndr),
            Format::Nfs40 => Some(Nfs4Encoding::Nfs40),
            Format::Nfs41 => Some(Nfs4Encoding::Nfs41),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_possible_value().expect("no skipped variants").get_name())
    }
}

/// Guesses the format of text input: `{` is JSON (a security descriptor or an NFSv4 ACL,
/// whichever parses), `O:`/`G:`/`D:`/`S:` SDDL (but `D:` text that parses as nfs4 text,
/// `D:flags:who:perms`, is nfs4), `REVISION:`/`OWNER:`/`GROUP:`/`ACL:`/
/// `CONTROL:` smbcacls, anything else nfs4 text. Binary formats are never guessed.
pub fn detect(input: &[u8]) -> Format {
    let text = String::from_utf8_lossy(input);
    let start = text.trim_start();
    if start.starts_with('{') {
        if sd::json::from_json(start).is_err() && nfs4::json::from_json(start).is_ok() {
            return Format::Nfs4Json;
        }
        return Format::Json;
    }
    // `D:` starts an SDDL DACL and an nfs4 DENY ACE alike: nfs4 text if it parses as such.
    if start.starts_with("D:") && nfs4::text::parse(start).is_ok() {
        return Format::Nfs4;
    }
    if ["O:", "G:", "D:", "S:"].iter().any(|p| start.starts_with(p)) {
        return Format::Sddl;
    }
    if ["REVISION:", "OWNER:", "GROUP:", "ACL:", "CONTROL:"]
        .iter()
        .any(|p| start.starts_with(p))
    {
        return Format::Smbcacls;
    }
    Format::Nfs4
}

/// Parses `input` in `format`; binary formats are first decoded from `binary`.
pub fn parse(format: Format, input: &[u8], binary: Binary) -> Result<AclValue, String> {
    if format.is_binary() {
        let bytes = decode_binary(input, binary)?;
        return match format.encoding() {
            Some(encoding) => encoding.decode(&bytes).map(AclValue::Nfs4).map_err(|e| e.to_string()),
            None => sd::binary::decode(&bytes).map(AclValue::Nt).map_err(|e| e.to_string()),
        };
    }
    let text = std::str::from_utf8(input).map_err(|e| format!("{format} input is not UTF-8: {e}"))?;
    match format {
        Format::Nfs4 => parse_nfs4_text(text).map(AclValue::Nfs4),
        Format::Nfs4Json => nfs4::json::from_json(text)
            .map(AclValue::Nfs4)
            .map_err(|e| e.to_string()),
        Format::Sddl => sd::sddl::parse(text.trim(), None)
            .map(AclValue::Nt)
            .map_err(|e| e.to_string()),
        Format::Smbcacls => sd::smbcacls::parse(text.trim(), None)
            .map(AclValue::Nt)
            .map_err(|e| e.to_string()),
        Format::Json => sd::json::from_json(text).map(AclValue::Nt).map_err(|e| e.to_string()),
        Format::Sd | Format::Xdr | Format::Ndr | Format::Nfs40 | Format::Nfs41 => unreachable!("binary handled above"),
    }
}

/// Writes `value` (already of the format's model) in `format`.
pub fn render(format: Format, value: &AclValue, binary: Binary) -> Result<Vec<u8>, String> {
    let bytes = match (format.encoding(), value) {
        (Some(encoding), AclValue::Nfs4(acl)) => encoding.encode(acl).map_err(|e| e.to_string())?,
        (None, AclValue::Nt(sd)) if format == Format::Sd => sd::binary::encode(sd).map_err(|e| e.to_string())?,
        _ => {
            let text = match (format, value) {
                (Format::Nfs4, AclValue::Nfs4(acl)) => nfs4_text(acl)?,
                (Format::Nfs4Json, AclValue::Nfs4(acl)) => nfs4::json::to_json(acl).map_err(|e| e.to_string())? + "\n",
                (Format::Sddl, AclValue::Nt(sd)) => sd::sddl::format(sd, None).map_err(|e| e.to_string())? + "\n",
                (Format::Smbcacls, AclValue::Nt(sd)) => {
                    sd::smbcacls::format(sd, false, None).map_err(|e| e.to_string())?
                }
                (Format::Json, AclValue::Nt(sd)) => sd::json::to_json(sd) + "\n",
                _ => unreachable!("render is called with a value of the format's model"),
            };
            return Ok(text.into_bytes());
        }
    };
    Ok(encode_binary(&bytes, binary))
}

/// The ACL flags line of our nfs4 text: nfs4_getfacl text has no syntax for NFSv4.1 ACL
/// flags, so they travel in a comment that nfs4_setfacl ignores and we read back.
const ACL_FLAGS_PREFIX: &str = "# acl_flags:";
const ACL_FLAG_NAMES: [(&str, u32); 3] = [
    ("AUTO_INHERIT", acl_flags::AUTO_INHERIT),
    ("PROTECTED", acl_flags::PROTECTED),
    ("DEFAULTED", acl_flags::DEFAULTED),
];

/// nfs4_getfacl text, preceded by `# acl_flags: A|B` when the ACL has flags.
pub fn nfs4_text(acl: &Nfs4Acl) -> Result<String, String> {
    let mut out = String::new();
    if acl.flags != 0 {
        let unknown = acl.flags & !ACL_FLAG_NAMES.iter().fold(0, |all, (_, bit)| all | bit);
        if unknown != 0 {
            return Err(format!(
                "ACL flag bits {unknown:#x} have no name in nfs4 text; use nfs4-json"
            ));
        }
        let names: Vec<&str> = ACL_FLAG_NAMES
            .iter()
            .filter(|(_, bit)| acl.flags & bit != 0)
            .map(|(name, _)| *name)
            .collect();
        out.push_str(&format!("{ACL_FLAGS_PREFIX} {}\n", names.join("|")));
    }
    let body = Nfs4Acl {
        flags: 0,
        aces: acl.aces.clone(),
    };
    out.push_str(&nfs4::text::to_text(&body).map_err(|e| e.to_string())?);
    Ok(out)
}

fn parse_nfs4_text(text: &str) -> Result<Nfs4Acl, String> {
    let mut flags = 0;
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix(ACL_FLAGS_PREFIX) {
            for name in rest.split('|').map(str::trim).filter(|n| !n.is_empty()) {
                let (_, bit) = ACL_FLAG_NAMES
                    .iter()
                    .find(|(known, _)| *known == name)
                    .ok_or_else(|| format!("{ACL_FLAGS_PREFIX} line: unknown ACL flag {name:?}"))?;
                flags |= bit;
            }
        }
    }
    let mut acl = nfs4::text::parse(text).map_err(|e| e.to_string())?;
    acl.flags = flags;
    Ok(acl)
}

fn decode_binary(input: &[u8], binary: Binary) -> Result<Vec<u8>, String> {
    match binary {
        Binary::Raw => Ok(input.to_vec()),
        Binary::Hex => {
            let digits: Vec<u8> = input.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            if digits.len() % 2 != 0 {
                return Err(format!("hex input has an odd number of digits ({})", digits.len()));
            }
            digits
                .chunks(2)
                .enumerate()
                .map(|(index, pair)| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                        .ok_or_else(|| {
                            format!(
                                "hex input: {:?} at digit {} is not a hex byte",
                                String::from_utf8_lossy(pair),
                                index * 2
                            )
                        })
                })
                .collect()
        }
        Binary::Base64 => {
            let text: Vec<u8> = input.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("base64 input: {e}"))
        }
    }
}

fn encode_binary(bytes: &[u8], binary: Binary) -> Vec<u8> {
    match binary {
        Binary::Raw => bytes.to_vec(),
        Binary::Hex => {
            let mut text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            text.push('\n');
            text.into_bytes()
        }
        Binary::Base64 => (base64::engine::general_purpose::STANDARD.encode(bytes) + "\n").into_bytes(),
    }
}

/// What an NT descriptor means as an NFSv4 ACL for a file: the ACL and the owner and group
/// it sets (when the descriptor has them).
pub struct FromNt {
    pub acl: Nfs4Acl,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// SD → NFSv4 (DACL and SACL combined into one ACL, as the xattr encodings store it).
pub fn nt_to_nfs4(sd: &SecurityDescriptor, file: &FileContext, idmap: &dyn IdMap) -> Result<FromNt, String> {
    let mapped = sd_to_nfs4(sd, file, idmap, &MappingOptions::default()).map_err(|e| e.to_string())?;
    if mapped.acls.dacl.is_none() {
        return Err("the security descriptor has no DACL: there is no ACL to write (an absent or NULL DACL is refused; write D:(A;;FA;;;WD) to grant everyone everything)".into());
    }
    let acl = mapped
        .acls
        .to_combined()
        .map_err(|e| e.to_string())?
        .expect("a DACL is present");
    Ok(FromNt {
        acl,
        uid: mapped.owner,
        gid: mapped.group,
    })
}

/// NFSv4 → SD for a file.
pub fn nfs4_to_nt(acl: &Nfs4Acl, file: &FileContext, idmap: &dyn IdMap) -> Result<SecurityDescriptor, String> {
    let acls = Nfs4Acls::from_combined(acl);
    nfs4_to_sd(&acls, file, idmap, &MappingOptions::default())
        .map(|m| m.sd)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_tells_the_text_formats_apart() {
        assert_eq!(detect(b"O:BAG:BAD:(A;;FA;;;WD)"), Format::Sddl);
        assert_eq!(detect(b"  D:P(A;;FA;;;WD)\n"), Format::Sddl);
        assert_eq!(
            detect(b"REVISION:1,OWNER:S-1-1-0,ACL:S-1-1-0:ALLOWED/0x0/FULL"),
            Format::Smbcacls
        );
        assert_eq!(detect(b"A::OWNER@:rwx"), Format::Nfs4);
        assert_eq!(detect(b"D:g:20:w,A::EVERYONE@:r"), Format::Nfs4);
        assert_eq!(detect(b"D:P(A;;FA;;;WD)"), Format::Sddl);
        assert_eq!(detect(b"D:"), Format::Sddl);
        assert_eq!(detect(br#"{"flags":0,"aces":[]}"#), Format::Nfs4Json);
        assert_eq!(
            detect(br#"{"revision":1,"control":32772,"dacl":{"revision":2,"aces":[]}}"#),
            Format::Json
        );
    }

    #[test]
    fn binary_transports_round_trip_and_name_bad_input() {
        let bytes = vec![0u8, 1, 0xfe, 0xff, 0x10];
        for binary in [Binary::Hex, Binary::Base64, Binary::Raw] {
            assert_eq!(
                decode_binary(&encode_binary(&bytes, binary), binary).unwrap(),
                bytes,
                "{binary:?}"
            );
        }
        assert_eq!(decode_binary(b"00 01\nfe ff 10", Binary::Hex).unwrap(), bytes);
        assert!(decode_binary(b"abc", Binary::Hex).unwrap_err().contains("odd"));
        assert!(decode_binary(b"zz", Binary::Hex).unwrap_err().contains("\"zz\""));
        assert!(decode_binary(b"!!!!", Binary::Base64).unwrap_err().contains("base64"));
    }

    #[test]
    fn nfs4_text_carries_acl_flags_in_a_comment() {
        let acl = Nfs4Acl {
            flags: acl_flags::AUTO_INHERIT | acl_flags::PROTECTED,
            aces: nfs4::text::parse("A::OWNER@:rwa").unwrap().aces,
        };
        let text = nfs4_text(&acl).unwrap();
        assert!(text.starts_with("# acl_flags: AUTO_INHERIT|PROTECTED\n"), "{text}");
        assert_eq!(parse_nfs4_text(&text).unwrap(), acl);
        assert!(parse_nfs4_text("# acl_flags: BOGUS\nA::OWNER@:r")
            .unwrap_err()
            .contains("BOGUS"));
        let odd = Nfs4Acl {
            flags: 0x100,
            aces: acl.aces.clone(),
        };
        assert!(nfs4_text(&odd).unwrap_err().contains("0x100"));
    }
}
