"""Refresh a repository with python-tuf's ngclient and download targets, checking their bytes.

Used by tuftool's interoperability tests. The repository folder (with metadata/ and targets/)
is served over loopback HTTP by a server started here on port 0. The client metadata folder
persists between runs, so rollback and version rules apply across repository versions.

Usage: ngclient_check.py REPO_DIR CLIENT_DIR TRUSTED_ROOT EXPECTED_DIR NAME...
Each NAME is downloaded and compared with EXPECTED_DIR/NAME. Prints one JSON line with the
trusted versions after the refresh.
"""

import functools
import http.server
import json
import os
import shutil
import sys
import threading

from tuf.ngclient import Updater


def main() -> int:
    repo_dir, client_dir, trusted_root, expected_dir, *names = sys.argv[1:]
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args, **kwargs):
            pass

    handler = functools.partial(Quiet, directory=repo_dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        metadata_dir = os.path.join(client_dir, "metadata")
        download_dir = os.path.join(client_dir, "downloads")
        os.makedirs(metadata_dir, exist_ok=True)
        if os.path.isdir(download_dir):
            shutil.rmtree(download_dir)
        os.makedirs(download_dir)
        if not os.path.exists(os.path.join(metadata_dir, "root.json")):
            shutil.copyfile(trusted_root, os.path.join(metadata_dir, "root.json"))
        updater = Updater(
            metadata_dir=metadata_dir,
            metadata_base_url=f"{base}/metadata/",
            target_base_url=f"{base}/targets/",
            target_dir=download_dir,
            bootstrap=None,  # trust the root.json already in metadata_dir
        )
        updater.refresh()
        downloaded = {}
        for name in names:
            info = updater.get_targetinfo(name)
            if info is None:
                print(f"target {name} not found by ngclient", file=sys.stderr)
                return 1
            dest = os.path.join(download_dir, name.replace("/", "__"))
            path = updater.download_target(info, filepath=dest)
            with open(path, "rb") as got, open(os.path.join(expected_dir, name), "rb") as want:
                if got.read() != want.read():
                    print(f"target {name}: content differs", file=sys.stderr)
                    return 1
            downloaded[name] = info.length
        versions = {}
        for role in ("root", "timestamp", "snapshot", "targets"):
            with open(os.path.join(metadata_dir, f"{role}.json"), "rb") as f:
                versions[role] = json.load(f)["signed"]["version"]
        print(json.dumps({"versions": versions, "downloaded": downloaded}))
        return 0
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
