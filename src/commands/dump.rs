//! `dump`: a file of a snapshot as its bytes, or a folder as a tar stream (POSIX pax: raw-byte
//! names of any length, nanosecond times, owners by id and name, symlinks, hard links, fifos,
//! devices, extended attributes as `SCHILY.xattr.*`) or a zip stream (deflate; modes, mtimes to
//! two seconds, symlinks; names as UTF-8, hard links as copies, no owners, xattrs or special
//! files: zip has no place for them), written in walk order with bounded memory.
//!
//! Content is read a window of blobs at a time, in parallel, and written in order, so memory is
//! at most a window of blobs whatever the size of the folder. A file is always written as
//! exactly its node's `size` bytes: content past it is cut and never read, short content is
//! padded with zeros, and a blob ending more than [`CONTENT_SLACK`] past `size` is not read at
//! all (a node of size 1 whose content repeats a large blob thousands of times costs neither
//! memory nor time). Such a file is warned about ([`EntryProblem::Damaged`]).
//!
//! Names: tar carries the snapshot's raw bytes, except that a name which a Windows extractor
//! would read as a parent-folder reference (`..\..\x.bat`, where `\` is a separator there, or
//! `.. `, which Windows trims to `..`) has its `\` and those dots written as `%5C` and `%2E`.
//! zip names must be UTF-8 and zip extractors on Windows take `\` as a separator, so bytes that
//! are not UTF-8 become `%XX`, every `\` becomes `%5C`, and the same dots `%2E`. A name that
//! then equals one already written in its folder gets a suffix `~1`, `~2`, …. Every name
//! changed is warned about ([`EntryProblem::Renamed`]).

use crate::error::{Error, Result};
use crate::format::tree::{CONTENT_SLACK, Node, NodeKind};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::repo::Repository;
use crate::snapshot::walk::{Step, TreeWalk};
use crate::warning::{EntryProblem, EntrySink, EntryWarning};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

/// Blobs fetched at once while streaming a file's content.
const WINDOW: usize = 8;

/// What a dump wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DumpSummary {
    /// Entries written (folders, files, links, …).
    pub entries: u64,
    /// Bytes of file content (each file's `size`).
    pub bytes: u64,
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("cannot write the dump", e)
}

/// What [`write_content`] wrote for a file node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    /// The content's length as the index gives it: the sum of its blobs' raw lengths.
    pub listed: u64,
    /// Bytes of real content written; the rest of the node's `size` was written as zeros.
    pub read: u64,
}

/// Write exactly `n.size` bytes for file node `n` to `out`: its content, cut at `size`, or
/// padded with zeros when the content is shorter. Blobs that start at or past `size` are not
/// read, nor is any blob (or the rest of the list) once a blob would end more than
/// [`CONTENT_SLACK`] past `size`: memory and work follow the node's size, not its content list.
/// A window of blobs is grouped by pack and read through the one pack reader (neighbours in one
/// ranged read), packs in parallel, then written in order.
pub fn write_content(repo: &Repository, n: &Node, out: &mut dyn Write) -> Result<Content> {
    let size = n.size;
    let limit = size.saturating_add(CONTENT_SLACK);
    let mut listed = 0u64;
    let mut read = 0u64;
    let mut reading = true;
    for window in n.content.chunks(WINDOW) {
        let mut wanted: Vec<(Id, BlobLocation)> = Vec::with_capacity(window.len());
        for id in window {
            let loc = repo.index()?.locate(id)?;
            let start = listed;
            listed = listed.saturating_add(u64::from(loc.raw_length));
            if reading && start < size {
                if listed > limit {
                    reading = false;
                } else {
                    wanted.push((*id, loc));
                }
            }
        }
        if !wanted.is_empty() {
            read += write_blobs(repo, &wanted, size - read, out)?;
        }
    }
    write_zeros(out, size - read)?;
    Ok(Content { listed, read })
}

/// Read `blobs` (grouped by pack, packs in parallel; a blob listed twice is read once) and
/// write them in order, at most `left` bytes in all; returns the bytes written.
fn write_blobs(
    repo: &Repository,
    blobs: &[(Id, BlobLocation)],
    mut left: u64,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut by_pack: HashMap<Id, Vec<(Id, BlobLocation)>> = HashMap::new();
    for (id, loc) in blobs {
        let group = by_pack.entry(loc.pack).or_default();
        if !group.iter().any(|(b, _)| b == id) {
            group.push((*id, *loc));
        }
    }
    let read: Vec<Vec<(Id, Vec<u8>)>> = by_pack
        .into_par_iter()
        .map(|(pack, mut blobs)| {
            blobs.sort_by_key(|(_, l)| (l.offset, l.length));
            let mut got = Vec::with_capacity(blobs.len());
            repo.read_pack_blobs(
                &pack,
                &blobs,
                |(_, l)| l,
                |(id, l), sealed| {
                    got.push((*id, repo.open_blob(id, l, sealed?)?));
                    Ok(())
                },
            )?;
            Ok(got)
        })
        .collect::<Result<_>>()?;
    let raw: HashMap<Id, Vec<u8>> = read.into_iter().flatten().collect();
    let mut written = 0u64;
    for (id, _) in blobs {
        let b = raw
            .get(id)
            .ok_or_else(|| Error::not_found(format!("blob {} was not read", id.short())))?;
        let k = (b.len() as u64).min(left) as usize;
        out.write_all(&b[..k]).map_err(io_err)?;
        left -= k as u64;
        written += k as u64;
    }
    Ok(written)
}

fn write_zeros(out: &mut dyn Write, mut n: u64) -> Result<()> {
    let zeros = [0u8; 8192];
    while n > 0 {
        let k = n.min(zeros.len() as u64) as usize;
        out.write_all(&zeros[..k]).map_err(io_err)?;
        n -= k as u64;
    }
    Ok(())
}

/// The warning for file node `n` at snapshot path `spath` when [`write_content`] found its
/// content not matching its size.
fn content_warning(spath: &[u8], n: &Node, c: &Content) -> Option<EntryWarning> {
    if c.listed == n.size {
        return None;
    }
    let what = if c.listed > n.size.saturating_add(CONTENT_SLACK) {
        format!(
            "its content lists {} bytes, implausibly more than its size of {}: only its first {} \
             bytes were read, the rest written as zeros",
            c.listed, n.size, c.read
        )
    } else if c.listed > n.size {
        format!(
            "its content ({} bytes) is longer than its size of {}: cut to its size",
            c.listed, n.size
        )
    } else {
        format!(
            "its content ({} bytes) is shorter than its size of {}: padded with zeros",
            c.listed, n.size
        )
    };
    Some(EntryWarning::new(
        EntryProblem::Damaged,
        std::ffi::OsStr::from_bytes(spath),
        format!("{}: {what}", String::from_utf8_lossy(spath)),
    ))
}

/// Write file node `n`, found at snapshot path `spath`, as its bytes (exactly its `size`, see
/// [`write_content`]); a content list that does not match the size is warned about.
pub fn file(
    repo: &Repository,
    n: &Node,
    spath: &[u8],
    out: &mut dyn Write,
    warn: EntrySink<'_>,
) -> Result<DumpSummary> {
    let c = write_content(repo, n, out)?;
    if let Some(w) = content_warning(spath, n, &c) {
        warn(&w);
    }
    Ok(DumpSummary {
        entries: 1,
        bytes: n.size,
    })
}

/// How an archive format names entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Tar,
    Zip,
}

/// Whether `piece` (a name, or a part of one between backslashes) is a parent-folder reference
/// to a Windows extractor: `..`, or dots and spaces that Windows trims to it (`.. `, `. .`).
/// Three or more dots alone are an ordinary name there too.
fn windows_dotdot(piece: &[u8]) -> bool {
    let dots = piece.iter().filter(|&&b| b == b'.').count();
    piece.iter().all(|&b| b == b'.' || b == b' ') && dots >= 2 && (dots == 2 || dots < piece.len())
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(format!("%{b:02X}").as_bytes());
}

/// One name (a path component: never empty, `/` or NUL) as `format` writes it; see the module
/// documentation.
fn escape_component(name: &[u8], format: Format) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    match format {
        Format::Zip => {
            for chunk in name.utf8_chunks() {
                for &b in chunk.valid().as_bytes() {
                    if b == b'\\' {
                        push_escaped(&mut out, b);
                    } else {
                        out.push(b);
                    }
                }
                for &b in chunk.invalid() {
                    push_escaped(&mut out, b);
                }
            }
        }
        Format::Tar => {
            if name.split(|&b| b == b'\\').any(windows_dotdot) {
                for &b in name {
                    if b == b'\\' {
                        push_escaped(&mut out, b);
                    } else {
                        out.push(b);
                    }
                }
            } else {
                out.extend_from_slice(name);
            }
        }
    }
    if windows_dotdot(&out) {
        let mut dots = Vec::with_capacity(out.len() * 3);
        for &b in &out {
            if b == b'.' {
                push_escaped(&mut dots, b);
            } else {
                dots.push(b);
            }
        }
        out = dots;
    }
    out
}

fn renamed(spath: &[u8], path: &[u8]) -> EntryWarning {
    EntryWarning::new(
        EntryProblem::Renamed,
        std::ffi::OsStr::from_bytes(spath),
        format!(
            "{} is written to the archive as {}",
            String::from_utf8_lossy(spath),
            String::from_utf8_lossy(path)
        ),
    )
}

/// Archive paths of the folders being walked, and the names already given in each, so every
/// name is unique in its folder after escaping.
struct Namer {
    format: Format,
    /// (archive path, names given in it), innermost last.
    stack: Vec<(Vec<u8>, HashSet<Vec<u8>>)>,
}

impl Namer {
    /// The archive path of `name`, a node of the innermost folder found at snapshot path
    /// `spath`; a changed name is warned about.
    fn name(&mut self, spath: &[u8], name: &[u8], warn: EntrySink<'_>) -> Vec<u8> {
        let escaped = escape_component(name, self.format);
        let Some((dir, used)) = self.stack.last_mut() else {
            return escaped;
        };
        let mut pick = escaped.clone();
        let mut k = 0u64;
        while used.contains(&pick) {
            k += 1;
            pick = escaped.clone();
            pick.extend_from_slice(format!("~{k}").as_bytes());
        }
        used.insert(pick.clone());
        let mut path = dir.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&pick);
        if pick != name {
            warn(&renamed(spath, &path));
        }
        path
    }
}

/// Walk node `node`, found at snapshot path `spath`, in archive order, calling `emit(snapshot
/// path, archive path, node)` for it (unless it is the snapshot's root) and everything below
/// it. Archive paths have no leading `/` (as `restore` lays entries out below its target) and
/// are named by `format`'s rules.
fn walk_named(
    repo: &Repository,
    node: &Node,
    spath: &[u8],
    format: Format,
    warn: EntrySink<'_>,
    mut emit: impl FnMut(&[u8], &[u8], &Node) -> Result<()>,
) -> Result<()> {
    let mut top = Vec::new();
    let raw: Vec<&[u8]> = spath
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    for c in &raw {
        if !top.is_empty() {
            top.push(b'/');
        }
        top.extend_from_slice(&escape_component(c, format));
    }
    if !raw.is_empty() {
        if top != raw.join(&b'/') {
            warn(&renamed(spath, &top));
        }
        emit(spath, &top, node)?;
    }
    if let (NodeKind::Dir, Some(tree)) = (node.kind, node.subtree) {
        let mut names = Namer {
            format,
            stack: vec![(top, HashSet::new())],
        };
        let mut walk = TreeWalk::new(repo, &tree, spath)?;
        while let Some(step) = walk.next_step() {
            match step {
                Step::Node(n) => {
                    let sp = walk.child_path(&n.name);
                    let path = names.name(&sp, &n.name, warn);
                    emit(&sp, &path, &n)?;
                    if n.kind == NodeKind::Dir {
                        walk.enter(&n)?;
                        names.stack.push((path, HashSet::new()));
                    }
                }
                Step::Leave => {
                    names.stack.pop();
                }
            }
        }
    }
    Ok(())
}

/// One pax record: `"<len> key=value\n"`, where len counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn time_value(ns: i64) -> String {
    let a = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    format!("{sign}{}.{:09}", a / 1_000_000_000, a % 1_000_000_000)
}

/// Streams a folder of a snapshot as a tar archive.
struct TarWriter<'w, 's> {
    out: tar::Builder<&'w mut dyn Write>,
    /// (device, inode) of multiply linked files → the archive path of their first link.
    links: HashMap<(u64, u64), Vec<u8>>,
    summary: DumpSummary,
    warn: EntrySink<'s>,
}

impl TarWriter<'_, '_> {
    /// Write `n`, found at snapshot path `spath`, at archive path `path` (no leading `/`), with
    /// its content for a regular file that is not a hard link to an earlier entry.
    fn entry(&mut self, repo: &Repository, spath: &[u8], path: &[u8], n: &Node) -> Result<()> {
        use tar::EntryType;
        let mut pax = Vec::new();
        let mut hdr = tar::Header::new_ustar();
        let mut name = path.to_vec();
        let (ty, size) = match n.kind {
            NodeKind::Dir => {
                name.push(b'/');
                (EntryType::Directory, 0)
            }
            NodeKind::File => {
                let key = (n.device, n.inode);
                if n.nlink > 1 && n.inode != 0 {
                    if let Some(first) = self.links.get(&key) {
                        pax_record(&mut pax, b"linkpath", first);
                        (EntryType::Link, 0)
                    } else {
                        self.links.insert(key, path.to_vec());
                        (EntryType::Regular, n.size)
                    }
                } else {
                    (EntryType::Regular, n.size)
                }
            }
            NodeKind::Symlink => {
                pax_record(&mut pax, b"linkpath", &n.link_target);
                (EntryType::Symlink, 0)
            }
            NodeKind::Fifo => (EntryType::Fifo, 0),
            NodeKind::CharDevice => (EntryType::Char, 0),
            NodeKind::BlockDevice => (EntryType::Block, 0),
            NodeKind::Socket => return Ok(()),
        };
        pax_record(&mut pax, b"path", &name);
        pax_record(&mut pax, b"mtime", time_value(n.mtime_ns).as_bytes());
        if n.atime_ns != crate::format::tree::ATIME_NOT_RECORDED {
            pax_record(&mut pax, b"atime", time_value(n.atime_ns).as_bytes());
        }
        pax_record(&mut pax, b"uid", n.uid.to_string().as_bytes());
        pax_record(&mut pax, b"gid", n.gid.to_string().as_bytes());
        if !n.user.is_empty() {
            pax_record(&mut pax, b"uname", n.user.as_bytes());
        }
        if !n.group.is_empty() {
            pax_record(&mut pax, b"gname", n.group.as_bytes());
        }
        if ty == EntryType::Regular {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        for x in &n.xattrs {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(&x.name);
            pax_record(&mut pax, &k, &x.value);
        }
        // The pax header first (it describes the next entry), then the entry itself with the
        // same facts where ustar can hold them.
        let mut ph = tar::Header::new_ustar();
        ph.set_entry_type(EntryType::XHeader);
        ph.set_path("PaxHeaders/entry").map_err(io_err)?;
        ph.set_size(pax.len() as u64);
        ph.set_mode(0o644);
        ph.set_cksum();
        self.out.append(&ph, pax.as_slice()).map_err(io_err)?;

        hdr.set_entry_type(ty);
        let short: &[u8] = if name.len() <= 100 && std::str::from_utf8(&name).is_ok() {
            &name
        } else {
            b"cairn-long-name"
        };
        hdr.set_path(std::str::from_utf8(short).unwrap_or("cairn-long-name"))
            .or_else(|_| hdr.set_path("cairn-long-name"))
            .map_err(io_err)?;
        hdr.set_mode(n.mode & 0o7777);
        hdr.set_uid(u64::from(n.uid));
        hdr.set_gid(u64::from(n.gid));
        hdr.set_mtime(n.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
        hdr.set_size(size);
        if matches!(ty, EntryType::Char | EntryType::Block) {
            let (major, minor) = crate::sys::fs::major_minor(n.rdev);
            hdr.set_device_major(major).map_err(io_err)?;
            hdr.set_device_minor(minor).map_err(io_err)?;
        }
        hdr.set_cksum();
        self.summary.entries += 1;
        if ty == EntryType::Regular {
            // Content straight from the repository into the archive, exactly the size the
            // header promised (cut or padded), so the archive stays valid and nothing of the
            // content list past that size is read or held.
            let out = self.out.get_mut();
            out.write_all(hdr.as_bytes()).map_err(io_err)?;
            let c = write_content(repo, n, &mut **out)?;
            let rem = size % 512;
            if rem != 0 {
                write_zeros(&mut **out, 512 - rem)?;
            }
            if let Some(w) = content_warning(spath, n, &c) {
                (self.warn)(&w);
            }
            self.summary.bytes += size;
        } else {
            self.out.append(&hdr, std::io::empty()).map_err(io_err)?;
        }
        Ok(())
    }
}

/// Write folder (or file) `node`, found at snapshot path `spath`, as a tar archive to `out`.
/// Entry names are snapshot paths without the leading `/`, as `restore` lays them out below
/// its target (see the module documentation for the few names changed); changed names and
/// content that does not match its size are warned about through `warn`.
pub fn tar(
    repo: &Repository,
    node: &Node,
    spath: &[u8],
    out: &mut dyn Write,
    warn: EntrySink<'_>,
) -> Result<DumpSummary> {
    let mut w = TarWriter {
        out: tar::Builder::new(out),
        links: HashMap::new(),
        summary: DumpSummary::default(),
        warn,
    };
    walk_named(repo, node, spath, Format::Tar, warn, |sp, path, n| {
        w.entry(repo, sp, path, n)
    })?;
    w.out.finish().map_err(io_err)?;
    Ok(w.summary)
}

/// Write folder (or file) `node`, found at snapshot path `spath`, as a zip archive to `out`
/// (streamed: no seeking, so sizes go into data descriptors). Names as in [`tar`], made UTF-8,
/// free of `\` and unique (see the module documentation); what was changed is warned about
/// through `warn`, as is content that does not match its size.
pub fn zip(
    repo: &Repository,
    node: &Node,
    spath: &[u8],
    out: &mut dyn Write,
    warn: EntrySink<'_>,
) -> Result<DumpSummary> {
    use zip::write::SimpleFileOptions;
    let zerr =
        |e: zip::result::ZipError| Error::io("cannot write the dump", std::io::Error::other(e));
    let mut z = zip::ZipWriter::new_stream(out);
    let mut summary = DumpSummary::default();
    let mut one = |sp: &[u8], path: &[u8], n: &Node| -> Result<()> {
        // Always UTF-8: `escape_component` escaped every byte that was not.
        let name = String::from_utf8_lossy(path).into_owned();
        let secs = n.mtime_ns.div_euclid(1_000_000_000);
        let when = chrono::DateTime::from_timestamp(secs, 0)
            .map(|t| t.with_timezone(&chrono::Local).naive_local())
            .and_then(|t| {
                use chrono::{Datelike, Timelike};
                zip::DateTime::from_date_and_time(
                    u16::try_from(t.year()).ok()?,
                    t.month() as u8,
                    t.day() as u8,
                    t.hour() as u8,
                    t.minute() as u8,
                    t.second() as u8,
                )
                .ok()
            })
            .unwrap_or_default();
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(n.mode & 0o7777)
            .last_modified_time(when)
            .large_file(n.size >= u64::from(u32::MAX));
        match n.kind {
            NodeKind::Dir => z.add_directory(format!("{name}/"), opts).map_err(zerr)?,
            NodeKind::File => {
                z.start_file(name, opts).map_err(zerr)?;
                let c = write_content(repo, n, &mut z)?;
                if let Some(w) = content_warning(sp, n, &c) {
                    warn(&w);
                }
                summary.bytes += n.size;
            }
            NodeKind::Symlink => z
                .add_symlink(name, String::from_utf8_lossy(&n.link_target), opts)
                .map_err(zerr)?,
            _ => return Ok(()),
        }
        summary.entries += 1;
        Ok(())
    };
    walk_named(repo, node, spath, Format::Zip, warn, &mut one)?;
    z.finish().map_err(zerr)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for (k, v) in [
            ("path", "a"),
            ("path", &"x".repeat(95)[..]),
            ("mtime", "1.5"),
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, k.as_bytes(), v.as_bytes());
            let s = String::from_utf8(out.clone()).unwrap();
            let (n, _) = s.split_once(' ').unwrap();
            assert_eq!(n.parse::<usize>().unwrap(), out.len(), "{s:?}");
        }
        assert_eq!(
            time_value(1_400_000_000_000_000_007),
            "1400000000.000000007"
        );
        assert_eq!(time_value(-1), "-0.000000001");
    }

    #[test]
    fn names_are_escaped_where_an_archive_or_a_windows_extractor_needs_it() {
        let zip = |n: &[u8]| escape_component(n, Format::Zip);
        let tar = |n: &[u8]| escape_component(n, Format::Tar);
        assert_eq!(zip(b"n\xff"), b"n%FF");
        assert_eq!(zip("café %41".as_bytes()), "café %41".as_bytes());
        assert_eq!(zip(b"..\\..\\x.bat"), b"..%5C..%5Cx.bat");
        assert_eq!(zip(b"a\\b"), b"a%5Cb");
        assert_eq!(zip(b".. "), b"%2E%2E ");
        assert_eq!(zip(b"..."), b"...");
        assert_eq!(tar(b"n\xff"), b"n\xff");
        assert_eq!(tar(b"a\\b"), b"a\\b");
        assert_eq!(tar(b"..\\..\\x.bat"), b"..%5C..%5Cx.bat");
        assert_eq!(tar(b"x\\. .\\y"), b"x%5C. .%5Cy");
        assert_eq!(tar(b".. "), b"%2E%2E ");
        assert_eq!(tar(b".hidden"), b".hidden");
        for (piece, yes) in [
            (&b".."[..], true),
            (b".. ", true),
            (b". .", true),
            (b"...", false),
            (b".", false),
            (b"..a", false),
            (b"  ", false),
        ] {
            assert_eq!(windows_dotdot(piece), yes, "{}", piece.escape_ascii());
        }
    }
}
