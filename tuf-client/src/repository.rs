//! Loading a repository: the client workflow of spec §5 (root rotation, timestamp, snapshot,
//! top-level targets), then lazy delegated-role loading during target search.

pub mod target;
use crate::clock::{Clock, SystemClock};
use crate::error::{self, Result};
use crate::metadata::{Parsed, TOP_LEVEL, check_meta_file};
use crate::schema::{Key, Meta, MetaFile, Root, Targets};
use crate::search::{Child, Walk, children_for};
use crate::store::{Store, encode_name};
use crate::transport::{DefaultTransport, Transport, TransportError};
use futures::StreamExt;
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use target::TargetInfo;
use url::Url;

/// Size limits and counts. The defaults are the ones the specification's reference client
/// uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest root.json accepted (bytes).
    pub max_root_size: u64,
    /// Largest timestamp.json accepted (bytes).
    pub max_timestamp_size: u64,
    /// Largest snapshot.json accepted when timestamp gives no length (bytes).
    pub max_snapshot_size: u64,
    /// Largest targets metadata (top-level or delegated) accepted when snapshot gives no
    /// length (bytes).
    pub max_targets_size: u64,
    /// Most root versions fetched in one load.
    pub max_root_rotations: u64,
    /// Most targets roles visited in one target search.
    pub max_delegations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_root_size: 512_000,
            max_timestamp_size: 16_384,
            max_snapshot_size: 2_000_000,
            max_targets_size: 5_000_000,
            max_root_rotations: 32,
            max_delegations: 32,
        }
    }
}

/// Builds a [`Repository`]: where trusted metadata lives, where the repository is, and how to
/// reach it.
#[derive(Debug, Clone)]
pub struct RepositoryLoader {
    metadata_dir: PathBuf,
    metadata_base_url: Url,
    targets_base_url: Url,
    trusted_root: Option<Vec<u8>>,
    transport: Option<Arc<dyn Transport>>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

/// A base URL whose path ends with `/`, so that file names join below it.
fn dir_url(url: &Url) -> Url {
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

impl RepositoryLoader {
    /// A loader keeping trusted metadata in `metadata_dir`, fetching metadata from
    /// `metadata_base_url` and targets from `targets_base_url`.
    pub fn new(metadata_dir: &Path, metadata_base_url: &Url, targets_base_url: &Url) -> Self {
        Self {
            metadata_dir: metadata_dir.to_path_buf(),
            metadata_base_url: dir_url(metadata_base_url),
            targets_base_url: dir_url(targets_base_url),
            trusted_root: None,
            transport: None,
            clock: Arc::new(SystemClock),
            limits: Limits::default(),
        }
    }

    /// The root to trust when the metadata folder has none yet (first boot). A `root.json`
    /// already in the metadata folder takes precedence.
    pub fn trusted_root(mut self, bytes: Vec<u8>) -> Self {
        self.trusted_root = Some(bytes);
        self
    }

    /// The transport (default: [`DefaultTransport`]).
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The clock expiry is checked against (default: the system clock). It is read once, at
    /// the start of [`load`](Self::load): that instant is the update's fixed start time.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Size limits and counts.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Run the update workflow: every step that verifies is persisted as it passes, so a
    /// failure leaves the metadata folder with everything trusted up to that point.
    pub async fn load(self) -> Result<Repository> {
        let transport = match self.transport {
            Some(t) => t,
            None => Arc::new(DefaultTransport::new().context(error::HttpClientSnafu)?),
        };
        let repo = Update {
            store: Store::new(&self.metadata_dir),
            metadata_base_url: self.metadata_base_url,
            transport,
            limits: self.limits,
            now: self.clock.now(),
        };
        let (root, roots_fetched) = repo.update_root(self.trusted_root).await?;
        let root_chain = repo.root_chain(&root);
        let timestamp = repo.update_timestamp(&root).await?;
        let snapshot = repo.update_snapshot(&root, &timestamp).await?;
        let targets = repo.update_targets(&root, &snapshot).await?;
        Ok(Repository {
            store: repo.store,
            metadata_base_url: repo.metadata_base_url,
            targets_base_url: self.targets_base_url,
            transport: repo.transport,
            limits: repo.limits,
            now: repo.now,
            root,
            roots_fetched,
            root_chain,
            timestamp,
            snapshot,
            targets: Arc::new(targets),
            delegated: Mutex::new(HashMap::new()),
        })
    }
}

/// The state of one update run (before the repository is complete).
#[derive(Debug)]
struct Update {
    store: Store,
    metadata_base_url: Url,
    transport: Arc<dyn Transport>,
    limits: Limits,
    now: jiff::Timestamp,
}

/// Fetch `file` below `base` (at most `max` bytes).
async fn fetch_metadata(
    transport: &dyn Transport,
    base: &Url,
    file: &str,
    max: u64,
) -> Result<Vec<u8>> {
    let url = base.join(file).context(error::JoinUrlSnafu {
        base: base.as_str(),
        path: file,
    })?;
    let fetch_error = |source: TransportError| {
        if source.is_not_found() {
            error::Error::MetadataNotFound {
                url: url.to_string(),
                source,
            }
        } else {
            error::Error::FetchMetadata {
                url: url.to_string(),
                source,
            }
        }
    };
    tracing::debug!(%url, "fetching metadata");
    let mut stream = transport.fetch(&url).await.map_err(fetch_error)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(fetch_error)?;
        ensure!(
            bytes.len() as u64 + chunk.len() as u64 <= max,
            error::TooLargeSnafu {
                url: url.as_str(),
                max
            }
        );
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The file name of a role's metadata, versioned when consistent snapshots are used.
fn metadata_file(role: &str, version: u64, consistent: bool) -> String {
    if consistent {
        format!("{version}.{}.json", encode_name(role))
    } else {
        format!("{}.json", encode_name(role))
    }
}

impl Update {
    /// Load (and check) the trusted root from the store, or `initial` when there is none.
    fn trusted_root(&self, initial: Option<Vec<u8>>) -> Result<Parsed<Root>> {
        let (bytes, from_store) = match self.store.read("root")? {
            Some(bytes) => (bytes, true),
            None => (
                initial.context(error::NoTrustedRootSnafu {
                    path: self.store.path("root"),
                })?,
                false,
            ),
        };
        let root = Parsed::<Root>::parse("root", "root", bytes)?;
        root.validate_roles()?;
        root.verify_role("root", &root)?;
        if from_store {
            // A folder written before the root history existed (or by `init`) lacks it.
            let recorded = self.store.read_root_version(root.version())?;
            if recorded.as_deref() != Some(root.bytes.as_slice()) {
                self.store.write_root_version(root.version(), &root.bytes)?;
            }
        } else {
            // First use: a new chain starts here.
            self.store.clear_root_history()?;
            self.store.write_root_version(root.version(), &root.bytes)?;
            self.store.write("root", &root.bytes)?;
        }
        Ok(root)
    }

    /// The verified root chain ending at `root`, oldest first: the history, walked down from
    /// `root` while each older version is recorded, has the right version and is the one
    /// whose keys signed the next. An unusable entry ends the walk (with a warning).
    fn root_chain(&self, root: &Parsed<Root>) -> Vec<(u64, Vec<u8>)> {
        let mut chain = vec![(root.version(), root.bytes.clone())];
        let mut newer = root.clone();
        while let Some(version) = newer.version().checked_sub(1).filter(|v| *v > 0) {
            let older = match self.store.read_root_version(version) {
                Ok(None) => break,
                Ok(Some(bytes)) => Parsed::<Root>::parse("root", "root", bytes).and_then(|older| {
                    older.check_version(version)?;
                    older.verify_role("root", &newer)?;
                    Ok(older)
                }),
                Err(e) => Err(e),
            };
            match older {
                Ok(older) => {
                    chain.push((version, older.bytes.clone()));
                    newer = older;
                }
                Err(e) => {
                    tracing::warn!(version, error = %e, "unusable root history entry; the chain starts above it");
                    break;
                }
            }
        }
        chain.reverse();
        chain
    }

    /// §5.3: walk `N+1.root.json` until it is not found, then check expiry and handle a
    /// rotation of the timestamp or snapshot keys.
    async fn update_root(
        &self,
        initial: Option<Vec<u8>>,
    ) -> Result<(Parsed<Root>, Vec<(u64, Vec<u8>)>)> {
        let mut root = self.trusted_root(initial)?;
        let original = root.clone();
        let mut fetched = Vec::new();
        for _ in 0..self.limits.max_root_rotations {
            let next = root.version() + 1;
            let bytes = match fetch_metadata(
                self.transport.as_ref(),
                &self.metadata_base_url,
                &format!("{next}.root.json"),
                self.limits.max_root_size,
            )
            .await
            {
                Ok(bytes) => bytes,
                Err(e) if e.is_not_found() => break,
                Err(e) => return Err(e),
            };
            let new = Parsed::<Root>::parse("root", "root", bytes)?;
            new.validate_roles()?;
            root.verify_role("root", &new)?;
            new.verify_role("root", &new)?;
            new.check_version(next)?;
            self.store.write_root_version(next, &new.bytes)?;
            self.store.write("root", &new.bytes)?;
            tracing::info!(version = next, "trusted a new root");
            fetched.push((next, new.bytes.clone()));
            root = new;
        }
        root.check_expiry(self.now)?;
        let rotated = |role: &str| {
            let keys = |r: &Parsed<Root>| {
                r.body.roles.get(role).map(|k| {
                    let mut ids = k.keyids.clone();
                    ids.sort();
                    ids.dedup();
                    ids
                })
            };
            keys(&original) != keys(&root)
        };
        if rotated("timestamp") || rotated("snapshot") {
            tracing::info!(
                "timestamp or snapshot keys rotated: forgetting trusted timestamp and snapshot"
            );
            self.store.remove("timestamp")?;
            self.store.remove("snapshot")?;
        }
        Ok((root, fetched))
    }

    /// A trusted top-level role from the store, if it is there and signed by `root`'s keys
    /// (it serves as the baseline for rollback checks; expiry and version are not checked).
    fn local_top_level<T: serde::de::DeserializeOwned>(
        &self,
        root: &Parsed<Root>,
        role: &str,
    ) -> Option<Parsed<T>> {
        let bytes = match self.store.read(role) {
            Ok(b) => b?,
            Err(e) => {
                tracing::warn!(role, error = %e, "cannot read trusted metadata; ignoring it");
                return None;
            }
        };
        match Parsed::<T>::parse(role, role, bytes).and_then(|p| {
            root.verify_role(role, &p)?;
            Ok(p)
        }) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::info!(role, error = %e, "stored metadata is no longer valid; ignoring it");
                None
            }
        }
    }

    /// §5.4: timestamp.
    async fn update_timestamp(&self, root: &Parsed<Root>) -> Result<Parsed<Meta>> {
        let trusted = self.local_top_level::<Meta>(root, "timestamp");
        let bytes = fetch_metadata(
            self.transport.as_ref(),
            &self.metadata_base_url,
            "timestamp.json",
            self.limits.max_timestamp_size,
        )
        .await?;
        let new = Parsed::<Meta>::parse("timestamp", "timestamp", bytes)?;
        root.verify_role("timestamp", &new)?;
        let new_snapshot = snapshot_meta(&new)?.version;
        if let Some(trusted) = trusted {
            ensure!(
                new.version() >= trusted.version(),
                error::RollbackSnafu {
                    role: "timestamp",
                    trusted: trusted.version(),
                    new: new.version(),
                }
            );
            if new.version() == trusted.version() {
                // Same version: keep what is trusted (even if the content differs).
                tracing::debug!(version = new.version(), "timestamp unchanged");
                trusted.check_expiry(self.now)?;
                return Ok(trusted);
            }
            let trusted_snapshot = snapshot_meta(&trusted)?.version;
            ensure!(
                new_snapshot >= trusted_snapshot,
                error::RollbackSnafu {
                    role: "snapshot.json (in timestamp)",
                    trusted: trusted_snapshot,
                    new: new_snapshot,
                }
            );
        }
        new.check_expiry(self.now)?;
        self.store.write("timestamp", &new.bytes)?;
        Ok(new)
    }

    /// §5.5: snapshot.
    async fn update_snapshot(
        &self,
        root: &Parsed<Root>,
        timestamp: &Parsed<Meta>,
    ) -> Result<Parsed<Meta>> {
        let meta = snapshot_meta(timestamp)?;
        let trusted = self.local_top_level::<Meta>(root, "snapshot");
        if let Some(t) = &trusted
            && t.version() == meta.version
            && !t.is_expired(self.now)
        {
            tracing::debug!(version = t.version(), "trusted snapshot is current");
            return Ok(t.clone());
        }
        let file = metadata_file("snapshot", meta.version, root.body.consistent_snapshot);
        let bytes = fetch_metadata(
            self.transport.as_ref(),
            &self.metadata_base_url,
            &file,
            meta.length.unwrap_or(self.limits.max_snapshot_size),
        )
        .await?;
        check_meta_file("snapshot.json", meta, &bytes)?;
        let new = Parsed::<Meta>::parse("snapshot", "snapshot", bytes)?;
        root.verify_role("snapshot", &new)?;
        if let Some(trusted) = &trusted {
            for (name, old) in &trusted.body.meta {
                let Some(entry) = new.body.meta.get(name) else {
                    return error::RoleRemovedSnafu { role: name.clone() }.fail();
                };
                ensure!(
                    entry.version >= old.version,
                    error::RollbackSnafu {
                        role: name.clone(),
                        trusted: old.version,
                        new: entry.version,
                    }
                );
            }
        }
        new.check_version(meta.version)?;
        new.check_expiry(self.now)?;
        self.store.write("snapshot", &new.bytes)?;
        Ok(new)
    }

    /// §5.6: top-level targets.
    async fn update_targets(
        &self,
        root: &Parsed<Root>,
        snapshot: &Parsed<Meta>,
    ) -> Result<Parsed<Targets>> {
        let keys = &root.body.roles["targets"];
        load_targets_role(
            RoleSource {
                store: &self.store,
                transport: self.transport.as_ref(),
                base: &self.metadata_base_url,
                consistent: root.body.consistent_snapshot,
                max_size: self.limits.max_targets_size,
                now: self.now,
            },
            snapshot,
            "targets",
            &format!("root v{}", root.version()),
            &root.body.keys,
            &keys.keyids,
            keys.threshold,
        )
        .await
    }
}

/// timestamp's entry for snapshot.json.
fn snapshot_meta(timestamp: &Parsed<Meta>) -> Result<&MetaFile> {
    timestamp
        .body
        .meta
        .get("snapshot.json")
        .context(error::MissingMetaSnafu {
            role: "snapshot.json",
            listing: "timestamp",
        })
}

/// Where a targets role comes from.
#[derive(Debug, Clone, Copy)]
struct RoleSource<'a> {
    store: &'a Store,
    transport: &'a dyn Transport,
    base: &'a Url,
    consistent: bool,
    max_size: u64,
    now: jiff::Timestamp,
}

/// Load a targets role (top-level or delegated) as snapshot lists it: the stored copy if it
/// is the listed version, verifies and has not expired, else the repository's.
#[allow(clippy::too_many_arguments)]
async fn load_targets_role(
    src: RoleSource<'_>,
    snapshot: &Parsed<Meta>,
    role: &str,
    delegator: &str,
    keys: &HashMap<String, Key>,
    keyids: &[String],
    threshold: u64,
) -> Result<Parsed<Targets>> {
    let listed = format!("{role}.json");
    let meta = snapshot
        .body
        .meta
        .get(&listed)
        .context(error::MissingMetaSnafu {
            role: listed.clone(),
            listing: "snapshot",
        })?;
    if let Some(bytes) = src.store.read(role)? {
        match Parsed::<Targets>::parse(role, "targets", bytes).and_then(|p| {
            p.verify(delegator, keys, keyids, threshold)?;
            Ok(p)
        }) {
            Ok(p) if p.version() == meta.version && !p.is_expired(src.now) => {
                tracing::debug!(role, version = p.version(), "trusted copy is current");
                return Ok(p);
            }
            Ok(_) => {}
            Err(e) => tracing::info!(role, error = %e, "stored metadata is not valid; ignoring it"),
        }
    }
    let file = metadata_file(role, meta.version, src.consistent);
    let bytes = fetch_metadata(
        src.transport,
        src.base,
        &file,
        meta.length.unwrap_or(src.max_size),
    )
    .await?;
    check_meta_file(&listed, meta, &bytes)?;
    let new = Parsed::<Targets>::parse(role, "targets", bytes)?;
    new.verify(delegator, keys, keyids, threshold)?;
    new.check_version(meta.version)?;
    new.check_expiry(src.now)?;
    src.store.write(role, &new.bytes)?;
    Ok(new)
}

/// A loaded, verified repository. Delegated targets roles are loaded on demand by
/// [`find_target`](Self::find_target).
#[derive(Debug)]
pub struct Repository {
    pub(crate) store: Store,
    pub(crate) metadata_base_url: Url,
    pub(crate) targets_base_url: Url,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) limits: Limits,
    pub(crate) now: jiff::Timestamp,
    root: Parsed<Root>,
    roots_fetched: Vec<(u64, Vec<u8>)>,
    root_chain: Vec<(u64, Vec<u8>)>,
    timestamp: Parsed<Meta>,
    snapshot: Parsed<Meta>,
    targets: Arc<Parsed<Targets>>,
    delegated: Mutex<HashMap<String, Arc<Parsed<Targets>>>>,
}

/// A trusted role's version and the exact bytes that were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMetadata {
    /// The role's name.
    pub role: String,
    /// Its version.
    pub version: u64,
    /// Its expiry.
    pub expires: jiff::Timestamp,
    /// The bytes as fetched (or as stored, when the stored copy was current).
    pub bytes: Vec<u8>,
}

fn role_metadata<T>(p: &Parsed<T>) -> RoleMetadata {
    RoleMetadata {
        role: p.role.clone(),
        version: p.version(),
        expires: p.expires,
        bytes: p.bytes.clone(),
    }
}

impl Repository {
    /// Whether the repository uses consistent snapshots (versioned metadata names,
    /// hash-prefixed target names).
    pub fn consistent_snapshot(&self) -> bool {
        self.root.body.consistent_snapshot
    }

    /// The trusted root.
    pub fn root(&self) -> RoleMetadata {
        role_metadata(&self.root)
    }

    /// The root versions fetched and verified in this load, in order, with their bytes (for
    /// writing a `N.root.json` cache; earlier versions were trusted before).
    pub fn roots_fetched(&self) -> &[(u64, Vec<u8>)] {
        &self.roots_fetched
    }

    /// Every root version verified in this metadata folder that leads to the trusted root,
    /// oldest first, with its exact verified bytes: from the first-use root (or the oldest
    /// version still recorded) to [`root`](Self::root). Kept in the folder's root history
    /// across loads (see [`crate::store::ROOT_HISTORY`]).
    pub fn root_chain(&self) -> &[(u64, Vec<u8>)] {
        &self.root_chain
    }

    /// The trusted timestamp.
    pub fn timestamp(&self) -> RoleMetadata {
        role_metadata(&self.timestamp)
    }

    /// The trusted snapshot.
    pub fn snapshot(&self) -> RoleMetadata {
        role_metadata(&self.snapshot)
    }

    /// The trusted top-level targets.
    pub fn targets(&self) -> RoleMetadata {
        role_metadata(&self.targets)
    }

    /// A delegated targets role loaded so far (by [`find_target`](Self::find_target)).
    pub fn delegated_role(&self, name: &str) -> Option<RoleMetadata> {
        self.delegated_cache().get(name).map(|p| role_metadata(p))
    }

    /// Every delegated targets role loaded so far, by name.
    pub fn delegated_roles(&self) -> Vec<RoleMetadata> {
        let mut roles: Vec<RoleMetadata> = self
            .delegated_cache()
            .values()
            .map(|p| role_metadata(p))
            .collect();
        roles.sort_by(|a, b| a.role.cmp(&b.role));
        roles
    }

    /// The metadata base URL (ends with `/`).
    pub fn metadata_base_url(&self) -> &Url {
        &self.metadata_base_url
    }

    /// The targets base URL (ends with `/`).
    pub fn targets_base_url(&self) -> &Url {
        &self.targets_base_url
    }

    /// The update's fixed start time (metadata expiry was checked against it).
    pub fn start_time(&self) -> jiff::Timestamp {
        self.now
    }

    fn delegated_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Parsed<Targets>>>> {
        // A poisoned lock only means another thread panicked while inserting a verified role;
        // the map is still consistent.
        self.delegated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Search for target `name` (spec §5.6.7): pre-order depth-first through the delegations
    /// that cover it, starting at the top-level targets role, loading delegated roles as they
    /// are reached. `Ok(None)` when no visited role lists it.
    pub async fn find_target(&self, name: &str) -> Result<Option<TargetInfo>> {
        let mut walk = Walk::new(self.limits.max_delegations);
        let mut loaded: HashMap<String, Arc<Parsed<Targets>>> = HashMap::new();
        while let Some(pending) = walk.next() {
            let role = match (&pending.delegator, &pending.child) {
                (Some(delegator), Some(child)) => {
                    let Some(parent) = loaded.get(delegator).cloned() else {
                        continue;
                    };
                    self.load_delegated(&parent, child).await?
                }
                _ => Arc::clone(&self.targets),
            };
            tracing::debug!(role = %pending.role, target = name, "searching role");
            if let Some(file) = role.body.targets.get(name) {
                return Ok(Some(TargetInfo {
                    name: name.to_owned(),
                    length: file.length,
                    hashes: file.hashes.clone(),
                    custom: file.custom.clone(),
                    role: pending.role.clone(),
                }));
            }
            if let Some(delegations) = &role.body.delegations {
                walk.push_children(&pending.role, children_for(delegations, name));
            }
            loaded.insert(pending.role.clone(), role);
        }
        Ok(None)
    }

    /// Load the delegated role `child` of `parent`, verified with `parent`'s delegation (a
    /// role loaded earlier through another delegator is verified again with this one's keys).
    async fn load_delegated(
        &self,
        parent: &Parsed<Targets>,
        child: &Child,
    ) -> Result<Arc<Parsed<Targets>>> {
        let name = child.name.as_str();
        ensure!(
            !name.is_empty() && !TOP_LEVEL.contains(&name),
            error::InvalidRoleNameSnafu { role: name }
        );
        let delegations = parent
            .body
            .delegations
            .as_ref()
            .context(error::InvalidRoleNameSnafu { role: name })?;
        let (keyids, threshold) = match child.index {
            Some(i) => {
                let role = delegations
                    .roles
                    .as_ref()
                    .and_then(|r| r.get(i))
                    .context(error::InvalidRoleNameSnafu { role: name })?;
                (role.keyids.as_slice(), role.threshold)
            }
            None => {
                let s = delegations
                    .succinct_roles
                    .as_ref()
                    .context(error::InvalidRoleNameSnafu { role: name })?;
                (s.keyids.as_slice(), s.threshold)
            }
        };
        let cached = self.delegated_cache().get(name).cloned();
        if let Some(cached) = cached {
            cached.verify(&parent.role, &delegations.keys, keyids, threshold)?;
            return Ok(cached);
        }
        let loaded = load_targets_role(
            RoleSource {
                store: &self.store,
                transport: self.transport.as_ref(),
                base: &self.metadata_base_url,
                consistent: self.consistent_snapshot(),
                max_size: self.limits.max_targets_size,
                now: self.now,
            },
            &self.snapshot,
            name,
            &parent.role,
            &delegations.keys,
            keyids,
            threshold,
        )
        .await?;
        let loaded = Arc::new(loaded);
        self.delegated_cache()
            .insert(name.to_owned(), Arc::clone(&loaded));
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::{Limits, Repository};

    fn assert_send<T: Send>(_: &T) {}

    /// The search and fetch futures can run on a multi-threaded runtime.
    #[allow(dead_code)]
    fn futures_are_send(repo: &Repository, info: &crate::TargetInfo) {
        assert_send(&repo.find_target("x"));
        assert_send(&repo.fetch_target(info));
        assert_send(&repo.download_target(info, std::path::Path::new("x")));
    }

    #[test]
    fn default_limits_are_the_reference_clients() {
        let l = Limits::default();
        assert_eq!(
            (
                l.max_root_size,
                l.max_timestamp_size,
                l.max_snapshot_size,
                l.max_targets_size
            ),
            (512_000, 16_384, 2_000_000, 5_000_000)
        );
        assert_eq!((l.max_root_rotations, l.max_delegations), (32, 32));
    }
}
