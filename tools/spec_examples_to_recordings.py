"""Turn the ARR and STS spec examples (x-ms-examples) into replayable recordings (test-proxy format).

Each example response becomes one independent entry: the request the example's parameters describe, and the
response it documents. Run from the repository root:

    python tools/spec_examples_to_recordings.py ../shared/reference tests/recordings/spec
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SESSION_OPS = {
    "CreateSession": ("PUT", "/accounts/{account_id}/sessions/{session_id}"),
    "GetSession": ("GET", "/accounts/{account_id}/sessions/{session_id}"),
    "UpdateSession": ("PATCH", "/accounts/{account_id}/sessions/{session_id}"),
    "StopSession": ("POST", "/accounts/{account_id}/sessions/{session_id}/:stop"),
    "ListSessions": ("GET", "/accounts/{account_id}/sessions"),
}
DEFAULT_ENDPOINT = "https://remoterendering.eastus.mixedreality.azure.com"
STS_HOST = "https://sts.eastus.mixedreality.azure.com"


def entries(op: str, example: dict, default_api_version: str) -> list[dict]:
    params = example["parameters"]
    if op == "GetToken":
        method = "GET"
        uri = f"{STS_HOST}/Accounts/{params['accountId']}/token?api-version={params['api-version']}"
    else:
        method, path = SESSION_OPS[op]
        path = path.format(account_id=params["account_id"], session_id=params.get("session_id", ""))
        api_version = params.get("api-version", default_api_version)
        uri = f"{params.get('endpoint', DEFAULT_ENDPOINT)}{path}?api-version={api_version}"
    out = []
    for status, response in example["responses"].items():
        headers = {k: str(v) for k, v in response.get("headers", {}).items()}
        body = response.get("body")
        if body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        out.append({
            "RequestUri": uri,
            "RequestMethod": method,
            "RequestHeaders": {"Accept": "application/json"},
            "RequestBody": params.get("body"),
            "StatusCode": int(status),
            "ResponseHeaders": headers,
            "ResponseBody": body,
        })
    return out


def main(reference: Path, out_dir: Path) -> None:
    sources = [
        (reference / "arr-rest-2021-01-01" / "examples", "stable", "2021-01-01"),
        (reference / "arr-rest-2021-01-01" / "preview-2021-01-01-preview" / "examples", "preview", "2021-01-01-preview"),
        (reference / "mr-sts" / "examples", "sts", "2019-02-28-preview"),
        (reference / "mr-sts" / "examples-root", "sts-root", "2019-02-28-preview"),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder, tag, api_version in sources:
        for path in sorted(folder.glob("*.json")):
            op = path.stem
            if op not in SESSION_OPS and op != "GetToken":
                continue  # conversions are not part of this client
            example = json.loads(path.read_text())
            recording = {"Entries": entries(op, example, api_version), "Variables": {},
                         "Source": str(path.relative_to(reference))}
            (out_dir / f"{tag}-{op}.json").write_text(json.dumps(recording, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
