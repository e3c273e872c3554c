//! Throughput of the ACL core in ACEs per second: every codec both ways, the NT ↔ NFSv4
//! mapping both ways and the POSIX mirror, for ACLs of 4, 16 and 64 ACEs.
//!
//! A plain `harness = false` bench with `std::time` (no benchmark framework to build). Each
//! operation runs in timed batches of about `--sample-ms` milliseconds (default 200); the
//! reported rate is the median of `--samples` batches (default 5), after one warm-up batch.
//! One thread: the numbers are per core. `scripts/bench-acl.sh` runs it in release mode.
//!
//!   cargo bench --bench acl_throughput -- [--sizes 4,16,64] [--only NAME-PART] [--samples N] [--sample-ms MS] [--markdown]
use std::hint::black_box;
use std::time::{Duration, Instant};

use nfsbridge::acl::idmap::UnixSids;
use nfsbridge::acl::mapping::{self, FileContext, MappingOptions, Nfs4Acls};
use nfsbridge::acl::nfs4::{self, Nfs4Acl, Nfs4Encoding};
use nfsbridge::acl::posix;
use nfsbridge::acl::sd::{self, access, ace_flags, control, Ace, Acl, SecurityDescriptor};
use nfsbridge::acl::sid::Sid;

/// ACL sizes measured unless `--sizes` says otherwise.
const DEFAULT_SIZES: [usize; 3] = [4, 16, 64];
const OWNER_UID: u32 = 1000;
const OWNER_GID: u32 = 100;
/// The goal of issue 3: at least a million ACEs per second per core.
const TARGET_ACES_PER_SECOND: f64 = 1e6;

/// A directory's descriptor with `count` ACEs of the kinds real file servers carry: the
/// owner and owning group, other Unix users and groups, Everyone, CREATOR OWNER, allow and
/// deny, inheritable and inherited. Every SID maps through the Unix SIDs, so both mapping
/// directions are total.
fn directory_sd(count: usize) -> SecurityDescriptor {
    let inherit = ace_flags::OBJECT_INHERIT | ace_flags::CONTAINER_INHERIT;
    let aces = (0..count)
        .map(|i| {
            let n = i as u32;
            match i % 8 {
                0 => Ace::allowed(Sid::unix_user(OWNER_UID), access::FILE_ALL_ACCESS, 0),
                1 => Ace::allowed(
                    Sid::unix_group(OWNER_GID),
                    access::FILE_GENERIC_READ | access::FILE_EXECUTE,
                    0,
                ),
                2 => Ace::denied(
                    Sid::unix_user(2000 + n),
                    access::FILE_WRITE_DATA | access::FILE_APPEND_DATA,
                    0,
                ),
                3 => Ace::allowed(
                    Sid::unix_group(3000 + n),
                    access::FILE_GENERIC_READ | access::FILE_GENERIC_WRITE,
                    inherit,
                ),
                4 => Ace::allowed(Sid::world(), access::FILE_GENERIC_READ, inherit | ace_flags::INHERITED),
                5 => Ace::allowed(
                    Sid::creator_owner(),
                    access::FILE_ALL_ACCESS,
                    inherit | ace_flags::INHERIT_ONLY,
                ),
                6 => Ace::allowed(
                    Sid::unix_user(4000 + n),
                    access::FILE_GENERIC_READ,
                    ace_flags::CONTAINER_INHERIT,
                ),
                _ => Ace::denied(
                    Sid::unix_group(5000 + n),
                    access::DELETE | access::WRITE_DAC,
                    ace_flags::INHERITED,
                ),
            }
        })
        .collect();
    let mut sd = SecurityDescriptor::new();
    sd.control |= control::DACL_PRESENT | control::DACL_PROTECTED;
    sd.owner = Some(Sid::unix_user(OWNER_UID));
    sd.group = Some(Sid::unix_group(OWNER_GID));
    sd.dacl = Some(Acl::new(aces));
    sd
}

/// Everything one size needs, prepared once so that each timed operation does only its work.
struct Inputs {
    sd: SecurityDescriptor,
    sd_binary: Vec<u8>,
    sddl: String,
    nfs4: Nfs4Acl,
    /// The same ACL as the mapping's NFSv4 side.
    nfs4_acls: Nfs4Acls,
    xdr: Vec<u8>,
    ndr: Vec<u8>,
    nfs41: Vec<u8>,
    /// The NFSv4 ACL without its ACL flags, which the text form cannot say.
    text_acl: Nfs4Acl,
    text: String,
}

const DIRECTORY: FileContext = FileContext {
    uid: OWNER_UID,
    gid: OWNER_GID,
    is_directory: true,
};

impl Inputs {
    fn new(count: usize) -> Inputs {
        let sd = directory_sd(count);
        let mapped = mapping::sd_to_nfs4(&sd, &DIRECTORY, &UnixSids, &MappingOptions::default())
            .expect("the benchmark descriptor maps");
        let nfs4 = mapped.acls.dacl.expect("a DACL");
        assert_eq!(nfs4.aces.len(), count, "one NFSv4 ACE per NT ACE");
        let text_acl = Nfs4Acl {
            flags: 0,
            aces: nfs4.aces.clone(),
        };
        Inputs {
            sd_binary: sd::binary::encode(&sd).expect("encodes"),
            sddl: sd::sddl::format(&sd, None).expect("formats"),
            xdr: Nfs4Encoding::Xdr.encode(&nfs4).expect("xdr"),
            ndr: Nfs4Encoding::Ndr.encode(&nfs4).expect("ndr"),
            nfs41: Nfs4Encoding::Nfs41.encode(&nfs4).expect("nfs41"),
            text: nfs4::text::to_text(&text_acl).expect("text"),
            text_acl,
            nfs4_acls: Nfs4Acls {
                dacl: Some(nfs4.clone()),
                sacl: None,
            },
            sd,
            nfs4,
        }
    }
}

type Operation = (&'static str, fn(&Inputs));

/// Each operation checks its result (an `expect`), so that a failing codec cannot look fast.
const OPERATIONS: &[Operation] = &[
    ("SD binary decode", |i| {
        black_box(sd::binary::decode(black_box(&i.sd_binary)).expect("decode"));
    }),
    ("SD binary encode", |i| {
        black_box(sd::binary::encode(black_box(&i.sd)).expect("encode"));
    }),
    ("SDDL parse", |i| {
        black_box(sd::sddl::parse(black_box(&i.sddl), None).expect("parse"));
    }),
    ("SDDL format", |i| {
        black_box(sd::sddl::format(black_box(&i.sd), None).expect("format"));
    }),
    ("NFSv4 xdr decode", |i| {
        black_box(Nfs4Encoding::Xdr.decode(black_box(&i.xdr)).expect("decode"));
    }),
    ("NFSv4 xdr encode", |i| {
        black_box(Nfs4Encoding::Xdr.encode(black_box(&i.nfs4)).expect("encode"));
    }),
    ("NFSv4 ndr decode", |i| {
        black_box(Nfs4Encoding::Ndr.decode(black_box(&i.ndr)).expect("decode"));
    }),
    ("NFSv4 ndr encode", |i| {
        black_box(Nfs4Encoding::Ndr.encode(black_box(&i.nfs4)).expect("encode"));
    }),
    ("NFSv4 nfs (4.1) decode", |i| {
        black_box(Nfs4Encoding::Nfs41.decode(black_box(&i.nfs41)).expect("decode"));
    }),
    ("NFSv4 nfs (4.1) encode", |i| {
        black_box(Nfs4Encoding::Nfs41.encode(black_box(&i.nfs4)).expect("encode"));
    }),
    ("nfs4 text parse", |i| {
        black_box(nfs4::text::parse(black_box(&i.text)).expect("parse"));
    }),
    ("nfs4 text format", |i| {
        black_box(nfs4::text::to_text(black_box(&i.text_acl)).expect("format"));
    }),
    ("map NT -> NFSv4", |i| {
        black_box(
            mapping::sd_to_nfs4(black_box(&i.sd), &DIRECTORY, &UnixSids, &MappingOptions::default()).expect("map"),
        );
    }),
    ("map NFSv4 -> NT", |i| {
        black_box(
            mapping::nfs4_to_sd(
                black_box(&i.nfs4_acls),
                &DIRECTORY,
                &UnixSids,
                &MappingOptions::default(),
            )
            .expect("map"),
        );
    }),
    ("POSIX mirror", |i| {
        black_box(posix::mirror(black_box(&i.nfs4), OWNER_UID, OWNER_GID, true));
    }),
];

/// Runs `operation` in batches and returns the median of `samples` rates, in ACEs/s.
fn measure(operation: fn(&Inputs), inputs: &Inputs, aces: usize, samples: usize, sample_time: Duration) -> f64 {
    // Calibrate: double the batch until one batch takes a tenth of the sample time.
    let mut batch = 1usize;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            operation(inputs);
        }
        if start.elapsed() >= sample_time / 10 || batch >= 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let batch = batch * 10;
    // Warm-up batch, then the timed ones.
    (0..batch).for_each(|_| operation(inputs));
    let mut rates: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                operation(inputs);
            }
            (batch * aces) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2} M", rate / 1e6)
    } else {
        format!("{:.0} k", rate / 1e3)
    }
}

struct Args {
    sizes: Vec<usize>,
    /// Only operations whose name contains this (for profiling one of them).
    only: Option<String>,
    samples: usize,
    sample_time: Duration,
    markdown: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        sizes: DEFAULT_SIZES.to_vec(),
        only: None,
        samples: 5,
        sample_time: Duration::from_millis(200),
        markdown: false,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut number = |name: &str| -> u64 {
            given
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--samples" => args.samples = number("--samples").max(1) as usize,
            "--sample-ms" => args.sample_time = Duration::from_millis(number("--sample-ms").max(1)),
            "--markdown" => args.markdown = true,
            "--only" => args.only = Some(given.next().expect("--only needs part of an operation name")),
            "--sizes" => {
                let list = given.next().unwrap_or_default();
                args.sizes = list
                    .split(',')
                    .map(|n| n.trim().parse().ok().filter(|&n| n > 0))
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| panic!("--sizes needs a comma-separated list of ACE counts, not {list:?}"));
            }
            // `cargo bench` passes `--bench`; filters are not supported.
            "--bench" => {}
            other => panic!("unknown argument {other:?} (see the header of benches/acl_throughput.rs)"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let inputs: Vec<Inputs> = args.sizes.iter().map(|&n| Inputs::new(n)).collect();
    let header: Vec<String> = args.sizes.iter().map(|n| format!("{n} ACEs")).collect();
    if args.markdown {
        println!("| operation | {} |", header.join(" | "));
        println!("|---|{}", "---:|".repeat(args.sizes.len()));
    } else {
        println!(
            "ACEs per second, one thread (median of {} samples of {:?})",
            args.samples, args.sample_time
        );
        println!(
            "{:<24}{}",
            "operation",
            header.iter().map(|h| format!("{h:>14}")).collect::<String>()
        );
    }
    let mut below_target = Vec::new();
    let selected = OPERATIONS
        .iter()
        .filter(|(name, _)| args.only.as_ref().map_or(true, |part| name.contains(part.as_str())));
    for (name, operation) in selected {
        let rates: Vec<f64> = args
            .sizes
            .iter()
            .zip(&inputs)
            .map(|(&n, input)| measure(*operation, input, n, args.samples, args.sample_time))
            .collect();
        for (&n, &rate) in args.sizes.iter().zip(&rates) {
            if rate < TARGET_ACES_PER_SECOND {
                below_target.push(format!("{name} ({n} ACEs): {}", human(rate)));
            }
        }
        if args.markdown {
            println!(
                "| {name} | {} |",
                rates.iter().map(|r| human(*r)).collect::<Vec<_>>().join(" | ")
            );
        } else {
            println!(
                "{name:<24}{}",
                rates.iter().map(|r| format!("{:>14}", human(*r))).collect::<String>()
            );
        }
    }
    println!();
    if below_target.is_empty() {
        println!("every operation reaches {} ACEs/s", human(TARGET_ACES_PER_SECOND));
    } else {
        println!(
            "below {} ACEs/s: {}",
            human(TARGET_ACES_PER_SECOND),
            below_target.join("; ")
        );
    }
}
