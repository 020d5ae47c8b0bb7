//! Heartbeat keys: `ha-agent keygen` writes them, the agent loads them (at start and on SIGHUP)
//! and hands them to the XDP program and to the heartbeat sender.
//!
//! A key file holds one or two keys, 32 hex digits each, one per line (`#` starts a comment).
//! The first is the current key: heartbeats are signed with it, and accepted. The second, if
//! present, is accepted too: that is how a new key rolls out without a flag day (see
//! docs/SECURITY.md). The file must not be readable by group or others.

use std::{
    fmt::Write as _,
    fs, io,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use ha_common::{sip_key, AuthKeys, SipKey};

/// Where the agent looks for its key when `--key-file` is not given.
pub const DEFAULT_KEY_FILE: &str = "/etc/ha-agent/key";

/// A key problem. Its message (with its source, `{err:#}`) is one line.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key file.
    #[error(
        "no key file {0}: create one with `ha-agent keygen --key-file {0}` and copy it to every node, \
         or run without authentication (--insecure-no-auth)"
    )]
    Missing(Shown),
    /// The key file could not be read, written or created.
    #[error("cannot {action} {path}")]
    Io {
        /// read, write, create or chmod.
        action: &'static str,
        /// The file or directory.
        path: Shown,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The key file is readable by group or others.
    #[error("key file {path} is readable by others (mode {mode:03o}): run chmod 600 {path}")]
    Readable {
        /// The file.
        path: Shown,
        /// Its permission bits.
        mode: u32,
    },
    /// A line that is no key.
    #[error("key file {path} line {line}: expected a key of 32 hex digits")]
    BadLine {
        /// The file.
        path: Shown,
        /// The line, 1-based.
        line: usize,
    },
    /// No key, or more than two.
    #[error("key file {path} holds {count} keys; it must hold one or two (current, next)")]
    Count {
        /// The file.
        path: Shown,
        /// How many it holds.
        count: usize,
    },
    /// keygen would overwrite a key.
    #[error("{0} exists; give --force to replace it (every node needs the same key)")]
    Exists(Shown),
    /// The kernel's random generator failed.
    #[error("getrandom")]
    Random(#[source] io::Error),
}

/// A path as error messages show it.
#[derive(Debug)]
pub struct Shown(PathBuf);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

fn shown(path: &Path) -> Shown {
    Shown(path.to_path_buf())
}

/// The keys of a key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys {
    /// Signs and verifies.
    pub current: [u8; 16],
    /// Verifies too, while a new key rolls out.
    pub next: Option<[u8; 16]>,
}

impl Keys {
    /// The signing key in SipHash form.
    pub fn signing_key(&self) -> SipKey {
        sip_key(&self.current)
    }

    /// The record the XDP program verifies with.
    pub fn to_auth_keys(&self) -> AuthKeys {
        AuthKeys {
            current: sip_key(&self.current),
            next: self.next.map_or([0, 0], |next| sip_key(&next)),
            count: if self.next.is_some() { 2 } else { 1 },
            _pad0: 0,
        }
    }
}

fn parse_key(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// Reads and checks a key file.
pub fn load(path: &Path) -> Result<Keys, KeyError> {
    let io_err = |action| move |source| KeyError::Io { action, path: shown(path), source };
    let metadata = fs::metadata(path).map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            KeyError::Missing(shown(path))
        } else {
            io_err("read")(err)
        }
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Readable { path: shown(path), mode });
    }
    let text = fs::read_to_string(path).map_err(io_err("read"))?;
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let key = parse_key(line).ok_or_else(|| KeyError::BadLine { path: shown(path), line: number + 1 })?;
        keys.push(key);
    }
    match keys.as_slice() {
        [current] => Ok(Keys { current: *current, next: None }),
        [current, next] => Ok(Keys { current: *current, next: Some(*next) }),
        _ => Err(KeyError::Count { path: shown(path), count: keys.len() }),
    }
}

/// 16 bytes from the kernel's random generator.
fn random_key() -> Result<[u8; 16], KeyError> {
    let mut key = [0u8; 16];
    // SAFETY: the buffer is valid for 16 bytes; getrandom fills at most that many.
    let filled = unsafe { libc::getrandom(key.as_mut_ptr().cast(), key.len(), 0) };
    if filled != key.len().cast_signed() {
        return Err(KeyError::Random(io::Error::last_os_error()));
    }
    Ok(key)
}

/// Writes a new random key to `path` with mode 0600; refuses to replace a file unless `force`.
pub fn generate(path: &Path, force: bool) -> Result<(), KeyError> {
    let io_err = |action, at: &Path| {
        let at = shown(at);
        move |source| KeyError::Io { action, path: at, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    }
    let hex: String = random_key()?.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    });
    let mut options = fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|err| {
        if err.kind() == io::ErrorKind::AlreadyExists {
            KeyError::Exists(shown(path))
        } else {
            io_err("write", path)(err)
        }
    })?;
    // A file that existed keeps its old mode through truncate: set it explicitly.
    file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io_err("chmod", path))?;
    writeln!(file, "{hex}").map_err(io_err("write", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ha-agent-keys-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn generated_keys_load_and_are_private() {
        let dir = scratch("gen");
        let path = dir.join("key");
        generate(&path, false).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let keys = load(&path).unwrap();
        assert_eq!(keys.next, None);
        assert_eq!(keys.to_auth_keys().count, 1);
        assert!(generate(&path, false).unwrap_err().to_string().contains("exists"));
        generate(&path, true).unwrap();
        assert_ne!(load(&path).unwrap(), keys, "a new key each time");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_keys_for_a_rollout() {
        let dir = scratch("two");
        let path = dir.join("key");
        write(
            &path,
            "# current\n000102030405060708090a0b0c0d0e0f\nffeeddccbbaa99887766554433221100 # next\n",
            0o600,
        );
        let keys = load(&path).unwrap();
        assert_eq!(keys.current[1], 1);
        assert_eq!(keys.next.unwrap()[0], 0xff);
        assert_eq!(keys.to_auth_keys().count, 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_key_files_are_refused_in_one_line() {
        let dir = scratch("bad");
        let path = dir.join("key");
        let good = "000102030405060708090a0b0c0d0e0f\n";
        let cases: [(&str, u32, &str); 5] = [
            (good, 0o644, "readable by others (mode 644): run chmod 600"),
            ("0001020304\n", 0o600, "line 1: expected a key of 32 hex digits"),
            ("zz0102030405060708090a0b0c0d0e0f\n", 0o600, "line 1: expected"),
            ("\n# nothing\n", 0o600, "holds 0 keys"),
            (&good.repeat(3), 0o600, "holds 3 keys"),
        ];
        for (text, mode, expected) in cases {
            write(&path, text, mode);
            let err = load(&path).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
            assert!(!err.contains('\n'));
        }
        let missing = load(&dir.join("absent")).unwrap_err().to_string();
        assert!(missing.contains("ha-agent keygen"), "{missing}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
