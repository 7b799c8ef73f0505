"""Verify an API key with the original pyoco-server's own code against the records in NATS.

Usage: python verify_key.py NATS_URL API_KEY PEPPER  -> prints "ok" or "invalid", exit 0.
Used by pyoco-core/tests/admin_keys.rs to prove our records are the original's format.
"""
import asyncio
import sys

import nats
from pyoco_server.auth import (
    ApiKeyRecord,
    make_kv_key_for_api_key_id,
    parse_api_key,
    verify_api_key,
)


async def main(url: str, api_key: str, pepper: str) -> None:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value("pyoco_auth")
        key_id, _ = parse_api_key(api_key)
        entry = await kv.get(make_kv_key_for_api_key_id(key_id))
        record = ApiKeyRecord.from_json_bytes(entry.value)
        ok = verify_api_key(api_key, record=record, pepper=pepper or None)
        print("ok" if ok else "invalid")
    finally:
        await nc.close()


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
