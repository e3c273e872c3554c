//! The bridge's failover controls with real bridge processes and kernel leases: this test
//! process plays smbd through `BridgeClient` (as `tests/lease_daemon.rs` does), the admin is
//! the real `nfsbridge unlock-ip` / `unlock-fs` / `grace` CLI in a child process (another pid,
//! so the bridge can tell it from the smbd), and a local opener is this process opening the
//! file with O_NONBLOCK. The whole path through a real smbd is `tests/integration/test_failover.py`.
use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nfsbridge::lease::client::{BridgeClient, FailoverRequest};
use nfsbridge::lease::failover::{GraceEntry, ReleaseReport, ReleaseScope};
use nfsbridge::lease::table::{Caching, GrantKind, InodeKey};

mod common;
use common::{exclusive, reference, Bridge, WAIT};

const CLIENT: &str = "127.0.0.9";

/// The failover tests' bridge admits uid 65534 besides root (the non-root admin test).
fn start_bridge() -> Bridge {
    Bridge::start(&["--allow-uid", "65534"])
}

impl Bridge {
    /// A connection that speaks as an smbd (it asks for the grace periods first, as the module
    /// does right after connecting).
    fn smbd(&self) -> (BridgeClient, Vec<GraceEntry>) {
        let mut client = BridgeClient::connect(&self.socket).expect("client connects");
        let grace = client.grace_query().expect("grace query");
        (client, grace)
    }

    /// The CLI, started (not waited for).
    fn cli(&self, args: &[&str]) -> Child {
        let _forking = exclusive();
        Command::new(env!("CARGO_BIN_EXE_nfsbridge"))
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the CLI runs")
    }

}

fn local_open_blocks(path: &Path) -> bool {
    let _opening = exclusive();
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(_) => false,
        Err(error) if error.raw_os_error() == Some(libc::EWOULDBLOCK) => true,
        Err(error) => panic!("local open: {error}"),
    }
}

/// Opens `path` through the bridge and has RWH backed for a client of `server`.
fn cached_open(
    bridge: &Bridge,
    client: &mut BridgeClient,
    path: &Path,
    file_id: u64,
    server: &str,
) -> InodeKey {
    let (_dup, inode, _) = client
        .open_description(reference(path).as_fd(), &bridge.share, file_id, true, true)
        .expect("open");
    let granted = client
        .grant(
            inode,
            file_id,
            GrantKind::Lease([file_id as u8; 16]),
            Caching::RWH,
            &bridge.share,
            CLIENT,
            server,
        )
        .expect("grant");
    assert_eq!(granted, Caching::RWH);
    inode
}

/// Waits for the bridge's failover requests to this smbd.
fn failover_requests(client: &mut BridgeClient, limit: Duration) -> Vec<FailoverRequest> {
    let start = Instant::now();
    loop {
        client.take_break_requests().expect("bridge still there");
        let requests = client.take_failover_requests();
        if !requests.is_empty() || start.elapsed() > limit {
            return requests;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn release_request(client: &mut BridgeClient) -> (u64, ReleaseScope) {
    for request in failover_requests(client, WAIT) {
        if let FailoverRequest::Release { request_id, scope } = request {
            return (request_id, scope);
        }
    }
    panic!("no release request within {WAIT:?}");
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("the CLI ends")
}

fn report(output: &Output) -> ReleaseReport {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn unlock_ip_returns_once_the_smbd_of_that_address_has_gone() {
    let bridge = start_bridge();
    let path = bridge.file("a.txt", b"x");
    let (mut smbd, _) = bridge.smbd();
    cached_open(&bridge, &mut smbd, &path, 1, "ipv4:127.0.0.1:445");
    assert!(local_open_blocks(&path));
    // That break goes to the smbd; it answers with nothing cached left.
    let started = Instant::now();
    let mut admin = bridge.cli(&["unlock-ip", "127.0.0.1", "--timeout", "10", "--json"]);
    let (_request_id, scope) = release_request(&mut smbd);
    assert_eq!(scope, ReleaseScope::ServerAddress("127.0.0.1".into()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        admin.try_wait().unwrap().is_none(),
        "unlock-ip returned while the smbd was still there"
    );
    // The smbd ends (as the module does when its connection is in scope).
    drop(smbd);
    let output = finish(admin);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = report(&output);
    assert!(report.complete);
    assert_eq!(
        report.released,
        Vec::<u32>::new(),
        "the smbd never said it was releasing"
    );
    assert!(report.remaining.is_empty() && report.holders.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !local_open_blocks(&path),
        "the kernel lease went with the smbd"
    );
}

#[test]
fn smbds_of_other_addresses_and_file_systems_are_left_alone() {
    let bridge = start_bridge();
    let path = bridge.file("b.txt", b"x");
    let (mut smbd, _) = bridge.smbd();
    cached_open(&bridge, &mut smbd, &path, 1, "ipv4:127.0.0.2:445");
    let admin = bridge.cli(&["unlock-ip", "127.0.0.1", "--timeout", "10", "--json"]);
    let (request_id, _) = release_request(&mut smbd);
    smbd.release_answer(request_id, false).unwrap();
    let output = finish(admin);
    assert!(output.status.success());
    let report = report(&output);
    assert!(report.complete && report.asked == 1 && report.released.is_empty());

    // A file system this file is not on: `/proc` (its own st_dev).
    let admin = bridge.cli(&["unlock-fs", "/proc", "--timeout", "10", "--json"]);
    let (request_id, scope) = release_request(&mut smbd);
    let proc_dev = std::fs::metadata("/proc").unwrap().dev();
    assert!(matches!(scope, ReleaseScope::FileSystem { dev, .. } if dev == proc_dev));
    smbd.release_answer(request_id, false).unwrap();
    assert!(finish(admin).status.success());
    // Still cached: a local writer must break it.
    assert!(local_open_blocks(&path));
}

#[test]
fn what_is_left_at_the_timeout_is_reported() {
    let bridge = start_bridge();
    let path = bridge.file("c.txt", b"x");
    let (mut keeper, _) = bridge.smbd();
    cached_open(&bridge, &mut keeper, &path, 1, "ipv4:127.0.0.1:445");
    let admin = bridge.cli(&["unlock-fs", &bridge.share, "--timeout", "2.5", "--json"]);
    // It says it is releasing but never goes.
    let (request_id, _) = release_request(&mut keeper);
    keeper.release_answer(request_id, true).unwrap();
    let output = finish(admin);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = report(&output);
    assert!(!report.complete);
    let me = std::process::id();
    assert_eq!(report.remaining.len(), 1, "{report:?}");
    assert_eq!(report.remaining[0].smbd_pid, me);
    assert_eq!(report.remaining[0].state, "still running");
    assert_eq!(report.holders.len(), 1);
    assert!(report.holders[0].path.ends_with("/c.txt"));
    assert_eq!(report.holders[0].caching, "RWH");
    assert!(report.elapsed_ms >= 2500);
    // The text form says what is left.
    let admin = bridge.cli(&["unlock-ip", "127.0.0.1", "--timeout", "1"]);
    let output = finish(admin);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("NOT fully released") && text.contains("c.txt"),
        "{text}"
    );
}

#[test]
fn a_silent_smbd_is_asked_again() {
    let bridge = start_bridge();
    let (mut smbd, _) = bridge.smbd();
    let admin = bridge.cli(&["unlock-ip", "127.0.0.1", "--timeout", "2.6", "--json"]);
    let output = finish(admin);
    let report = report(&output);
    assert!(!report.complete);
    assert_eq!(report.remaining[0].state, "no answer");
    let asked = failover_requests(&mut smbd, Duration::ZERO)
        .into_iter()
        .filter(|request| matches!(request, FailoverRequest::Release { .. }))
        .count();
    assert!(asked >= 3, "asked {asked} times in 2.6 s");
}

#[test]
fn grace_periods_reach_every_smbd_now_and_later() {
    let bridge = start_bridge();
    let (mut early, grace) = bridge.smbd();
    assert!(grace.is_empty());
    let output = finish(bridge.cli(&["grace", "10.0.0.1", "/export", "--seconds", "30"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Pushed to the smbd connected before ...
    let pushed: Vec<GraceEntry> = failover_requests(&mut early, WAIT)
        .into_iter()
        .find_map(|request| match request {
            FailoverRequest::Grace(entries) => Some(entries),
            _ => None,
        })
        .expect("grace pushed");
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        (pushed[0].address.as_str(), pushed[0].path.as_str()),
        ("10.0.0.1", "/export")
    );
    assert!(pushed[0].remaining_ms > 25_000 && pushed[0].remaining_ms <= 30_000);
    // ... and told to one that connects later.
    let (_late, grace) = bridge.smbd();
    assert_eq!(grace.len(), 1);
    // Ended early: everyone hears it.
    assert!(
        finish(bridge.cli(&["grace", "10.0.0.1", "/export", "--seconds", "0"]))
            .status
            .success()
    );
    let ended = failover_requests(&mut early, WAIT);
    assert!(
        ended.contains(&FailoverRequest::Grace(Vec::new())),
        "{ended:?}"
    );
    assert!(bridge.smbd().1.is_empty());
    // Nonsense is refused.
    let output = finish(bridge.cli(&["grace", "not-an-ip", "/export"]));
    assert_eq!(output.status.code(), Some(2));
}

/// A peer the bridge admits (`--allow-uid 65534`) but that is not root may not release or
/// start a grace period: the request in the wire format, from a process running as 65534.
#[test]
fn only_root_may_release_or_start_grace() {
    let bridge = start_bridge();
    let script = r#"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
def string(t):
    b = t.encode()
    return struct.pack("<H", len(b)) + b
# Release {scope: ServerAddress("127.0.0.1"), timeout_ms: 1000}, then Grace.
s.send(b"NB" + bytes([5, 12]) + struct.pack("<Q", 7) + bytes([0]) + string("127.0.0.1") + struct.pack("<Q", 1000))
s.send(b"NB" + bytes([5, 16]) + struct.pack("<Q", 8) + string("127.0.0.1") + string("/srv") + struct.pack("<Q", 1000))
for _ in range(2):
    reply = s.recv(100)
    tag, request_id = reply[3], struct.unpack("<Q", reply[4:12])[0]
    errno = struct.unpack("<I", reply[12:16])[0] if tag == 9 else None
    print(tag, request_id, errno)
"#;
    // The socket's directory and the socket are root's: let uid 65534 reach it for this test.
    let run = bridge.socket.parent().unwrap();
    std::fs::set_permissions(run, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    std::fs::set_permissions(
        bridge.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    std::fs::set_permissions(
        &bridge.socket,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let mut child = {
        let _forking = exclusive();
        Command::new("python3")
            .args(["-c", script])
            .arg(&bridge.socket)
            .uid(65534)
            .gid(65534)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(out, format!("9 7 {}\n9 8 {}\n", libc::EPERM, libc::EPERM));
    assert!(bridge.log_text().contains("release refused: not root"));
}
