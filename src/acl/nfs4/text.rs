//! The nfs4-acl-tools text form, `type:flags:principal:permissions` (`nfs4_acl(5)`).
//!
//! [`parse`] takes what `nfs4_setfacl -s`/`-S` takes; [`to_text`] prints what
//! `nfs4_getfacl` prints (one ACE per line, without the `# file:` header). Behaviour follows
//! libnfs4acl (`nfs4_ace_from_string`, `nfs4_insert_string_aces`,
//! `nfs4_acl_spec_from_file`, `nfs4_get_ace_flags`, `nfs4_get_ace_access`):
//!
//! - ACEs are separated by `,`, tab, CR or newline; empty entries are skipped; `#` starts a
//!   comment that runs to the end of its line (as in an `-S` file). An ACL needs at least
//!   one ACE. As in the tool, a space before a trailing comment is part of the permissions
//!   field and therefore an error (`A::OWNER@:r # x` is rejected, `A::OWNER@:r# x` is not).
//! - Leading spaces of the type, flags and principal fields are dropped; the permissions
//!   field is taken as is (a stray space there is a bad permission, as in the tool).
//! - Types `A` `D` `U` `L`. Flags `f d n i S F g I` (I = INHERITED, nfs4-acl-tools ≥ 0.4),
//!   printed in that order. Permissions `r w a D d x t T n N c C o y`, printed in that
//!   order, and on input the aliases `R` (rntcy), `W` (waDtTNcCy) and `X` (xtcy).
//! - `GROUP@` gets IDENTIFIER_GROUP whether or not `g` was written (as `nfs4_setfacl`
//!   does), and `g` is printed whenever the flag is set. Principals are read with
//!   [`super::nfs::who_from_str`]: a decimal id is a gid with `g`, a uid without.
//!
//! Deviations, all toward strictness or losslessness:
//! - The type field must be exactly one letter (the tool looks at the first byte only).
//! - `D` (DELETE_CHILD) is kept and printed for every ACL: the tool drops it on files and
//!   prints it only for directories, and we do not know which one the ACL is for.
//! - [`to_text`] fails rather than drop what the text cannot say: ACL flags (NFSv4.1
//!   `aclflag4`), mask bits without a letter (WRITE_RETENTION, WRITE_RETENTION_HOLD,
//!   unknown bits), flag bits without a letter, and names the syntax cannot carry.
//!   `nfs4_getfacl` silently omits such bits.
//! - The O/G/E "who type" flags of nfs4-acl-tools 0.3 are rejected.
//! - A comment ends at its newline. (`nfs4_setfacl -S` cuts the newline off together with
//!   the comment and so glues the next line onto the commented one; `-s` does not treat
//!   `#` inside an entry as a comment at all. We treat `#` the same way everywhere.)
//! - Consequently `to_text` → `parse` gives back the same ACL except that a `GROUP@` ACE
//!   without IDENTIFIER_GROUP comes back with it.
use super::error::Nfs4CodecError;
use super::nfs::{who_from_str, who_to_string};
use super::{ace_flags, mask, Nfs4Ace, Nfs4AceType, Nfs4Acl, SpecialWho, Who};

/// ACE flag letters in `nfs4_getfacl` order.
const FLAG_LETTERS: [(char, u32); 8] = [
    ('f', ace_flags::FILE_INHERIT),
    ('d', ace_flags::DIRECTORY_INHERIT),
    ('n', ace_flags::NO_PROPAGATE_INHERIT),
    ('i', ace_flags::INHERIT_ONLY),
    ('S', ace_flags::SUCCESSFUL_ACCESS),
    ('F', ace_flags::FAILED_ACCESS),
    ('g', ace_flags::IDENTIFIER_GROUP),
    ('I', ace_flags::INHERITED),
];

/// Permission letters in `nfs4_getfacl` order (the directory order, with `D`).
const MASK_LETTERS: [(char, u32); 14] = [
    ('r', mask::READ_DATA),
    ('w', mask::WRITE_DATA),
    ('a', mask::APPEND_DATA),
    ('D', mask::DELETE_CHILD),
    ('d', mask::DELETE),
    ('x', mask::EXECUTE),
    ('t', mask::READ_ATTRIBUTES),
    ('T', mask::WRITE_ATTRIBUTES),
    ('n', mask::READ_NAMED_ATTRS),
    ('N', mask::WRITE_NAMED_ATTRS),
    ('c', mask::READ_ACL),
    ('C', mask::WRITE_ACL),
    ('o', mask::WRITE_OWNER),
    ('y', mask::SYNCHRONIZE),
];

/// `R`: NFS4_ACE_GENERIC_READ of nfs4-acl-tools.
pub const GENERIC_READ: u32 = mask::READ_DATA
    | mask::READ_ATTRIBUTES
    | mask::READ_NAMED_ATTRS
    | mask::READ_ACL
    | mask::SYNCHRONIZE;
/// `W`: NFS4_ACE_GENERIC_WRITE of nfs4-acl-tools (includes DELETE_CHILD).
pub const GENERIC_WRITE: u32 = mask::WRITE_DATA
    | mask::APPEND_DATA
    | mask::READ_ATTRIBUTES
    | mask::WRITE_ATTRIBUTES
    | mask::WRITE_NAMED_ATTRS
    | mask::READ_ACL
    | mask::WRITE_ACL
    | mask::DELETE_CHILD
    | mask::SYNCHRONIZE;
/// `X`: NFS4_ACE_GENERIC_EXECUTE of nfs4-acl-tools.
pub const GENERIC_EXECUTE: u32 =
    mask::EXECUTE | mask::READ_ATTRIBUTES | mask::READ_ACL | mask::SYNCHRONIZE;

const PRINTABLE_FLAGS: u32 = 0xff;
const PRINTABLE_MASK: u32 = 0x001f_01ff;

/// Parses an ACL spec as `nfs4_setfacl -s` / `-S` would. The ACL flags are 0.
pub fn parse(spec: &str) -> Result<Nfs4Acl, Nfs4CodecError> {
    let mut aces = Vec::new();
    for (line_index, line) in spec.split('\n').enumerate() {
        let line_number = line_index + 1;
        let content = match line.find('#') {
            Some(comment) => &line[..comment],
            None => line,
        };
        let mut entry_start = 0;
        for entry in content.split([',', '\t', '\r']) {
            let column = entry_start + 1;
            entry_start += entry.len() + 1;
            if entry.is_empty() {
                continue;
            }
            aces.push(parse_entry(entry, line_number, column)?);
        }
    }
    if aces.is_empty() {
        return Err(Nfs4CodecError::Text {
            line: 1,
            column: 1,
            token: spec.chars().take(40).collect(),
            why: "no ACEs (nfs4_setfacl refuses an empty ACL)".to_string(),
        });
    }
    Ok(Nfs4Acl { flags: 0, aces })
}

/// Parses one ACE, `type:flags:principal:permissions`.
pub fn parse_ace(entry: &str) -> Result<Nfs4Ace, Nfs4CodecError> {
    parse_entry(entry, 1, 1)
}

fn parse_entry(entry: &str, line: usize, column: usize) -> Result<Nfs4Ace, Nfs4CodecError> {
    let error = |offset: usize, token: &str, why: &str| Nfs4CodecError::Text {
        line,
        column: column + offset,
        token: token.to_string(),
        why: why.to_string(),
    };
    // The first three fields end at a colon; the permissions are the rest.
    let mut fields = [(0usize, ""); 4];
    let mut start = 0;
    for slot in fields.iter_mut().take(3) {
        let Some(colon) = entry[start..].find(':') else {
            return Err(error(0, entry, "expected type:flags:principal:permissions"));
        };
        let raw = &entry[start..start + colon];
        let trimmed = raw.trim_start_matches(' ');
        *slot = (start + raw.len() - trimmed.len(), trimmed);
        start += colon + 1;
    }
    fields[3] = (start, &entry[start..]);
    let [(type_at, type_text), (flags_at, flags_text), (who_at, who_text), (mask_at, mask_text)] =
        fields;

    let ace_type = match type_text {
        "A" => Nfs4AceType::Allow,
        "D" => Nfs4AceType::Deny,
        "U" => Nfs4AceType::Audit,
        "L" => Nfs4AceType::Alarm,
        _ => return Err(error(type_at, type_text, "bad ACE type (A, D, U or L)")),
    };

    let mut flags = 0;
    for (index, letter) in flags_text.char_indices() {
        let Some((_, bit)) = FLAG_LETTERS.iter().find(|(l, _)| *l == letter) else {
            return Err(error(
                flags_at + index,
                &letter.to_string(),
                "bad ACE flag (f d n i S F g I)",
            ));
        };
        flags |= bit;
    }
    if who_text == SpecialWho::Group.as_str() {
        flags |= ace_flags::IDENTIFIER_GROUP;
    }
    let who = who_from_str(who_text, flags).map_err(|why| error(who_at, who_text, &why))?;

    let mut access = 0;
    for (index, letter) in mask_text.char_indices() {
        let bits = match letter {
            'R' => GENERIC_READ,
            'W' => GENERIC_WRITE,
            'X' => GENERIC_EXECUTE,
            _ => match MASK_LETTERS.iter().find(|(l, _)| *l == letter) {
                Some((_, bit)) => *bit,
                None => {
                    return Err(error(
                        mask_at + index,
                        &letter.to_string(),
                        "bad permission (r w a D d x t T n N c C o y, or R W X)",
                    ))
                }
            },
        };
        access |= bits;
    }
    Ok(Nfs4Ace {
        ace_type,
        flags,
        mask: access,
        who,
    })
}

/// Prints the ACL as `nfs4_getfacl` does: one `type:flags:principal:permissions` line per
/// ACE, each ending in a newline.
pub fn to_text(acl: &Nfs4Acl) -> Result<String, Nfs4CodecError> {
    acl.validate()?;
    if acl.flags != 0 {
        return Err(Nfs4CodecError::unencodable(
            "nfs4 text",
            format!("ACL flags 0x{:x} have no nfs4_getfacl text form", acl.flags),
        ));
    }
    let mut out = String::new();
    for (index, ace) in acl.aces.iter().enumerate() {
        let line = ace_to_text(ace).map_err(|why| {
            Nfs4CodecError::unencodable("nfs4 text", format!("ACE {index}: {why}"))
        })?;
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// One ACE as `nfs4_getfacl` prints it, without the newline.
pub fn ace_to_text(ace: &Nfs4Ace) -> Result<String, String> {
    ace.validate()?;
    let unprintable_flags = ace.flags & !PRINTABLE_FLAGS;
    if unprintable_flags != 0 {
        return Err(format!(
            "ACE flag bits 0x{unprintable_flags:x} have no letter"
        ));
    }
    let unprintable_mask = ace.mask & !PRINTABLE_MASK;
    if unprintable_mask != 0 {
        return Err(format!(
            "access mask bits 0x{unprintable_mask:x} have no letter"
        ));
    }
    if let Who::Name(name) = &ace.who {
        if name.starts_with(' ') || name.contains([',', '\t', '\r', '\n', ':', '#']) {
            return Err(format!(
                "principal {name:?} contains a separator, ':' or '#', or starts with a space"
            ));
        }
    }
    let type_letter = match ace.ace_type {
        Nfs4AceType::Allow => 'A',
        Nfs4AceType::Deny => 'D',
        Nfs4AceType::Audit => 'U',
        Nfs4AceType::Alarm => 'L',
    };
    let mut out = String::new();
    out.push(type_letter);
    out.push(':');
    for (letter, bit) in FLAG_LETTERS {
        if ace.flags & bit != 0 {
            out.push(letter);
        }
    }
    out.push(':');
    out.push_str(&who_to_string(&ace.who));
    out.push(':');
    for (letter, bit) in MASK_LETTERS {
        if ace.mask & bit != 0 {
            out.push(letter);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let acl = parse("A:fdi:OWNER@:rwaDxtTnNcCoy").unwrap();
        assert_eq!(
            acl.aces,
            vec![Nfs4Ace::new(
                Nfs4AceType::Allow,
                ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT | ace_flags::INHERIT_ONLY,
                // r w a D x t T n N c C o y: everything but DELETE (d)
                0x001e_01ff,
                Who::Special(SpecialWho::Owner),
            )]
        );
    }

    /// The sample file ACL of nfs4_acl(5) (nfs4-acl-tools 0.3.7), in both of its forms: one
    /// ACE per line as nfs4_getfacl prints it, and comma-separated as an acl_spec.
    #[test]
    fn parses_the_nfs4_acl_man_page_sample() {
        use Nfs4AceType::{Allow, Deny};
        const R: u32 = mask::READ_DATA;
        const W: u32 = mask::WRITE_DATA;
        const A: u32 = mask::APPEND_DATA;
        const X: u32 = mask::EXECUTE;
        const D: u32 = mask::DELETE;
        const T_READ: u32 = mask::READ_ATTRIBUTES;
        const T_WRITE: u32 = mask::WRITE_ATTRIBUTES;
        const N_READ: u32 = mask::READ_NAMED_ATTRS;
        const N_WRITE: u32 = mask::WRITE_NAMED_ATTRS;
        const C_READ: u32 = mask::READ_ACL;
        const C_WRITE: u32 = mask::WRITE_ACL;
        const Y: u32 = mask::SYNCHRONIZE;
        let sample = "A::OWNER@:rwatTnNcCy\n\
                      A::alice@nfsdomain.org:rxtncy\n\
                      A::bob@nfsdomain.org:rwadtTnNcCy\n\
                      A:g:GROUP@:rtncy\n\
                      D:g:GROUP@:waxTC\n\
                      A::EVERYONE@:rtncy\n\
                      D::EVERYONE@:waxTC\n";
        let group = ace_flags::IDENTIFIER_GROUP;
        let owner = Who::Special(SpecialWho::Owner);
        let everyone = Who::Special(SpecialWho::Everyone);
        let expected = vec![
            Nfs4Ace::new(
                Allow,
                0,
                R | W | A | T_READ | T_WRITE | N_READ | N_WRITE | C_READ | C_WRITE | Y,
                owner,
            ),
            Nfs4Ace::new(
                Allow,
                0,
                R | X | T_READ | N_READ | C_READ | Y,
                Who::Name("alice@nfsdomain.org".into()),
            ),
            Nfs4Ace::new(
                Allow,
                0,
                R | W | A | D | T_READ | T_WRITE | N_READ | N_WRITE | C_READ | C_WRITE | Y,
                Who::Name("bob@nfsdomain.org".into()),
            ),
            Nfs4Ace::new(
                Allow,
                group,
                R | T_READ | N_READ | C_READ | Y,
                Who::Special(SpecialWho::Group),
            ),
            Nfs4Ace::new(
                Deny,
                group,
                W | A | X | T_WRITE | C_WRITE,
                Who::Special(SpecialWho::Group),
            ),
            Nfs4Ace::new(Allow, 0, R | T_READ | N_READ | C_READ | Y, everyone.clone()),
            Nfs4Ace::new(Deny, 0, W | A | X | T_WRITE | C_WRITE, everyone),
        ];
        let acl = parse(sample).unwrap();
        assert_eq!(
            acl,
            Nfs4Acl {
                flags: 0,
                aces: expected
            }
        );
        assert_eq!(parse(&sample.trim_end().replace('\n', ",")).unwrap(), acl);
        // nfs4_getfacl prints it back letter for letter.
        assert_eq!(to_text(&acl).unwrap(), sample);
    }

    /// The examples of nfs4_setfacl(1): its starting ACL, the ACEs it adds (with and without
    /// aliases, which it says are "the same ACE"), the alias combination `Wdo`, and the ACE
    /// list of its `-x` example, whose first entry lacks a colon and is refused (as the tool
    /// refuses it: three fields).
    #[test]
    fn parses_the_nfs4_setfacl_man_page_examples() {
        let starting = "A::OWNER@:rwatTnNcCy\nD::OWNER@:x\nA:g:GROUP@:rtncy\nD:g:GROUP@:waxTC\n\
                        A::EVERYONE@:rtncy\nD::EVERYONE@:waxTC\n";
        let acl = parse(starting).unwrap();
        assert_eq!(acl.aces.len(), 6);
        assert_eq!(to_text(&acl).unwrap(), starting);

        let spelled = parse_ace("A::alice@nfsdomain.org:rxtncy").unwrap();
        let aliased = parse_ace("A::alice@nfsdomain.org:RX").unwrap();
        assert_eq!(aliased, spelled);
        assert_eq!(spelled.mask, GENERIC_READ | GENERIC_EXECUTE);

        let write_delete_owner = parse_ace("A::OWNER@:Wdo").unwrap();
        assert_eq!(
            write_delete_owner.mask,
            GENERIC_WRITE | mask::DELETE | mask::WRITE_OWNER
        );

        // `-m D::OWNER@:x  D::OWNER@:xo`: both ACE specs are valid on their own.
        assert_eq!(
            parse_ace("D::OWNER@:xo").unwrap().mask,
            mask::EXECUTE | mask::WRITE_OWNER
        );
        assert!(parse_ace("D::OWNER@:x").is_ok());

        let typo = parse("A::EVERYONE@rtncy,D::EVERYONE@:waxTC").unwrap_err();
        assert!(
            matches!(
                typo,
                Nfs4CodecError::Text {
                    line: 1,
                    column: 1,
                    ..
                }
            ),
            "{typo}"
        );
        assert_eq!(parse("D::EVERYONE@:waxTC").unwrap().aces.len(), 1);
    }

    #[test]
    fn parses_an_s_file_with_comments_separators_and_aliases() {
        let spec = "# file: /mnt/x\n\
                    A::OWNER@:rwatTnNcCy, A:g:1001:R\n\
                    D:I:alice@example.com:W# deny writes\r\n\
                    \tU:SF:EVERYONE@:X\n\
                    \n\
                    A::GROUP@:r\n";
        let acl = parse(spec).unwrap();
        assert_eq!(acl.flags, 0);
        assert_eq!(
            acl.aces,
            vec![
                Nfs4Ace::new(
                    Nfs4AceType::Allow,
                    0,
                    0x0016_019f,
                    Who::Special(SpecialWho::Owner)
                ),
                Nfs4Ace::new(
                    Nfs4AceType::Allow,
                    ace_flags::IDENTIFIER_GROUP,
                    GENERIC_READ,
                    Who::Gid(1001)
                ),
                Nfs4Ace::new(
                    Nfs4AceType::Deny,
                    ace_flags::INHERITED,
                    GENERIC_WRITE,
                    Who::Name("alice@example.com".to_string())
                ),
                Nfs4Ace::new(
                    Nfs4AceType::Audit,
                    ace_flags::SUCCESSFUL_ACCESS | ace_flags::FAILED_ACCESS,
                    GENERIC_EXECUTE,
                    Who::Special(SpecialWho::Everyone)
                ),
                // GROUP@ gets the group flag, as nfs4_setfacl gives it.
                Nfs4Ace::new(
                    Nfs4AceType::Allow,
                    ace_flags::IDENTIFIER_GROUP,
                    mask::READ_DATA,
                    Who::Special(SpecialWho::Group)
                ),
            ]
        );
    }

    #[test]
    fn numeric_principal_is_uid_without_g() {
        let acl = parse("A::1001:r").unwrap();
        assert_eq!(acl.aces[0].who, Who::Uid(1001));
    }

    #[test]
    fn reads_nfs4_getfacl_output_with_numeric_ids_and_prints_it_back() {
        // nfs4_getfacl on a server without id mapping: the same number as user and group.
        let output = "A::1001:rwatTnNcy\nA:g:1001:rwatTnNcy\nA::EVERYONE@:rtncy\n";
        let acl = parse(output).unwrap();
        assert_eq!(acl.aces[0].who, Who::Uid(1001));
        assert_eq!(acl.aces[0].flags, 0);
        assert_eq!(acl.aces[1].who, Who::Gid(1001));
        assert_eq!(acl.aces[1].flags, ace_flags::IDENTIFIER_GROUP);
        assert_eq!(to_text(&acl).unwrap(), output);
    }

    #[test]
    fn group_at_gains_the_group_flag_like_nfs4_setfacl() {
        let bare = Nfs4Acl {
            flags: 0,
            aces: vec![Nfs4Ace::new(
                Nfs4AceType::Allow,
                0,
                1,
                Who::Special(SpecialWho::Group),
            )],
        };
        let text = to_text(&bare).unwrap();
        assert_eq!(text, "A::GROUP@:r\n");
        assert_eq!(
            parse(&text).unwrap().aces[0].flags,
            ace_flags::IDENTIFIER_GROUP
        );
    }

    #[test]
    fn leading_spaces_of_the_first_three_fields_are_dropped() {
        let acl = parse("  A: fd:  OWNER@:r").unwrap();
        assert_eq!(acl.aces[0].flags, 0x3);
        assert_eq!(acl.aces[0].who, Who::Special(SpecialWho::Owner));
    }

    #[test]
    fn prints_in_nfs4_getfacl_letter_order() {
        let acl = Nfs4Acl {
            flags: 0,
            aces: vec![
                Nfs4Ace::new(
                    Nfs4AceType::Allow,
                    ace_flags::INHERITED | ace_flags::IDENTIFIER_GROUP | ace_flags::FILE_INHERIT,
                    mask::SYNCHRONIZE | mask::READ_DATA | mask::DELETE | mask::DELETE_CHILD,
                    Who::Gid(1001),
                ),
                Nfs4Ace::new(
                    Nfs4AceType::Alarm,
                    ace_flags::FAILED_ACCESS,
                    mask::WRITE_OWNER,
                    Who::Name("bob@ex".to_string()),
                ),
                Nfs4Ace::new(Nfs4AceType::Deny, 0, 0, Who::Uid(0)),
            ],
        };
        assert_eq!(
            to_text(&acl).unwrap(),
            "A:fgI:1001:rDdy\nL:F:bob@ex:o\nD::0:\n"
        );
    }

    #[test]
    fn errors_name_line_column_and_token() {
        let cases: [(&str, usize, usize, &str); 7] = [
            ("A::OWNER@:rq", 1, 12, "q"),
            ("A::OWNER@:r,\nX::OWNER@:r", 2, 1, "X"),
            ("A::OWNER@:r, Allow::OWNER@:r", 1, 14, "Allow"),
            ("A:O:OWNER@:r", 1, 3, "O"),
            ("A::NOBODY@:r", 1, 4, "NOBODY@"),
            ("A::OWNER@", 1, 1, "A::OWNER@"),
            ("A::OWNER@:rw ", 1, 13, " "),
        ];
        for (spec, line, column, token) in cases {
            match parse(spec) {
                Err(Nfs4CodecError::Text {
                    line: l,
                    column: c,
                    token: t,
                    ..
                }) => assert_eq!((l, c, t.as_str()), (line, column, token), "{spec:?}"),
                other => panic!("{spec:?}: expected a text error, got {other:?}"),
            }
        }
        assert!(parse("# only a comment\n").is_err());
    }

    #[test]
    fn refuses_to_print_what_it_cannot_say() {
        let mut acl = parse("A::OWNER@:r").unwrap();
        acl.aces[0].mask |= mask::WRITE_RETENTION;
        assert!(to_text(&acl).unwrap_err().to_string().contains("0x200"));
        let mut acl = parse("A::OWNER@:r").unwrap();
        acl.flags = super::super::acl_flags::AUTO_INHERIT;
        assert!(to_text(&acl).is_err());
        let named = Nfs4Ace::new(Nfs4AceType::Allow, 0, 1, Who::Name("a:b".to_string()));
        assert!(ace_to_text(&named).unwrap_err().contains("\"a:b\""));
    }
}

#[cfg(test)]
mod properties {
    use super::super::strategies;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn printed_text_parses_back_to_the_same_acl(acl in strategies::text_acl()) {
            let text = to_text(&acl).unwrap();
            prop_assert_eq!(parse(&text).unwrap(), acl);
        }

        #[test]
        fn parser_never_panics_on_arbitrary_text(spec in ".{0,80}") {
            let _ = parse(&spec);
        }

        #[test]
        fn parser_never_panics_on_near_valid_text(
            acl in strategies::text_acl(),
            noise in "[A-Za-z0-9:@,#\t\r\n é]{1,4}",
            at in any::<prop::sample::Index>(),
        ) {
            let mut text = to_text(&acl).unwrap();
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.insert_str(cut, &noise);
            if let Ok(parsed) = parse(&text) {
                prop_assert!(parsed.validate().is_ok());
            }
        }
    }
}
