//! What the lease bridge's Rust tests share: a bridge process of their own, and the lock that
//! keeps forks apart from test-file opens.
#![allow(dead_code)] // each test binary uses its own part

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nfsbridge::lease::client::BridgeClient;
use nfsbridge::lease::transport;

pub const WAIT: Duration = Duration::from_secs(10);

/// Held while this process forks a helper and while it has a test file open: between `fork`
/// and `exec` a child holds every descriptor of the test process, and a write descriptor a
/// test just closed would stay open in it long enough to make the kernel refuse a write
/// lease (EAGAIN) to another test's bridge. smbd forks too, but its shared descriptions are
/// dups, never new opens.
static FORKS_AND_OPENS: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    FORKS_AND_OPENS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running bridge with its own directory: `share/` is the configured share root.
pub struct Bridge {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub share: String,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Bridge {
    /// `nfsbridge lease-bridge` serving `share/`, with `extra` arguments; returns once it
    /// listens.
    pub fn start(extra: &[&str]) -> Bridge {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        std::fs::create_dir(&share).unwrap();
        let socket = dir.path().join("run").join("bridge.sock");
        let log = dir.path().join("bridge.log");
        let child = {
            let _forking = exclusive();
            Command::new(env!("CARGO_BIN_EXE_nfsbridge"))
                .arg("lease-bridge")
                .arg("--socket")
                .arg(&socket)
                .arg("--share")
                .arg(&share)
                .args(extra)
                .env("NFSBRIDGE_LOG", "debug")
                .stdin(Stdio::null())
                .stderr(File::create(&log).unwrap())
                .spawn()
                .expect("the bridge starts")
        };
        let bridge = Bridge {
            child,
            share: share.to_str().unwrap().to_string(),
            dir,
            socket,
            log,
        };
        let start = Instant::now();
        while transport::connect_seqpacket(&bridge.socket).is_err() {
            assert!(
                start.elapsed() < WAIT,
                "bridge never listened: {}",
                bridge.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        bridge
    }

    pub fn client(&self) -> BridgeClient {
        BridgeClient::connect(&self.socket).expect("client connects")
    }

    /// A file of the share with `content`.
    pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = Path::new(&self.share).join(name);
        let _opening = exclusive();
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Our own child, by its id. The log helps when a test failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- bridge log ---\n{}", self.log_text());
        }
    }
}

/// An O_PATH descriptor of `path`: what smbd hands the bridge.
pub fn reference(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .unwrap()
}

/// The running kernel's (major, minor) version.
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// A file `leased` with `content` in `dir`.
pub fn test_file(dir: &tempfile::TempDir, content: &[u8]) -> PathBuf {
    let path = dir.path().join("leased");
    std::fs::write(&path, content).expect("test file written");
    path
}

/// A foreign opener: never waits for a lease, EWOULDBLOCK instead.
pub fn open_nonblocking(path: &Path, write: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Polls `condition` every 2 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    condition()
}
