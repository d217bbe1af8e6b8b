#!/usr/bin/env bash
# storage/s3 against a real S3-compatible server (s3rver behind a proxy that checks SigV4
# signatures, tests/lib/s3rver.sh): the storage conformance checks with multipart uploads of
# 5 MiB parts in parallel; the bucket, listed with the aws CLI, empty afterwards (the checks
# remove what they write); and the errors a user meets named clearly: wrong credentials, a
# wrong secret (the signature does not match), a missing bucket, an endpoint that is down.
#   s3_test.sh <pangea-plugin-check> <libpangea-storage-s3.so> [<s3rver install dir> | ""]
# Exits 77 (skipped) without node/npm or when s3rver or the proxy cannot be installed.
set -uo pipefail
check=$1 plugin=$2
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/../../lib/expect.sh"
source "$here/../../lib/s3rver.sh"

s3rver_install "${3:-}"
work=$(mktemp -d)
trap 's3rver_stop; rm -rf "$work"' EXIT
bucket=pangea-test
s3rver_start "$work/data" "$bucket"
echo "s3rver behind the SigV4 proxy at $S3_ENDPOINT, bucket $bucket"
runner() { "$check" --set endpoint="$S3_ENDPOINT" --set bucket="$bucket" "$@" "$plugin"; }

expect "storage conformance (256 MiB object in 5 MiB parts, 4 in flight)" 0 \
    "[pass] storage/s3: a 256 MiB object round-trips" -- \
    runner --set part_mib=5 --set parallel_parts=4 --object-mib 256

if command -v aws >/dev/null; then
    expect "the bucket is empty afterwards (aws s3api list-objects-v2)" 0 "objects: 0" -- \
        bash -c "echo objects: \$(aws --endpoint-url '$S3_ENDPOINT' s3api list-objects-v2 --bucket '$bucket' \
                     --query 'length(not_null(Contents, \`[]\`))' --output text)"
else
    echo "note: no aws CLI; the bucket's emptiness is not cross-checked"
fi

expect "wrong credentials are named" 1 "access denied (HTTP 403 InvalidAccessKeyId" -- \
    env AWS_ACCESS_KEY_ID=WRONG "$check" --set endpoint="$S3_ENDPOINT" --set bucket="$bucket" --object-mib 1 "$plugin"
expect "a wrong secret is named: the signature does not match" 1 "access denied (HTTP 403 SignatureDoesNotMatch" -- \
    env AWS_SECRET_ACCESS_KEY=WRONG "$check" --set endpoint="$S3_ENDPOINT" --set bucket="$bucket" --object-mib 1 "$plugin"
expect "... and the right one passes" 0 "[pass] storage/s3: a 1 MiB object round-trips" -- \
    "$check" --set endpoint="$S3_ENDPOINT" --set bucket="$bucket" --object-mib 1 "$plugin"
# The proxy checks the body against the signed x-amz-content-sha256, and keeps it from s3rver.
signed_curl() { curl -sS --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
expect "a body that does not match its signed hash is refused" 0 "<Code>XAmzContentSHA256Mismatch</Code>" -- \
    signed_curl -X PUT -H "x-amz-content-sha256: $(printf other | sha256sum | cut -d' ' -f1)" \
        --data-binary body "$S3_ENDPOINT/$bucket/mismatch"
expect "... and not stored" 0 "<Code>NoSuchKey</Code>" -- \
    signed_curl -H "x-amz-content-sha256: $(sha256sum </dev/null | cut -d' ' -f1)" "$S3_ENDPOINT/$bucket/mismatch"
expect "a missing bucket is named" 1 "bucket no-such-bucket does not exist at $S3_ENDPOINT" -- \
    "$check" --set endpoint="$S3_ENDPOINT" --set bucket=no-such-bucket --object-mib 1 "$plugin"
expect "an endpoint that is down is named, after retries" 1 "at http://127.0.0.1:1: Couldn't connect to server" -- \
    "$check" --set endpoint=http://127.0.0.1:1 --set bucket="$bucket" --set retries=1 --object-mib 1 "$plugin"
expect "no credentials at all is a clear error" 1 "s3: no credentials" -- \
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
    "$check" --set endpoint="$S3_ENDPOINT" --set bucket="$bucket" --object-mib 1 "$plugin"

pids=$S3RVER_PID,$SIGV4_PROXY_PID
s3rver_stop
expect_rc "s3rver and the proxy are stopped" 1 -- ps -p "$pids"
expect_summary
