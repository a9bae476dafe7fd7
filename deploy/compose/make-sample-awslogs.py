#!/usr/bin/env python3
"""Writes deploy/compose/AWSLogs/: a small CloudTrail tree in the delivered layout
(AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_ID.json.gz,
each file {"Records":[...]}) for two accounts, from real records other projects wrote
(tests/fixtures/corpus, Apache-2.0 sources only). Records are kept byte for byte as the corpus
holds them; the output is deterministic (gzip without a timestamp). PROVENANCE.md beside the
tree lists each record's source. Run from anywhere: python3 deploy/compose/make-sample-awslogs.py
"""
import gzip
import hashlib
import json
import pathlib
import re
import shutil

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "tests" / "fixtures" / "corpus" / "events"
OUT = HERE / "AWSLogs"

# (account, corpus file, how many records, lines that must be included)
PICKS = [
    # panther-analysis line 104: Mateo starts i-EXAMPLE56126103cb and i-EXAMPLEaff4840c22.
    ("123456789012", "panther-analysis", 10, [104]),
    ("347283850106", "opensearch-catalog", 15, []),
]
# eventIDs shaped as UUIDs (documentation examples write EXAMPLE into some of the hex digits).
UUID = re.compile(r"^[0-9a-z]{8}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{12}$", re.I)
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def usable(ev, account):
    """A record a real trail could have delivered for `account`: its own account, a real
    eventID, an RFC 3339 eventTime, a region, no fields a SIEM added."""
    return (
        ev.get("recipientAccountId") == account
        and UUID.match(str(ev.get("eventID", "")))
        and TIME.match(str(ev.get("eventTime", "")))
        and ev.get("awsRegion")
        and ev.get("eventName")
        and not any(k.startswith("p_") for k in ev)
    )


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    prov = [
        "# Provenance of the sample CloudTrail tree",
        "",
        "Written by `deploy/compose/make-sample-awslogs.py` from `tests/fixtures/corpus/events`",
        "(records written by other projects; licenses in `tests/fixtures/corpus/licenses/`).",
        "Each record is the corpus line byte for byte, inside a `{\"Records\":[...]}` log file.",
        "",
        "| account | file | corpus line | source repository | source path | commit | license |",
        "|---|---|---|---|---|---|---|",
    ]
    for account, name, count, must in PICKS:
        lines = (CORPUS / f"{name}.jsonl").read_text().splitlines()
        provrows = {}
        for row in (CORPUS / f"{name}.provenance.tsv").read_text().splitlines()[1:]:
            cols = row.split("\t")
            provrows[int(cols[0])] = cols
        chosen, ids = [], set()
        for n in must + list(range(1, len(lines) + 1)):
            if len(chosen) == count:
                break
            ev = json.loads(lines[n - 1])
            if n in [c[0] for c in chosen] or ev.get("eventID") in ids or not usable(ev, account):
                continue
            if n not in must and ev.get("eventName") == "StartInstances":
                continue  # one StartInstances in the tree: the lookup's answer is unambiguous
            chosen.append((n, ev))
            ids.add(ev["eventID"])
        assert all(n in [c[0] for c in chosen] for n in must), f"{name}: a required line is unusable"
        assert len(chosen) == count, f"{name}: only {len(chosen)} usable records for {account}"
        files = {}
        for n, ev in chosen:
            t = ev["eventTime"]
            key = (ev["awsRegion"], t[:4], t[5:7], t[8:10], t[11:13])
            files.setdefault(key, []).append((n, ev))
        for (region, y, m, d, h), recs in sorted(files.items()):
            stamp = f"{y}{m}{d}T{h}00Z"
            uniq = hashlib.sha256(f"{account}{region}{stamp}".encode()).hexdigest()[:16].upper()
            rel = pathlib.Path(account, "CloudTrail", region, y, m, d,
                               f"{account}_CloudTrail_{region}_{stamp}_{uniq}.json.gz")
            path = OUT / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            body = '{"Records":[' + ",".join(lines[n - 1] for n, _ in recs) + "]}"
            path.write_bytes(gzip.compress(body.encode(), mtime=0))
            for n, _ in recs:
                _, repo, src, commit, _loc, lic = provrows[n][:6]
                prov.append(f"| {account} | `{rel.name}` | {name}.jsonl:{n} | {repo} | `{src}` | {commit[:12]} | {lic} |")
    prov.append("")
    (OUT / "PROVENANCE.md").write_text("\n".join(prov))


if __name__ == "__main__":
    main()
