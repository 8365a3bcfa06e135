"""Build a TUF repository with python-tuf's Metadata API, in the reference layout.

Consistent snapshots; N.root.json files (root rotated once, 1 -> 2, cross-signed); targets in
sub-folders published as dir/<sha256>.name (the spec's placement); a delegated role.
Spec version is python-tuf's own (e.g. 1.0.31).

Usage: make_repo.py OUTDIR INPUT_DIR
Every file below INPUT_DIR becomes a target named by its relative path; names starting with
"delegated/" are signed by the delegated role "people".
"""

import hashlib
import os
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    SPECIFICATION_VERSION,
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer


def expiry(days: int) -> datetime:
    return (datetime.now(timezone.utc) + timedelta(days=days)).replace(microsecond=0)


def main() -> int:
    outdir, input_dir = sys.argv[1:]
    meta_dir = os.path.join(outdir, "metadata")
    targets_dir = os.path.join(outdir, "targets")
    os.makedirs(meta_dir)
    os.makedirs(targets_dir)
    ser = JSONSerializer(compact=False)

    signers = {r: CryptoSigner.generate_ed25519() for r in ("root", "targets", "snapshot", "timestamp", "people")}
    signers["root2"] = CryptoSigner.generate_ecdsa()

    root = Metadata(Root(expires=expiry(365), consistent_snapshot=True))
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.signed.add_key(signers[role].public_key, role)
    root.sign(signers["root"])
    root.to_file(os.path.join(meta_dir, "1.root.json"), ser)

    # Rotate root: version 2 with a new root key, signed by old and new.
    root.signed.version = 2
    root.signed.revoke_key(signers["root"].public_key.keyid, "root")
    root.signed.add_key(signers["root2"].public_key, "root")
    root.signatures.clear()
    root.sign(signers["root"], append=True)
    root.sign(signers["root2"], append=True)
    root.to_file(os.path.join(meta_dir, "2.root.json"), ser)

    top = Metadata(Targets(expires=expiry(30)))
    people = Metadata(Targets(expires=expiry(30)))
    for dirpath, _, files in os.walk(input_dir):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            name = os.path.relpath(path, input_dir).replace(os.sep, "/")
            data = open(path, "rb").read()
            digest = hashlib.sha256(data).hexdigest()
            tf = TargetFile(length=len(data), hashes={"sha256": digest}, path=name)
            (people if name.startswith("delegated/") else top).signed.targets[name] = tf
            head, base = os.path.split(name)
            dest = os.path.join(targets_dir, head, f"{digest}.{base}")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as out:
                out.write(data)

    people_key = signers["people"].public_key
    top.signed.delegations = Delegations(
        keys={people_key.keyid: people_key},
        roles={
            "people": DelegatedRole(
                name="people", keyids=[people_key.keyid], threshold=1, terminating=True, paths=["delegated/*"]
            )
        },
    )
    people.sign(signers["people"])
    people.to_file(os.path.join(meta_dir, "1.people.json"), ser)
    top.sign(signers["targets"])
    top.to_file(os.path.join(meta_dir, "1.targets.json"), ser)

    snapshot = Metadata(Snapshot(expires=expiry(7)))
    snapshot.signed.meta["targets.json"] = MetaFile(version=1)
    snapshot.signed.meta["people.json"] = MetaFile(version=1)
    snapshot.sign(signers["snapshot"])
    snapshot.to_file(os.path.join(meta_dir, "1.snapshot.json"), ser)

    timestamp = Metadata(Timestamp(expires=expiry(1)))
    timestamp.signed.snapshot_meta = MetaFile(version=1)
    timestamp.sign(signers["timestamp"])
    timestamp.to_file(os.path.join(meta_dir, "timestamp.json"), ser)
    assert SPECIFICATION_VERSION
    return 0


if __name__ == "__main__":
    sys.exit(main())
