"""The running app against its own served OpenAPI document, with schemathesis and every check on.

This is ``st run <document> --checks all`` (schemathesis' own command line, run as a subprocess, so that what passes
here is what a user reproduces with the same command): every phase (examples, coverage, fuzzing, stateful), every
generation mode (schema-valid and schema-violating data), 300 examples per operation, a fixed seed so that a failure
reproduces. The operations run against the ARR emulator and Azurite, with a function key, so starts and stops are
real and a request without the key is refused (the ``ignored_auth`` check).

Excluded checks, each with its reason (nothing else is excluded):

- ``positive_data_acceptance`` ("schema-valid data is accepted"): the app refuses, with a 400 naming the field, data
  that OpenAPI 2.0 cannot describe: rules across fields (``from`` before ``to`` and at most 400 days apart; exactly
  one of ``leaseMinutes`` and ``extendByMinutes``), ``from``/``to``/``before`` outside 2019-2200 (2.0 has no bounds for
  a date-time: the parameters' descriptions say it), callback URLs that are not absolute http(s) URLs to an allowed
  address, and free text with control characters. Each of those refusals is tested on its own: tests/unit/
  test_queries.py (times, spans), tests/integration/test_http_api.py (the extend body),
  tests/unit/test_notifications.py (callback URLs) and tests/integration/test_input_hardening.py (control
  characters).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import Emulator, Host, untraced

CASES_PER_OPERATION = 300  # ~5 100 cases in 80-90 s (measured, under make test's coverage too)
SEED = 20261127
EXCLUDED_CHECKS = {  # each with its reason (the module's docstring says more); nothing else is excluded
    "positive_data_acceptance": "the app refuses with a 400 what OpenAPI 2.0 cannot state: rules across fields, "
                                "the 2019-2200 range of date-times, callback URL rules, control characters",
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch"}


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    return {"ARR_NIGHTLY_SHUTDOWN_AT": "22:00", "ARR_TIME_ZONE": "Europe/Amsterdam", "ARR_RATE_STANDARD_PER_HOUR": "3"}


@pytest.fixture(scope="module")
def fuzz_host(emulator_process: Emulator, app_host: Host) -> Host:
    emulator_process.reset(startupSeconds=0)
    return app_host


def test_api_conforms_to_its_openapi_document_with_every_check(fuzz_host: Host, tmp_path: Path) -> None:
    """No failure and no error from any check but the one excluded above, on every operation of the document."""
    report = tmp_path / "schemathesis.json"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{fuzz_host.url}/api/openapi.json",
               "--include-path-regex", "^/",  # every path: by default the document's own URL is left out
               "--checks", "all", "--exclude-checks", ",".join(sorted(EXCLUDED_CHECKS)),
               "--max-examples", str(CASES_PER_OPERATION), "--seed", str(SEED), "--workers", "1",
               "--header", f"x-functions-key: {fuzz_host.key}", "--request-timeout", "60",
               "--report", "json", "--report-json-path", str(report)]
    started = time.monotonic()
    # The fuzzer is not the code under test: it runs without coverage's tracer (make test measures the app's host).
    run = subprocess.run(command, cwd=tmp_path, env=untraced(dict(os.environ)), capture_output=True, text=True,
                         timeout=900, check=False)
    elapsed = time.monotonic() - started
    output = run.stdout[-20000:] + run.stderr[-5000:]
    assert report.exists(), output
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]["generated"]
    print(f"schemathesis {summary['schemathesis_version']}: {cases} generated cases in {elapsed:.0f} s, "
          f"{CASES_PER_OPERATION} examples per operation, seed {SEED}, phases {summary['phases']}")
    assert (summary["failures"], summary["errors"], run.returncode) == ([], [], 0), output
    document = httpx.get(f"{fuzz_host.url}/api/openapi.json").json()
    operations = sum(1 for ops in document["paths"].values() for method in ops if method in HTTP_METHODS)
    assert summary["operations"]["tested"] == summary["operations"]["total"] == operations, summary["operations"]
    assert all(phase["status"] in ("success", "skip") for phase in summary["phases"].values()), summary["phases"]
    assert summary["phases"]["coverage"]["status"] == summary["phases"]["fuzzing"]["status"] == "success"
    assert summary["phases"]["stateful"]["status"] == "success"
    assert cases >= CASES_PER_OPERATION * 10, cases


def test_the_hosts_own_answers_are_problems(fuzz_host: Host) -> None:
    """What the host answers before any function runs has the shape of the app's errors: 401 without a valid key,
    404 for no route (a trailing newline included), 405 with ``Allow`` for a method the route lacks (HEAD too: the
    Functions host does not map HEAD onto GET functions)."""
    with httpx.Client(base_url=fuzz_host.url, timeout=30) as http:
        answers = {
            401: [http.get("/api/sessions"), http.get("/api/sessions", headers={"x-functions-key": "wrong"})],
            404: [http.get("/api/nothing-here", headers={"x-functions-key": fuzz_host.key}), http.get("/elsewhere"),
                  http.get("/api/sessions%0A", headers={"x-functions-key": fuzz_host.key})],
            405: [http.put("/api/health"), http.request("TRACE", "/api/health"), http.head("/api/health")],
        }
    for status, responses in answers.items():
        for response in responses:
            assert response.status_code == status, (response.request.method, response.request.url)
            assert response.headers["content-type"].startswith("application/problem+json")
            if response.request.method != "HEAD":
                assert response.json()["status"] == status and response.json()["title"]
    assert {r.headers["allow"] for r in answers[405]} == {"GET"}
