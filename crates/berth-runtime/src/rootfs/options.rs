//! Mount option strings (`["rbind", "ro", "nosuid", "size=64m"]`) parsed into mount attributes,
//! propagation changes and filesystem data. Table-driven and pure.

use berth_sys::mount::{
    MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY, MOUNT_ATTR_RELATIME,
    MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME,
};

/// A propagation type (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// `MS_SHARED`.
    Shared,
    /// `MS_SLAVE`.
    Slave,
    /// `MS_PRIVATE`.
    Private,
    /// `MS_UNBINDABLE`.
    Unbindable,
}

impl Propagation {
    /// The `MS_*` value, as `mount_setattr`'s `propagation` field wants it.
    pub fn ms_flag(self) -> u64 {
        // MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED from <linux/mount.h>
        match self {
            Propagation::Shared => 1 << 20,
            Propagation::Slave => 1 << 19,
            Propagation::Private => 1 << 18,
            Propagation::Unbindable => 1 << 17,
        }
    }

    /// Parse `rootfsPropagation`-style names: `shared`, `rslave`, ... into (type, recursive).
    pub fn parse(name: &str) -> Option<(Propagation, bool)> {
        let (rec, base) = match name.strip_prefix('r') {
            Some(b @ ("shared" | "slave" | "private" | "unbindable")) => (true, b),
            _ => (false, name),
        };
        let p = match base {
            "shared" => Propagation::Shared,
            "slave" => Propagation::Slave,
            "private" => Propagation::Private,
            "unbindable" => Propagation::Unbindable,
            _ => return None,
        };
        Some((p, rec))
    }
}

/// A set of `MOUNT_ATTR_*` changes: bits to set and bits to clear.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttrChange {
    /// Bits to set.
    pub set: u64,
    /// Bits to clear (for atime modes: `MOUNT_ATTR__ATIME`, with the mode in `set`).
    pub clr: u64,
}

impl AttrChange {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clr == 0
    }

    fn apply(&mut self, op: AttrOp) {
        match op {
            AttrOp::Set(bit) => {
                self.set |= bit;
                self.clr &= !bit;
            }
            AttrOp::Clear(bit) => {
                self.clr |= bit;
                self.set &= !bit;
            }
            AttrOp::Atime(mode) => {
                self.set = (self.set & !MOUNT_ATTR__ATIME) | mode;
                self.clr |= MOUNT_ATTR__ATIME;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum AttrOp {
    Set(u64),
    Clear(u64),
    /// Replace the atime mode.
    Atime(u64),
}

/// The per-mount attribute options, and their recursive (`r`-prefixed, mount_setattr
/// AT_RECURSIVE) twins, in the style of mount(8) and runc.
const ATTR_TABLE: &[(&str, AttrOp)] = &[
    ("ro", AttrOp::Set(MOUNT_ATTR_RDONLY)),
    ("rw", AttrOp::Clear(MOUNT_ATTR_RDONLY)),
    ("nosuid", AttrOp::Set(MOUNT_ATTR_NOSUID)),
    ("suid", AttrOp::Clear(MOUNT_ATTR_NOSUID)),
    ("nodev", AttrOp::Set(MOUNT_ATTR_NODEV)),
    ("dev", AttrOp::Clear(MOUNT_ATTR_NODEV)),
    ("noexec", AttrOp::Set(MOUNT_ATTR_NOEXEC)),
    ("exec", AttrOp::Clear(MOUNT_ATTR_NOEXEC)),
    ("nosymfollow", AttrOp::Set(MOUNT_ATTR_NOSYMFOLLOW)),
    ("symfollow", AttrOp::Clear(MOUNT_ATTR_NOSYMFOLLOW)),
    ("nodiratime", AttrOp::Set(MOUNT_ATTR_NODIRATIME)),
    ("diratime", AttrOp::Clear(MOUNT_ATTR_NODIRATIME)),
    ("noatime", AttrOp::Atime(MOUNT_ATTR_NOATIME)),
    ("atime", AttrOp::Atime(MOUNT_ATTR_RELATIME)),
    ("relatime", AttrOp::Atime(MOUNT_ATTR_RELATIME)),
    ("norelatime", AttrOp::Atime(MOUNT_ATTR_STRICTATIME)),
    ("strictatime", AttrOp::Atime(MOUNT_ATTR_STRICTATIME)),
    ("nostrictatime", AttrOp::Atime(MOUNT_ATTR_RELATIME)),
];

/// Parsed mount options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind`: the bind includes submounts.
    pub recursive_bind: bool,
    /// Attributes for the mount itself (`ro`, `nosuid`, `noatime`, ...).
    pub attrs: AttrChange,
    /// Attributes for the mount and all its submounts (`rro`, `rnosuid`, ...).
    pub rec_attrs: AttrChange,
    /// Propagation changes in the order given, with whether each is recursive.
    pub propagation: Vec<(Propagation, bool)>,
    /// Filesystem data: `key=value` or bare `key`, passed to `fsconfig`.
    pub data: Vec<String>,
    /// `tmpcopyup`: a new tmpfs starts with a copy of the directory it covers.
    pub tmpcopyup: bool,
}

impl MountOptions {
    /// Whether the mount itself ends up read-only.
    pub fn readonly(&self) -> bool {
        (self.attrs.set | self.rec_attrs.set) & MOUNT_ATTR_RDONLY != 0
    }

    /// Whether `rw` was asked explicitly.
    pub fn explicit_rw(&self) -> bool {
        (self.attrs.clr | self.rec_attrs.clr) & MOUNT_ATTR_RDONLY != 0
    }
}

/// An option berth cannot honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOption(pub String);

/// Parse a spec mount's `options` list.
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> Result<MountOptions, UnsupportedOption> {
    let mut out = MountOptions::default();
    for opt in options {
        let opt = opt.as_ref();
        match opt {
            "" | "defaults" | "async" | "remount" | "loud" => {}
            "bind" => out.bind = true,
            "rbind" => {
                out.bind = true;
                out.recursive_bind = true;
            }
            "tmpcopyup" => out.tmpcopyup = true,
            "idmap" | "ridmap" => return Err(UnsupportedOption(opt.to_string())),
            _ => {
                if let Some(p) = Propagation::parse(opt) {
                    out.propagation.push(p);
                } else if let Some(op) = lookup(opt) {
                    out.attrs.apply(op);
                } else if let Some(op) = opt.strip_prefix('r').and_then(lookup) {
                    out.rec_attrs.apply(op);
                } else if opt.starts_with("X-") || opt.starts_with("x-") {
                    // userspace-only hints (mount(8)): never sent to the kernel
                } else {
                    // filesystem data, including superblock flags such as `sync`
                    out.data.push(opt.to_string());
                }
            }
        }
    }
    Ok(out)
}

fn lookup(name: &str) -> Option<AttrOp> {
    ATTR_TABLE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, op)| *op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_options() {
        struct Case {
            opts: &'static [&'static str],
            bind: bool,
            rbind: bool,
            set: u64,
            clr: u64,
            rec_set: u64,
            data: &'static [&'static str],
        }
        let cases = [
            Case {
                opts: &["rbind", "ro", "nosuid", "nodev", "noexec"],
                bind: true,
                rbind: true,
                set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                clr: 0,
                rec_set: 0,
                data: &[],
            },
            Case {
                opts: &["bind", "rw"],
                bind: true,
                rbind: false,
                set: 0,
                clr: MOUNT_ATTR_RDONLY,
                rec_set: 0,
                data: &[],
            },
            Case {
                opts: &["nosuid", "strictatime", "mode=755", "size=65536k"],
                bind: false,
                rbind: false,
                set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME,
                clr: MOUNT_ATTR__ATIME,
                rec_set: 0,
                data: &["mode=755", "size=65536k"],
            },
            Case {
                opts: &["rbind", "rro", "rnosuid"],
                bind: true,
                rbind: true,
                set: 0,
                clr: 0,
                rec_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
                data: &[],
            },
            Case {
                // later options win
                opts: &["ro", "rw", "noatime", "relatime"],
                bind: false,
                rbind: false,
                set: MOUNT_ATTR_RELATIME,
                clr: MOUNT_ATTR_RDONLY | MOUNT_ATTR__ATIME,
                rec_set: 0,
                data: &[],
            },
            Case {
                opts: &["newinstance", "ptmxmode=0666", "mode=0620", "gid=5", "sync"],
                bind: false,
                rbind: false,
                set: 0,
                clr: 0,
                rec_set: 0,
                data: &["newinstance", "ptmxmode=0666", "mode=0620", "gid=5", "sync"],
            },
        ];
        for c in cases {
            let o = parse_options(c.opts).expect("parse");
            assert_eq!(o.bind, c.bind, "{:?}", c.opts);
            assert_eq!(o.recursive_bind, c.rbind, "{:?}", c.opts);
            assert_eq!(o.attrs.set, c.set, "{:?}", c.opts);
            assert_eq!(o.attrs.clr, c.clr, "{:?}", c.opts);
            assert_eq!(o.rec_attrs.set, c.rec_set, "{:?}", c.opts);
            assert_eq!(o.data, c.data, "{:?}", c.opts);
        }
    }

    #[test]
    fn propagation_options() {
        let o = parse_options(&["rbind", "rslave", "private", "runbindable", "rshared"]).unwrap();
        assert_eq!(
            o.propagation,
            vec![
                (Propagation::Slave, true),
                (Propagation::Private, false),
                (Propagation::Unbindable, true),
                (Propagation::Shared, true),
            ]
        );
        assert_eq!(
            Propagation::parse("rprivate"),
            Some((Propagation::Private, true))
        );
        assert_eq!(Propagation::parse("rw"), None);
        assert_eq!(Propagation::parse("rro"), None);
        assert_eq!(
            Propagation::Slave.ms_flag(),
            u64::from(libc::MS_SLAVE as u32)
        );
        assert_eq!(
            Propagation::Shared.ms_flag(),
            u64::from(libc::MS_SHARED as u32)
        );
        assert_eq!(
            Propagation::Private.ms_flag(),
            u64::from(libc::MS_PRIVATE as u32)
        );
        assert_eq!(
            Propagation::Unbindable.ms_flag(),
            u64::from(libc::MS_UNBINDABLE as u32)
        );
    }

    #[test]
    fn readonly_and_rw() {
        assert!(parse_options(&["ro"]).unwrap().readonly());
        assert!(parse_options(&["rro"]).unwrap().readonly());
        assert!(!parse_options(&["ro", "rw"]).unwrap().readonly());
        assert!(parse_options(&["rw"]).unwrap().explicit_rw());
    }

    #[test]
    fn idmap_is_unsupported_and_hints_dropped() {
        assert_eq!(
            parse_options(&["idmap"]),
            Err(UnsupportedOption("idmap".into()))
        );
        assert!(parse_options(&["x-systemd.automount"])
            .unwrap()
            .data
            .is_empty());
    }
}
