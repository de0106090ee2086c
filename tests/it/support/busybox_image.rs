//! A busybox image built locally for Docker tests: Debian's static busybox in a `FROM scratch` image (no registry is reachable).

use std::path::PathBuf;

/// Put on every image built here, so leftovers can be found and removed.
pub const TEST_LABEL: &str = "io.everynode.test";

/// The host's static busybox: Debian's `busybox-static`, or `EVERYNODE_TEST_BUSYBOX`.
pub fn busybox() -> Vec<u8> {
    let path = std::env::var_os("EVERYNODE_TEST_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}; install Debian's busybox-static (apt-get install busybox-static)",
            path.display()
        )
    });
    assert!(
        is_static_elf(&bytes),
        "{} is not a static ELF binary and cannot run in a FROM scratch image; install busybox-static",
        path.display()
    );
    bytes
}

/// True when an ELF64 file has no PT_INTERP program header, i.e. needs no dynamic loader.
pub fn is_static_elf(b: &[u8]) -> bool {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        at + 4 <= b.len() && u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) != 3
    })
}

/// A build context: a `FROM scratch` Dockerfile, busybox with a symlink per applet, a version file.
pub fn image_context(version: &str, label_value: &str) -> Vec<u8> {
    let busybox = busybox();
    let applets = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .ok()
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| "sh\nsleep\ncat\nid\npwd\ntest\nhttpd\nmkdir\necho\ntrue\n".into());
    let dockerfile =
        format!("FROM scratch\nCOPY rootfs/ /\nLABEL {TEST_LABEL}={label_value}\nCMD [\"sh\"]\n");
    let mut tar = tar::Builder::new(Vec::new());
    let mut file = |path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, path, data).unwrap();
    };
    file("Dockerfile", 0o644, dockerfile.as_bytes());
    file("rootfs/bin/busybox", 0o755, &busybox);
    file("rootfs/etc/everynode-version", 0o644, version.as_bytes());
    file(
        "rootfs/etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    );
    for dir in ["rootfs/tmp", "rootfs/root"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o1777);
        h.set_cksum();
        tar.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        tar.append_link(&mut h, format!("rootfs/bin/{applet}"), "busybox")
            .unwrap();
    }
    tar.into_inner().unwrap()
}
