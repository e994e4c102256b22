#!/usr/bin/env bash
# start-local-slurm.sh - (part of the iql toolkit; used by CI and by users who want to try SLURM locally) install (if needed) and start a real single-node Slurm cluster
# (munged + slurmctld + slurmd from the Debian 12 packages) on a machine WITHOUT systemd and
# without usable cgroups (containers / microVMs). Must run as root.
#
# Idempotent: packages are only installed when missing, config files are only rewritten when
# their content changes (the affected daemons are then restarted), daemons that are already
# running are left alone. Waits until `sinfo` reports the node idle; exits non-zero with a
# message (and log tails) otherwise.
#
# Knobs (environment variables):
#   SLURM_START_TIMEOUT     seconds to wait for the node to become idle       (default 60)
#   SLURM_NODE_CPUS         CPUs to advertise; > nproc oversubscribes          (default: nproc)
#   SLURM_NODE_MEM_MB       RealMemory in MB       (default: 90% of MemTotal, rounded to 512)
#   SLURM_CRED_EXPIRE       AuthInfo cred_expire = delay before a requeued job may start
#                           again (Slurm's default is 120 s)                    (default 10)
#   SLURM_KILL_WAIT         seconds between SIGTERM and SIGKILL (cancel/requeue/time limit)
#                           (Slurm's default is 30)                             (default 5)
#   SLURM_WITH_ACCOUNTING=1 also install/start MariaDB + slurmdbd so that `sacct` works
#                           (submitit uses sacct to notice jobs that died without a result)
#   SLURM_DB_PORT           TCP port (127.0.0.1) of that MariaDB                (default 3307)
#   SLURM_SKIP_INSTALL=1    never call apt-get (fail if packages are missing)
# Stop everything with stop-local-slurm.sh (by the PIDs in the daemons' pid files).
set -euo pipefail

log() { echo "[start-local-slurm] $*"; }
die() { echo "[start-local-slurm] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must be run as root"

CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
DBD_PID=/run/slurmdbd.pid
MUNGE_PID=/run/munge/munged.pid
MUNGE_SOCK=/run/munge/munge.socket.2
DB_DIR=/var/lib/slurm/mariadb          # MariaDB data dir used only for Slurm accounting
DB_PID=$DB_DIR/mariadbd.pid
DB_SOCK=$DB_DIR/mariadbd.sock
DB_PORT=${SLURM_DB_PORT:-3307}
ACCT=${SLURM_WITH_ACCOUNTING:-0}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
PKGS=(munge slurmctld slurmd slurm-client)
[ "$ACCT" = 1 ] && PKGS+=(slurmdbd mariadb-server)

# --- helpers ---------------------------------------------------------------------------
# pid_alive PIDFILE COMM: print the pid and succeed if PIDFILE names a live process whose
# /proc/PID/comm is COMM (guards against stale pid files and recycled pids)
pid_alive() {
  local f=$1 comm=$2 pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc '0-9' < "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm")" = "$comm" ] || return 1
  echo "$pid"
}

wait_for() { # wait_for SECONDS CMD... : retry CMD every 0.5 s
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.5
  done
}

stop_pid() { # stop_pid PIDFILE COMM
  local pid
  pid=$(pid_alive "$1" "$2") || return 0
  log "stopping $2 (pid $pid) to apply the new config"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do [ -d "/proc/$pid" ] || return 0; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
}

write_if_changed() { # write_if_changed FILE CONTENT MODE OWNER -> 0 if (re)written
  local f=$1 content=$2
  if [ -f "$f" ] && [ "$(cat "$f")" = "$content" ]; then return 1; fi
  [ -f "$f" ] && cp -p "$f" "$f.bak"
  printf '%s\n' "$content" > "$f"
  chmod "$3" "$f"; chown "$4" "$f"
  log "wrote $f"
}

show_logs() {
  echo "----- sinfo -R" >&2; sinfo -R >&2 2>&1 || true
  for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/slurm/slurmdbd.log \
           /var/log/munge/munged.log "$DB_DIR/error.log"; do
    [ -f "$f" ] && { echo "----- tail $f" >&2; tail -n 15 "$f" >&2; }
  done
}

# --- 1. packages -----------------------------------------------------------------------
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "${SLURM_SKIP_INSTALL:-0}" = 1 ] && die "missing packages: ${missing[*]} (SLURM_SKIP_INSTALL=1)"
  command -v apt-get >/dev/null || die "apt-get not found; this script targets Debian/Ubuntu"
  log "installing ${missing[*]} ..."
  t0=$SECONDS
  # keep the packages' maintainer scripts from starting daemons through init scripts
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  rc=0; apt_log=$(mktemp -t start-local-slurm.apt.XXXXXX)
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    > "$apt_log" 2>&1 || rc=$?
  [ $added_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  if [ $rc != 0 ]; then
    tail -n 20 "$apt_log" >&2
    die "apt-get failed (rc=$rc), full log in $apt_log"
  fi
  log "packages installed in $((SECONDS - t0)) s"
fi
for b in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sinfo; do
  [ -x "$b" ] || die "$b not found after install"
done

# --- 2. configuration --------------------------------------------------------------------
NODE=$(hostname -s)
[ -n "$NODE" ] || die "empty hostname"
CPUS=${SLURM_NODE_CPUS:-$(nproc)}
if [ -n "${SLURM_NODE_MEM_MB:-}" ]; then
  MEM=$SLURM_NODE_MEM_MB
else
  # 90% of MemTotal rounded down to 512 MB: stable between runs (MemAvailable fluctuates and
  # would make the config "change", and the daemons restart, on every invocation)
  MEM=$(awk '/^MemTotal:/ {printf "%d", int($2 / 1024 * 0.9 / 512) * 512}' /proc/meminfo)
fi
[ "${MEM:-0}" -gt 100 ] || die "could not determine memory (got '$MEM')"
EXTRA=""
# advertising more CPUs than the hardware has requires slurmd to trust the config
[ "$CPUS" -gt "$(nproc)" ] && EXTRA="SlurmdParameters=config_overrides"
if [ "$ACCT" = 1 ]; then
  ACCT_CONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
else
  ACCT_CONF="AccountingStorageType=accounting_storage/none"
fi

slurm_conf=$(cat <<EOF
# Generated by start-local-slurm.sh: single node, no cgroups, no systemd.
ClusterName=localci
SlurmctldHost=${NODE}(127.0.0.1)
AuthType=auth/munge
AuthInfo=cred_expire=${SLURM_CRED_EXPIRE:-10}
CredType=cred/munge
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
${ACCT_CONF}
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait=${SLURM_KILL_WAIT:-5}
${EXTRA}
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)

dbd_conf=$(cat <<EOF
# Generated by start-local-slurm.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=${DBD_PID}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=${DB_PORT}
StorageUser=slurm
StoragePass=slurm-local-ci
StorageLoc=slurm_acct_db
EOF
)

mkdir -p /etc/slurm
ctl_changed=0; dbd_changed=0
write_if_changed "$CONF" "$slurm_conf" 644 root:root && ctl_changed=1
if [ "$ACCT" = 1 ]; then
  write_if_changed "$DBD_CONF" "$dbd_conf" 600 slurm:slurm && dbd_changed=1
fi
[ $ctl_changed = 1 ] && log "node: NodeName=$NODE CPUs=$CPUS RealMemory=$MEM accounting=$ACCT"

# directories (the packages create most of them; make sure owners/modes are right)
install -d -o slurm -g slurm -m 755 /var/lib/slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d -o root -g root -m 755 /var/lib/slurm/slurmd
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 711 /var/lib/munge

if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  if command -v mungekey >/dev/null; then
    runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key

# a changed config while the daemons run -> restart them
if [ $ctl_changed = 1 ]; then
  stop_pid "$SLURMD_PID" slurmd
  stop_pid "$CTLD_PID" slurmctld
fi
[ $dbd_changed = 1 ] && stop_pid "$DBD_PID" slurmdbd

# --- 3. daemons -----------------------------------------------------------------------
t_start=$SECONDS
if pid=$(pid_alive "$MUNGE_PID" munged); then
  log "munged already running (pid $pid)"
else
  rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
  runuser -u munge -- /usr/sbin/munged || { show_logs; die "munged failed to start"; }
  log "started munged (pid $(cat $MUNGE_PID 2>/dev/null))"
fi
wait_for 15 bash -c 'munge -n | unmunge' || { show_logs; die "munge does not work (munge -n | unmunge fails)"; }

if [ "$ACCT" = 1 ]; then
  if pid=$(pid_alive "$DB_PID" mariadbd); then
    log "mariadbd already running (pid $pid)"
  else
    install -d -o mysql -g mysql -m 750 "$DB_DIR"
    if [ ! -d "$DB_DIR/mysql" ]; then
      mariadb-install-db --user=mysql --datadir="$DB_DIR" --skip-test-db > "$DB_DIR/install.log" 2>&1 \
        || { tail -n 20 "$DB_DIR/install.log" >&2; die "mariadb-install-db failed"; }
    fi
    rm -f "$DB_SOCK"
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" --socket="$DB_SOCK" \
      --pid-file="$DB_PID" --bind-address=127.0.0.1 --port="$DB_PORT" --log-error="$DB_DIR/error.log" \
      --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadb --socket="$DB_SOCK" -e "SELECT 1" || { show_logs; die "MariaDB did not come up"; }
    log "started mariadbd (pid $(cat "$DB_PID"), 127.0.0.1:$DB_PORT)"
  fi
  mariadb --socket="$DB_SOCK" -e "
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm-local-ci';
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-local-ci';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || die "could not create the MariaDB user"
  if pid=$(pid_alive "$DBD_PID" slurmdbd); then
    log "slurmdbd already running (pid $pid)"
  else
    /usr/sbin/slurmdbd || { show_logs; die "slurmdbd failed to start"; }
    wait_for 30 sacctmgr -n list cluster || { show_logs; die "slurmdbd does not answer (sacctmgr list cluster)"; }
    log "started slurmdbd (pid $(cat $DBD_PID))"
  fi
fi

if pid=$(pid_alive "$CTLD_PID" slurmctld); then
  log "slurmctld already running (pid $pid)"
else
  /usr/sbin/slurmctld || { show_logs; die "slurmctld failed to start"; }
  wait_for 15 pid_alive "$CTLD_PID" slurmctld || { show_logs; die "slurmctld did not stay up"; }
  log "started slurmctld (pid $(cat $CTLD_PID))"
fi
wait_for 20 scontrol ping || { show_logs; die "slurmctld does not answer 'scontrol ping'"; }

if pid=$(pid_alive "$SLURMD_PID" slurmd); then
  log "slurmd already running (pid $pid)"
else
  /usr/sbin/slurmd || { show_logs; die "slurmd failed to start"; }
  wait_for 15 pid_alive "$SLURMD_PID" slurmd || { show_logs; die "slurmd did not stay up"; }
  log "started slurmd (pid $(cat $SLURMD_PID))"
fi

# --- 4. wait until the node is idle ----------------------------------------------------
end=$((SECONDS + TIMEOUT)); state=""; resumed=0
while :; do
  state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1 || true)
  case "$state" in
    idle|mixed|allocated) break ;;
    drain*|down*)
      # left over in the saved state from an earlier run (e.g. a bad config); resume once
      if [ $resumed = 0 ]; then
        log "node is '$state' ($(sinfo -h -N -n "$NODE" -o %E)); resuming it"
        scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        resumed=1
      fi ;;
  esac
  if [ $SECONDS -ge $end ]; then
    show_logs
    die "node '$NODE' not idle after ${TIMEOUT}s (state: '${state:-unknown}')"
  fi
  sleep 0.5
done
log "cluster up in $((SECONDS - t_start)) s: node $NODE is $state"
sinfo
