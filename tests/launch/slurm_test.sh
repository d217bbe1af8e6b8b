#!/usr/bin/env bash
# examples/slurm/ on a real Slurm: this test starts munged, slurmctld and two slurmd (nodes
# slurm1 and slurm2, 4 CPUs each, both on this machine: Debian's slurmd runs several per host,
# each on its own port) from a temporary slurm.conf, and submits with sbatch:
#   1. pangea.sbatch, a tiny 4-node run (2 per Slurm node): all nodes end bit-identical, the
#      job's secret is fresh and mode 600, and its coordinator address is gone once it ends
#   2. the same, with one node's job step cancelled mid-run (scancel JOB.STEP): the other three
#      finish bit-identical, and the job fails naming the lost node
#   3. the same, with joiners.sbatch (a job array of one) submitted mid-run: it joins as node 4,
#      recovers the state live and ends bit-identical with the four
# Every process it started is stopped at the end, failed or not. Needs root (slurmd, SlurmUser
# root) and the packages slurm-wlm and munge.
#   slurm_test.sh <pangea binary> <source root>
set -uo pipefail
pangea=$(realpath "$1") root=$(realpath "$2")
if [[ $(id -u) -ne 0 ]]; then
    echo "skipped: needs root (slurmd runs as root, and the test's slurm.conf has SlurmUser=root)"
    exit 77
fi
for tool in munged slurmctld slurmd sbatch scontrol squeue sinfo scancel; do
    command -v "$tool" >/dev/null || { echo "skipped: $tool is not installed (apt-get install slurm-wlm munge)"; exit 77; }
done
source "$root/tests/lib/expect.sh"
source "$root/tests/lib/tiny_run.sh"
unset "${!SLURM_@}"  # if this runs inside a Slurm job, none of its settings leak into ours
work=$(mktemp -d)
chmod 755 "$work"  # munged wants its socket's directory reachable by everyone
conf=$work/slurm.conf
# Every Slurm command runs with SLURM_CONF; so does everything the test starts (daemons, steps,
# jobs inherit it), which is how the cleanup finds them all, and this shell itself does not.
sl() { SLURM_CONF=$conf "$@"; }
ours() { grep -lasF "SLURM_CONF=$conf" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; }
daemons=()
cleanup() {
    sl timeout 10 scancel --user=root 2>/dev/null
    for _ in {1..100}; do [[ -z $(sl timeout 5 squeue -h 2>/dev/null) ]] && break; sleep 0.1; done
    [[ ${#daemons[@]} -gt 0 ]] && kill "${daemons[@]}" 2>/dev/null
    for _ in {1..150}; do [[ -z $(ours) ]] && break; sleep 0.1; done
    local left
    left=$(ours)
    # shellcheck disable=SC2086
    [[ -n $left ]] && { echo "killing what is left: ${left//$'\n'/ }"; kill -9 $left 2>/dev/null; }
    [[ -n ${KEEP:-} ]] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# Ports: five in a random block below the ephemeral range, none of them listening now.
for _ in {1..20}; do
    base=$((20000 + RANDOM % 12000))
    ss -Htan | awk '{print $4}' | grep -qE ":($base|$((base + 1))|$((base + 2))|$((base + 3))|$((base + 4))|$((base + 5)))\$" || break
done
host=$(hostname)

# munge with a key of its own, on a socket of its own.
mkdir -m 700 "$work/munge-key"
head -c 1024 /dev/urandom >"$work/munge-key/munge.key" && chmod 600 "$work/munge-key/munge.key"
mkdir -m 755 "$work/munge"
SLURM_CONF=$conf munged -F --socket="$work/munge/socket" --key-file="$work/munge-key/munge.key" --pid-file="$work/munge/pid" \
    --seed-file="$work/munge/seed" --log-file="$work/munge/log" >>"$work/munge/log" 2>&1 &
daemons+=($!)

mkdir -p "$work/state" "$work/spool"
cat >"$conf" <<CONF
ClusterName=pangea-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$base
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool/%n
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/spool/slurmd-%n.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/spool/slurmd-%n.log
# No cgroups: processes are tracked through /proc, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# The nodes have the CPUs written here, not the two this machine has.
SlurmdParameters=config_overrides
ReturnToService=2
NodeName=slurm1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((base + 1)) CPUs=4 State=UNKNOWN
NodeName=slurm2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((base + 2)) CPUs=4 State=UNKNOWN
PartitionName=test Nodes=slurm1,slurm2 Default=YES MaxTime=INFINITE State=UP
CONF
for _ in {1..100}; do [[ -S $work/munge/socket ]] && break; sleep 0.1; done
SLURM_CONF=$conf slurmctld -D >"$work/slurmctld.out" 2>&1 &
daemons+=($!)
for node in slurm1 slurm2; do
    SLURM_CONF=$conf slurmd -D -N "$node" >"$work/slurmd-$node.out" 2>&1 &
    daemons+=($!)
done
diagnose_slurm() {
    for log in "$work/slurmctld.log" "$work"/spool/slurmd-*.log "$work/munge/log"; do
        echo "    $(basename "$log"): $(tail -3 "$log" 2>/dev/null | tr '\n' '|')"
    done
}
idle() { [[ $(sl sinfo -h -N -o '%N %t' 2>/dev/null | grep -c ' idle$') -eq 2 ]]; }
wait_for 60 idle || { diagnose_slurm; exit 1; }
echo "ok: Slurm is up: nodes slurm1 and slurm2 idle (ports $base-$((base + 2)))"

field() { [[ -n $1 ]] && sl scontrol show job "$1" -o 2>/dev/null | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2; }
ended() { [[ $(field "$1" JobState) =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)$ ]]; }
# wait_job <seconds> <job>: until the job has ended; then says how, or what was going on.
wait_job() {
    if wait_for "$1" ended "$2"; then
        echo "job $2: $(field "$2" JobState), exit code $(field "$2" ExitCode)"
    else
        expect_fail "job $2 ended within $1 s (state $(field "$2" JobState))"
        diagnose_job "$2"
        return 1
    fi
}
diagnose_job() {
    echo "    job output: $(tail -5 "$work/job-$1.out" 2>/dev/null | tr '\n' '|')"
    for log in "$work/pangea-job-$1"/*.log; do echo "    $(basename "$log"): $(tail -2 "$log" | tr '\n' '|')"; done
    diagnose_slurm
}
# submit <case> <outer steps> [sbatch arguments]: writes the case's manifest, submits
# pangea.sbatch with it (its run.dir given as an argument that pangea.sbatch passes on), prints
# the job id. Each case has its own coordinator port.
submit() {
    local case=$1 steps=$2; shift 2
    tiny_run_manifest "$work/case$case.toml" "slurm-case-$case" "$case" 4 "$steps" \
        "heartbeat_ms = 500
timeout_ms = 2000"
    (cd "$work" && PANGEA_BIN=$pangea PANGEA_COORDINATOR_PORT=$((base + 2 + case)) sl sbatch --parsable \
        --output="$work/job-%j.out" "$@" "$root/examples/slurm/pangea.sbatch" "$work/case$case.toml" \
        --set run.dir="$work/run$case")
}
# committed <case> <job> <step>: node 0 committed the step (or the job ended: waiting is over).
committed() { grep -q "\"outer_step\":$3," "$work/run$1/metrics/node-0.jsonl" 2>/dev/null || ended "$2"; }
hashes() {  # the distinct final parameters of the nodes named: prints how many
    local run=$1; shift
    for i in "$@"; do json_field "$run/summary/node-$i.json" params_hash; done | sort -u | grep -c .
}
# Every outer step: each node that committed it holds the same parameters.
steps_agree() {
    test "$(grep -ho '"outer_step":[0-9]*,.*"params_hash":"[0-9a-f]*"' "$1"/metrics/node-*.jsonl |
        sed -E 's/"outer_step":([0-9]+),.*"params_hash":"([0-9a-f]+)"/\1 \2/' | sort -u | cut -d' ' -f1 | uniq -d | wc -l)" -eq 0
}
no_secretless_warning() { ! grep -q "the run has no secret" "$1"/*.log; }

# 1. A whole run.
job=$(submit 1 10) || { expect_fail "sbatch pangea.sbatch"; diagnose_slurm; exit 1; }
wait_job 240 "$job"
dir=$work/pangea-job-$job
expect_equal "the job completes" "COMPLETED 0:0" "$(field "$job" JobState) $(field "$job" ExitCode)"
expect "the job says all nodes finished" 0 "pangea.sbatch: all 4 nodes finished" -- cat "$work/job-$job.out"
expect "nodes 0-3 run on the hosts Slurm gave tasks 0-3" 0 "run on slurm1 slurm1 slurm2 slurm2" -- cat "$work/job-$job.out"
expect_equal "the four nodes hold bit-identical parameters" 1 "$(hashes "$work/run1" 0 1 2 3)"
expect_rc "every outer step agrees across the nodes" 0 -- steps_agree "$work/run1"
expect_equal "the job's secret is 32 random bytes in hex, mode 600" "600 64" "$(stat -c '%a %s' "$dir/secret")"
expect_rc "nodes and coordinator used it" 0 -- no_secretless_warning "$dir"
expect_rc "the coordinator's address is gone once the job ended" 1 -- test -e "$dir/coordinator"
expect_rc "the coordinator stopped" 1 -- pgrep -f -- "--address-file $dir/"
first_dir=$dir

# 2. scancel of one node's step mid-run.
job=$(submit 2 30) || { expect_fail "sbatch pangea.sbatch"; exit 1; }
dir=$work/pangea-job-$job
if wait_for 120 committed 2 "$job" 3 && ! ended "$job"; then
    step=$(sl squeue -h -s -j "$job" -o '%i %j' | awk '$2 == "pangea-node-2" {print $1}')
    expect_rc "node 2 is a job step of its own ($step)" 0 -- test -n "$step"
    sl scancel "$step"
fi
wait_job 240 "$job"
expect_equal "the job fails" FAILED "$(field "$job" JobState)"
expect "the job reports the lost node" 0 "pangea.sbatch: lost nodes: 2 (of 4)" -- cat "$work/job-$job.out"
expect_rc "the job has a secret of its own" 1 -- cmp -s "$dir/secret" "$first_dir/secret"
expect "the coordinator dropped node 2" 0 "dropped node 2" -- cat "$dir/coordinator.log"
expect_rc "node 2 has no summary (it did not finish)" 1 -- test -e "$work/run2/summary/node-2.json"
expect "nodes 0, 1 and 3 went on as three" 0 '"members":3' -- tail -1 "$work/run2/metrics/node-0.jsonl"
expect "and reached the last outer step" 0 '"outer_step":30,' -- tail -1 "$work/run2/metrics/node-3.jsonl"
expect_equal "the three hold bit-identical parameters" 1 "$(hashes "$work/run2" 0 1 3)"
expect_rc "every outer step agrees across the nodes" 0 -- steps_agree "$work/run2"

# 3. A joiner from joiners.sbatch, submitted mid-run.
job=$(submit 3 60) || { expect_fail "sbatch pangea.sbatch"; exit 1; }
dir=$work/pangea-job-$job
joiner=
if wait_for 120 committed 3 "$job" 2 && ! ended "$job"; then
    joiner=$(cd "$work" && PANGEA_BIN=$pangea sl sbatch --parsable --array=0 --dependency="after:$job" \
        --output="$work/joiner-%A_%a.out" "$root/examples/slurm/joiners.sbatch" "$job" --set run.dir="$work/run3")
fi
wait_job 240 "$job"
[[ -n $joiner ]] && wait_job 120 "$joiner"
expect_equal "the main job completes" "COMPLETED 0:0" "$(field "$job" JobState) $(field "$job" ExitCode)"
expect_equal "the joiner's job completes" "COMPLETED 0:0" "$(field "$joiner" JobState) $(field "$joiner" ExitCode)"
expect "the joiner is node 4 (offset: the main job's 4 nodes)" 0 "node 4 joins the run of $dir" -- cat "$work/joiner-${joiner}_0.out"
expect "node 4 recovers the state live" 0 "recovered the state of outer step" -- cat "$dir/node-4.log"
expect "node 4 takes part in outer steps with the four" 0 '"members":5' -- tail -1 "$work/run3/metrics/node-4.jsonl"
expect_equal "the five hold bit-identical parameters" 1 "$(hashes "$work/run3" 0 1 2 3 4)"
expect_rc "every outer step agrees across the nodes" 0 -- steps_agree "$work/run3"
expect_rc "the joiner used the job's secret" 0 -- no_secretless_warning "$dir"
expect_summary || { diagnose_job "$job"; exit 1; }
