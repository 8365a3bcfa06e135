//! Migrations: the `migrations` map of `manifest.json`, `Release.toml`, and the path of
//! migrations a host runs between two versions.
//!
//! Keys follow the reference grammar: somewhere in the text, `(`FROM`,` spaces TO`)`, where
//! FROM and TO contain no space or comma and are strict semver. They are written back as the
//! canonical `"(FROM, TO)"` and ordered by that text. Path finding takes the **shortest** path
//! (decision f) instead of the reference's greedy walk.

use crate::error::{self, Result};
use semver::Version;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use snafu::ResultExt;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::Path;

/// One migration hop, `(from, to)`.
#[derive(Debug, Clone)]
pub struct MigrationKey {
    from: Version,
    to: Version,
    canonical: String,
}

impl MigrationKey {
    /// The hop from `from` to `to`.
    pub fn new(from: Version, to: Version) -> MigrationKey {
        let canonical = format!("({from}, {to})");
        MigrationKey {
            from,
            to,
            canonical,
        }
    }

    /// Parse a key with the reference's unanchored pattern. The error text says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<MigrationKey, String> {
        let (from, to) = find_key_pattern(text)
            .ok_or_else(|| format!("Migration key '{text}' is not of the form '(FROM, TO)'"))?;
        let parse = |v: &str| {
            Version::parse(v)
                .map_err(|e| format!("Could not parse OS versions in migration key '{text}': {e}"))
        };
        Ok(MigrationKey::new(parse(from)?, parse(to)?))
    }

    /// The version this hop starts from.
    pub fn from(&self) -> &Version {
        &self.from
    }

    /// The version this hop leads to.
    pub fn to(&self) -> &Version {
        &self.to
    }
}

impl PartialEq for MigrationKey {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}
impl Eq for MigrationKey {}
impl PartialOrd for MigrationKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MigrationKey {
    /// Ordered by canonical text, as the reference writes them (`(1.10.0, …)` before `(1.9.0, …)`).
    fn cmp(&self, other: &Self) -> Ordering {
        self.canonical.cmp(&other.canonical)
    }
}

impl fmt::Display for MigrationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

/// Leftmost match of `\(([^ ,]+), *([^ ,]+)\)` in `text`, without a regex engine.
fn find_key_pattern(text: &str) -> Option<(&str, &str)> {
    let is_word = |c: char| c != ' ' && c != ',';
    for (open, _) in text.match_indices('(') {
        let after_open = &text[open + 1..];
        let from_len = after_open
            .find(|c: char| !is_word(c))
            .unwrap_or(after_open.len());
        if from_len == 0 || !after_open[from_len..].starts_with(',') {
            continue;
        }
        let from = &after_open[..from_len];
        let after_comma = after_open[from_len + 1..].trim_start_matches(' ');
        let run_len = after_comma
            .find(|c: char| !is_word(c))
            .unwrap_or(after_comma.len());
        // TO is the longest prefix of the run that is followed by ')'.
        if let Some(close) = after_comma[..run_len].rfind(')').filter(|close| *close > 0) {
            return Some((from, &after_comma[..close]));
        }
    }
    None
}

/// The `migrations` map: hop → ordered list of migration target names (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Migrations(pub BTreeMap<MigrationKey, Vec<String>>);

impl Migrations {
    /// The migrations a host runs to go from `from` to `to`, in order: the shortest chain of
    /// hops between the two versions (ties: the higher intermediate version at the first
    /// difference), concatenated, and reversed for a downgrade. Every hop needs an entry,
    /// even with an empty list. `from == to` → empty.
    pub fn path(&self, from: &Version, to: &Version) -> Result<Vec<String>> {
        if from == to {
            return Ok(Vec::new());
        }
        let (lower, higher) = if from < to { (from, to) } else { (to, from) };
        let hops: Vec<&MigrationKey> = self
            .0
            .keys()
            .filter(|key| key.from < key.to && key.from >= *lower && key.to <= *higher)
            .collect();

        // Hops remaining to reach `higher`, by breadth-first search backwards from it.
        let mut distance: HashMap<&Version, usize> = HashMap::from([(higher, 0)]);
        let mut queue = VecDeque::from([higher]);
        while let Some(version) = queue.pop_front() {
            let next = distance[version] + 1;
            for hop in hops.iter().filter(|hop| &hop.to == version) {
                if !distance.contains_key(&hop.from) {
                    distance.insert(&hop.from, next);
                    queue.push_back(&hop.from);
                }
            }
        }

        if !distance.contains_key(lower) {
            let reached = self.highest_reachable(&hops, lower);
            return error::MissingMigrationSnafu {
                from: lower.clone(),
                to: higher.clone(),
                reached,
            }
            .fail();
        }

        // Walk forward, always to the highest version that stays on a shortest path.
        let mut names = Vec::new();
        let mut current = lower;
        while current != higher {
            let remaining = distance[current];
            let hop = hops
                .iter()
                .filter(|hop| {
                    &hop.from == current && distance.get(&hop.to) == Some(&(remaining - 1))
                })
                .max_by(|a, b| a.to.cmp(&b.to));
            // Invariant: a version at distance d > 0 has a hop to a version at distance d − 1.
            let Some(hop) = hop else {
                return error::MissingMigrationSnafu {
                    from: lower.clone(),
                    to: higher.clone(),
                    reached: current.clone(),
                }
                .fail();
            };
            names.extend(self.0[*hop].iter().cloned());
            current = &hop.to;
        }
        if from > to {
            names.reverse();
        }
        Ok(names)
    }

    fn highest_reachable(&self, hops: &[&MigrationKey], start: &Version) -> Version {
        let mut seen = BTreeSet::from([start.clone()]);
        let mut queue = VecDeque::from([start.clone()]);
        while let Some(version) = queue.pop_front() {
            for hop in hops.iter().filter(|hop| hop.from == version) {
                if seen.insert(hop.to.clone()) {
                    queue.push_back(hop.to.clone());
                }
            }
        }
        // Invariant: `seen` holds at least `start`.
        seen.last().cloned().unwrap_or_else(|| start.clone())
    }
}

impl Serialize for Migrations {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, names) in &self.0 {
            map.serialize_entry(&key.canonical, names)?;
        }
        map.end()
    }
}

/// A migration name must be one plain file name: hosts store each migration under its name in
/// their migrations cache, so a name with a `/`, `.`, `..`, a NUL or nothing at all could
/// escape that folder or clobber another file. Checked when a manifest or `Release.toml` is
/// read and when a manifest is written.
pub fn check_migration_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(format!(
            "the migration name {name:?} is not one plain file name (no '/', '\\', NUL, '.' or '..')"
        ));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Migrations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MigrationsVisitor)
    }
}

struct MigrationsVisitor;

impl<'de> Visitor<'de> for MigrationsVisitor {
    type Value = Migrations;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of \"(FROM, TO)\" keys to lists of migration names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Migrations, A::Error> {
        use serde::de::Error as _;
        let mut map = BTreeMap::new();
        while let Some(text) = access.next_key::<String>()? {
            let key = MigrationKey::parse(&text).map_err(A::Error::custom)?;
            let names: Vec<String> = access.next_value()?;
            for name in &names {
                check_migration_name(name).map_err(A::Error::custom)?;
            }
            if map.contains_key(&key) {
                return Err(A::Error::custom(format!(
                    "Duplicate version key: {key} (from '{text}')"
                )));
            }
            map.insert(key, names);
        }
        Ok(Migrations(map))
    }
}

/// `Release.toml`: the release version and its migration table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The OS release version.
    pub version: Version,
    /// Every hop with its migrations (replaces the manifest's whole map when published).
    #[serde(default)]
    pub migrations: Migrations,
}

impl Release {
    /// Parse `Release.toml` text. `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Release> {
        toml::from_str(text).context(error::ParseReleaseSnafu { origin })
    }

    /// Read and parse a `Release.toml` file.
    pub fn load(path: &Path) -> Result<Release> {
        let text = std::fs::read_to_string(path).context(error::ReadFileSnafu { path })?;
        Release::from_toml(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{MigrationKey, Migrations, Release, find_key_pattern};
    use semver::Version;

    #[test]
    fn migration_names_must_be_plain_file_names() {
        for bad in [
            "../../etc/cron.d/x",
            "/abs",
            "a/b",
            "..",
            ".",
            "",
            "a\\b",
            "nul\0",
        ] {
            // A JSON string literal is also a TOML basic string (escapes included).
            let quoted = serde_json::to_string(bad).unwrap();
            let toml =
                format!("version = \"1.1.0\"\n[migrations]\n\"(1.0.0, 1.1.0)\" = [{quoted}]\n");
            let err = Release::from_toml(&toml, "Release.toml").unwrap_err();
            let chain = snafu::Report::from_error(err).to_string();
            assert!(
                chain.contains("not one plain file name"),
                "{bad:?}: {chain}"
            );
            let json = format!(
                "{{\"updates\": [], \"migrations\": {{\"(1.0.0, 1.1.0)\": [{}]}}}}",
                serde_json::to_string(bad).unwrap()
            );
            assert!(
                crate::Manifest::from_slice(json.as_bytes(), "m").is_err(),
                "{bad:?}"
            );
            let mut manifest =
                crate::Manifest::from_slice(b"{\"updates\": [], \"migrations\": {}}", "m").unwrap();
            manifest.migrations = migrations(&[("(1.0.0, 1.1.0)", &[bad])]);
            assert!(manifest.to_json().is_err(), "{bad:?} was written");
        }
        let ok = "version = \"1.1.0\"\n[migrations]\n\"(1.0.0, 1.1.0)\" = [\"migrate_v1.1.0_thing.lz4\"]\n";
        assert!(Release::from_toml(ok, "Release.toml").is_ok());
    }

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn migrations(entries: &[(&str, &[&str])]) -> Migrations {
        Migrations(
            entries
                .iter()
                .map(|(key, names)| {
                    (
                        MigrationKey::parse(key).unwrap(),
                        names.iter().map(|n| n.to_string()).collect(),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn key_pattern_is_unanchored_and_lenient_about_spaces() {
        assert_eq!(find_key_pattern("(1.0.0,1.1.0)"), Some(("1.0.0", "1.1.0")));
        assert_eq!(
            find_key_pattern("junk (1.1.0,  1.2.0) tail"),
            Some(("1.1.0", "1.2.0"))
        );
        assert_eq!(
            find_key_pattern("(1.2.0, 1.3.0-rc.1+build)"),
            Some(("1.2.0", "1.3.0-rc.1+build"))
        );
        assert_eq!(find_key_pattern("(a b, c)"), None);
        assert_eq!(find_key_pattern("1.0.0, 1.1.0"), None);
        assert_eq!(find_key_pattern("(1.0.0 , 1.1.0)"), None);
        assert!(
            MigrationKey::parse("(v1.1.0, 1.2.0)")
                .unwrap_err()
                .contains("Could not parse OS versions")
        );
        assert!(
            MigrationKey::parse("(1.0, 1.2.0)")
                .unwrap_err()
                .contains("Could not parse OS versions")
        );
        assert_eq!(
            MigrationKey::parse("(1.2.0, 1.3.0-rc.1+build)")
                .unwrap()
                .to_string(),
            "(1.2.0, 1.3.0-rc.1+build)"
        );
    }

    #[test]
    fn keys_order_by_canonical_text() {
        let m = migrations(&[("(1.9.0, 1.10.0)", &[]), ("(1.10.0, 1.11.0)", &[])]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"(1.10.0, 1.11.0)":[],"(1.9.0, 1.10.0)":[]}"#);
    }

    #[test]
    fn duplicate_keys_are_rejected_even_when_spelt_differently() {
        let error =
            serde_json::from_str::<Migrations>(r#"{"(1.0.0,1.1.0)": [], "(1.0.0, 1.1.0)": []}"#)
                .unwrap_err();
        assert!(
            error.to_string().contains("Duplicate version key"),
            "{error}"
        );
    }

    #[test]
    fn shortest_path_beats_the_greedy_walk() {
        // The reference's greedy walk picks (1.0,1.2) and then fails; a path exists via 1.1.
        let m = migrations(&[
            ("(1.0.0, 1.2.0)", &["a"]),
            ("(1.0.0, 1.1.0)", &["b"]),
            ("(1.1.0, 1.3.0)", &["c"]),
        ]);
        assert_eq!(m.path(&v("1.0.0"), &v("1.3.0")).unwrap(), ["b", "c"]);
        assert_eq!(m.path(&v("1.3.0"), &v("1.0.0")).unwrap(), ["c", "b"]);
    }

    #[test]
    fn ties_prefer_the_higher_intermediate_version() {
        let m = migrations(&[
            ("(1.0.0, 1.1.0)", &["via-1.1"]),
            ("(1.0.0, 1.2.0)", &["via-1.2"]),
            ("(1.1.0, 1.3.0)", &["from-1.1"]),
            ("(1.2.0, 1.3.0)", &["from-1.2"]),
        ]);
        assert_eq!(
            m.path(&v("1.0.0"), &v("1.3.0")).unwrap(),
            ["via-1.2", "from-1.2"]
        );
    }

    #[test]
    fn missing_hop_is_named() {
        let m = migrations(&[("(1.0.0, 1.1.0)", &["a"]), ("(1.1.0, 1.2.0)", &["b"])]);
        let error = m.path(&v("1.0.0"), &v("1.3.0")).unwrap_err().to_string();
        assert!(
            error.contains("1.2.0") && error.contains("1.3.0"),
            "{error}"
        );
        let error = m.path(&v("1.0.0"), &v("1.2.5")).unwrap_err().to_string();
        assert!(error.contains("1.2.5"), "{error}");
        assert_eq!(
            m.path(&v("1.1.0"), &v("1.1.0")).unwrap(),
            Vec::<String>::new()
        );
    }
}
