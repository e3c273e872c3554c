//! Compiles the C shim against the Samba header bundle made by scripts/setup.sh, generates
//! the Rust side of the shim's own header with bindgen, and links the module against the
//! installed private Samba libraries with --no-undefined.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SAMBA_LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu/samba";
/// Libraries that define the Samba symbols the shim uses. Versioned private symbols pin the
/// module to the exact Samba build it was compiled for.
const SAMBA_LIBS: &[&str] = &[
    "libsmbd-base-private-samba.so.0",
    "libsamba-debug-private-samba.so.0",
    "libsamba-util.so.0",
    "libsmbconf.so.0",
    "libsamba-passdb.so.0",
    "libsamba-errors.so.1",
    "libsmbd-shim-private-samba.so.0",
    "libsamba-security-private-samba.so.0",
    "libtalloc.so.2",
    "libndr-samba-private-samba.so.0",
    "libsamba-sockets-private-samba.so.0",
    "libtevent.so.0",
    "libtevent-util.so.0",
    "libndr.so.6",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let shim_dir = manifest.join("../c-shim");
    for var in ["NFSBRIDGE_CACHE", "NFSBRIDGE_SAMBA_HEADERS", "NFSBRIDGE_REGISTER_VFS_VERSION"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed={}", shim_dir.display());

    let headers = samba_headers();
    let cflags = std::fs::read_to_string(headers.join("samba-cflags.txt"))
        .unwrap_or_else(|e| fail(&format!("cannot read {}/samba-cflags.txt: {e}", headers.display())));

    let mut build = cc::Build::new();
    build.file(shim_dir.join("nfsbridge_shim.c")).file(shim_dir.join("nfsbridge_dirlease.c")).file(shim_dir.join("nfsbridge_failover.c")).file(shim_dir.join("nfsbridge_recall.c")).include(&shim_dir).warnings(false);
    for flag in cflags.split_whitespace() {
        build.flag(flag);
    }
    build.flag("-Wall").flag("-Werror=implicit-function-declaration").flag("-Wno-unused-function");
    if let Ok(version) = env::var("NFSBRIDGE_REGISTER_VFS_VERSION") {
        // Test builds only: announce another interface version so smbd's refusal can be seen.
        let version: u32 = version.parse().unwrap_or_else(|_| fail("NFSBRIDGE_REGISTER_VFS_VERSION must be a number"));
        build.define("NFSB_REGISTER_VFS_VERSION", version.to_string().as_str());
    }
    build.compile("nfsbridge_shim");

    let bindings = bindgen::Builder::default()
        .header(shim_dir.join("nfsbridge_shim.h").to_string_lossy())
        .header(shim_dir.join("nfsbridge_dirlease.h").to_string_lossy())
        .header(shim_dir.join("nfsbridge_failover.h").to_string_lossy())
        .header(shim_dir.join("nfsbridge_recall.h").to_string_lossy())
        .allowlist_function("nfsb_.*")
        .allowlist_type("nfsb_.*")
        .allowlist_var("NFSB_.*")
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen failed on nfsbridge_shim.h: {e}")));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings.write_to_file(out.join("shim.rs")).expect("write bindings");

    println!("cargo:rustc-link-search=native={SAMBA_LIB_DIR}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-undefined");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath-link,{SAMBA_LIB_DIR}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,relro,-z,now");
    for lib in SAMBA_LIBS {
        if !Path::new(SAMBA_LIB_DIR).join(lib).exists() && !Path::new("/usr/lib/x86_64-linux-gnu").join(lib).exists() {
            fail(&format!("{lib} not found; is Samba installed? Run: scripts/setup.sh"));
        }
        println!("cargo:rustc-cdylib-link-arg=-l:{lib}");
    }
}

/// The header bundle for the installed Samba, refusing one made for another version.
fn samba_headers() -> PathBuf {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "samba-libs"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| fail("samba-libs is not installed. Run: scripts/setup.sh"));
    let dir = match env::var("NFSBRIDGE_SAMBA_HEADERS") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            let cache = env::var("NFSBRIDGE_CACHE").unwrap_or_else(|_| "/var/cache/nfsbridge".into());
            PathBuf::from(cache).join("samba-headers").join(&installed)
        }
    };
    println!("cargo:rerun-if-changed={}", dir.join("VERSION").display());
    let bundled = std::fs::read_to_string(dir.join("VERSION"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| fail(&format!("no Samba header bundle at {} for the installed samba-libs {installed}. Run: scripts/setup.sh", dir.display())));
    if bundled != installed {
        fail(&format!(
            "the Samba headers in {} are for {bundled} but samba-libs {installed} is installed. \
             Run: rm -rf '{}' && scripts/setup.sh",
            dir.display(),
            dir.display()
        ));
    }
    dir
}

fn fail(message: &str) -> ! {
    eprintln!("nfsbridge build: {message}");
    panic!("nfsbridge build: {message}");
}
