#!/usr/bin/env bash
# S3 upload and download throughput of storage/s3 against a real S3-compatible server (s3rver on
# loopback, tests/lib/s3rver.sh), beside storage/local and the aws CLI moving an object of the
# same size to the same server in the same run (the baseline).
#
#   bench/s3.sh [--mib 512]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mib=512
while [[ $# -gt 0 ]]; do
    case $1 in
        --mib) mib=$2; shift 2 ;;
        *) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
source "$root/scripts/lib.sh"
install_missing_packages
build_pangea >/dev/null
pangea=$PANGEA_BUILD/bin/pangea
source "$root/tests/lib/s3rver.sh"
s3rver_install "" >/dev/null || true
work=$(mktemp -d /tmp/pangea-s3-bench-XXXXXX)
trap 's3rver_stop; rm -rf "$work"' EXIT
s3rver_start "$work/s3" bench
s3="s3:endpoint=$S3_ENDPOINT,bucket=bench"
say "$mib MiB objects; s3rver at $S3_ENDPOINT"
"$pangea" bench storage --mib "$mib" --config "local:path=$work/local" \
    --config "$s3,parallel_parts=1" --config "$s3,parallel_parts=4" --config "$s3,parallel_parts=8,part_mib=8"
head -c "$((mib << 20))" /dev/urandom >"$work/object"
nanoseconds() { local start=$(date +%s%N); "$@" >/dev/null; echo $(($(date +%s%N) - start)); }
up=$(nanoseconds aws --endpoint-url "$S3_ENDPOINT" s3 cp "$work/object" s3://bench/aws-object)
down=$(nanoseconds aws --endpoint-url "$S3_ENDPOINT" s3 cp s3://bench/aws-object "$work/back")
awk -v mib="$mib" -v up="$up" -v down="$down" 'BEGIN {
    printf "%-60s %10s %12.1f %12.1f\n", "aws CLI (s3 cp, its defaults: 8 MiB parts, 10 threads)", mib,
           mib * 1048576 / 1e6 / (up / 1e9), mib * 1048576 / 1e6 / (down / 1e9) }'
