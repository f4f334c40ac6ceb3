"""A local OpenAI-compatible chat endpoint for the generator's tests (no network, no model)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


class FakeChatServer:
    """Serves ``POST …/chat/completions`` on a free local port. ``respond(request)`` gets
    ``{"path", "auth", "body"}`` and returns the reply's content (text) or a whole response
    (a dict); every request is kept in ``requests``."""

    def __init__(self, respond):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                outer.requests.append(request)
                reply = respond(request)
                data = json.dumps(reply if isinstance(reply, dict) else
                                  {"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self):
        self.server.shutdown()
