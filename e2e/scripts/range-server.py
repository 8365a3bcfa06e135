"""A static HTTP/1.1 server on 127.0.0.1 that answers single byte-range requests.

Python's http.server ignores `Range`; updog's delta path reads the delta store with one
`Range: bytes=A-B` (or `bytes=A-`) per request, as S3 and CloudFront serve it. This answers
those with 206 and only the asked bytes; anything else as http.server does.

Usage: range-server.py PORT DIR   (PORT 0: the kernel picks one; the first line on stderr says
which, as http.server's does: "Serving HTTP on 127.0.0.1 port N")
"""
import functools
import http.server
import os
import re
import sys

RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        match = RANGE.match(self.headers.get("Range", "").strip())
        path = self.translate_path(self.path)
        if not match or not os.path.isfile(path):
            return super().do_GET()
        size = os.path.getsize(path)
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
        end = min(end, size - 1)
        if start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with open(path, "rb") as f:
            left, at = end - start + 1, start
            while left > 0:
                chunk = os.pread(f.fileno(), min(left, 1 << 20), at)
                if not chunk:
                    break
                self.wfile.write(chunk)
                at += len(chunk)
                left -= len(chunk)


if __name__ == "__main__":
    port, folder = int(sys.argv[1]), sys.argv[2]
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Handler, directory=folder)
    )
    print(f"Serving HTTP on 127.0.0.1 port {server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()
