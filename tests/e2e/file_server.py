"""A real HTTP server on 127.0.0.1:<free port> for URL inputs: GET /data/<name> answers `lookup(name)`
(404 when it gives None), GET /moved/<anything> redirects to /data/<moved_to> when `moved_to` is set."""

import contextlib
import http.server
import threading
import urllib.parse
from collections.abc import Callable, Iterator

FileUrl = Callable[..., str]  # (name, folder="data") -> its URL, percent-encoded


@contextlib.contextmanager
def serve_files(lookup: Callable[[str], bytes | None], moved_to: str | None = None) -> Iterator[FileUrl]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            if moved_to is not None and path.startswith("/moved/"):
                self.send_response(302)
                self.send_header("Location", f"/data/{urllib.parse.quote(moved_to)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = lookup(path.removeprefix("/data/")) if path.startswith("/data/") else None
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    base = f"http://{host}:{port}"
    try:
        yield lambda name, folder="data": f"{base}/{folder}/{urllib.parse.quote(name)}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
