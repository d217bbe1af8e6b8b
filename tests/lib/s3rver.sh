# A real S3-compatible server for tests: s3rver (npm), on loopback, with a temporary directory,
# behind a proxy that checks SigV4 signatures (tests/lib/sigv4_proxy.js; s3rver checks none).
# Source it, then:
#   s3rver_install [DIR]        installs the npm packages below into DIR (default
#                               $PANGEA_S3RVER_DIR, else /var/cache/pangea/s3rver) unless there;
#                               exits 77 (skip) without node/npm or when the install fails
#   s3rver_start DATA BUCKET [NETNS ADDRESS]
#                               starts it and the proxy (in network namespace NETNS on ADDRESS,
#                               else on 127.0.0.1) with DATA as its directory and BUCKET made;
#                               sets S3_ENDPOINT (the proxy); s3rver_stop stops both.
# It exports the credentials the proxy checks: access key S3RVER, secret S3RVER.

# Pinned, so that the tests do not change under us; --prefer-offline installs from npm's cache.
S3RVER_PACKAGES=(s3rver@3.7.1 @smithy/signature-v4@5.7.5 @smithy/hash-node@4.5.2)

s3rver_installed() {
    local package name
    for package in "${S3RVER_PACKAGES[@]}"; do
        name=${package%@*}
        grep -qs "\"version\": \"${package##*@}\"" "$1/node_modules/$name/package.json" || return 1
    done
}

s3rver_install() {
    local dir=${1:-${PANGEA_S3RVER_DIR:-/var/cache/pangea/s3rver}}
    command -v node >/dev/null || { echo "SKIP: node is not installed (Debian: apt-get install nodejs npm)"; exit 77; }
    command -v npm >/dev/null || { echo "SKIP: npm is not installed (Debian: apt-get install npm)"; exit 77; }
    S3RVER=$dir/node_modules/.bin/s3rver
    S3RVER_MODULES=$dir/node_modules
    s3rver_installed "$dir" && return 0
    mkdir -p "$dir" || { echo "SKIP: cannot create $dir (set PANGEA_S3RVER_DIR)"; exit 77; }
    echo "installing ${S3RVER_PACKAGES[*]} into $dir"
    local out
    # flock: two test runs sharing the directory must not install over each other.
    if ! out=$(flock "$dir" npm install --prefix "$dir" --no-audit --no-fund --prefer-offline "${S3RVER_PACKAGES[@]}" 2>&1) ||
        ! s3rver_installed "$dir"; then
        echo "SKIP: npm install ${S3RVER_PACKAGES[*]} failed:"
        tail -5 <<<"$out"
        exit 77
    fi
}

# Waits (up to 30 s, while process PID lives) for LOG to say "... listening on ADDRESS:PORT";
# prints PORT.
listening_port() {
    local pid=$1 log=$2 what=$3 port= i
    for ((i = 0; i < 300; i++)); do
        port=$(sed -n "s/.*$what listening on [0-9.]*:\([0-9]*\).*/\1/p" "$log" 2>/dev/null)
        [[ -n $port ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $port ]] || { echo "FAIL: $what did not start within 30 s: $(cat "$log")" >&2; return 1; }
    echo "$port"
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
    local port
    port=$(listening_port "$S3RVER_PID" "$data.log" S3rver) || exit 1
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
    export AWS_EC2_METADATA_DISABLED=true
    unset AWS_SESSION_TOKEN AWS_PROFILE
    NODE_PATH=$S3RVER_MODULES SIGV4_ACCESS_KEY=$AWS_ACCESS_KEY_ID SIGV4_SECRET=$AWS_SECRET_ACCESS_KEY \
        SIGV4_REGION=$AWS_DEFAULT_REGION "${run[@]}" node "$(dirname "${BASH_SOURCE[0]}")/sigv4_proxy.js" \
        "$address" "http://$address:$port" >"$data.proxy.log" 2>&1 &
    SIGV4_PROXY_PID=$!
    port=$(listening_port "$SIGV4_PROXY_PID" "$data.proxy.log" "sigv4 proxy") || exit 1
    S3_ENDPOINT=http://$address:$port
}

s3rver_stop() {
    local pid
    for pid in ${SIGV4_PROXY_PID:-} ${S3RVER_PID:-}; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    SIGV4_PROXY_PID= S3RVER_PID=
}

# Objects of BUCKET on the running server, through the signing proxy (curl's own SigV4; curl
# 7.88 signs the payload hash it is given and adds none; a request gets 30 s, so that a server
# that stopped answering fails the test instead of hanging it):
#   s3_get BUCKET KEY          prints the object (fails when there is none)
#   s3_put BUCKET KEY          stores stdin as the object
#   s3_rm BUCKET KEY           deletes it
#   s3_keys BUCKET PREFIX      prints the keys under PREFIX, one a line (up to 1000)
s3_curl() {  # payload file ("" for none), curl arguments
    local payload=$1 hash
    shift
    hash=$(if [[ -n $payload ]]; then sha256sum <"$payload"; else sha256sum </dev/null; fi | cut -d' ' -f1)
    curl -sSf --max-time 30 --aws-sigv4 "aws:amz:$AWS_DEFAULT_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        -H "x-amz-content-sha256: $hash" "$@"
}
s3_get() { s3_curl "" "$S3_ENDPOINT/$1/$2"; }
s3_put() {
    local body
    body=$(mktemp) && cat >"$body" && s3_curl "$body" -X PUT --data-binary "@$body" "$S3_ENDPOINT/$1/$2" >/dev/null
    local rc=$?
    rm -f "$body"
    return $rc
}
s3_rm() { s3_curl "" -X DELETE "$S3_ENDPOINT/$1/$2" >/dev/null; }
s3_keys() {
    s3_curl "" "$S3_ENDPOINT/$1?list-type=2&prefix=${2//\//%2F}" | grep -o '<Key>[^<]*</Key>' | sed 's/<Key>\(.*\)<\/Key>/\1/'
}
