"""A loopback HTTP server that answers the few Hugging Face hub endpoints huggingface_hub uses.

It lets the tests run the real download code (``snapshot_download``: revision lookup, file
listing, HEAD + GET per file, the local cache) without network access.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class FakeHub:
    """Repositories are ``{repo_id: {revision_name: directory}}``; commits are derived from names."""

    def __init__(self, repos: dict[str, dict[str, Path]]) -> None:
        self.repos = repos
        self.downloads: list[str] = []  # paths of file GETs, in order
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def commit(repo: str, revision: str) -> str:
        return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()

    def _lookup(self, repo: str, revision: str) -> tuple[str, Path] | None:
        for name, directory in self.repos.get(repo, {}).items():
            if revision in (name, self.commit(repo, name)):
                return self.commit(repo, name), directory
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, data: object) -> None:
                self._reply(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

            def _files(self, directory: Path) -> dict[str, Path]:
                return {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if p.is_file()}

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = unquote(urlparse(self.path).path)
                if path.startswith("/api/models/"):
                    rest = path[len("/api/models/"):]
                    for marker in ("/revision/", "/tree/"):
                        if marker in rest:
                            repo, revision = rest.split(marker, 1)
                            found = hub._lookup(repo, revision)
                            if found is None:
                                code = "RepoNotFound" if repo not in hub.repos else "RevisionNotFound"
                                return self._reply(404, b"{}", {"X-Error-Code": code})
                            commit, directory = found
                            files = self._files(directory)
                            if marker == "/revision/":
                                return self._json({"id": repo, "sha": commit,
                                                   "siblings": [{"rfilename": f} for f in files]})
                            return self._json([
                                {"type": "file", "path": f, "size": p.stat().st_size,
                                 "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                                for f, p in files.items()
                            ])
                    return self._reply(404, b"{}", {"X-Error-Code": "RepoNotFound"})
                if "/resolve/" in path:
                    repo, rest = path.lstrip("/").split("/resolve/", 1)
                    revision, filename = rest.split("/", 1)
                    found = hub._lookup(repo, revision)
                    if found is None:
                        return self._reply(404, b"{}", {"X-Error-Code": "RepoNotFound"})
                    commit, directory = found
                    file = self._files(directory).get(filename)
                    if file is None:
                        return self._reply(404, b"{}", {"X-Error-Code": "EntryNotFound"})
                    data = file.read_bytes()
                    if self.command == "GET":
                        hub.downloads.append(filename)
                    return self._reply(200, data, {
                        "Content-Type": "application/octet-stream",
                        "X-Repo-Commit": commit,
                        "ETag": '"' + hashlib.sha256(data).hexdigest() + '"',
                    })
                return self._reply(404)

        return Handler
