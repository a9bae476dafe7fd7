#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/TARGET/ (see README.md).

Real events come from tests/fixtures/corpus/events (Apache-2.0 sources only: opensearch-catalog
and panther-analysis, lines named below); the binary formats (wire batch, spool segment, ledger
values) are framed here by hand, byte for byte as the Rust code writes them. Deterministic:
running it again rewrites the same files.
"""
import base64, gzip, hashlib, json, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
EVENTS = os.path.join(HERE, "..", "tests", "fixtures", "corpus", "events")

# (file, 1-based line): a management event, errors, data events, a small and a large one.
PICKS = [
    ("opensearch-catalog.jsonl", 1),
    ("opensearch-catalog.jsonl", 3),
    ("panther-analysis.jsonl", 1),
    ("panther-analysis.jsonl", 5),
]


def line(name, n):
    with open(os.path.join(EVENTS, name), "rb") as f:
        return f.read().split(b"\n")[n - 1]


def pick_by_flag(name, flag, skip=0):
    prov = os.path.join(EVENTS, name.replace(".jsonl", ".provenance.tsv"))
    rows = [r.rstrip("\n").split("\t") for r in open(prov)][1:]
    hits = [int(r[0]) for r in rows if flag in r[-1].split(",")]
    return hits[skip]


def smallest(name):
    with open(os.path.join(EVENTS, name), "rb") as f:
        lines = f.read().split(b"\n")
    i = min(range(len(lines)), key=lambda i: len(lines[i]) if lines[i] else 1 << 30)
    return i + 1


picks = list(PICKS)
picks.append(("opensearch-catalog.jsonl", pick_by_flag("opensearch-catalog.jsonl", "error")))
picks.append(("panther-analysis.jsonl", pick_by_flag("panther-analysis.jsonl", "data_event")))
picks.append(("panther-analysis.jsonl", pick_by_flag("panther-analysis.jsonl", "error")))
picks.append(("panther-analysis.jsonl", smallest("panther-analysis.jsonl")))
picks = sorted(set(picks))
events = [line(f, n) for f, n in picks]
small = sorted(events, key=len)[:3]


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def clean(target):
    d = os.path.join(HERE, "corpus", target)
    if os.path.isdir(d):
        for n in os.listdir(d):
            os.remove(os.path.join(d, n))


for t in ["event_decode", "log_file", "put_audit_events", "selectors_json", "wire_batch",
          "spool_record", "ledger_record"]:
    clean(t)

# event_decode: single events, JSON lines, a pretty-printed event, odd shapes.
for (f, n), e in zip(picks, events):
    write("event_decode", f"{f.split('-')[0]}-{n}.json", e)
write("event_decode", "lines.jsonl", b"\n".join(small) + b"\n")
write("event_decode", "pretty.json", json.dumps(json.loads(small[0]), indent=2).encode())
write("event_decode", "v1.0-no-event-id.json",
      b'{"eventVersion":"1.0","eventTime":"2014-03-06T21:22:54Z","eventSource":"ec2.amazonaws.com",'
      b'"eventName":"StartInstances","awsRegion":"us-east-2","userIdentity":{"type":"Root"}}')

# log_file: first byte = mode (bit 0 gzip the rest, bit 1 auto-detect), then the file.
records = b'{"Records":[' + b",".join(small) + b"]}"
write("log_file", "plain.json", b"\x00" + records)
write("log_file", "gzip.json", b"\x01" + records)
write("log_file", "auto.json", b"\x02" + records)
write("log_file", "empty-records.json", b'\x00{"Records":[]}')
write("log_file", "pretty.json", b"\x00" + json.dumps(
    {"Records": [json.loads(e) for e in small[:2]]}, indent=1).encode())


# put_audit_events
def audit(id_, data, checksum=False):
    a = {"id": id_, "eventData": data}
    if checksum:
        a["eventDataChecksum"] = base64.b64encode(hashlib.sha256(data.encode()).digest()).decode()
    return a


own = json.dumps({"eventTime": "2026-11-24T10:00:00Z", "eventSource": "app.example",
                  "eventName": "Login", "userIdentity": {"type": "Unknown", "principalId": "u1"}},
                 separators=(",", ":"))
write("put_audit_events", "real-events.json", json.dumps(
    {"auditEvents": [audit(f"e{i}", e.decode(), checksum=i % 2 == 0)
                     for i, e in enumerate(small)]}).encode())
write("put_audit_events", "no-event-id.json", json.dumps(
    {"auditEvents": [audit("req-1", own), audit("req-2", "{}")]}).encode())
write("put_audit_events", "refusals.json", json.dumps(
    {"auditEvents": [audit("bad id!", own), audit("dup", own), audit("dup", own),
                     {"id": "sum", "eventData": own, "eventDataChecksum": "AAAA"},
                     audit("notjson", "{"), audit("array", "[1]")]}).encode())

# selectors_json: get-event-selectors shapes (written here, not copied from the docs).
write("selectors_json", "basic.json", json.dumps({
    "TrailARN": "arn:aws:cloudtrail:us-east-1:123456789012:trail/t",
    "EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True,
                        "ExcludeManagementEventSources": ["kms.amazonaws.com"],
                        "DataResources": [{"Type": "AWS::S3::Object",
                                           "Values": ["arn:aws:s3:::mybucket/prefix"]},
                                          {"Type": "AWS::Lambda::Function",
                                           "Values": ["arn:aws:lambda"]}]}]}, indent=1).encode())
write("selectors_json", "advanced.json", json.dumps({
    "TrailARN": "arn:aws:cloudtrail:us-east-1:123456789012:trail/t",
    "AdvancedEventSelectors": [
        {"Name": "management writes", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Management"]},
            {"Field": "readOnly", "Equals": ["false"]}]},
        {"Name": "s3 objects but not logs", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
            {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::mybucket/"],
             "NotStartsWith": ["arn:aws:s3:::mybucket/logs/"]},
            {"Field": "eventName", "NotEquals": ["GetObject"], "EndsWith": [], "NotEndsWith": ["x"]},
            {"Field": "userIdentity.arn", "NotEndsWith": ["/robot"]},
            {"Field": "errorCode", "NotEquals": ["AccessDenied"]}]}]}, indent=1).encode())
write("selectors_json", "problems.json", json.dumps({
    "EventSelectors": [{"ReadWriteType": "Everything"}],
    "AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventNme", "Equals": ["x"]}, {"Field": "eventName", "Like": ["y"]}]}]}).encode())


# wire_batch: protobuf EventBatch { uint64 batch_id = 1; repeated bytes events = 2; }
def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def batch(batch_id, evs):
    out = b"\x08" + varint(batch_id)
    for e in evs:
        out += b"\x12" + varint(len(e)) + e
    return out


write("wire_batch", "three.pb", batch(42, small))
write("wire_batch", "one.pb", batch(1, small[:1]))
write("wire_batch", "rejections.pb", batch(7, [b"[1]", b"\xff\xfe", b"{}",
                                              small[0].replace(b'"recipientAccountId":"', b'"recipientAccountId":"9')]))


# spool_record: flag byte (bit 0: fix CRCs), then a segment file.
def record(kind, first_seq, count, payload):
    head = bytes([kind, 0, 0, 0]) + struct.pack(">QII", first_seq, count, len(payload))
    crc = zlib.crc32(head + payload) & 0xFFFFFFFF
    return b"OTS1" + head + struct.pack(">I", crc) + payload


chunk = b"".join(struct.pack(">I", len(e)) + e for e in small)
mark_key = b"src/0/file"
mark = struct.pack(">H", len(mark_key)) + mark_key + b"offset=1234"
segment_file = record(1, 1, len(small), chunk) + record(2, 4, 0, mark) + record(1, 4, 1, chunk[:4 + len(small[0])])
write("spool_record", "segment.bin", b"\x00" + segment_file)
write("spool_record", "segment-fix-crc.bin", b"\x01" + segment_file)
write("spool_record", "torn-tail.bin", b"\x00" + segment_file[:-7])

# ledger_record: first byte = codec (0 record block, 1 index chunk, 2 segment), then the value.
block = b"\x01" + struct.pack(">H", 2)
for seg, ct in [(1, b"\xaa" * 40), (2, b"\xbb" * 17)]:
    block += struct.pack(">QI", seg, 0) + b"\x11" * 12 + struct.pack(">I", len(ct)) + ct
write("ledger_record", "record-block.bin", b"\x00" + block)
chunk_v = b"\x01" + struct.pack(">QI", 1, 3)
for t in range(3):
    chunk_v += struct.pack(">q", 1764000000000 + t) + bytes([t]) * 16 + bytes([0x80 + t]) * 8
chunk_v += struct.pack(">H", 1) + b"123456789012"
chunk_v += struct.pack(">I", 2)
chunk_v += b"\x01" * 16 + varint(3) + varint(0) + varint(1) + varint(1)
chunk_v += b"\x02" * 16 + varint(1) + varint(2)
write("ledger_record", "index-chunk.bin", b"\x01" + chunk_v)
seg_v = b"\x01" + b"123456789012" + struct.pack(">qq", 20416, 1764000000000)
seg_v += struct.pack(">I", 1) + b"\x22" * 12 + b"\x33" * 48
write("ledger_record", "segment.bin", b"\x02" + seg_v)
# A counter plaintext: codec 0, strings ["123456789012", "s3.amazonaws.com", "GetObject"],
# one row (account, source, name, no user/error/region) counting 7.
counter_v = b"\x00" + varint(3)
for st in [b"123456789012", b"s3.amazonaws.com", b"GetObject"]:
    counter_v += varint(len(st)) + st
counter_v += varint(1) + bytes([1, 2, 3, 0, 0, 0]) + varint(7)
write("ledger_record", "counter.bin", b"\x03" + counter_v)

for f, n in picks:
    print(f"{f}:{n}")
