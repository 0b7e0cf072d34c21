"""Independent check of the simulated relay with the `atproto` Python SDK.

Usage: firehose_check.py <ws-base-url> <n>

Subscribes from cursor 0 with the SDK's own firehose client, decodes the first
<n> events and each commit's CAR with the SDK's parsers, and prints counts per
message type, per op collection/action and per record $type as JSON. Every
record is also validated against the SDK's lexicon models (strict string
formats); failures are listed under "problems".
"""

import base64
import hashlib
import json
import sys
from collections import Counter

try:
    from atproto import CAR, FirehoseSubscribeReposClient, parse_subscribe_repos_message
except ImportError:
    sys.stderr.write("the atproto package is missing: pip install atproto\n")
    sys.exit(3)

try:
    # The SDK's own DAG-CBOR codec, to re-encode blocks and recompute their CIDs.
    from libipld import encode_dag_cbor
except ImportError:
    encode_dag_cbor = None

try:
    # The SDK's models generated from the lexicons; records must validate against them.
    from atproto_client.models.type_conversion import RECORD_TYPE_TO_MODEL_CLASS
except ImportError:
    RECORD_TYPE_TO_MODEL_CLASS = None


def dag_cbor_cid(value) -> str:
    """CIDv1 (dag-cbor, sha2-256) of a value's canonical encoding, base32 multibase."""
    digest = hashlib.sha256(encode_dag_cbor(value)).digest()
    raw = bytes([0x01, 0x71, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def validate(record, seq, path):
    if RECORD_TYPE_TO_MODEL_CLASS is None:
        return []
    model = RECORD_TYPE_TO_MODEL_CLASS.get(record.get("$type"))
    if model is None:
        return [f"seq {seq}: {path}: no lexicon model for {record.get('$type')}"]
    try:
        model.model_validate(record, context={"strict_string_format": True})
    except Exception as e:  # noqa: BLE001 - any validation failure is reported
        return [f"seq {seq}: {path}: {str(e)[:300]}"]
    return []


def main() -> None:
    base, total = sys.argv[1].rstrip("/"), int(sys.argv[2])
    types, collections, actions, record_types = Counter(), Counter(), Counter(), Counter()
    problems = []
    state = {"seen": 0, "last_seq": 0}
    client = FirehoseSubscribeReposClient(params={"cursor": 0}, base_uri=f"{base}/xrpc")

    def on_message(frame) -> None:
        if state["seen"] >= total:
            return
        message = parse_subscribe_repos_message(frame)
        kind = frame.type
        types[kind] += 1
        seq = getattr(message, "seq", None)
        if seq is not None:
            if seq <= state["last_seq"]:
                problems.append(f"seq {seq} after {state['last_seq']}")
            state["last_seq"] = seq
        if kind == "#commit":
            car = CAR.from_bytes(message.blocks)
            if str(car.root) != str(message.commit):
                problems.append(f"seq {seq}: CAR root {car.root} is not commit {message.commit}")
            # The commit block is not re-hashed here: the SDK's decoder returns links and
            # byte strings alike as bytes, so a signature starting with 0x01 would be
            # re-encoded as a link. Records carry no byte strings, so they are re-hashed.
            commit_block = car.blocks.get(message.commit)
            if commit_block is None or commit_block.get("did") != message.repo or commit_block.get("version") != 3:
                problems.append(f"seq {seq}: commit block missing or not for {message.repo}")
            for op in message.ops:
                collections[op.path.split("/")[0]] += 1
                actions[op.action] += 1
                if op.cid is not None:
                    block = car.blocks.get(op.cid)
                    if block is None:
                        problems.append(f"seq {seq}: no block for {op.path}")
                    else:
                        record_types[block.get("$type", "?")] += 1
                        if encode_dag_cbor is not None and dag_cbor_cid(block) != str(op.cid):
                            problems.append(f"seq {seq}: {op.path} is not canonical DAG-CBOR for {op.cid}")
                        problems.extend(validate(block, seq, op.path))
        state["seen"] += 1
        if state["seen"] >= total:
            client.stop()

    client.start(on_message)
    print(
        json.dumps(
            {
                "events": state["seen"],
                "types": dict(sorted(types.items())),
                "collections": dict(sorted(collections.items())),
                "actions": dict(sorted(actions.items())),
                "record_types": dict(sorted(record_types.items())),
                "problems": problems[:20],
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
