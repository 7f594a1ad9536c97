"""A short soak through bench/soak.py (100 tries, 20 parses; `make soak` runs 1,000 and 200): nothing lost,
nothing leaked."""

from __future__ import annotations

import json

from tests.e2e.conftest import postgres_answers, require


def test_soak_100_tries_lose_and_leak_nothing(docker_client):
    require(postgres_answers(), "PostgreSQL does not answer on 127.0.0.1:5432 (run scripts/ensure-postgres.sh)")
    from bench.soak import failed, run

    result = run(tries=100, parses=20, deadline=900)
    assert failed(result) == [], json.dumps(result, indent=2)
