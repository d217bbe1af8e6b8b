#!/usr/bin/env bash
# The etcd backend against an etcd secured as its security guide says, with TLS (a CA made here by
# openssl): first with client certificates required, then with auth on (a user whose role may
# touch /pangea/ only; tokens that expire after 2 s unused). Each missing or wrong piece of the
# setup is an error naming the setting that fixes it; three nodes train to bit-identical
# parameters with the coordinator on the port its setting gives; `pangea etcd show|runs|clear`
# show the run's keys and clear them, refusing while nodes are registered.
#   etcd_secure_test.sh <pangea binary>
set -uo pipefail
pangea=$(realpath "$1")
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/expect.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../../lib/tiny_run.sh"
if ! command -v etcd >/dev/null || ! command -v openssl >/dev/null; then
    echo "skipped: etcd or openssl is not installed (apt-get install etcd-server openssl)"
    exit 77
fi
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cd "$work" || exit 1

# A CA, etcd's certificate for 127.0.0.1, and a client certificate.
openssl_quiet() { openssl "$@" >/dev/null 2>&1 || { echo "FAIL: openssl $*"; exit 1; }; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=pangea test CA"
openssl_quiet req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=another CA"
for name in server client; do
    openssl_quiet req -newkey rsa:2048 -nodes -keyout $name.key -out $name.csr -subj "/CN=pangea-$name"
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >$name.ext
    openssl_quiet x509 -req -in $name.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $name.pem -days 2 -extfile $name.ext
done

port=$((20000 + RANDOM % 6000 * 2))
endpoint=https://127.0.0.1:$port
coordinator_port=$((port + 3000))
printf 's3cret\n' >pangea.pw && chmod 600 pangea.pw
printf 'wrong\n' >wrong.pw && chmod 600 wrong.pw
printf 'outside\n' >outsider.pw && chmod 600 outsider.pw
printf 'run secret\n' >run.secret && chmod 600 run.secret
# etcd on $endpoint with TLS and the arguments given; returns once it answers.
start_etcd() {
    etcd --data-dir "$work/etcd" --listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
        --listen-peer-urls "http://127.0.0.1:$((port + 1))" --cert-file server.pem --key-file server.key \
        "$@" >"$work/etcd.log" 2>&1 &
    etcd_pid=$!
    wait_for 30 etcd_answers || { tail -5 "$work/etcd.log"; exit 1; }
}
etcd_answers() { as_admin /v3/kv/range '{"key":"AA=="}' >/dev/null 2>&1; }
as_admin() {  # path, JSON body: a call of etcd's JSON gateway (with the client certificate, root's token)
    curl -sS --cacert ca.pem ${client_cert:+--cert client.pem --key client.key} ${token:+-H "Authorization: $token"} \
        -X POST "$endpoint$1" -d "$2"
}
manifest() {  # the [mesh] lines beyond the endpoints
    tiny_run_manifest run.toml secure-etcd 5 3 4 "backend = \"etcd\"
etcd = \"https://127.0.0.1:1, $endpoint\"
etcd_ca_file = \"$work/ca.pem\"
coordinator_port = $coordinator_port
secret_file = \"$work/run.secret\"
ring_order = \"rank\"
min_members = 3
$1"
}
show() { "$pangea" etcd show run.toml "$@"; }

# 1. Client certificates required (--client-cert-auth). Each missing or wrong piece is named.
# (The first endpoint listed refuses connections: the second is tried.)
client_cert=1
start_etcd --trusted-ca-file ca.pem --client-cert-auth
manifest "etcd_cert_file = \"$work/client.pem\"
etcd_key_file = \"$work/client.key\""
expect "no CA: etcd's certificate is not trusted" 1 "etcd_ca_file" -- show --set mesh.etcd_ca_file=
expect "another CA" 1 "the CA that signed etcd's certificate?" -- show --set mesh.etcd_ca_file="$work/other-ca.pem"
expect "no client certificate" 1 "client certificate" -- show --set mesh.etcd_cert_file= --set mesh.etcd_key_file=
expect "a certificate without its key" 1 "etcd_key_file" -- show --set mesh.etcd_key_file=
expect "TLS files with an http:// endpoint" 1 "which is not https://" -- show --set mesh.etcd=http://127.0.0.1:$port
expect "with its certificate, pangea reaches etcd" 0 "nothing: no node of this run is registered" -- show
kill "$etcd_pid"; wait "$etcd_pid" 2>/dev/null

# 2. Auth on, no client certificates (etcd's JSON gateway takes none together with auth; and
# etcd asks for one whenever it has --trusted-ca-file): users root
# (etcd needs it to turn auth on), pangea (read-write on /pangea/), outsider (no role); tokens
# that expire after 2 s unused.
client_cert=
start_etcd --auth-token simple --auth-token-ttl 2
b64() { printf '%s' "$1" | base64; }
as_admin /v3/auth/user/add '{"name":"root","password":"root-pw"}' >/dev/null
as_admin /v3/auth/role/add '{"name":"root"}' >/dev/null
as_admin /v3/auth/user/grant '{"user":"root","role":"root"}' >/dev/null
as_admin /v3/auth/role/add '{"name":"pangea"}' >/dev/null
as_admin /v3/auth/role/grant "{\"name\":\"pangea\",\"perm\":{\"permType\":\"READWRITE\",\"key\":\"$(b64 /pangea/)\",\"range_end\":\"$(b64 /pangea0)\"}}" >/dev/null
as_admin /v3/auth/user/add '{"name":"pangea","password":"s3cret"}' >/dev/null
as_admin /v3/auth/user/grant '{"user":"pangea","role":"pangea"}' >/dev/null
as_admin /v3/auth/user/add '{"name":"outsider","password":"outside"}' >/dev/null
expect "auth turns on" 0 '"header"' -- as_admin /v3/auth/enable '{}'
manifest "etcd_user = \"pangea\"
etcd_password_file = \"$work/pangea.pw\""
expect "no user" 1 "set [mesh] etcd_user and etcd_password_file" -- show --set mesh.etcd_user= --set mesh.etcd_password_file=
expect "a wrong password" 1 "with the password of [mesh] etcd_password_file" -- show --set mesh.etcd_password_file="$work/wrong.pw"
expect "a user without a role on /pangea/" 1 "needs a role that may read and write the keys under /pangea/" -- \
    show --set mesh.etcd_user=outsider --set mesh.etcd_password_file="$work/outsider.pw"
expect "a password file that is not there" 1 "[mesh] etcd_password_file $work/none cannot be read" -- \
    show --set mesh.etcd_password_file="$work/none"
expect "nothing of the run yet" 0 "nothing: no node of this run is registered" -- show

# Three nodes train through it, the first endpoint listed refusing connections. Nodes 0 and 1
# first: with min_members = 3 they stay registered, waiting for node 2, while clear is tried
# (a run already over would let it through).
start_node() {
    "$pangea" run run.toml --node-id "$1" --set run.dir="$work/run" --set diloco.outer_steps=12 >"node-$1.log" 2>&1 &
    pids[$1]=$!
}
start_node 0
start_node 1
registered() { show 2>/dev/null | grep -c '^  node ' | grep -qx 2 && show 2>/dev/null | grep -q 'coordinator  at'; }
wait_for 60 registered && expect_pass "two nodes and the coordinator are registered"
expect "the coordinator listens on coordinator_port" 0 "coordinator  at 127.0.0.1:$coordinator_port" -- show
expect "clear is refused while nodes are registered" 1 "still has nodes registered in etcd (0 1)" -- \
    "$pangea" etcd clear run.toml
start_node 2
for i in 0 1 2; do
    wait_exit 300 "${pids[$i]}"
    expect_equal "node $i finishes" 0 $?
done
hash0=$(json_field run/summary/node-0.json params_hash)
for i in 1 2; do
    expect_equal "node $i ends with node 0's parameters" "$hash0" "$(json_field run/summary/node-$i.json params_hash)"
done
if grep -q "invalid auth token" node-*.log; then
    expect_fail "an expired token reached the log instead of a new login: $(grep -h 'invalid auth token' node-*.log | head -1)"
fi

# What is left: the last commit (no lease); runs lists it; clear removes it.
expect "show gives the last commit" 0 "last commit  epoch" -- show
expect "at the last step" 0 "step 12, members 0 1 2" -- show
run_id=$(show | head -1 | cut -d' ' -f2)
expect "runs lists it" 0 "$run_id  0 nodes registered, last commit: epoch" -- "$pangea" etcd runs run.toml
expect "clear deletes its keys" 0 "deleted 1 key of run $run_id (secure-etcd)" -- "$pangea" etcd clear run.toml
expect "nothing is left" 0 "nothing: no node of this run is registered" -- show
expect_summary
