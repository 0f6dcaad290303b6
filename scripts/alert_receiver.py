"""Print the fleet's alert notifications: a webhook receiver for trying `fleet.alerts` locally.

    python scripts/alert_receiver.py --port 8099      # then alerts: {webhook_url: http://127.0.0.1:8099/hook}

Every JSON POST is printed as its subject and body; anything else is answered 404.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_error(400, "not JSON")
            return
        sys.stdout.write(f"--- {data.get('subject', '(no subject)')}\n{data.get('body', '')}\n\n")
        sys.stdout.flush()
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:
        self.send_error(404, "POST alerts here")

    def log_message(self, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1:PORT until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099, help="port on 127.0.0.1 (default 8099)")
    args = parser.parse_args(argv)
    server = HTTPServer(("127.0.0.1", args.port), _Handler)
    sys.stdout.write(f"waiting for alerts on http://127.0.0.1:{args.port}/hook (Ctrl-C stops)\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
