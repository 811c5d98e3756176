//! `forget`: the same timeline in a restic 0.14 repository and a cairn repository, the same
//! policies applied by both (`--dry-run --json`, TZ=Europe/Berlin), the kept snapshots, their
//! reasons and counters compared per group; then real removals in cairn.

use crate::util::*;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const TZ: &str = "Europe/Berlin";
const RESTIC_PASSWORD: &str = "forget-test";

/// One snapshot of the timeline.
#[derive(Clone, Debug)]
struct Snap {
    /// Seconds since the epoch (UTC).
    t: i64,
    host: &'static str,
    /// `src` or `src2` (a folder of the test environment).
    dir: &'static str,
    tags: Vec<&'static str>,
}

/// The last Sunday of a month.
fn last_sunday(y: i32, m: u32) -> NaiveDate {
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    }
    .unwrap();
    let last = next.pred_opt().unwrap();
    last - chrono::TimeDelta::days(last.weekday().num_days_from_sunday().into())
}

/// Europe/Berlin's offset (EU rule: summer time from 01:00 UTC of March's last Sunday to
/// 01:00 UTC of October's), seconds east of UTC.
fn berlin_offset(t: i64) -> i32 {
    let utc = DateTime::from_timestamp(t, 0).unwrap();
    let y = utc.year();
    let start = last_sunday(y, 3).and_hms_opt(1, 0, 0).unwrap().and_utc();
    let end = last_sunday(y, 10).and_hms_opt(1, 0, 0).unwrap().and_utc();
    if utc >= start && utc < end {
        7200
    } else {
        3600
    }
}

/// The time as restic writes it for a process in Europe/Berlin: local wall time and offset.
fn berlin_rfc3339(t: i64) -> String {
    let off = chrono::FixedOffset::east_opt(berlin_offset(t)).unwrap();
    off.timestamp_opt(t, 0).unwrap().to_rfc3339()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp()
}

/// ~200 snapshots over 2.4 years: irregular gaps (hours to weeks), two hosts, a second path
/// set on one host, some tags, snapshots in the repeated hour of two autumn DST changes and
/// around spring ones, and ends chosen so that calendar arithmetic differs from fixed
/// durations (`1d` across a DST change, `1m` from a March 31).
fn timeline() -> Vec<Snap> {
    let mut out = Vec::new();
    for (host, seed, end) in [
        ("alpha", 7u64, utc(2023, 3, 26, 10, 0)),
        ("beta", 11u64, utc(2023, 3, 31, 10, 0)),
    ] {
        let mut rng = Rng::new(seed);
        let mut t = utc(2020, 11, 1, 6, 0) + (seed as i64) * 1234;
        loop {
            let r = rng.next() % 100;
            let gap = if r < 30 {
                3600 * (1 + (rng.next() % 6) as i64)
            } else if r < 75 {
                86_400 * (2 + (rng.next() % 7) as i64) + 60 * (rng.next() % 600) as i64
            } else {
                86_400 * (10 + (rng.next() % 30) as i64)
            };
            t += gap;
            if t >= end - 86_400 * 6 {
                break;
            }
            let tr = rng.next() % 20;
            let tags = match tr {
                0 | 1 => vec!["keep"],
                2 => vec!["keep", "weekly"],
                _ => vec![],
            };
            let dir = if host == "beta" && rng.next() % 7 == 0 {
                "src2"
            } else {
                "src"
            };
            out.push(Snap { t, host, dir, tags });
        }
        out.push(Snap {
            t: end,
            host,
            dir: "src",
            tags: vec![],
        });
    }
    let fixed = [
        // 02:30 CEST and 02:30 CET: one local hour, two instants.
        ("beta", utc(2021, 10, 31, 0, 30)),
        ("beta", utc(2021, 10, 31, 1, 30)),
        ("alpha", utc(2022, 10, 30, 0, 10)),
        ("alpha", utc(2022, 10, 30, 1, 50)),
        // Around the spring change: 01:30 CET, 03:30 CEST.
        ("alpha", utc(2022, 3, 27, 0, 30)),
        ("alpha", utc(2022, 3, 27, 1, 30)),
        // The day before alpha's last snapshot (2023-03-26 12:00 CEST): 1d of calendar goes
        // back to 2023-03-25 12:00 CET = 11:00 UTC, 24 hours to 10:00 UTC.
        ("alpha", utc(2023, 3, 25, 10, 30)),
        ("alpha", utc(2023, 3, 25, 11, 30)),
        // beta ends on March 31: one month back is "February 31" = March 3.
        ("beta", utc(2023, 3, 1, 9, 0)),
        ("beta", utc(2023, 3, 2, 12, 0)),
        ("beta", utc(2023, 3, 3, 9, 0)),
        ("beta", utc(2023, 3, 3, 12, 0)),
        // ISO week 53 of 2020 (Monday 2020-12-28 to Sunday 2021-01-03).
        ("alpha", utc(2020, 12, 31, 12, 0)),
        ("alpha", utc(2021, 1, 2, 12, 0)),
        ("alpha", utc(2021, 1, 4, 12, 0)),
    ];
    for (host, t) in fixed {
        out.push(Snap {
            t,
            host,
            dir: "src",
            tags: vec![],
        });
    }
    out.sort_by_key(|s| s.t);
    out.dedup_by_key(|s| s.t);
    out
}

/// Whether restic 0.14 is installed (the semantics compared with are 0.14's: later versions
/// also keep the oldest snapshot of each rule and refuse some policies).
fn restic_014() -> Result<(), String> {
    match Command::new("restic").arg("version").output() {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout).into_owned();
            if v.starts_with("restic 0.14.") {
                Ok(())
            } else {
                Err(format!("restic is {}, not 0.14", v.trim()))
            }
        }
        _ => Err("restic is not installed".into()),
    }
}

fn restic(repo: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("restic");
    c.env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
        .env("TZ", TZ)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .arg("--no-cache")
        .args(args);
    run(c, None)
}

fn restic_ok(repo: &Path, args: &[&str]) -> Output {
    let o = restic(repo, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "restic {args:?}\n{}",
        describe(&o)
    );
    o
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let mut c = Command::new("openssl");
    c.args(args);
    let o = run(c, None);
    assert_eq!(
        o.status.code(),
        Some(0),
        "openssl {args:?}\n{}",
        describe(&o)
    );
    o.stdout
}

fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {s}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let k = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + k]);
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Write snapshot objects into a restic repository directly, encrypted as restic does
/// (AES-256-CTR, then Poly1305-AES over the ciphertext; named by the SHA-256 of the file), so
/// that hundreds of snapshots cost seconds instead of a key derivation each (~0.7 s). `restic
/// snapshots` is then asked to list them back.
fn restic_write_snapshots(env: &Env, repo: &Path, tree: &str, snaps: &[Snap]) {
    let mk: Value = serde_json::from_slice(&restic_ok(repo, &["cat", "masterkey"]).stdout).unwrap();
    let enc = hex(&b64(mk["encrypt"].as_str().unwrap()));
    let k = hex(&b64(mk["mac"]["k"].as_str().unwrap()));
    let r = hex(&b64(mk["mac"]["r"].as_str().unwrap()));
    let work = env.path("restic-objects");
    std::fs::create_dir_all(&work).unwrap();
    let mut rng = Rng::new(99);
    let ivs: Vec<Vec<u8>> = snaps
        .iter()
        .map(|_| {
            let mut iv = rng.next().to_le_bytes().to_vec();
            iv.extend_from_slice(&rng.next().to_le_bytes());
            iv
        })
        .collect();
    // Poly1305-AES: the one-time key's second half is AES-128(k, nonce); all nonces at once.
    let ivs_file = work.join("ivs");
    std::fs::write(&ivs_file, ivs.concat()).unwrap();
    let ss = openssl(&[
        "enc",
        "-aes-128-ecb",
        "-nopad",
        "-K",
        &k,
        "-in",
        ivs_file.to_str().unwrap(),
    ]);
    assert_eq!(ss.len(), 16 * snaps.len());
    let mut files = Vec::new();
    for (i, s) in snaps.iter().enumerate() {
        let mut v = serde_json::json!({
            "time": berlin_rfc3339(s.t),
            "tree": tree,
            "paths": [env.path(s.dir).to_str().unwrap()],
            "hostname": s.host,
            "username": "root",
        });
        if !s.tags.is_empty() {
            v["tags"] = serde_json::json!(s.tags);
        }
        let pt = work.join(format!("pt{i}"));
        let ct = work.join(format!("ct{i}"));
        std::fs::write(&pt, serde_json::to_vec(&v).unwrap()).unwrap();
        openssl(&[
            "enc",
            "-aes-256-ctr",
            "-K",
            &enc,
            "-iv",
            &hex(&ivs[i]),
            "-in",
            pt.to_str().unwrap(),
            "-out",
            ct.to_str().unwrap(),
        ]);
        let key = format!("hexkey:{r}{}", hex(&ss[16 * i..16 * i + 16]));
        let mac = openssl(&[
            "mac",
            "-macopt",
            &key,
            "-in",
            ct.to_str().unwrap(),
            "poly1305",
        ]);
        let mac = unhex(&String::from_utf8_lossy(&mac).to_ascii_lowercase());
        assert_eq!(mac.len(), 16);
        let mut obj = ivs[i].clone();
        obj.extend_from_slice(&std::fs::read(&ct).unwrap());
        obj.extend_from_slice(&mac);
        let f = work.join(format!("obj{i}"));
        std::fs::write(&f, obj).unwrap();
        files.push(f);
    }
    let mut c = Command::new("sha256sum");
    c.args(&files);
    let o = run(c, None);
    assert!(o.status.success(), "{}", describe(&o));
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let (sum, file) = line.split_once("  ").unwrap();
        std::fs::rename(file, repo.join("snapshots").join(sum)).unwrap();
    }
}

/// A group's outcome, comparable across both programs: kept (time, matches, counters)
/// newest first, and removed times.
type Outcome = (Vec<(i64, Vec<String>, Option<Value>)>, Vec<i64>);

fn time_of(v: &Value) -> i64 {
    let s = v["time"]
        .as_str()
        .unwrap_or_else(|| panic!("no time in {v}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("time {s}: {e}"))
        .timestamp()
}

/// Groups of a `forget --json` output, by "host|paths|tags".
fn outcomes(v: &Value, with_counters: bool) -> BTreeMap<String, Outcome> {
    let mut m = BTreeMap::new();
    for g in v.as_array().unwrap_or_else(|| panic!("not a list: {v}")) {
        let sorted = |x: &Value| -> Option<Vec<String>> {
            let mut l: Vec<String> = x
                .as_array()?
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            l.sort();
            (!l.is_empty()).then_some(l)
        };
        let key = format!(
            "{}|{:?}|{:?}",
            g["host"].as_str().unwrap(),
            sorted(&g["paths"]),
            sorted(&g["tags"])
        );
        let keep: Vec<i64> = g["keep"]
            .as_array()
            .map(|l| l.iter().map(time_of).collect())
            .unwrap_or_default();
        let reasons: Vec<(i64, Vec<String>, Option<Value>)> = g["reasons"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|r| {
                        let matches = r["matches"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|s| s.as_str().unwrap().to_string())
                            .collect();
                        let counters = with_counters.then(|| r["counters"].clone());
                        (time_of(&r["snapshot"]), matches, counters)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kept: Vec<i64> = reasons.iter().map(|r| r.0).collect();
        assert_eq!(keep, kept, "keep and reasons disagree in {g}");
        let mut remove: Vec<i64> = g["remove"]
            .as_array()
            .map(|l| l.iter().map(time_of).collect())
            .unwrap_or_default();
        remove.sort();
        assert!(
            m.insert(key.clone(), (reasons, remove)).is_none(),
            "{key} twice"
        );
    }
    m
}

fn forget_json_cairn(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["forget", "--dry-run", "--json"];
    a.extend_from_slice(args);
    let o = env.cairn_with(&a, |c| {
        c.env("TZ", TZ);
    });
    assert_eq!(o.status.code(), Some(0), "cairn {a:?}\n{}", describe(&o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("cairn {a:?}: not JSON ({e})\n{}", describe(&o)))
}

/// Back up the timeline into the cairn repository (`backup --time`, one process each).
fn cairn_backups(env: &Env, snaps: &[Snap]) {
    for s in snaps {
        let time = DateTime::from_timestamp(s.t, 0).unwrap().to_rfc3339();
        let src = env.path(s.dir);
        let mut a: Vec<String> = vec![
            "backup".into(),
            "-q".into(),
            "--time".into(),
            time,
            "--host".into(),
            s.host.into(),
        ];
        for t in &s.tags {
            a.push("--tag".into());
            a.push(t.to_string());
        }
        a.push(src.to_str().unwrap().into());
        env.ok(&a);
    }
}

#[test]
fn forget_keeps_what_restic_keeps() {
    if let Err(why) = restic_014() {
        eprintln!("note: {why}: forget_keeps_what_restic_keeps skipped");
        return;
    }
    let started = std::time::Instant::now();
    let env = Env::new();
    write(&env.path("src/f"), b"one\n");
    write(&env.path("src2/g"), b"two\n");
    let snaps = timeline();
    assert!(snaps.len() > 150, "{} snapshots", snaps.len());
    let rrepo = env.path("restic-repo");
    restic_ok(&rrepo, &["init"]);

    // cairn's backups run meanwhile (one core each).
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            cairn_backups(&env, &snaps);
            done_tx.send(()).unwrap();
        });
        // The first two through restic's own `backup --time` (local time, TZ=Europe/Berlin),
        // the rest written directly.
        for s in &snaps[..2] {
            let wall = DateTime::from_timestamp(s.t + i64::from(berlin_offset(s.t)), 0)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            let src = env.path(s.dir);
            let mut a = vec!["backup", "-q", "--time", &wall, "--host", s.host];
            for t in &s.tags {
                a.extend(["--tag", t]);
            }
            a.push(src.to_str().unwrap());
            restic_ok(&rrepo, &a);
        }
        let listed: Value =
            serde_json::from_slice(&restic_ok(&rrepo, &["snapshots", "--json"]).stdout).unwrap();
        let tree = listed[0]["tree"].as_str().unwrap().to_string();
        restic_write_snapshots(&env, &rrepo, &tree, &snaps[2..]);
        done_rx.recv().unwrap();
    });
    eprintln!(
        "timeline of {} snapshots made in {:?}",
        snaps.len(),
        started.elapsed()
    );

    // Both hold the same timeline.
    let listed: Value =
        serde_json::from_slice(&restic_ok(&rrepo, &["snapshots", "--json"]).stdout).unwrap();
    let mut rt: Vec<(i64, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (time_of(s), s["hostname"].as_str().unwrap().to_string()))
        .collect();
    rt.sort();
    let mut ct: Vec<(i64, String)> = env
        .snapshots()
        .iter()
        .map(|s| (time_of(s), s["host"].as_str().unwrap().to_string()))
        .collect();
    ct.sort();
    let want: Vec<(i64, String)> = snaps.iter().map(|s| (s.t, s.host.to_string())).collect();
    assert_eq!(rt, want, "restic's listing differs from the timeline");
    assert_eq!(ct, want, "cairn's listing differs from the timeline");

    // (cairn's policy, restic 0.14's equivalent when it differs: -1 = unlimited is later
    // restic; there, a count larger than the timeline, and counters are not compared).
    let big = "100000";
    let policies: Vec<(Vec<&str>, Option<Vec<&str>>)> = vec![
        (vec!["--keep-last", "7"], None),
        (vec!["--keep-hourly", "30"], None),
        (vec!["--keep-daily", "40"], None),
        (vec!["--keep-weekly", "30"], None),
        (vec!["--keep-monthly", "18"], None),
        (vec!["--keep-yearly", "5"], None),
        (
            vec![
                "--keep-daily",
                "7",
                "--keep-weekly",
                "5",
                "--keep-monthly",
                "12",
                "--keep-yearly",
                "3",
            ],
            None,
        ),
        (vec!["--keep-within", "1d"], None),
        (vec!["--keep-within", "2m15d", "--keep-last", "3"], None),
        (vec!["--keep-within", "1m"], None),
        (
            vec![
                "--keep-within-daily",
                "1m",
                "--keep-within-weekly",
                "6m",
                "--keep-within-monthly",
                "1y",
                "--keep-within-yearly",
                "5y",
            ],
            None,
        ),
        (
            vec!["--keep-within-hourly", "3d12h", "--keep-last", "2"],
            None,
        ),
        (
            vec![
                "--keep-tag",
                "keep",
                "--keep-tag",
                "weekly,keep",
                "--keep-last",
                "1",
            ],
            None,
        ),
        (vec!["--keep-monthly", "6", "--group-by", "host"], None),
        (
            vec!["--keep-weekly", "4", "--group-by", "host,paths,tags"],
            None,
        ),
        (
            vec!["--keep-yearly", "2", "--keep-last", "2", "--group-by", ""],
            None,
        ),
        (vec!["--keep-last", "3", "--host", "beta"], None),
        (
            vec!["--keep-hourly", "-1"],
            Some(vec!["--keep-hourly", big]),
        ),
        (
            vec!["--keep-weekly", "unlimited", "--keep-monthly", "3"],
            Some(vec!["--keep-weekly", big, "--keep-monthly", "3"]),
        ),
    ];
    for (ours, theirs) in &policies {
        let counters = theirs.is_none();
        let theirs = theirs.as_ref().unwrap_or(ours);
        let mut a = vec!["forget", "--dry-run", "--json"];
        a.extend_from_slice(theirs);
        let o = restic_ok(&rrepo, &a);
        let rv: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("restic {a:?}: not JSON ({e})\n{}", describe(&o)));
        let cv = forget_json_cairn(&env, ours);
        let (r, c) = (outcomes(&rv, counters), outcomes(&cv, counters));
        assert_eq!(
            r.keys().collect::<Vec<_>>(),
            c.keys().collect::<Vec<_>>(),
            "groups differ for {ours:?}"
        );
        let mut removed = 0;
        for (k, rg) in &r {
            let cg = &c[k];
            let show = |o: &Outcome| {
                o.0.iter()
                    .map(|(t, m, c)| format!("{} {m:?} {c:?}", berlin_rfc3339(*t)))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!(
                rg.0,
                cg.0,
                "policy {ours:?}, group {k}: kept snapshots or reasons differ\nrestic:\n{}\ncairn:\n{}",
                show(rg),
                show(cg)
            );
            assert_eq!(rg.1, cg.1, "policy {ours:?}, group {k}: removed differ");
            removed += rg.1.len();
        }
        assert!(removed > 0, "policy {ours:?} removes nothing: a weak case");
    }
    eprintln!(
        "{} policies compared in {:?}",
        policies.len(),
        started.elapsed()
    );
}

/// cairn's one deliberate departure from restic (docs/design.md, "Snapshots dated in the
/// future"): a snapshot dated a year ahead is kept by both, but restic counts it in the
/// `--keep-*` buckets (it takes a `last`, daily, ... slot from a real snapshot) and cairn does
/// not. So cairn's outcome with the future snapshot, less that snapshot, is restic's outcome
/// for the timeline without it, reasons and counters included; and restic, given the future
/// snapshot, keeps fewer real ones.
#[test]
fn forget_departs_from_restic_only_for_future_snapshots() {
    if let Err(why) = restic_014() {
        eprintln!("note: {why}: forget_departs_from_restic_only_for_future_snapshots skipped");
        return;
    }
    let env = Env::new();
    write(&env.path("src/f"), b"one\n");
    let now = Utc::now().timestamp();
    // Twelve real snapshots, 7 hours apart, ending a day ago; one dated a year ahead.
    let real: Vec<Snap> = (0..12i64)
        .map(|i| Snap {
            t: now - 86_400 - i * 7 * 3600,
            host: "alpha",
            dir: "src",
            tags: vec![],
        })
        .rev()
        .collect();
    let future = Snap {
        t: now + 365 * 86_400,
        host: "alpha",
        dir: "src",
        tags: vec![],
    };
    let mut with_future = real.clone();
    with_future.push(future.clone());
    cairn_backups(&env, &with_future);

    let rrepo = env.path("restic-repo");
    restic_ok(&rrepo, &["init"]);
    let first = &real[0];
    let wall = DateTime::from_timestamp(first.t + i64::from(berlin_offset(first.t)), 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let src = env.path("src");
    restic_ok(
        &rrepo,
        &[
            "backup",
            "-q",
            "--time",
            &wall,
            "--host",
            "alpha",
            src.to_str().unwrap(),
        ],
    );
    let listed: Value =
        serde_json::from_slice(&restic_ok(&rrepo, &["snapshots", "--json"]).stdout).unwrap();
    let tree = listed[0]["tree"].as_str().unwrap().to_string();
    restic_write_snapshots(&env, &rrepo, &tree, &real[1..]);

    let policies: Vec<Vec<&str>> = vec![
        vec!["--keep-last", "3"],
        vec!["--keep-hourly", "5"],
        vec!["--keep-daily", "2"],
        vec!["--keep-within", "1d", "--keep-last", "1"],
        vec!["--keep-within-hourly", "2d", "--keep-daily", "1"],
    ];
    let restic_json = |policy: &[&str]| -> Value {
        let mut a = vec!["forget", "--dry-run", "--json"];
        a.extend_from_slice(policy);
        serde_json::from_slice(&restic_ok(&rrepo, &a).stdout).unwrap()
    };
    let without: Vec<_> = policies.iter().map(|p| restic_json(p)).collect();
    // Now restic's repository holds the future snapshot too (its own object names differ).
    let work = env.path("restic-objects");
    std::fs::remove_dir_all(&work).unwrap();
    restic_write_snapshots(&env, &rrepo, &tree, std::slice::from_ref(&future));
    for (policy, restic_without) in policies.iter().zip(&without) {
        let mut c = outcomes(&forget_json_cairn(&env, policy), true);
        let r = outcomes(restic_without, true);
        assert_eq!(r.len(), 1, "one group");
        let key = r.keys().next().unwrap().clone();
        let cg = c.get_mut(&key).expect("cairn has restic's group");
        assert_eq!(
            cg.0.first(),
            Some(&(
                future.t,
                vec!["dated in the future (not counted)".to_string()],
                cg.0[0].2.clone()
            )),
            "{policy:?}: cairn keeps the future snapshot, uncounted"
        );
        cg.0.remove(0);
        assert_eq!(
            c, r,
            "{policy:?}: cairn less the future snapshot = restic without it"
        );
        // restic with it: the future snapshot takes a slot of some bucket.
        let rf = outcomes(&restic_json(policy), false);
        let kept = &rf[&key].0;
        assert_eq!(kept[0].0, future.t, "{policy:?}: restic keeps it too");
        if !policy.contains(&"--keep-within") && !policy.contains(&"--keep-within-hourly") {
            assert!(
                kept.len() < r[&key].0.len() + 1,
                "{policy:?}: restic counts the future snapshot against real ones"
            );
        }
    }
}

#[test]
fn forget_removes_snapshots_and_refuses_empty_policies() {
    let env = Env::new();
    write(&env.path("src/f"), b"one\n");
    let mut snaps = Vec::new();
    let start = utc(2024, 1, 1, 12, 0);
    for i in 0..16i64 {
        snaps.push(Snap {
            t: start + i * 86_400 * 3 + (i % 3) * 3600,
            host: if i % 4 == 3 { "beta" } else { "alpha" },
            dir: "src",
            tags: if i == 2 { vec!["keep"] } else { vec![] },
        });
    }
    cairn_backups(&env, &snaps);

    // An empty policy is refused in one line, and nothing is removed.
    let o = env.cairn(&["forget"]);
    let line = assert_fails_one_line(&o, 1, "forget without a policy");
    assert!(line.contains("no policy"), "{line}");
    let o = env.cairn(&["forget", "--keep-daily", "0", "--keep-within", "0d"]);
    assert_fails_one_line(&o, 1, "forget with an all-zero policy");
    // Ids and a policy together are refused.
    let all = env.snapshots();
    let first = all[0]["id"].as_str().unwrap().to_string();
    let o = env.cairn(&["forget", "--keep-last", "1", &first]);
    assert_fails_one_line(&o, 1, "forget with ids and a policy");
    // Bad durations name the input.
    let o = env.cairn(&["forget", "--keep-within", "3x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("\"3x\""), "{err}");
    assert_eq!(env.snapshots().len(), 16);

    // A dry run removes nothing.
    let plan = forget_json_cairn(&env, &["--keep-last", "2", "--keep-tag", "keep"]);
    assert_eq!(env.snapshots().len(), 16);

    // The real run removes exactly what the dry run planned.
    let o = env.cairn_with(
        &["forget", "--json", "--keep-last", "2", "--keep-tag", "keep"],
        |c| {
            c.env("TZ", TZ);
        },
    );
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let done: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(outcomes(&plan, true), outcomes(&done, true));
    let mut kept: Vec<String> = done
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["keep"].as_array().cloned().unwrap_or_default())
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    kept.sort();
    let mut left: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    assert_eq!(left, kept, "snapshots left = snapshots kept");
    // alpha: 2 last + the tagged one; beta: 2 last.
    assert_eq!(left.len(), 5);
    let tagged = env
        .snapshots()
        .into_iter()
        .filter(|s| s["tags"] == serde_json::json!(["keep"]))
        .count();
    assert_eq!(tagged, 1);

    // forget ID (a unique prefix) removes that one snapshot only.
    let victim = left[0].clone();
    let o = env.ok(&["forget", &victim[..10]]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("removed 1 snapshots"),
        "{}",
        describe(&o)
    );
    let after: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(after.len(), 4);
    assert!(!after.contains(&victim));
    // An unknown id is an error and removes nothing.
    let o = env.cairn(&["forget", "ffffffffffff"]);
    assert_fails_one_line(&o, 1, "forget of an unknown id");
    assert_eq!(env.snapshots().len(), 4);
}

#[test]
fn snapshots_group_by_and_latest() {
    let env = Env::new();
    write(&env.path("src/f"), b"one\n");
    write(&env.path("src2/f"), b"two\n");
    let src = env.path("src");
    let src2 = env.path("src2");
    let (s1, s2) = (src.to_str().unwrap(), src2.to_str().unwrap());
    for (i, (host, path, tag)) in [
        ("a", s1, None),
        ("a", s1, Some("x")),
        ("a", s2, None),
        ("b", s1, None),
        ("a", s1, None),
    ]
    .into_iter()
    .enumerate()
    {
        let time = format!("2024-01-0{} 10:00:00", i + 1);
        let mut a = vec!["--time", &time, "--host", host];
        if let Some(t) = tag {
            a.extend(["--tag", t]);
        }
        a.push(path);
        env.backup(&a);
    }
    let o = env.ok(&["snapshots", "--json", "--group-by", "host"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let groups = v.as_array().unwrap();
    assert_eq!(groups.len(), 2, "{v}");
    assert_eq!(
        groups[0]["group_key"],
        serde_json::json!({"hostname": "a", "paths": null, "tags": null})
    );
    assert_eq!(groups[0]["snapshots"].as_array().unwrap().len(), 4);
    let o = env.ok(&["snapshots", "--json", "--group-by", "host,paths,tags"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4, "{v}");
    // --latest 1 per host and paths: a+src (newest), a+src2, b+src; a flat list, oldest first.
    let o = env.ok(&["snapshots", "--json", "--latest", "1"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let days: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| time_of(s) / 86_400 - utc(2024, 1, 1, 0, 0) / 86_400 + 1)
        .collect();
    assert_eq!(days, vec![3, 4, 5], "{v}");
    let o = env.ok(&["snapshots", "--group-by", "host", "--latest", "2"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("snapshots for host a:"), "{text}");
    assert!(text.contains("snapshots for host b:"), "{text}");
    assert_eq!(text.matches("2 snapshots").count(), 1, "{text}");
    let o = env.cairn(&["snapshots", "--group-by", "colour"]);
    assert_fails_one_line(&o, 1, "unknown grouping");
}
