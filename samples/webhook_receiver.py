"""A webhook receiver for trying the app's notifications locally: prints every delivery, with the path it came to.

    python3 samples/webhook_receiver.py                 # listens on http://127.0.0.1:9000/
    python3 samples/webhook_receiver.py --port 0        # any free port (the first line says which)
    python3 samples/webhook_receiver.py --gone          # answers 410 Gone: the app removes the subscription

Every path is a receiver of its own: a start's ``callbackUrl`` of ``http://localhost:9000/ready`` and two
subscriptions to ``/changes`` and ``/mine`` share this one process, and one change reaches each of them with the
same ``eventId``. So each delivery is printed with its path, event id and type:

    /ready SessionStatusChanged doc-try-1.None.Ready at 2026-11-27T14:22:15.945282Z: None -> Ready (cause arr, ...
    /changes SessionStatusChanged doc-try-1.None.Ready at 2026-11-27T14:22:15.945282Z: None -> Ready (cause arr, ...

Deliveries are at least once, so it deduplicates on the path and ``eventId`` (the ``X-Event-Id`` header repeats
it): a repeat to the same path is printed as one and answered 200 as well. Standard library only; not for
production (no TLS, keeps every id in memory).
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000, help="0: any free port")
    parser.add_argument("--gone", action="store_true", help="answer 410 Gone to every delivery")
    args = parser.parse_args()
    seen: set[tuple[str, str | None]] = set()
    lock = threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                body: Any = json.loads(raw or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                print(f"{self.path} not a JSON object ({len(raw)} bytes), answered 400", flush=True)
                self.send_response(400)
                self.end_headers()
                return
            event_id = self.headers.get("X-Event-Id") or body.get("eventId")
            event = f"{self.path} {body.get('eventType')} {event_id}"
            if args.gone:
                print(f"{event}: answered 410 Gone", flush=True)
                self.send_response(410)
            else:
                with lock:
                    first = (self.path, event_id) not in seen
                    seen.add((self.path, event_id))
                if first:
                    session = body.get("session") or {}
                    print(f"{event} at {body.get('at')}: {body.get('previousStatus')} -> {body.get('status')} "
                          f"(cause {body.get('cause')}, actor {body.get('actor')}) host {session.get('hostname')}",
                          flush=True)
                else:
                    print(f"{event}: a repeat to this path, ignored", flush=True)
                self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *log_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Receiver)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/ (any path)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
