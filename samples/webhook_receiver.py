"""A webhook receiver for trying the app's notifications locally: prints each StatusNotification once.

    python3 samples/webhook_receiver.py                 # listens on http://127.0.0.1:9000/
    python3 samples/webhook_receiver.py --gone          # answers 410 Gone: the app removes the subscription

Deliveries are at least once, so it deduplicates on ``eventId`` (the ``X-Event-Id`` header repeats it) and answers
200 to a repeat as well. Standard library only; not for production (no TLS, keeps every id in memory).
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--gone", action="store_true", help="answer 410 Gone to every delivery")
    args = parser.parse_args()
    seen: set[str] = set()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            event_id = self.headers.get("X-Event-Id") or body.get("eventId")
            if args.gone:
                self.send_response(410)
            else:
                if event_id not in seen:
                    seen.add(event_id)
                    session = body.get("session") or {}
                    print(f"{body.get('at')} {event_id}: {body.get('previousStatus')} -> {body.get('status')} "
                          f"(cause {body.get('cause')}, actor {body.get('actor')}) host {session.get('hostname')}",
                          flush=True)
                else:
                    print(f"repeat of {event_id}, ignored", flush=True)
                self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *log_args: object) -> None:
            pass

    print(f"listening on http://127.0.0.1:{args.port}/", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Receiver).serve_forever()


if __name__ == "__main__":
    main()
