//! The audit trail's hash chains: every audit row a replica writes carries
//! its replica's id, its place in that replica's chain (`seq`, from 1), the
//! hash of the row before it and its own hash, over the event's JSON as
//! stored. An edited, deleted or reordered row breaks a link; a cut tail is
//! found against a head written elsewhere (an export, a sink).

use std::collections::BTreeMap;
use std::fmt;

use rand_core::RngCore;
use sha2::{Digest, Sha256};

use crate::{AuditEvent, AUDIT_SCHEMA};

/// The `prev_hash` of a chain's first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A row's place in its replica's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The chain (replica) it belongs to.
    pub replica_id: String,
    /// Its place in the chain, from 1.
    pub seq: u64,
    /// The hash of the row before it ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// Its own hash: [`link_hash`] of the above and the body.
    pub hash: String,
}

/// One audit row as stored: the event, the JSON it was stored as and its
/// link (both `None` for rows written before the chains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Row id (the order rows were written in).
    pub id: i64,
    /// The event.
    pub event: AuditEvent,
    /// The event's JSON as stored (what the hash covers).
    pub body: Option<String>,
    /// Its place in its chain.
    pub link: Option<ChainLink>,
    /// Whether the row's plain columns (time, request id, identity,
    /// source, policy, status, code, reason, type) say what its JSON says.
    pub columns_match: bool,
}

/// The newest row of a chain: what an export or a sink records so that a
/// cut tail is found later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainHead {
    /// The chain.
    pub replica_id: String,
    /// The newest row's place.
    pub seq: u64,
    /// The newest row's hash.
    pub hash: String,
}

impl ChainHead {
    /// The head as the JSON line sinks and exports carry:
    /// `{"v":1,"type":"chain_head","at":AT,"replica_id":..,"seq":..,"hash":..}`.
    pub fn line(&self, at: u64) -> String {
        serde_json::json!({
            "v": AUDIT_SCHEMA,
            "type": "chain_head",
            "at": at,
            "replica_id": self.replica_id,
            "seq": self.seq,
            "hash": self.hash,
        })
        .to_string()
    }
}

impl fmt::Display for ChainHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.replica_id, self.seq, self.hash)
    }
}

impl std::str::FromStr for ChainHead {
    type Err = String;

    /// `REPLICA:SEQ:HASH` (the replica id may itself hold colons).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("chain head {s:?}: expected REPLICA:SEQ:HASH (64 hex digits)");
        let (rest, hash) = s.rsplit_once(':').ok_or_else(bad)?;
        let (replica, seq) = rest.rsplit_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        if replica.is_empty()
            || hash.len() != 64
            || !hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(bad());
        }
        Ok(Self {
            replica_id: replica.to_owned(),
            seq,
            hash: hash.to_owned(),
        })
    }
}

/// The hash of a row: SHA-256 over its chain, place, the previous hash and
/// its body, each on its own line; lowercase hex.
pub fn link_hash(replica_id: &str, seq: u64, prev_hash: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(replica_id.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// The JSON an event is stored and delivered as: `{"v":1, ...fields}`.
pub fn event_json(event: &AuditEvent) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct Versioned<'a> {
        v: u32,
        #[serde(flatten)]
        event: &'a AuditEvent,
    }
    serde_json::to_string(&Versioned {
        v: AUDIT_SCHEMA,
        event,
    })
}

/// A fresh event id: 128 random bits, hex.
pub fn new_event_id() -> String {
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// This machine's name (the default replica id), or `sshca`.
pub fn default_replica_id() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "sshca".to_owned())
}

/// The first broken link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The row id where it was found (`None`: a chain's end).
    pub row: Option<i64>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(id) => write!(f, "audit row {id}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// What an intact trail holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows read.
    pub rows: u64,
    /// Rows written before the chains (not covered).
    pub unchained: u64,
    /// Each chain's head.
    pub heads: Vec<ChainHead>,
}

/// Most rows held while waiting for a missing one (a gap larger than this
/// is reported as deleted without waiting further).
const MAX_WAITING: usize = 100_000;

/// Checks rows in row-id order, one at a time, against the heads an
/// export or a sink recorded earlier. Each row's own hash is checked as it
/// comes; the links between rows in chain order, so that a row that comes
/// early (reordered) is told apart from one that never comes (deleted).
#[derive(Debug)]
pub struct Verifier {
    heads: BTreeMap<String, ChainHead>,
    /// Per chain: rows that came before their turn, by place: (row id,
    /// previous hash, hash).
    waiting: BTreeMap<String, BTreeMap<u64, (i64, String, String)>>,
    expected: Vec<ChainHead>,
    /// For each expected head, whether its row was seen with its hash.
    seen: Vec<bool>,
    first_chained: Option<i64>,
    rows: u64,
    unchained: u64,
}

impl Verifier {
    /// A verifier that also wants each of `expected` in the trail.
    pub fn new(expected: Vec<ChainHead>) -> Self {
        let seen = vec![false; expected.len()];
        Self {
            heads: BTreeMap::new(),
            waiting: BTreeMap::new(),
            expected,
            seen,
            first_chained: None,
            rows: 0,
            unchained: 0,
        }
    }

    /// Checks the next row.
    pub fn push(&mut self, row: &AuditRow) -> Result<(), Broken> {
        let broken = |what: String| Broken {
            row: Some(row.id),
            what,
        };
        self.rows += 1;
        let (Some(link), Some(body)) = (&row.link, &row.body) else {
            if self.first_chained.is_some() {
                return Err(broken(
                    "it has no chain link, yet it comes after chained rows (its link was removed)"
                        .into(),
                ));
            }
            self.unchained += 1;
            return Ok(());
        };
        self.first_chained.get_or_insert(row.id);
        let chain = &link.replica_id;
        if link_hash(chain, link.seq, &link.prev_hash, body) != link.hash {
            return Err(broken(format!(
                "chain {chain}: row {} was edited (its hash does not match its content)",
                link.seq
            )));
        }
        match serde_json::from_str::<AuditEvent>(body) {
            Ok(e) if e == row.event && row.columns_match => {}
            Ok(_) => {
                return Err(broken(format!(
                "chain {chain}: row {}'s columns were edited (they differ from its hashed event)",
                link.seq
            )))
            }
            Err(e) => {
                return Err(broken(format!(
                    "chain {chain}: row {}'s event is not JSON: {e}",
                    link.seq
                )))
            }
        }
        for (i, h) in self.expected.iter().enumerate() {
            if h.replica_id == *chain && h.seq == link.seq {
                if h.hash != link.hash {
                    return Err(broken(format!(
                        "chain {chain}: row {} is not the one recorded as head {h}",
                        link.seq
                    )));
                }
                self.seen[i] = true;
            }
        }
        let want = self.heads.get(chain).map_or(1, |h| h.seq + 1);
        let waiting = self.waiting.entry(chain.clone()).or_default();
        if link.seq < want || waiting.contains_key(&link.seq) {
            return Err(broken(format!(
                "chain {chain}: row {} comes again (repeated)",
                link.seq
            )));
        }
        if link.seq > want {
            waiting.insert(
                link.seq,
                (row.id, link.prev_hash.clone(), link.hash.clone()),
            );
            if waiting.len() > MAX_WAITING {
                return Err(broken(format!(
                    "chain {chain}: row {want} is missing (deleted)"
                )));
            }
            return Ok(());
        }
        if let Some((early, (early_id, ..))) = waiting.iter().next() {
            return Err(broken(format!(
                "chain {chain}: row {} comes after row {early} (row id {early_id}): the rows were reordered",
                link.seq
            )));
        }
        self.link(chain, link.seq, &link.prev_hash, &link.hash)
            .map_err(broken)
    }

    /// Appends a row in its turn: its previous hash must be the head's.
    fn link(&mut self, chain: &str, seq: u64, prev: &str, hash: &str) -> Result<(), String> {
        let want_prev = self.heads.get(chain).map_or(GENESIS, |h| h.hash.as_str());
        if prev != want_prev {
            return Err(format!(
                "chain {chain}: row {seq}'s previous hash is not row {}'s hash",
                seq - 1
            ));
        }
        self.heads.insert(
            chain.to_owned(),
            ChainHead {
                replica_id: chain.to_owned(),
                seq,
                hash: hash.to_owned(),
            },
        );
        Ok(())
    }

    /// Ends the check: no row missing, every expected head seen.
    pub fn finish(self) -> Result<Report, Broken> {
        for (chain, waiting) in &self.waiting {
            if let Some((seq, (id, ..))) = waiting.iter().next() {
                let want = self.heads.get(chain).map_or(1, |h| h.seq + 1);
                return Err(Broken {
                    row: Some(*id),
                    what: format!(
                        "chain {chain}: rows {want}..={} are missing (deleted), before row {seq}",
                        seq - 1
                    ),
                });
            }
        }
        for (h, seen) in self.expected.iter().zip(&self.seen) {
            if !seen {
                let have = self
                    .heads
                    .get(&h.replica_id)
                    .map_or("no rows".to_owned(), |x| format!("{} rows", x.seq));
                return Err(Broken {
                    row: None,
                    what: format!(
                        "chain {}: the recorded head {h} is not in the trail (it has {have}: its tail was cut)",
                        h.replica_id
                    ),
                });
            }
        }
        Ok(Report {
            rows: self.rows,
            unchained: self.unchained,
            heads: self.heads.into_values().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let event = AuditEvent {
                    reason: format!("r{seq}"),
                    ..AuditEvent::new("refuse", "x", seq)
                };
                let body = event_json(&event).unwrap();
                let hash = link_hash("a", seq, &prev, &body);
                let row = AuditRow {
                    id: seq as i64,
                    event,
                    columns_match: true,
                    body: Some(body),
                    link: Some(ChainLink {
                        replica_id: "a".into(),
                        seq,
                        prev_hash: prev.clone(),
                        hash: hash.clone(),
                    }),
                };
                prev = hash;
                row
            })
            .collect()
    }

    fn verify(rows: &[AuditRow], expected: Vec<ChainHead>) -> Result<Report, Broken> {
        let mut v = Verifier::new(expected);
        for r in rows {
            v.push(r)?;
        }
        v.finish()
    }

    #[test]
    fn an_intact_chain_verifies_and_a_changed_one_does_not() {
        let rows = chain(5);
        let report = verify(&rows, vec![]).unwrap();
        assert_eq!(report.rows, 5);
        assert_eq!(report.heads[0].seq, 5);

        let mut edited = rows.clone();
        edited[2].body = Some(edited[2].body.as_ref().unwrap().replace("r3", "r9"));
        assert!(verify(&edited, vec![]).unwrap_err().what.contains("edited"));

        let mut deleted = rows.clone();
        deleted.remove(1);
        assert!(verify(&deleted, vec![])
            .unwrap_err()
            .what
            .contains("missing"));

        let mut reordered = rows.clone();
        reordered.swap(1, 2);
        assert!(verify(&reordered, vec![])
            .unwrap_err()
            .what
            .contains("reordered"));

        let head = report.heads[0].clone();
        let cut = &rows[..3];
        assert!(verify(cut, vec![head.clone()])
            .unwrap_err()
            .what
            .contains("cut"));
        assert_eq!(head.to_string().parse::<ChainHead>().unwrap(), head);
    }
}
