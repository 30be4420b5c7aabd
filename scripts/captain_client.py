#!/usr/bin/env python3
# Captain's example client (seed 000, "Step 4: Run your first indexing call"),
# unchanged except that BASE_URL, API_KEY, ORG_ID, the bucket, role ARN and
# external ID come from the environment, followed by what a service builds on
# it: a directory and a file job on the other two S3 endpoints, then listing,
# cancelling and polling jobs through stevedore's job endpoints.
# Needs Python 3 and requests. scripts/e2e runs it against `stevedore dev`.
import os
import time

import requests

BASE_URL = os.environ["STEVEDORE_URL"]
API_KEY = os.environ["STEVEDORE_API_KEY"]
ORG_ID = os.environ["STEVEDORE_ORG_ID"]
BUCKET = os.environ["STEVEDORE_BUCKET"]
ROLE_ARN = os.environ["STEVEDORE_ROLE_ARN"]
EXTERNAL_ID = os.environ["STEVEDORE_EXTERNAL_ID"]

# --- Captain's example, as published --------------------------------------
headers = {
    "Authorization": f"Bearer {API_KEY}",
    "X-Organization-ID": ORG_ID,
    "Content-Type": "application/json"
}

response = requests.post(
    f"{BASE_URL}/v2/collections/my_documents/index/s3",
    headers=headers,
    json={
        "bucket_name": BUCKET,
        "bucket_region": "us-east-1",
        "auth": {
            "type": "assume_role",
            "role_arn": ROLE_ARN,
            "external_id": EXTERNAL_ID
        },
        "processing_type": "advanced",
        "skip_existing": True
    },
    timeout=60.0
)

if response.status_code in [200, 201]:
    data = response.json()
    print(f"Job started! ID: {data['job_id']}")
else:
    print(f"Error: {response.status_code}")
# --- end of Captain's example ----------------------------------------------

auth = {"type": "assume_role", "role_arn": ROLE_ARN, "external_id": EXTERNAL_ID}
bucket_job = data["job_id"]
r = requests.post(f"{BASE_URL}/v2/collections/my_documents/index/s3/directory", headers=headers, timeout=60.0,
                  json={"bucket_name": BUCKET, "directory_path": "docs/", "auth": auth, "skip_existing": False})
r.raise_for_status()
directory_job = r.json()["job_id"]
print(f"Directory job started! ID: {directory_job}")
r = requests.post(f"{BASE_URL}/v2/collections/my_documents/index/s3/file", headers=headers, timeout=60.0,
                  json={"bucket_name": BUCKET, "file_uri": f"s3://{BUCKET}/licenses/Go-LICENSE.txt", "auth": auth})
r.raise_for_status()
file_job = r.json()["job_id"]
print(f"File job started! ID: {file_job}")

r = requests.post(f"{BASE_URL}/v2/collections/my_documents/index/s3", headers=headers, timeout=60.0,
                  json={"bucket_name": BUCKET, "auth": auth, "skip_existing": False})
r.raise_for_status()
cancelled_job = r.json()["job_id"]
r = requests.post(f"{BASE_URL}/v2/jobs/{cancelled_job}/cancel", headers=headers, timeout=60.0)
print(f"Cancel {cancelled_job}: {r.status_code} {r.json().get('status', r.json())}")

listing = requests.get(f"{BASE_URL}/v2/jobs", headers=headers, params={"collection": "my_documents", "limit": 10}, timeout=60.0).json()
print("Jobs, newest first:", ", ".join(f"{j['job_id']} {j['status']}" for j in listing["jobs"]))

for job_id in [bucket_job, directory_job, file_job, cancelled_job]:
    deadline = time.time() + 300
    while True:
        job = requests.get(f"{BASE_URL}/v2/jobs/{job_id}", headers=headers, timeout=60.0).json()
        if job["status"] in ("completed", "completed_with_errors", "failed", "cancelled") or time.time() > deadline:
            break
        time.sleep(0.5)
    print(f"Job {job_id}: {job['status']}, {job['files_indexed']} indexed, {job['files_skipped']} skipped, "
          f"{job['files_failed']} failed of {job['files_total']}; {job['chunks_processed']} chunks, {job['tokens_used']} tokens; progress {job['progress']}")
