//! Repository operations: create, update, refresh, and the signing core they share.
//!
//! Every operation first builds and signs everything in memory, then publishes target files,
//! then writes metadata files, each atomically, in dependency order (root, delegated roles,
//! targets, snapshot, and `timestamp.json` last). An error before the writes leaves the
//! repository untouched.
use crate::error::{self, Result};
use crate::expiry::next_version;
use crate::fsutil::{self, LinkMode, PathExists};
use crate::keys::KeySource;
use crate::root::{SPEC_VERSION, load_root};
use crate::targets::{self, InputTarget};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use snafu::{OptionExt, ResultExt, ensure};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{Hashes, Metafile, RoleType, Root, Signed, Snapshot, Targets, Timestamp};
use tough::sign::Sign;
use tough::{IntoVec, Repository, RepositoryLoader, TargetName, Transport};
use url::Url;

// ---------------------------------------------------------------------------------------------
// Keys loaded once.

/// A key loaded from its source (once: SSM and KMS are asked only once per run).
struct LoadedKey {
    keyid: Decoded<Hex>,
    signer: Box<dyn Sign>,
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("keyid", &hex::encode(&self.keyid))
            .finish()
    }
}

/// The signing keys of one run, loaded once.
#[derive(Debug, Default)]
pub struct SigningKeys {
    keys: Vec<LoadedKey>,
}

impl SigningKeys {
    /// Load every source (a failure names the source).
    pub async fn load(sources: &[KeySource]) -> Result<Self> {
        let mut keys = Vec::new();
        for source in sources {
            let signer = source.load().await?;
            let keyid = signer.tuf_key().key_id().context(error::KeyIdSnafu)?;
            keys.push(LoadedKey { keyid, signer });
        }
        Ok(Self { keys })
    }

    /// How many of these keys are among `keyids`.
    fn count_in(&self, keyids: &[Decoded<Hex>]) -> usize {
        self.keys
            .iter()
            .filter(|k| keyids.contains(&k.keyid))
            .count()
    }

    /// The key IDs.
    pub fn keyids(&self) -> Vec<Decoded<Hex>> {
        self.keys.iter().map(|k| k.keyid.clone()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Locations and loading.

/// Parse a metadata or targets location: a URL (`file://`, `http://`, `https://`) or a local
/// folder path. The result ends with `/`, so file names join below it.
pub fn parse_location(text: &str) -> Result<Url> {
    let mut url = if text.contains("://") {
        Url::parse(text)
            .ok()
            .context(error::LocationSnafu { text })?
    } else {
        let path = std::path::absolute(text).context(error::ReadFileSnafu { path: text })?;
        Url::from_directory_path(&path)
            .ok()
            .context(error::LocationSnafu { text })?
    };
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Where to load an existing repository from.
#[derive(Debug, Clone)]
pub struct RepoLocation {
    /// A trusted root (any version in the chain; the chain is walked up from it).
    pub root: PathBuf,
    /// Metadata base URL.
    pub metadata_url: Url,
    /// Targets base URL (defaults to `../targets/` beside the metadata).
    pub targets_url: Option<Url>,
    /// Load even if metadata has expired (for repair; never for download).
    pub allow_expired: bool,
    /// How to fetch metadata and targets; `None` is tough's default (file, http, https).
    /// Callers plug in other schemes here, e.g. pubsys's `s3://` transport.
    pub transport: Option<AnyTransport>,
}

/// Any [`Transport`], boxed so that a [`RepoLocation`] can carry it.
#[derive(Debug, Clone)]
pub struct AnyTransport(pub Box<dyn Transport>);

#[async_trait::async_trait]
impl Transport for AnyTransport {
    async fn fetch(
        &self,
        url: Url,
    ) -> std::result::Result<tough::TransportStream, tough::TransportError> {
        self.0.fetch(url).await
    }
}

impl RepoLocation {
    /// A location fetched with tough's default transport.
    pub fn new(
        root: PathBuf,
        metadata_url: Url,
        targets_url: Option<Url>,
        allow_expired: bool,
    ) -> Self {
        RepoLocation {
            root,
            metadata_url,
            targets_url,
            allow_expired,
            transport: None,
        }
    }

    /// Fetch one file of this repository's origin (metadata or targets side) without TUF
    /// verification: `Ok(None)` when it does not exist.
    pub async fn fetch_unverified(&self, url: &Url) -> Result<Option<Vec<u8>>> {
        fetch_with(self.transport.as_ref(), url).await
    }

    /// Like [`RepoLocation::fetch_unverified`], but only a real "not found" (HTTP 404 or 410,
    /// a missing file or S3 object) means `None`. tough's HTTP transport also reports 403
    /// Forbidden as "not found" (some stores answer 403 for a missing object); when the
    /// question is whether a repository is published, a denied read is an error: taking it
    /// for absence would start a new repository over the published one.
    pub async fn probe(&self, url: &Url) -> Result<Option<Vec<u8>>> {
        fetch_policy(self.transport.as_ref(), url, false).await
    }
}

impl RepoLocation {
    fn targets_url(&self) -> Result<Url> {
        match &self.targets_url {
            Some(u) => Ok(u.clone()),
            None => self
                .metadata_url
                .join("../targets/")
                .ok()
                .context(error::LocationSnafu {
                    text: self.metadata_url.to_string(),
                }),
        }
    }
}

/// Load and verify a repository with tough (root chain, expiry, signatures, hashes, every
/// delegated role).
pub async fn load_repo(location: &RepoLocation) -> Result<Repository> {
    let root = std::fs::read(&location.root).context(error::ReadFileSnafu {
        path: &location.root,
    })?;
    let enforcement = if location.allow_expired {
        tough::ExpirationEnforcement::Unsafe
    } else {
        tough::ExpirationEnforcement::Safe
    };
    let mut loader = RepositoryLoader::new(
        &root,
        location.metadata_url.clone(),
        location.targets_url()?,
    )
    .expiration_enforcement(enforcement);
    if let Some(transport) = &location.transport {
        loader = loader.transport(transport.clone());
    }
    loader
        .load()
        .await
        .map_err(Box::new)
        .context(error::LoadRepoSnafu {
            url: location.metadata_url.to_string(),
        })
}

/// Fetch one file through tough's transport (file, http, https).
pub(crate) async fn fetch_bytes(url: &Url) -> Result<Option<Vec<u8>>> {
    fetch_with(None, url).await
}

/// Fetch one file through `transport` (tough's default when `None`): `Ok(None)` when the
/// transport says the file does not exist.
pub(crate) async fn fetch_with(
    transport: Option<&AnyTransport>,
    url: &Url,
) -> Result<Option<Vec<u8>>> {
    fetch_policy(transport, url, true).await
}

/// [`fetch_with`], with a choice for HTTP 403, which tough's HTTP transport reports as "not
/// found". tough's HTTP transport sends the request when the stream is first read, so "not
/// found" can come from the stream as well as from `fetch`.
async fn fetch_policy(
    transport: Option<&AnyTransport>,
    url: &Url,
    forbidden_is_absent: bool,
) -> Result<Option<Vec<u8>>> {
    let fetched = match transport {
        Some(transport) => transport.fetch(url.clone()).await,
        None => tough::DefaultTransport::new().fetch(url.clone()).await,
    };
    let read = match fetched {
        Ok(stream) => stream.into_vec().await,
        Err(e) => Err(e),
    };
    match read {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e)
            if e.kind() == tough::TransportErrorKind::FileNotFound
                && (forbidden_is_absent || http_status(&e) != Some(403)) =>
        {
            Ok(None)
        }
        Err(e) => Err(error::Error::Fetch {
            url: url.to_string(),
            source: Box::new(e),
        }),
    }
}

/// The HTTP status behind a transport error, if it came from an HTTP response.
fn http_status(error: &tough::TransportError) -> Option<u16> {
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        if let Some(http) = err.downcast_ref::<reqwest::Error>() {
            return http.status().map(|s| s.as_u16());
        }
        source = err.source();
    }
    None
}

/// Percent-encode a role name for a file name (everything but ASCII alphanumerics and
/// `_ . - ~`), as tough and python-tuf do.
pub fn encode_role_filename(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// File name of a targets-type role (`targets` or a delegated role) in the metadata folder.
pub fn targets_filename(name: &str, version: NonZeroU64, consistent: bool) -> String {
    let base = if name == "targets" {
        "targets".to_owned()
    } else {
        encode_role_filename(name)
    };
    if consistent {
        format!("{version}.{base}.json")
    } else {
        format!("{base}.json")
    }
}

// ---------------------------------------------------------------------------------------------
// The signing core.

/// Version and expiry to sign a role with. A missing version means "current + 1"; a given one
/// must be greater than the current one.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoleSchedule {
    /// Version to sign (must increase).
    pub version: Option<NonZeroU64>,
    /// Expiry (whole seconds). Required for every role that is signed.
    pub expires: Option<jiff::Timestamp>,
}

impl RoleSchedule {
    /// The version (see [`next_version`]) and the expiry (required) to sign `role` with.
    pub fn resolve(
        &self,
        role: &str,
        current: Option<NonZeroU64>,
    ) -> Result<(NonZeroU64, jiff::Timestamp)> {
        let version = next_version(role, current, self.version)?;
        let expires = self.expires.context(error::MissingExpirySnafu { role })?;
        Ok((version, expires))
    }
}

/// Versions and expiries for the roles a command signs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Schedule {
    /// For the targets role (or the delegated targets role being changed).
    pub targets: RoleSchedule,
    /// For snapshot.
    pub snapshot: RoleSchedule,
    /// For timestamp.
    pub timestamp: RoleSchedule,
}

/// The metadata of a repository being edited: everything in memory.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub root: Signed<Root>,
    /// Bytes of a root file to publish as `<version>.root.json` (new or rotated root).
    pub root_file: Option<Vec<u8>>,
    /// Top-level targets, with delegated roles loaded inside.
    pub targets: Signed<Targets>,
    pub snapshot: Option<Signed<Snapshot>>,
    pub timestamp: Option<Signed<Timestamp>>,
    /// Where the current metadata came from (to copy unchanged files to a new outdir).
    pub source: Option<Url>,
    /// How to fetch from `source`.
    pub source_transport: Option<AnyTransport>,
    /// Delegated role files signed elsewhere, published as they are.
    pub imported: Vec<ImportedRole>,
}

/// A delegated role's metadata file signed by its owner elsewhere, to publish byte for byte.
#[derive(Debug, Clone)]
pub(crate) struct ImportedRole {
    pub name: String,
    pub version: NonZeroU64,
    pub bytes: Vec<u8>,
}

impl Tree {
    pub fn from_repo(repo: &Repository, location: &RepoLocation) -> Self {
        let source = location.metadata_url.clone();
        Tree {
            root: repo.root().clone(),
            root_file: None,
            targets: repo.targets().clone(),
            snapshot: Some(repo.snapshot().clone()),
            timestamp: Some(repo.timestamp().clone()),
            source: Some(source),
            source_transport: location.transport.clone(),
            imported: Vec::new(),
        }
    }

    pub fn consistent(&self) -> bool {
        self.root.signed.consistent_snapshot
    }

    /// The targets-type role `name` (`targets` or delegated), mutable.
    pub fn role_mut(&mut self, name: &str) -> Result<&mut Signed<Targets>> {
        if name == "targets" {
            return Ok(&mut self.targets);
        }
        self.targets
            .signed
            .delegated_targets_mut(name)
            .ok()
            .context(error::NoSuchRoleSnafu { role: name })
    }

    /// The targets-type role `name`.
    pub fn role(&self, name: &str) -> Result<&Signed<Targets>> {
        if name == "targets" {
            return Ok(&self.targets);
        }
        self.targets
            .signed
            .delegated_targets(name)
            .ok()
            .context(error::NoSuchRoleSnafu { role: name })
    }

    /// The key IDs and threshold that sign `name` (named by the root for `targets`, by the
    /// delegating role otherwise).
    fn holder(&self, name: &str) -> Result<(Vec<Decoded<Hex>>, u64)> {
        if name == "targets" {
            return top_holder(&self.root.signed, RoleType::Targets);
        }
        let parent = self
            .targets
            .signed
            .parent_of(name)
            .ok()
            .context(error::NoSuchRoleSnafu { role: name })?;
        let role = parent
            .roles
            .iter()
            .find(|r| r.name == name)
            .context(error::NoSuchRoleSnafu { role: name })?;
        Ok((role.keyids.clone(), role.threshold.get()))
    }
}

fn top_holder(root: &Root, role: RoleType) -> Result<(Vec<Decoded<Hex>>, u64)> {
    let keys = root.roles.get(&role).context(error::NoSuchRoleSnafu {
        role: role.to_string(),
    })?;
    Ok((keys.keyids.clone(), keys.threshold.get()))
}

fn check_threshold(
    keys: &SigningKeys,
    role: &str,
    keyids: &[Decoded<Hex>],
    threshold: u64,
) -> Result<()> {
    let have = keys.count_in(keyids);
    ensure!(
        have as u64 >= threshold,
        error::ThresholdNotMetSnafu {
            role,
            have,
            threshold
        }
    );
    Ok(())
}

/// Sign `role` with every key in `keys` that is among `keyids` (replacing its signatures) and
/// return the file's bytes (pretty JSON and a newline, as tough writes it) and their SHA-256.
/// The signatures are over [`crate::canonical`]'s form, which is byte-for-byte what verifiers
/// compute. Thresholds are checked before anything is signed ([`check_threshold`]).
async fn sign_in_place<T: Serialize>(
    role: &mut Signed<T>,
    name: &str,
    keyids: &[Decoded<Hex>],
    keys: &SigningKeys,
    rng: &(dyn SecureRandom + Sync),
) -> Result<(Vec<u8>, aws_lc_rs::digest::Digest)> {
    let message =
        crate::canonical::to_vec(&role.signed).context(error::CanonicalJsonSnafu { role: name })?;
    let mut signatures = Vec::new();
    for key in keys.keys.iter().filter(|k| keyids.contains(&k.keyid)) {
        let sig = key
            .signer
            .sign(&message, rng)
            .await
            .context(error::SignWithKeySnafu {
                keyid: hex::encode(&key.keyid),
            })?;
        signatures.push(tough::schema::Signature {
            keyid: key.keyid.clone(),
            sig: sig.into(),
        });
    }
    role.signatures = signatures;
    let mut buffer = serde_json::to_vec_pretty(role).context(error::SerializeSnafu {
        what: name.to_owned(),
    })?;
    buffer.push(b'\n');
    let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &buffer);
    Ok((buffer, sha256))
}

fn metafile(buffer: &[u8], sha256: &[u8], version: NonZeroU64) -> Metafile {
    Metafile {
        length: Some(buffer.len() as u64),
        hashes: Some(Hashes {
            sha256: sha256.to_vec().into(),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

/// Signed metadata ready to be written, in write order.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// (file name, bytes), timestamp last.
    pub files: Vec<(String, Vec<u8>)>,
    pub report: RepoReport,
}

/// What a repository command signed and wrote.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RepoReport {
    /// Metadata folder written.
    pub metadata_dir: PathBuf,
    /// Root version in force.
    pub root_version: u64,
    /// Versions signed now, by role name.
    pub signed: Vec<SignedRoleReport>,
    /// Target names added or replaced.
    pub targets_added: Vec<String>,
    /// Target names removed.
    pub targets_removed: Vec<String>,
    /// Metadata files written.
    pub files_written: Vec<String>,
}

/// One role signed by a command.
#[derive(Debug, Clone, Serialize)]
pub struct SignedRoleReport {
    /// Role name.
    pub role: String,
    /// New version.
    pub version: u64,
    /// New expiry.
    pub expires: String,
}

/// Sign the targets-type roles in `changed`, then snapshot (if anything changed or
/// `resign_snapshot`) and timestamp (always).
pub(crate) async fn sign_tree(
    tree: &mut Tree,
    changed: &BTreeSet<String>,
    resign_snapshot: bool,
    keys: &SigningKeys,
    schedule: &Schedule,
) -> Result<Staged> {
    let rng = SystemRandom::new();
    let consistent = tree.consistent();
    let mut staged = Staged::default();
    staged.report.root_version = tree.root.signed.version.get();
    if let Some(bytes) = &tree.root_file {
        staged.files.push((
            format!("{}.root.json", tree.root.signed.version),
            bytes.clone(),
        ));
    }

    // Check every threshold before signing anything, for a clear error.
    for name in changed {
        let (keyids, threshold) = tree.holder(name)?;
        check_threshold(keys, name, &keyids, threshold)?;
    }
    let resign_snapshot = resign_snapshot
        || !changed.is_empty()
        || !tree.imported.is_empty()
        || tree.snapshot.is_none();
    if resign_snapshot {
        let (keyids, threshold) = top_holder(&tree.root.signed, RoleType::Snapshot)?;
        check_threshold(keys, "snapshot", &keyids, threshold)?;
    }
    let (timestamp_keyids, threshold) = top_holder(&tree.root.signed, RoleType::Timestamp)?;
    check_threshold(keys, "timestamp", &timestamp_keyids, threshold)?;

    // Targets-type roles.
    let mut new_meta: Vec<(String, Metafile)> = Vec::new();
    let mut role_files = Vec::new();
    for name in changed {
        let (keyids, _) = tree.holder(name)?;
        let current = tree.role(name)?.signed.version;
        let has_current = tree.snapshot.is_some() || name != "targets";
        let (version, expires) = schedule
            .targets
            .resolve(name, has_current.then_some(current))?;
        let role = tree.role_mut(name)?;
        role.signed.version = version;
        role.signed.expires = expires;
        // Signed in place: a targets role can hold a very large map.
        let (buffer, sha256) = sign_in_place(role, name, &keyids, keys, &rng).await?;
        new_meta.push((
            format!("{name}.json"),
            metafile(&buffer, sha256.as_ref(), version),
        ));
        role_files.push((targets_filename(name, version, consistent), buffer));
        staged.report.signed.push(SignedRoleReport {
            role: name.clone(),
            version: version.get(),
            expires: expires.to_string(),
        });
    }
    for imported in &tree.imported {
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &imported.bytes);
        new_meta.push((
            format!("{}.json", imported.name),
            metafile(&imported.bytes, sha256.as_ref(), imported.version),
        ));
        role_files.push((
            targets_filename(&imported.name, imported.version, consistent),
            imported.bytes.clone(),
        ));
    }
    staged.files.extend(role_files.into_iter().rev());

    // Snapshot.
    let snapshot_meta = if resign_snapshot {
        let previous = tree.snapshot.as_ref();
        let (version, expires) = schedule
            .snapshot
            .resolve("snapshot", previous.map(|s| s.signed.version))?;
        let mut snapshot = Snapshot::new(SPEC_VERSION.to_owned(), version, expires);
        if let Some(prev) = previous {
            snapshot.meta = prev.signed.meta.clone();
            snapshot._extra = prev.signed._extra.clone();
        }
        // Entries of roles no longer delegated stay (at their last version): a client refuses
        // a snapshot that drops a role its trusted snapshot lists (spec 5.5.5; python-tuf:
        // "New snapshot is missing info"), so removing one must not break every client.
        for (k, m) in new_meta {
            snapshot.meta.insert(k, m);
        }
        let (keyids, _) = top_holder(&tree.root.signed, RoleType::Snapshot)?;
        let mut signed = Signed {
            signed: snapshot,
            signatures: Vec::new(),
        };
        let (buffer, sha256) = sign_in_place(&mut signed, "snapshot", &keyids, keys, &rng).await?;
        let meta = metafile(&buffer, sha256.as_ref(), version);
        let name = if consistent {
            format!("{version}.snapshot.json")
        } else {
            "snapshot.json".to_owned()
        };
        staged.files.push((name, buffer));
        staged.report.signed.push(SignedRoleReport {
            role: "snapshot".into(),
            version: version.get(),
            expires: expires.to_string(),
        });
        tree.snapshot = Some(signed);
        meta
    } else {
        tree.timestamp
            .as_ref()
            .and_then(|t| t.signed.meta.get("snapshot.json").cloned())
            .context(error::NoSuchRoleSnafu { role: "snapshot" })?
    };

    // Timestamp.
    let previous = tree.timestamp.as_ref();
    let (version, expires) = schedule
        .timestamp
        .resolve("timestamp", previous.map(|t| t.signed.version))?;
    let mut timestamp = Timestamp::new(SPEC_VERSION.to_owned(), version, expires);
    if let Some(prev) = previous {
        timestamp._extra = prev.signed._extra.clone();
    }
    timestamp
        .meta
        .insert("snapshot.json".to_owned(), snapshot_meta);
    let mut signed = Signed {
        signed: timestamp,
        signatures: Vec::new(),
    };
    let (buffer, _) =
        sign_in_place(&mut signed, "timestamp", &timestamp_keyids, keys, &rng).await?;
    staged.files.push(("timestamp.json".to_owned(), buffer));
    staged.report.signed.push(SignedRoleReport {
        role: "timestamp".into(),
        version: version.get(),
        expires: expires.to_string(),
    });
    tree.timestamp = Some(signed);
    Ok(staged)
}

/// Files a new output folder needs besides the ones just signed: the root chain and unchanged
/// delegated/targets metadata, fetched from the source and checked against snapshot hashes.
pub(crate) async fn missing_files(
    tree: &Tree,
    staged: &Staged,
    metadata_dir: &Path,
) -> Result<Vec<(String, Vec<u8>)>> {
    let Some(source) = &tree.source else {
        return Ok(Vec::new());
    };
    let written: BTreeSet<&str> = staged.files.iter().map(|(n, _)| n.as_str()).collect();
    let mut out = Vec::new();
    let consistent = tree.consistent();
    // Root chain: every file fetched is checked, from the trusted root down: the trusted
    // version must be the root tough verified, and each earlier one must be the root the next
    // was signed under (its version, signed by its own root threshold, and its root keys meet
    // their threshold on the next).
    let newest = tree.root.signed.version.get();
    let mut later: Signed<Root> = tree.root.clone();
    let mut chain = Vec::new();
    for v in (1..=newest).rev() {
        let name = format!("{v}.root.json");
        let url = source
            .join(&name)
            .ok()
            .context(error::LocationSnafu { text: name.clone() })?;
        let Some(bytes) = fetch_with(tree.source_transport.as_ref(), &url).await? else {
            if v == newest {
                // The trusted root itself: write what we verified.
                chain.push((name, crate::root::root_bytes(&tree.root)?));
            } else {
                tracing::warn!(file = %name, "earlier root not found at the source; not copied");
            }
            break;
        };
        let parsed: Signed<Root> =
            serde_json::from_slice(&bytes).context(error::ParseMetadataSnafu {
                url: url.to_string(),
            })?;
        let fits = if v == newest {
            same_json(&parsed, &tree.root)
        } else {
            parsed.signed.version.get() == v
                && parsed.signed.verify_role(&parsed).is_ok()
                && parsed.signed.verify_role(&later).is_ok()
        };
        ensure!(
            fits,
            error::MetadataMismatchSnafu {
                url: url.to_string()
            }
        );
        chain.push((name, bytes));
        later = parsed;
    }
    for (name, bytes) in chain.into_iter().rev() {
        if !written.contains(name.as_str()) && !metadata_dir.join(&name).exists() {
            out.push((name, bytes));
        }
    }
    // Targets-type metadata listed in the snapshot.
    if let Some(snapshot) = &tree.snapshot {
        for (key, meta) in &snapshot.signed.meta {
            let role = key.strip_suffix(".json").unwrap_or(key);
            let name = targets_filename(role, meta.version, consistent);
            if written.contains(name.as_str()) || metadata_dir.join(&name).exists() {
                continue;
            }
            let url = source
                .join(&name)
                .ok()
                .context(error::LocationSnafu { text: name.clone() })?;
            let bytes = fetch_with(tree.source_transport.as_ref(), &url)
                .await?
                .context(error::MissingMetadataSnafu {
                    url: url.to_string(),
                })?;
            verify_meta(&bytes, meta, &url)?;
            // Snapshot may list a version only: the file must also be the role as verified.
            let parsed: Signed<Targets> =
                serde_json::from_slice(&bytes).context(error::ParseMetadataSnafu {
                    url: url.to_string(),
                })?;
            ensure!(
                tree.role(role)
                    .is_ok_and(|verified| same_json(&parsed, verified)),
                error::MetadataMismatchSnafu {
                    url: url.to_string()
                }
            );
            out.push((name, bytes));
        }
    }
    Ok(out)
}

/// Whether two pieces of metadata say the same (signed part and signatures), whatever their
/// formatting: what a file holds against what was verified.
fn same_json<T: serde::Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Check bytes against a snapshot/timestamp entry's length and sha256.
pub(crate) fn verify_meta(bytes: &[u8], meta: &Metafile, url: &Url) -> Result<()> {
    if let Some(len) = meta.length {
        ensure!(
            bytes.len() as u64 == len,
            error::MetadataMismatchSnafu {
                url: url.to_string()
            }
        );
    }
    if let Some(h) = &meta.hashes {
        let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        ensure!(
            got.as_ref() == h.sha256.as_ref(),
            error::MetadataMismatchSnafu {
                url: url.to_string()
            }
        );
    }
    Ok(())
}

/// Publish targets, then write staged metadata (plus any missing chain files) into
/// `outdir/metadata`.
pub(crate) async fn commit(
    tree: &Tree,
    mut staged: Staged,
    outdir: &Path,
    inputs: &[InputTarget],
    place: Place,
) -> Result<RepoReport> {
    let metadata_dir = outdir.join("metadata");
    let targets_dir = outdir.join("targets");
    let missing = missing_files(tree, &staged, &metadata_dir).await?;
    targets::publish_inputs(inputs, &targets_dir, tree.consistent(), place).await?;
    let mut files = missing;
    files.append(&mut staged.files);
    let dir = metadata_dir.clone();
    let names = tokio::task::spawn_blocking(move || {
        let mut names = Vec::new();
        for (name, bytes) in files {
            fsutil::write_atomic(&dir.join(&name), &bytes)?;
            names.push(name);
        }
        Ok::<_, crate::Error>(names)
    })
    .await
    .context(error::JoinSnafu)??;
    staged.report.files_written = names;
    staged.report.metadata_dir = metadata_dir;
    Ok(staged.report)
}

/// How target files are placed in a repository's `targets/` folder.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// Copy, hard-link or symlink.
    pub link_mode: LinkMode,
    /// Also place names with a folder at tough's `<sha256>.dir/file` (see
    /// [`targets::placements`]).
    pub tough_placement: bool,
    /// Files placed at once.
    pub jobs: usize,
    /// What to do with a file already at a target's place.
    pub exists: PathExists,
}

impl Default for Place {
    fn default() -> Self {
        Place {
            link_mode: LinkMode::Copy,
            tough_placement: false,
            jobs: 1,
            exists: PathExists::Skip,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// create / update / refresh

/// Options shared by `create` and `update`.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Signing keys.
    pub keys: Vec<KeySource>,
    /// Input folders; each file is a target named by its path relative to its folder.
    pub add_targets: Vec<PathBuf>,
    /// Follow symlinks in input folders.
    pub follow_links: bool,
    /// How target files are placed (and how many are hashed and placed at once).
    pub place: Place,
    /// Versions and expiries.
    pub schedule: Schedule,
    /// Output folder (`metadata/` and `targets/` below it).
    pub outdir: PathBuf,
}

/// Check that a root is signed by its own threshold and not expired.
pub fn check_root(root: &Signed<Root>, path: &Path, now: jiff::Timestamp) -> Result<()> {
    root.signed
        .verify_role(root)
        .context(error::BadRootSnafu { path })?;
    ensure!(
        root.signed.expires > now,
        error::RootExpiredSnafu {
            path,
            expires: root.signed.expires.to_string()
        }
    );
    Ok(())
}

/// Create a new repository from a signed root and input folders.
pub async fn create_repo(
    root_path: &Path,
    options: &PublishOptions,
    now: jiff::Timestamp,
) -> Result<RepoReport> {
    let root_file = std::fs::read(root_path).context(error::ReadFileSnafu { path: root_path })?;
    let root = load_root(root_path)?;
    check_root(&root, root_path, now)?;
    let existing = options.outdir.join("metadata").join("timestamp.json");
    ensure!(
        !existing.exists(),
        error::RepoExistsSnafu { path: existing }
    );
    let keys = SigningKeys::load(&options.keys).await?;
    let inputs = targets::scan_inputs(
        &options.add_targets,
        options.follow_links,
        options.place.jobs,
    )
    .await?;
    let mut targets = Targets::new(
        SPEC_VERSION.to_owned(),
        options.schedule.targets.version.unwrap_or(NonZeroU64::MIN),
        now,
    );
    for t in &inputs {
        targets.add_target(t.name.clone(), t.target.clone());
    }
    let mut tree = Tree {
        root,
        root_file: Some(root_file),
        targets: Signed {
            signed: targets,
            signatures: Vec::new(),
        },
        snapshot: None,
        timestamp: None,
        source: None,
        source_transport: None,
        imported: Vec::new(),
    };
    let changed = BTreeSet::from(["targets".to_owned()]);
    let mut schedule = options.schedule;
    // A fresh repository starts at the given version (or 1): no "current" version to exceed.
    schedule.targets.version = Some(options.schedule.targets.version.unwrap_or(NonZeroU64::MIN));
    let mut staged = sign_tree(&mut tree, &changed, true, &keys, &schedule).await?;
    staged.report.targets_added = inputs.iter().map(|t| t.name.raw().to_owned()).collect();
    commit(&tree, staged, &options.outdir, &inputs, options.place).await
}

/// Options of [`update_repo`] beyond [`PublishOptions`].
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// Target names to remove.
    pub remove_targets: Vec<String>,
    /// Allow an input to replace an existing target of the same name with different content.
    pub replace_targets: bool,
    /// A new root (cross-signed) to rotate to; published as `<version>.root.json`.
    pub new_root: Option<PathBuf>,
    /// The targets-type role to add targets to (`targets` by default, or a delegated role).
    pub role: Option<String>,
}

/// Load a repository, add/remove targets, re-sign targets, snapshot and timestamp.
pub async fn update_repo(
    location: &RepoLocation,
    options: &PublishOptions,
    update: &UpdateOptions,
    now: jiff::Timestamp,
) -> Result<RepoReport> {
    let repo = load_repo(location).await?;
    let mut tree = Tree::from_repo(&repo, location);
    if let Some(path) = &update.new_root {
        rotate_root(&mut tree, path, now)?;
    }
    let keys = SigningKeys::load(&options.keys).await?;
    let inputs = targets::scan_inputs(
        &options.add_targets,
        options.follow_links,
        options.place.jobs,
    )
    .await?;
    let role_name = update.role.clone().unwrap_or_else(|| "targets".to_owned());
    let role = tree.role_mut(&role_name)?;
    let mut removed = Vec::new();
    for name in &update.remove_targets {
        let target_name = TargetName::new(name.clone())
            .ok()
            .context(error::TargetNameSnafu { path: name })?;
        ensure!(
            role.signed.remove_target(&target_name).is_some(),
            error::NoSuchTargetSnafu {
                name: name.clone(),
                role: role_name.clone()
            }
        );
        removed.push(name.clone());
    }
    for t in &inputs {
        if let Some(existing) = role.signed.targets.get(&t.name) {
            ensure!(
                existing.hashes.sha256 == t.target.hashes.sha256 || update.replace_targets,
                error::TargetExistsSnafu {
                    name: t.name.raw().to_owned(),
                    path: t.path.clone()
                }
            );
        }
        role.signed.add_target(t.name.clone(), t.target.clone());
    }
    tree.targets.signed.validate_paths()?;
    let changed = BTreeSet::from([role_name]);
    let mut staged = sign_tree(&mut tree, &changed, true, &keys, &options.schedule).await?;
    staged.report.targets_added = inputs.iter().map(|t| t.name.raw().to_owned()).collect();
    staged.report.targets_removed = removed;
    commit(&tree, staged, &options.outdir, &inputs, options.place).await
}

/// Replace the tree's root by the (cross-signed) root at `path`.
fn rotate_root(tree: &mut Tree, path: &Path, now: jiff::Timestamp) -> Result<()> {
    let bytes = std::fs::read(path).context(error::ReadFileSnafu { path })?;
    let new_root = load_root(path)?;
    let current = tree.root.signed.version;
    ensure!(
        current.checked_add(1) == Some(new_root.signed.version),
        error::RootVersionSnafu {
            path,
            current: current.get(),
            given: new_root.signed.version.get()
        }
    );
    check_root(&new_root, path, now)?;
    tree.root
        .signed
        .verify_role(&new_root)
        .context(error::BadRootSnafu { path })?;
    tree.root = new_root;
    tree.root_file = Some(bytes);
    Ok(())
}

/// Options of [`refresh`].
#[derive(Debug, Clone)]
pub struct RefreshOptions {
    /// Keys (only the snapshot and/or timestamp keys are needed).
    pub keys: Vec<KeySource>,
    /// Re-sign snapshot as well as timestamp.
    pub snapshot: bool,
    /// Versions and expiries (only snapshot and timestamp are used).
    pub schedule: Schedule,
    /// Output folder (usually the repository itself).
    pub outdir: PathBuf,
}

/// Re-sign timestamp (and optionally snapshot) with only those roles' keys; targets metadata
/// bytes are not touched.
pub async fn refresh(location: &RepoLocation, options: &RefreshOptions) -> Result<RepoReport> {
    let repo = load_repo(location).await?;
    let mut tree = Tree::from_repo(&repo, location);
    let keys = SigningKeys::load(&options.keys).await?;
    let staged = sign_tree(
        &mut tree,
        &BTreeSet::new(),
        options.snapshot,
        &keys,
        &options.schedule,
    )
    .await?;
    commit(&tree, staged, &options.outdir, &[], Place::default()).await
}

/// Checks on a whole targets tree after an edit.
pub(crate) trait ValidatePaths {
    /// Every delegated role's targets lie within its delegated paths.
    fn validate_paths(&self) -> Result<()>;
}

impl ValidatePaths for Targets {
    fn validate_paths(&self) -> Result<()> {
        let Some(delegations) = &self.delegations else {
            return Ok(());
        };
        for role in &delegations.roles {
            if let Some(targets) = &role.targets {
                for name in targets.signed.targets.keys() {
                    ensure!(
                        role_matches(role, name),
                        error::TargetOutsideDelegationSnafu {
                            name: name.raw().to_owned(),
                            role: role.name.clone()
                        }
                    );
                }
                targets.signed.validate_paths()?;
            }
        }
        Ok(())
    }
}

/// Whether `role` may sign `name`. Path patterns follow the TUF spec (and python-tuf): the
/// pattern and the name have the same number of `/`-separated segments and each segment
/// matches, where `*` and `?` never match `/`. tough's globs let `*` match `/`, which would let
/// tuftool publish targets that spec clients never find, so the stricter rule is used here.
fn role_matches(role: &tough::schema::DelegatedRole, name: &TargetName) -> bool {
    match &role.paths {
        tough::schema::PathSet::Paths(patterns) => patterns
            .iter()
            .any(|p| spec_path_match(p.value(), name.resolved())),
        tough::schema::PathSet::PathHashPrefixes(_) => {
            let mut d = tough::schema::Delegations::new();
            let mut r = role.clone();
            r.targets = None;
            d.roles.push(r);
            d.target_is_delegated(name)
        }
    }
}

/// The spec's path-pattern match: equal segment counts, each segment matched with `*` (any
/// run of characters) and `?` (one character).
pub fn spec_path_match(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    p.len() == n.len()
        && p.iter()
            .zip(&n)
            .all(|(p, n)| segment_match(p.as_bytes(), n.as_bytes()))
}

fn segment_match(p: &[u8], n: &[u8]) -> bool {
    match (p.first(), n.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            segment_match(&p[1..], n) || (!n.is_empty() && segment_match(p, &n[1..]))
        }
        (Some(b'?'), Some(_)) => segment_match(&p[1..], &n[1..]),
        (Some(a), Some(b)) if a == b => segment_match(&p[1..], &n[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{encode_role_filename, spec_path_match};

    #[test]
    fn path_patterns_follow_the_spec() {
        assert!(spec_path_match("delegated/*", "delegated/d.txt"));
        assert!(!spec_path_match("delegated/*", "delegated/deep/d.txt"));
        assert!(spec_path_match("delegated/*/*", "delegated/deep/d.txt"));
        assert!(spec_path_match("*.tar.?z", "x.tar.gz"));
        assert!(!spec_path_match("*.txt", "dir/a.txt"));
        assert!(spec_path_match("*", "a"));
    }

    #[test]
    fn role_file_names_are_percent_encoded() {
        assert_eq!(encode_role_filename("../../x"), "..%2F..%2Fx");
        assert_eq!(encode_role_filename("a b~c_d-e.f"), "a%20b~c_d-e.f");
    }
}
