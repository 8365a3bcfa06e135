#!/usr/bin/env bash
# A release script written for the reference tuftool (awslabs/tough's tuftool 0.17): its
# flags and argument forms only (`-t` input folder, `-r` for roles, `gen-rsa-key -b`, the six
# version/expiry flags, `-l` before the subcommand, `--target-path-exists`,
# `--allow-root-download`, `--target-names`, `transfer-metadata -r/-n`). Run by
# tests/reference_cli.rs with TUFTOOL (the binary) and WORK (an empty folder) set.
set -euo pipefail
tuftool() { "$TUFTOOL" "$@"; }
W=$WORK
mkdir -p "$W/keys" "$W/input/sub" "$W/input2"
echo alpha >"$W/input/a.txt"
echo beta >"$W/input/sub/b.txt"
echo gamma >"$W/input2/c.txt"

tuftool root init "$W/root.json"
tuftool root expire "$W/root.json" 'in 52 weeks'
for role in root snapshot targets timestamp; do
    tuftool root set-threshold "$W/root.json" "$role" 1
done
tuftool root gen-rsa-key "$W/root.json" "$W/keys/root.pem" -r root
tuftool root gen-rsa-key "$W/root.json" "$W/keys/online.pem" -b 3072 -r snapshot -r targets -r timestamp
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/keys/extra.pem" 2>/dev/null
tuftool root add-key "$W/root.json" -k "$W/keys/extra.pem" -r targets
tuftool root sign "$W/root.json" -k "$W/keys/root.pem"

tuftool -l info create \
    -t "$W/input" \
    -o "$W/repo" \
    -k "$W/keys/online.pem" \
    -r "$W/root.json" \
    --targets-version 1 --targets-expires 'in 3 weeks' \
    --snapshot-version 1 --snapshot-expires 'in 3 weeks' \
    --timestamp-version 1 --timestamp-expires 'in 1 week' \
    -f -j 2 --target-path-exists skip

tuftool update \
    -t "$W/input2" \
    -o "$W/repo" \
    -k "$W/keys/online.pem" -k "$W/keys/extra.pem" \
    -r "$W/root.json" \
    -m "file://$W/repo/metadata" \
    --targets-version 2 --targets-expires 'in 3 weeks' \
    --snapshot-version 2 --snapshot-expires 'in 3 weeks' \
    --timestamp-version 2 --timestamp-expires 'in 1 week' \
    --target-path-exists replace

tuftool download "$W/download" \
    -r "$W/root.json" \
    -m "file://$W/repo/metadata" \
    -t "file://$W/repo/targets" \
    -n a.txt -n c.txt \
    --allow-root-download

tuftool clone \
    --metadata-dir "$W/clone/metadata" \
    --targets-dir "$W/clone/targets" \
    -r "$W/root.json" \
    -m "file://$W/repo/metadata" \
    -t "file://$W/repo/targets" \
    --target-names a.txt

tuftool transfer-metadata \
    -r "$W/root.json" \
    -n "$W/root.json" \
    -m "file://$W/repo/metadata" \
    -t "file://$W/repo/targets" \
    -k "$W/keys/online.pem" \
    -o "$W/transferred" \
    --targets-version 3 --targets-expires 'in 3 weeks' \
    --snapshot-version 3 --snapshot-expires 'in 3 weeks' \
    --timestamp-version 3 --timestamp-expires 'in 1 week'
