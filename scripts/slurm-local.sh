#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing `saal experiment --launcher slurm` against a real
# scheduler (tests/test_experiments_slurm_cluster.py):
#
#   scripts/slurm-local.sh start           # munged, MariaDB, slurmdbd, slurmctld, slurmd on localhost
#   eval "$(scripts/slurm-local.sh env)"   # SLURM_CONF (for sbatch, squeue, sacct ...) and SAAL_SLURM (the test)
#   scripts/slurm-local.sh status          # sinfo of the cluster, or why it is not running
#   scripts/slurm-local.sh stop            # cancels its jobs, stops its daemons, deletes its folder
#   scripts/slurm-local.sh packages        # the Debian packages it needs (for apt-get install)
#
# Everything lives in one temporary folder, $SAAL_SLURM_DIR (default /tmp/saal-slurm): the munge key and
# socket, slurm.conf and slurmdbd.conf, the database, the daemons' state, spool, logs and pid files. Nothing
# is written to /etc or /var, no system service is started or stopped, and the daemons talk over 127.0.0.1
# only, on ports $SAAL_SLURM_PORT..+3 (default 16817-16820, not Slurm's own 6817-6819, so that a system Slurm
# keeps its ports). MariaDB and slurmd listen on 127.0.0.1; slurmctld and slurmdbd (Slurm 22.05 cannot bind
# them) listen on every interface, but answer only messages signed with this cluster's own munge key.
# Needs root (slurmd starts job steps as the submitting user; here every daemon runs as root) and the Debian
# packages: apt-get install --no-install-recommends slurmctld slurmd slurm-client
# slurmdbd munge mariadb-server-core mariadb-client-core (the -core packages: the database programs without a
# system service).
#
# Choices, and why:
# - Accounting: slurmdbd on a private MariaDB server, i.e. what a real cluster runs, so that plain `sacct`
#   (which submitit and the launcher call) answers as it does there. The text-file alternative
#   (accounting_storage/none + jobcomp/filetxt, read with `sacct --completion`) was tried first and is not
#   enough: without slurmdbd, plain sacct fails ("Slurm accounting storage is disabled"), and Slurm 22.05's
#   `sacct --completion` does not understand the ArrayJobId/ArrayTaskId fields of its own completion file, so
#   it reports a cancelled array task under the array's id, as if the whole array had been cancelled.
#   The price is one more daemon and database initialisation: a few seconds.
# - No cgroups: proctrack/linuxproc (a job's processes are found through their parent pids in /proc),
#   task/none and jobacct_gather/none. A sandbox or container often cannot create cgroups, and one node
#   with a handful of test jobs needs no confinement; linuxproc still finds every process a job started
#   (proctrack/pgid would lose those that start their own process group), so scancel ends the whole job.
# - Stop ends only what this script started: the pids in its own pid files, each only while that process
#   is the expected program and was started with this folder's files (a reused pid is left alone). Jobs
#   are cancelled through this cluster's own scancel before its slurmd stops.
set -euo pipefail

DIR="${SAAL_SLURM_DIR:-/tmp/saal-slurm}"
DIR="${DIR%/}"
MARKER="$DIR/.saal-slurm-local"   # only a folder holding this file is ever deleted
CONF="$DIR/slurm.conf"
BASE_PORT="${SAAL_SLURM_PORT:-16817}"
CTLD_PORT=$BASE_PORT
SLURMD_PORT=$((BASE_PORT + 1))
DBD_PORT=$((BASE_PORT + 2))
DB_PORT=$((BASE_PORT + 3))
CLUSTER=saal-local
PARTITION=debug
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server-core mariadb-client-core"
export PATH="$PATH:/usr/sbin:/sbin"

die() { echo "slurm-local: $*" >&2; exit 1; }
say() { echo "slurm-local: $*" >&2; }

# The pid in a pid file, when that process is alive, runs the expected program and was started with this
# folder's files (its command line, or for slurmdbd its SLURM_CONF, names the folder); fails otherwise.
our_pid() {
  local pidfile=$1 program=$2 pid cmdline environ
  [[ -s $pidfile ]] || return 1
  pid=$(tr -dc 0-9 < "$pidfile")
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline")
  environ=$(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -x "SLURM_CONF=$CONF" || true)
  [[ $cmdline == *"$program"* && ($cmdline == *"$DIR/"* || -n $environ) ]] || return 1
  echo "$pid"
}

# Stop daemons through their pid files (arguments: program pidfile program pidfile ...), all at once:
# SIGTERM, then SIGKILL for those still there after 20 s.
stop_daemons() {
  local pids=() pid
  while (($#)); do
    pid=$(our_pid "$2" "$1") && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    shift 2
  done
  local alive
  for _ in $(seq 200); do
    alive=0
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    ((alive)) || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid ignored SIGTERM for 20 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS COMMAND...: run the command (10 s at most) every 0.2 s until it succeeds; fails after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until timeout 10 "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

show_logs() {
  local log
  for log in "$DIR"/log/*.log; do
    [[ -f $log ]] && { echo "--- $log (last lines)"; tail -n 15 "$log"; } >&2
  done
  return 0
}

# Give up starting: show the logs, stop what did start, and say why.
fail() {
  show_logs
  cmd_stop >/dev/null 2>&1 || true
  die "$*"
}

cmd_start() {
  [[ $(id -u) == 0 ]] || die "needs root (slurmd starts job steps as their user, and here every daemon runs as root)"
  local missing=() program port
  for program in munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sbatch squeue sinfo sacct \
                 sacctmgr scancel scontrol; do
    command -v "$program" >/dev/null 2>&1 || missing+=("$program")
  done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}: apt-get install --no-install-recommends $PACKAGES"
  compgen -G "/usr/lib/*/slurm-wlm/accounting_storage_mysql.so" >/dev/null \
    || die "slurmdbd's MySQL plugin is missing: apt-get install --no-install-recommends slurm-wlm-mysql-plugin"
  if our_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null || our_pid "$DIR/run/munged.pid" munged >/dev/null; then
    die "already running from $DIR ('$0 stop' first)"
  fi
  for port in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
    ! port_busy "$port" || die "port $port is in use on this machine; choose others with SAAL_SLURM_PORT=N (N to N+3)"
  done
  if [[ -e $DIR ]]; then
    [[ -f $MARKER ]] || die "$DIR exists and was not made by this script; choose another SAAL_SLURM_DIR"
    rm -rf "$DIR"
  fi
  local started=$SECONDS host
  host=$(hostname -s)
  # munged wants its key private and the folders above its socket open to every user (clients of any user).
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  touch "$MARKER"
  mkdir -p "$DIR/key" "$DIR/munge" "$DIR/run" "$DIR/log" "$DIR/state" "$DIR/spool" "$DIR/db"
  chmod 700 "$DIR/key" "$DIR/db"
  chmod 755 "$DIR/munge"

  # munge: a fresh key and a socket of its own (a system munged, if any, is neither used nor touched).
  head -c 1024 /dev/urandom > "$DIR/key/munge.key"
  chmod 400 "$DIR/key/munge.key"
  munged --key-file="$DIR/key/munge.key" --socket="$DIR/munge/munge.socket" --pid-file="$DIR/run/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/key/munged.seed" || fail "munged did not start"
  wait_for 10 test -S "$DIR/munge/munge.socket" || fail "munged made no socket in 10 s"

  # MariaDB for slurmdbd: a new database folder, TCP on 127.0.0.1 only, one password user for slurmdbd.
  local password
  password=$(head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9)
  timeout 120 mariadb-install-db --no-defaults --user=root --datadir="$DIR/db" --skip-test-db \
    --auth-root-authentication-method=socket > "$DIR/log/mariadb-install.log" 2>&1 \
    || fail "mariadb-install-db failed (log: $DIR/log/mariadb-install.log)"
  setsid mariadbd --no-defaults --user=root --datadir="$DIR/db" --socket="$DIR/run/mariadb.sock" \
    --pid-file="$DIR/run/mariadbd.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
    --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=64M < /dev/null > /dev/null 2>&1 &
  wait_for 60 mariadb --no-defaults --socket="$DIR/run/mariadb.sock" -e "select 1" \
    || fail "MariaDB did not answer in 60 s"
  timeout 60 mariadb --no-defaults --socket="$DIR/run/mariadb.sock" -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || fail "could not create slurmdbd's database user"

  # This machine's CPUs and memory as slurmd measures them, under this host's short name.
  local node_line
  node_line=$(timeout 30 slurmd -C | head -n 1 | sed -e "s/^NodeName=[^ ]*/NodeName=$host/")
  [[ $node_line == NodeName=*CPUs=* ]] || fail "slurmd -C did not describe this machine: $node_line"

  cat > "$DIR/slurmdbd.conf" <<EOF
# Written by scripts/slurm-local.sh; deleted by '$0 stop'.
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/slurmdbd.conf"

  cat > "$CONF" <<EOF
# Written by scripts/slurm-local.sh: a one-node test cluster on localhost; deleted by '$0 stop'.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
# slurmd listens on its NodeAddr (127.0.0.1), not on every interface.
CommunicationParameters=NoInAddrAny
# No cgroups (see the script's header).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# Accounting through slurmdbd (see the script's header).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# For slurmdbd connections this is the munge socket, which AuthInfo does not set for them.
AccountingStoragePass=$DIR/munge/munge.socket
# One CPU per job unless asked otherwise; memory is not a consumable (jobs without --mem share the node).
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Quick turnaround: 1 s from a cancelled job's SIGTERM to its SIGKILL (Slurm's default: 30 s; srun adds its own
# few seconds).
KillWait=1
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

  # slurmdbd reads slurmdbd.conf from the folder of $SLURM_CONF.
  export SLURM_CONF="$CONF"
  slurmdbd || fail "slurmdbd did not start"
  wait_for 60 sacctmgr -n list cluster || fail "slurmdbd did not answer in 60 s"
  timeout 60 sacctmgr -i add cluster "$CLUSTER" > /dev/null || fail "sacctmgr could not add the cluster $CLUSTER"
  slurmctld -f "$CONF" || fail "slurmctld did not start"
  slurmd -f "$CONF" || fail "slurmd did not start"
  wait_for 60 sh -c "sinfo -h -n '$host' -o %T | grep -Eq '^(idle|mixed|allocated)'" \
    || fail "the node did not come up in 60 s"
  say "started in $((SECONDS - started)) s: one node ($host) from $DIR; use it with: eval \"\$($0 env)\""
  cmd_env
}

cmd_env() {
  [[ -f $CONF ]] || die "not started ($CONF is missing)"
  echo "export SLURM_CONF=$CONF"
  echo "export SAAL_SLURM=$CONF"
}

cmd_status() {
  our_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null || die "not running (no slurmctld started from $DIR)"
  SLURM_CONF="$CONF" sinfo
}

cmd_stop() {
  [[ -e $DIR ]] || { say "nothing to stop: no $DIR"; return 0; }
  [[ -f $MARKER ]] || { say "nothing to stop: $DIR was not made by this script"; return 0; }
  if our_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null && our_pid "$DIR/run/slurmd.pid" slurmd >/dev/null; then
    # Cancel every job first (job steps outlive slurmd by design); a step is over once its socket in the
    # spool folder is gone.
    SLURM_CONF="$CONF" scancel --full --partition="$PARTITION" >/dev/null 2>&1 || true
    wait_for 30 sh -c "! ls '$DIR/spool' | grep -q '_[0-9]'" \
      || say "job steps still running after 30 s: $(ls "$DIR/spool" | tr '\n' ' ')"
  fi
  # slurmctld and slurmd first, while the accounting they report to and munged are still there; the folder
  # is deleted afterwards, so nothing of the rest needs an orderly goodbye.
  stop_daemons slurmd "$DIR/run/slurmd.pid" slurmctld "$DIR/run/slurmctld.pid"
  stop_daemons slurmdbd "$DIR/run/slurmdbd.pid" mariadbd "$DIR/run/mariadbd.pid" munged "$DIR/run/munged.pid"
  rm -rf "$DIR"
  say "stopped; $DIR deleted"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  packages) echo "$PACKAGES" ;;
  *) echo "usage: $0 start|stop|status|env|packages" \
          "(a one-node Slurm on localhost in \$SAAL_SLURM_DIR, default /tmp/saal-slurm)" >&2
     exit 2 ;;
esac
