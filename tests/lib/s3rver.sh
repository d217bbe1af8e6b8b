# A real S3-compatible server for tests: s3rver (npm), on loopback, with a temporary directory.
# Source it, then:
#   s3rver_install [DIR]        installs s3rver@3.7.1 into DIR (default $PANGEA_S3RVER_DIR, else
#                               /var/cache/pangea/s3rver) unless there; exits 77 (skip) without
#                               node/npm or when the install fails
#   s3rver_start DATA BUCKET [NETNS ADDRESS]
#                               starts it (in network namespace NETNS on ADDRESS, else on
#                               127.0.0.1) with DATA as its directory and BUCKET made; sets
#                               S3_ENDPOINT and S3RVER_PID; s3rver_stop stops it.
# It exports the credentials s3rver takes (access key S3RVER; it does not check signatures).

s3rver_install() {
    local dir=${1:-${PANGEA_S3RVER_DIR:-/var/cache/pangea/s3rver}}
    command -v node >/dev/null || { echo "SKIP: node is not installed (Debian: apt-get install nodejs npm)"; exit 77; }
    command -v npm >/dev/null || { echo "SKIP: npm is not installed (Debian: apt-get install npm)"; exit 77; }
    S3RVER=$dir/node_modules/.bin/s3rver
    [[ -x $S3RVER ]] && return 0
    mkdir -p "$dir" || { echo "SKIP: cannot create $dir (set PANGEA_S3RVER_DIR)"; exit 77; }
    echo "installing s3rver@3.7.1 into $dir"
    local out
    # flock: two test runs sharing the directory must not install over each other.
    if ! out=$(flock "$dir" npm install --prefix "$dir" --no-audit --no-fund --prefer-offline s3rver@3.7.1 2>&1) ||
        [[ ! -x $S3RVER ]]; then
        echo "SKIP: npm install s3rver@3.7.1 failed:"
        tail -5 <<<"$out"
        exit 77
    fi
}

s3rver_start() {
    local data=$1 bucket=$2 netns=${3:-} address=${4:-127.0.0.1}
    mkdir -p "$data"
    # s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 keeps in its
    # legacy provider (without it, a listing of more than 1000 keys fails with 500).
    local node_options=
    node --openssl-legacy-provider -e 0 2>/dev/null && node_options=--openssl-legacy-provider
    local run=()
    [[ -n $netns ]] && run=(ip netns exec "$netns")
    NODE_OPTIONS=$node_options "${run[@]}" "$S3RVER" -d "$data" -a "$address" -p 0 --silent \
        --configure-bucket "$bucket" >"$data.log" 2>&1 &
    S3RVER_PID=$!
    local port=
    for ((i = 0; i < 300; i++)); do
        port=$(sed -n "s/.*S3rver listening on [0-9.]*:\([0-9]*\).*/\1/p" "$data.log")
        [[ -n $port ]] && break
        kill -0 "$S3RVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $port ]] || { echo "FAIL: s3rver did not start within 30 s: $(cat "$data.log")"; exit 1; }
    S3_ENDPOINT=http://$address:$port
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
    export AWS_EC2_METADATA_DISABLED=true
    unset AWS_SESSION_TOKEN AWS_PROFILE
}

s3rver_stop() {
    [[ -n ${S3RVER_PID:-} ]] && kill "$S3RVER_PID" 2>/dev/null && wait "$S3RVER_PID" 2>/dev/null
    S3RVER_PID=
}
