"""Build successive states ("stages") of one TUF repository with python-tuf's Metadata API.

Usage: make_stages.py OUTDIR

Writes OUTDIR/stageN/{metadata,targets}; a test serves stage 1, then copies later stages over
it. Keys: ed25519 (root), ecdsa-sha2-nistp256 (targets, delegations), rsassa-pss-sha256
(snapshot), ed25519 (timestamp). Consistent snapshots.

stage1  root v1; targets v1 lists top.txt (sha256 + sha512) and only512.bin (sha512 only);
        delegations: A (paths a/*), B (paths b/*, c/*, terminating); B delegates to C
        (path_hash_prefixes: every first hex digit). A lists a/one.txt, B lists b/two.txt,
        C lists c/x.txt.
stage2  root v2 (timestamp key rotated; signed by the old and new root key: root key rotated
        too), timestamp v2, snapshot v2, targets v2 (top.txt changed).
stage3  a timestamp v1 signed by the new timestamp key, listing snapshot v2 (a rollback).
stage4  timestamp v3 / snapshot v3 listing targets v1 (a targets rollback).
Also writes OUTDIR/initial_root.json (= stage1 1.root.json).
"""

import hashlib
import os
import shutil
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
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

SER = JSONSerializer(compact=False)


def expiry(days: int) -> datetime:
    return (datetime.now(timezone.utc) + timedelta(days=days)).replace(microsecond=0)


def write_target(targets_dir: str, name: str, data: bytes, algos: list) -> TargetFile:
    tf = TargetFile.from_data(name, data, algos)
    head, base = os.path.split(name)
    for digest in tf.hashes.values():
        dest = os.path.join(targets_dir, head, f"{digest}.{base}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as out:
            out.write(data)
    return tf


def main() -> int:
    outdir = sys.argv[1]
    s = {
        "root": CryptoSigner.generate_ed25519(),
        "root2": CryptoSigner.generate_ecdsa(),
        "targets": CryptoSigner.generate_ecdsa(),
        "snapshot": CryptoSigner.generate_rsa(),
        "timestamp": CryptoSigner.generate_ed25519(),
        "timestamp2": CryptoSigner.generate_ecdsa(),
        "A": CryptoSigner.generate_ecdsa(),
        "B": CryptoSigner.generate_ed25519(),
        "C": CryptoSigner.generate_ecdsa(),
    }

    def stage(n: int) -> tuple:
        meta = os.path.join(outdir, f"stage{n}", "metadata")
        targets = os.path.join(outdir, f"stage{n}", "targets")
        os.makedirs(meta)
        os.makedirs(targets)
        return meta, targets

    def publish(md: Metadata, meta_dir: str, name: str, signers: list) -> MetaFile:
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        data = md.to_bytes(SER)
        with open(os.path.join(meta_dir, name), "wb") as f:
            f.write(data)
        return MetaFile(md.signed.version, len(data), {"sha256": hashlib.sha256(data).hexdigest()})

    # ---- stage 1
    meta, tdir = stage(1)
    root = Metadata(Root(expires=expiry(365), consistent_snapshot=True))
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.signed.add_key(s[role].public_key, role)
    publish(root, meta, "1.root.json", [s["root"]])
    shutil.copy(os.path.join(meta, "1.root.json"), os.path.join(outdir, "initial_root.json"))

    top = Metadata(Targets(expires=expiry(30)))
    top.signed.targets["top.txt"] = write_target(tdir, "top.txt", b"top v1\n", ["sha256", "sha512"])
    top.signed.targets["only512.bin"] = write_target(tdir, "only512.bin", b"\x00\x01sha512 only", ["sha512"])
    top.signed.delegations = Delegations(
        keys={s[r].public_key.keyid: s[r].public_key for r in ("A", "B")},
        roles={
            "A": DelegatedRole("A", [s["A"].public_key.keyid], 1, False, paths=["a/*"]),
            "B": DelegatedRole("B", [s["B"].public_key.keyid], 1, True, paths=["b/*", "c/*"]),
        },
    )
    a = Metadata(Targets(expires=expiry(30)))
    a.signed.targets["a/one.txt"] = write_target(tdir, "a/one.txt", b"one\n", ["sha256"])
    b = Metadata(Targets(expires=expiry(30)))
    b.signed.targets["b/two.txt"] = write_target(tdir, "b/two.txt", b"two\n", ["sha256"])
    b.signed.delegations = Delegations(
        keys={s["C"].public_key.keyid: s["C"].public_key},
        roles={
            "C": DelegatedRole(
                "C", [s["C"].public_key.keyid], 1, False,
                path_hash_prefixes=[f"{i:x}" for i in range(16)],
            ),
        },
    )
    c = Metadata(Targets(expires=expiry(30)))
    c.signed.targets["c/x.txt"] = write_target(tdir, "c/x.txt", b"x by C\n", ["sha256"])

    snap = Metadata(Snapshot(expires=expiry(7)))
    snap.signed.meta["targets.json"] = publish(top, meta, "1.targets.json", [s["targets"]])
    snap.signed.meta["A.json"] = publish(a, meta, "1.A.json", [s["A"]])
    snap.signed.meta["B.json"] = publish(b, meta, "1.B.json", [s["B"]])
    snap.signed.meta["C.json"] = publish(c, meta, "1.C.json", [s["C"]])
    ts = Metadata(Timestamp(expires=expiry(1)))
    ts.signed.snapshot_meta = publish(snap, meta, "1.snapshot.json", [s["snapshot"]])
    publish(ts, meta, "timestamp.json", [s["timestamp"]])

    # ---- stage 2: rotate root and timestamp keys, new top-level versions
    meta, tdir = stage(2)
    root.signed.version = 2
    root.signed.revoke_key(s["root"].public_key.keyid, "root")
    root.signed.add_key(s["root2"].public_key, "root")
    root.signed.revoke_key(s["timestamp"].public_key.keyid, "timestamp")
    root.signed.add_key(s["timestamp2"].public_key, "timestamp")
    publish(root, meta, "2.root.json", [s["root"], s["root2"]])
    top.signed.version = 2
    top.signed.targets["top.txt"] = write_target(tdir, "top.txt", b"top v2\n", ["sha256", "sha512"])
    snap.signed.version = 2
    snap.signed.meta["targets.json"] = publish(top, meta, "2.targets.json", [s["targets"]])
    ts.signed.version = 2
    ts.signed.snapshot_meta = publish(snap, meta, "2.snapshot.json", [s["snapshot"]])
    publish(ts, meta, "timestamp.json", [s["timestamp2"]])

    # ---- stage 3: timestamp rollback (v1, signed by the current key, listing the current
    # snapshot: only the timestamp version check catches it)
    meta, _ = stage(3)
    ts2_meta = ts.signed.snapshot_meta
    ts.signed.version = 1
    publish(ts, meta, "timestamp.json", [s["timestamp2"]])
    ts.signed.snapshot_meta = ts2_meta

    # ---- stage 4: snapshot v3 lists targets v1 (rollback of targets)
    meta, _ = stage(4)
    top.signed.version = 1
    snap.signed.version = 3
    snap.signed.meta["targets.json"] = MetaFile(1)
    ts.signed.version = 3
    ts.signed.snapshot_meta = publish(snap, meta, "3.snapshot.json", [s["snapshot"]])
    publish(ts, meta, "timestamp.json", [s["timestamp2"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
