#!/usr/bin/env python3
# Captain's collection and document calls, in the shapes of Captain's API
# reference (List/Create/Delete Collection, List Documents, Get Document,
# Delete Document, Wipe Collection Documents), against stevedore. Two phases,
# so that a test can fold CHUNKS between them:
#   index   create demo_docs, index the bucket, list the collection and its
#           documents, show one document with its chunks, delete it
#   delete  wipe the collection's documents, then delete the collection
# Another organization's key (OTHER_API_KEY, OTHER_ORG_ID) must get 404 for
# all of it. Needs Python 3 and requests. scripts/e2e runs it against
# `stevedore dev`.
import os
import sys
import time

import requests

BASE_URL = os.environ["STEVEDORE_URL"]
BUCKET = os.environ["STEVEDORE_BUCKET"]
ROLE_ARN = os.environ["STEVEDORE_ROLE_ARN"]
EXTERNAL_ID = os.environ["STEVEDORE_EXTERNAL_ID"]
COLLECTION = "demo_docs"


def headers(key, org):
    return {"Authorization": f"Bearer {key}", "X-Organization-ID": org, "Content-Type": "application/json"}


ME = headers(os.environ["STEVEDORE_API_KEY"], os.environ["STEVEDORE_ORG_ID"])
OTHER = headers(os.environ["OTHER_API_KEY"], os.environ["OTHER_ORG_ID"])


def call(method, path, h=ME, **kw):
    return requests.request(method, f"{BASE_URL}{path}", headers=h, timeout=60.0, **kw)


def wait(job_id):
    while True:
        job = call("GET", f"/v2/jobs/{job_id}").json()
        if job["status"] not in ("pending", "running"):
            return job
        time.sleep(0.5)


def other_org_sees_nothing(doc_id):
    for method, path in [("GET", f"/v2/collections/{COLLECTION}"), ("GET", f"/v2/collections/{COLLECTION}/documents"),
                         ("GET", f"/v2/collections/{COLLECTION}/documents/{doc_id}"),
                         ("DELETE", f"/v2/collections/{COLLECTION}/documents/{doc_id}"),
                         ("DELETE", f"/v2/collections/{COLLECTION}/documents"), ("DELETE", f"/v2/collections/{COLLECTION}")]:
        r = call(method, path, h=OTHER)
        assert r.status_code == 404, f"another org: {method} {path} -> {r.status_code}"
    listed = call("GET", "/v2/collections", h=OTHER).json()
    assert listed["total_count"] == 0, listed
    print("Another organization: 404 for every call, no collections listed")


def index_phase():
    r = call("PUT", f"/v2/collections/{COLLECTION}")
    print(f"Create collection: {r.status_code} {r.json()['collection_name']}")
    r = call("POST", f"/v2/collections/{COLLECTION}/index/s3", json={
        "bucket_name": BUCKET, "bucket_region": "us-east-1", "processing_type": "advanced",
        "auth": {"type": "assume_role", "role_arn": ROLE_ARN, "external_id": EXTERNAL_ID}})
    r.raise_for_status()
    job = wait(r.json()["job_id"])
    print(f"Index job: {job['status']}, {job['files_indexed']} indexed, {job['files_skipped']} skipped")

    listed = call("GET", "/v2/collections", params={"limit": 10, "offset": 0}).json()
    for c in listed["collections"]:
        print(f"Collection {c['collection_name']} ({c['collection_id']}): {c['document_count']} documents, "
              f"{c['chunk_count']} chunks, {c['token_count']} tokens")
    docs = call("GET", f"/v2/collections/{COLLECTION}/documents", params={"limit": 100}).json()
    print(f"Documents: {docs['total_count']} listed")
    indexed = [d for d in docs["documents"] if d["status"] == "indexed" and d["chunk_count"] > 1]
    doc = max(indexed, key=lambda d: d["chunk_count"])
    got = call("GET", f"/v2/collections/{COLLECTION}/documents/{doc['document_id']}").json()
    assert len(got["chunks"]) == got["chunk_count"], got.get("chunks_unavailable")
    assert [c["chunk_index"] for c in got["chunks"]] == list(range(got["chunk_count"]))
    first = got["chunks"][0]["content"].strip().splitlines()[0][:60]
    print(f"Document {got['document_id']} {got['metadata']['uri']}: {got['chunk_count']} chunks shown in order; first: {first!r}")
    other_org_sees_nothing(doc["document_id"])

    r = call("DELETE", f"/v2/collections/{COLLECTION}/documents/{doc['document_id']}")
    assert r.status_code == 202, r.text
    job = wait(r.json()["job_id"])
    print(f"Delete document {doc['document_id']}: {job['status']}, {job['files_deleted']} deleted, {job['chunks_deleted']} chunks tombstoned")
    r = call("GET", f"/v2/collections/{COLLECTION}/documents/{doc['document_id']}")
    print(f"Get the deleted document: {r.status_code}")
    print(f"DELETED {doc['metadata']['key']}")


def delete_phase():
    before = call("GET", f"/v2/collections/{COLLECTION}").json()
    r = call("DELETE", f"/v2/collections/{COLLECTION}/documents")
    assert r.status_code == 202, r.text
    job = wait(r.json()["job_id"])
    print(f"Wipe: {job['status']}, {job['files_deleted']} of {before['document_count']} documents deleted")
    after = call("GET", f"/v2/collections/{COLLECTION}").json()
    print(f"After the wipe: {after['document_count']} documents, {after['chunk_count']} chunks; collection {after['status']}")
    r = call("DELETE", f"/v2/collections/{COLLECTION}")
    assert r.status_code == 202, r.text
    job = wait(r.json()["job_id"])
    print(f"Delete collection: {job['status']}, {job['files_deleted']} deleted")
    r = call("GET", f"/v2/collections/{COLLECTION}")
    print(f"Get the deleted collection: {r.status_code}")


if __name__ == "__main__":
    {"index": index_phase, "delete": delete_phase}[sys.argv[1]]()
