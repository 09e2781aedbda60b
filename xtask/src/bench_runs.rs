//! `cargo xtask bench`'s runs: which benchmark groups run (`--only`,
//! `--list`), how often (`--runs`, default 3), and the figures of every run
//! gathered so each is shown as its median with its spread.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use crate::util::*;

/// The groups `--only` names: each criterion bench target of
/// `sshca-benches`, and the bulk command-line comparison.
pub const GROUPS: [(&str, &str); 9] = [
    (
        "hot_path",
        "to-be-signed encoding, signature conversion, assembly, local signing; openssl speed as its reference",
    ),
    (
        "kms",
        "KMS pipelines through the emulator (C/L bound), the emulator's CPU per Sign",
    ),
    (
        "serve",
        "sshca serve against in-process signing, with audit sinks, on PostgreSQL",
    ),
    ("krl", "a KRL of 1M serials against ssh-keygen -k"),
    ("pkcs11", "SoftHSM2 signing against the same key in a file"),
    ("wrapped", "wrapped keys (KEK in AWS KMS via the emulator)"),
    (
        "login_check",
        "sshca login --check (before every ssh) against ssh-add -l",
    ),
    (
        "frontends",
        "sshca login end to end, sshca renew, sshca host enroll of 3 keys against sshca request",
    ),
    (
        "bulk",
        "sshca sign against ssh-keygen -s, 1000 keys, each into a fresh directory",
    ),
];

/// What `cargo xtask bench` was asked.
#[derive(Debug)]
pub struct Args {
    /// The groups to run, in [`GROUPS`] order.
    pub groups: Vec<&'static str>,
    /// How many times each runs.
    pub runs: usize,
    /// `--list`: print the groups and stop.
    pub list: bool,
}

/// Parses `cargo xtask bench [--list] [--only NAME]... [--runs N]`.
pub fn parse(args: &[String]) -> Result<Args> {
    let mut only = Vec::new();
    let mut runs = 3;
    let mut list = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => list = true,
            "--only" => {
                let name = it.next().ok_or("--only takes a group name (see --list)")?;
                if !GROUPS.iter().any(|(g, _)| g == name) {
                    return Err(format!(
                        "--only {name}: no such group (groups: {})",
                        GROUPS.map(|(g, _)| g).join(", ")
                    ));
                }
                only.push(name.clone());
            }
            "--runs" => {
                let n = it.next().ok_or("--runs takes a number")?;
                runs = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=10).contains(n))
                    .ok_or_else(|| format!("--runs {n}: a number from 1 to 10"))?;
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: cargo xtask bench [--list] [--only NAME]... [--runs N]"
                ))
            }
        }
    }
    let groups = GROUPS
        .iter()
        .map(|(g, _)| *g)
        .filter(|g| only.is_empty() || only.iter().any(|o| o == g))
        .collect();
    Ok(Args { groups, runs, list })
}

/// Several measurements of one figure.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// The median.
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// How many.
    pub n: usize,
}

impl Stat {
    /// The figure of `values` (`None` when there is none).
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }

    /// The spread, `max − min` as a share of the median, in words for
    /// the table (`spread 3.1 % of 3`); empty for one run.
    pub fn spread(&self) -> String {
        if self.n < 2 || self.median == 0.0 {
            return String::new();
        }
        format!(
            " (spread {:.1} % of {})",
            100.0 * (self.max - self.min) / self.median.abs(),
            self.n
        )
    }
}

/// Every run's figures.
#[derive(Debug, Default)]
pub struct Figures {
    /// Criterion medians (ns) by benchmark id, one per run.
    pub criterion: BTreeMap<String, Vec<f64>>,
    /// The result lines of every run (`SSHCA_BENCH_OUT`), by run.
    pub lines: Vec<Vec<serde_json::Value>>,
}

impl Figures {
    /// Criterion benchmark `id` across the runs (ns).
    pub fn ns(&self, id: &str) -> Option<Stat> {
        self.criterion.get(id).and_then(|v| Stat::of(v))
    }

    /// Adds the criterion estimates written since `since` (this run's).
    pub fn gather_criterion(&mut self, since: SystemTime) {
        let root = target_dir().join("criterion");
        let mut found = Vec::new();
        walk(&root, &mut found);
        for path in found {
            let fresh = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            if !fresh {
                continue;
            }
            let Some(id) = path
                .parent()
                .and_then(Path::parent)
                .and_then(|p| p.strip_prefix(&root).ok())
                .map(|p| p.to_string_lossy().into_owned())
            else {
                continue;
            };
            let median = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["median"]["point_estimate"].as_f64());
            if let Some(m) = median {
                self.criterion.entry(id).or_default().push(m);
            }
        }
    }

    /// Adds one run's result lines.
    pub fn gather_lines(&mut self, file: &Path) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        self.lines.push(
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
        );
    }

    /// The result lines of the last run, each with its numbers replaced by
    /// their medians over every run's line of the same benchmark and
    /// settings, and the spread of each number under `"spread"`.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let Some(last) = self.lines.last() else {
            return Vec::new();
        };
        last.iter()
            .map(|line| {
                let same: Vec<&serde_json::Value> = self
                    .lines
                    .iter()
                    .filter_map(|run| run.iter().find(|l| key(l) == key(line)))
                    .collect();
                let mut out = line.clone();
                let mut spread = serde_json::Map::new();
                if let Some(obj) = line.as_object() {
                    for (k, v) in obj {
                        if v.is_number() && !SETTINGS.contains(&k.as_str()) {
                            let values: Vec<f64> =
                                same.iter().filter_map(|l| l[k].as_f64()).collect();
                            if let Some(s) = Stat::of(&values) {
                                out[k] = serde_json::json!(s.median);
                                spread.insert(k.clone(), serde_json::json!(s.spread()));
                            }
                        }
                    }
                }
                out["spread"] = serde_json::Value::Object(spread);
                out
            })
            .collect()
    }
}

/// The numbers of a result line that say what was measured, not what came
/// out.
const SETTINGS: [&str; 5] = ["concurrency", "latency_ms", "replicas", "serials", "runs"];

/// What identifies a result line across runs: its text fields and its
/// settings.
fn key(line: &serde_json::Value) -> String {
    let Some(obj) = line.as_object() else {
        return String::new();
    };
    obj.iter()
        .filter(|(k, v)| v.is_string() || SETTINGS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v};"))
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.ends_with("new/estimates.json") {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_arguments() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(s.spread(), " (spread 100.0 % of 3)");
        assert_eq!(Stat::of(&[4.0, 2.0]).unwrap().median, 3.0);
        assert_eq!(Stat::of(&[5.0]).unwrap().spread(), "");
        assert!(Stat::of(&[]).is_none());
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let all = a(&[]).unwrap();
        assert_eq!((all.groups.len(), all.runs), (GROUPS.len(), 3));
        let one = a(&["--only", "serve", "--runs", "1"]).unwrap();
        assert_eq!((one.groups, one.runs), (vec!["serve"], 1));
        assert!(a(&["--only", "nope"])
            .unwrap_err()
            .contains("groups: hot_path"));
        assert!(a(&["--runs", "0"]).is_err() && a(&["--fast"]).is_err());
    }

    #[test]
    fn records_take_the_median_of_the_same_settings() {
        let mut f = Figures::default();
        for (a, b) in [(100.0, 10.0), (300.0, 30.0), (200.0, 20.0)] {
            f.lines.push(vec![
                serde_json::json!({"bench": "kms_pipeline", "concurrency": 8, "rate": a}),
                serde_json::json!({"bench": "kms_pipeline", "concurrency": 64, "rate": b}),
            ]);
        }
        let r = f.records();
        assert_eq!(r[0]["rate"], 200.0);
        assert_eq!(r[1]["rate"], 20.0);
        assert_eq!(r[0]["concurrency"], 8);
        assert_eq!(r[0]["spread"]["rate"], " (spread 100.0 % of 3)");
    }
}
