#!/usr/bin/env bash
# Real mail servers on loopback for franz's email tests (#34): Dovecot (IMAP, IMAPS, LMTP) and Postfix (SMTP),
# each set entirely self-contained in one directory (its own configs, queue, Maildirs, logs, pid files, sockets,
# TLS certificates), listening on 127.0.0.1 only, on free high ports. Several sets may run at once, each in its
# own directory. Where the packages are missing and this user may (root), it installs Debian's dovecot-imapd,
# dovecot-lmtpd and postfix first, without starting the system's own services.
#
#   scripts/mail-servers.sh [start] [DIR]   configure and start a set in DIR (default: a fresh mktemp -d); once
#                                           both servers answer, print KEY=VALUE lines on stdout (also kept in
#                                           DIR/env) and exit, leaving the servers running in the background
#   scripts/mail-servers.sh stop DIR        stop both servers of the set in DIR (DIR is kept, logs and all)
#   scripts/mail-servers.sh clean DIR       stop them and remove DIR
#   scripts/mail-servers.sh restart-imap DIR  stop Dovecot and start it again on the same ports with the same mail
#   scripts/mail-servers.sh stop-imap DIR   stop Dovecot alone (its ports refuse connections until start-imap)
#   scripts/mail-servers.sh start-imap DIR  start Dovecot again
#   scripts/mail-servers.sh install         only install what is missing
#
# Printed on start, one KEY=VALUE a line, the value unquoted up to the end of the line (also written to DIR/env;
# DIR/env.sh has them as `export KEY=VALUE` quoted for a shell):
#   FRANZ_MAIL_DIR=DIR
#   FRANZ_MAIL_IMAP=127.0.0.1:PORT      IMAP, plaintext LOGIN/AUTHENTICATE allowed, STARTTLS offered, IDLE
#   FRANZ_MAIL_IMAPS=127.0.0.1:PORT     IMAP over TLS from the first byte
#   FRANZ_MAIL_SMTP=127.0.0.1:PORT      SMTP; STARTTLS offered; AUTH PLAIN/LOGIN without TLS too
#   FRANZ_MAIL_CA=DIR/tls/ca.pem        the CA that signed both servers' certificate (names: 127.0.0.1, localhost,
#                                       mail.franz.test); the certificate itself is not a CA, so rustls takes it
#   FRANZ_MAIL_DOMAIN=franz.test
#   FRANZ_MAIL_USERS=support@franz.test customer@franz.test other@franz.test
#   FRANZ_MAIL_PASSWORD=secret          every user's password (test-only); login with or without @franz.test
#   FRANZ_MAIL_STOP=<command>           stops this set (also DIR/stop)
#   FRANZ_MAIL_RESTART_IMAP=<command>   restarts its Dovecot (also DIR/restart-imap)
#
# Mail routing: Postfix accepts mail for any address @franz.test from anyone on loopback, no AUTH needed, and hands
# it to Dovecot over LMTP (unix socket DIR/dovecot/run/lmtp), which stores it in DIR/mail/<local part>/Maildir.
# An unknown user @franz.test (nobody@franz.test) is accepted by Postfix, refused by Dovecot (550 5.1.1), and
# Postfix then sends a delivery status notification (multipart/report, from MAILER-DAEMON@franz.test, subject
# "Undelivered Mail Returned to Sender") to the envelope sender, which lands in that user's INBOX within a second
# or two. Mail to deferred@franz.test is refused at RCPT for now, never for good ("452 4.2.2 Mailbox full, try
# again later"), as a full mailbox or greylisting does. Mail to any other domain is refused at RCPT, so nothing ever leaves this machine: without AUTH with
# "554 5.7.1 Relay access denied", after AUTH with "550 5.7.1 ... deliver to franz.test only". Mail Postfix could
# not hand to Dovecot (Dovecot down, e.g. during restart-imap) is retried within a few seconds; `postqueue -c
# DIR/postfix/etc -f` retries at once, `postqueue -c DIR/postfix/etc -p` lists the queue.
#
# Env: FRANZ_MAIL_IMAP_PORT, FRANZ_MAIL_IMAPS_PORT, FRANZ_MAIL_SMTP_PORT fix the ports (default: free ones picked
# at random in 20000-29999, picked anew if a server finds its port taken); FRANZ_MAIL_EXTRA_USERS="a b" adds
# users a@franz.test and b@franz.test; FRANZ_MAIL_WATCH_PID=PID stops the set once process PID has ended (a test
# harness passes its own pid, so a killed test run leaves no servers behind).
#
# Exit 0: done (for start: both servers answer). Exit 3: mail servers cannot be had here (not root, or the
# packages are missing and cannot be installed); the one line on stderr says why. Exit 1: they did not start
# (stderr says why and names the log). Exit 2: wrong usage.
#
# Why Postfix and not OpenSMTPD (both are in Debian): OpenSMTPD's queue (/var/spool/smtpd) and control socket
# (/var/run/smtpd.sock) are fixed at build time, so a second instance refuses to run beside the first, and it
# cannot be given a directory of its own. Postfix takes its whole instance from `-c CONFIG_DIR` (queue, data and
# pid directories, logs), runs any number of instances side by side, and does SMTP AUTH through Dovecot's auth
# socket with no extra package. Postfix's master must start as root (it drops to the `postfix` user), so this
# script needs root to start servers, not only to install.
set -euo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
domain=franz.test
password=secret
read -ra extra_users <<<"${FRANZ_MAIL_EXTRA_USERS:-}"
users=(support customer other "${extra_users[@]}")
packages=(dovecot-imapd dovecot-lmtpd postfix)
deadline=30 # seconds for a server to answer after it was started

cannot() { echo "mail-servers.sh: $*" >&2; exit 3; }
fail() { echo "mail-servers.sh: $*" >&2; exit 1; }
usage() { echo "usage: $0 [start] [DIR] | stop DIR | clean DIR | restart-imap DIR | stop-imap DIR | start-imap DIR | install" >&2; exit 2; }
root() { [ "$(id -u)" -eq 0 ]; }
# Whether process $1 runs (a zombie, killed but not yet reaped, does not).
alive() { local state; state=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${state#Z}" = "$state" ]; }
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

install_missing() {
  local missing=() pkg
  for pkg in "${packages[@]}"; do installed "$pkg" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  root || cannot "${missing[*]} missing and this user is not root, so they cannot be installed here"
  command -v apt-get >/dev/null || cannot "${missing[*]} missing and there is no apt-get to install them"
  # Runs started side by side wait for one another here instead of failing on dpkg's lock.
  exec 9>/tmp/franz-mail-servers-install.lock
  flock 9
  missing=()
  for pkg in "${packages[@]}"; do installed "$pkg" || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "mail-servers.sh: installing ${missing[*]}" >&2
    # The packages' scripts would start the system's Postfix on port 25 and Dovecot on 143: a policy-rc.d that
    # answers 101 forbids it (there is no systemd here; where one runs, `systemctl` would still start them, so
    # they are stopped below). One already there (containers often have one) is left as it is.
    local policy=/usr/sbin/policy-rc.d ours=
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
    fi
    local ok=1
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"; } >/tmp/franz-mail-servers-install.log 2>&1 || ok=
    [ -n "$ours" ] && rm -f "$policy"
    [ -n "$ok" ] || cannot "apt-get install ${missing[*]} failed; see /tmp/franz-mail-servers-install.log"
    if [ -d /run/systemd/system ]; then systemctl disable --now postfix dovecot >/dev/null 2>&1 || true; fi
  fi
  flock -u 9
  exec 9>&-
}

# Whether port $1 is in use on this machine (any state, as local or remote port: a few false alarms do no harm).
port_used() {
  local hex
  hex=$(printf '%04X' "$1")
  grep -qi ":$hex " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A port in 20000-29999 (below the kernel's ephemeral range) that nothing uses now and that is not in "$@".
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 10000))
    case " $* " in *" $port "*) continue ;; esac
    port_used "$port" && continue
    echo "$port"
    return 0
  done
  fail "no free port found in 20000-29999"
}

# Whether a server greets on 127.0.0.1:$1 with a line starting with $2 (with no $2: whether it takes connections).
greets() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1; [ -z "$2" ] && exit 0
    IFS= read -r -t 2 line <&3 && [[ $line == "$2"* ]]' _ "$1" "${2:-}" 2>/dev/null
}

# Waits until 127.0.0.1:$1 greets with $2 while the process in pid file $3 runs. 1: it has ended. 2: deadline.
await() {
  local port=$1 greeting=$2 pidfile=$3 pid=
  for _ in $(seq 1 $((deadline * 10))); do
    greets "$port" "$greeting" && return 0
    [ -s "$pidfile" ] && pid=$(tr -d ' ' <"$pidfile")
    if [ -n "$pid" ] && ! alive "$pid"; then return 1; fi
    sleep 0.1
  done
  return 2
}

kill_pidfile() {
  local pidfile=$1 pid
  [ -s "$pidfile" ] || return 0
  pid=$(tr -d ' ' <"$pidfile")
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

set_dir() {
  [ -n "${1:-}" ] || usage
  dir=$(cd "$1" 2>/dev/null && pwd) || fail "no directory $1"
  [ -f "$dir/.franz-mail-servers" ] || fail "$dir holds no set of mail servers made by this script"
}

tls() {
  mkdir -p "$dir/tls"
  local t=$dir/tls
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=franz test mail CA" -keyout "$t/ca-key.pem" -out "$t/ca.pem"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=mail.franz.test" -keyout "$t/key.pem" -out "$t/cert.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:mail.franz.test" >"$t/cert.ext"
    openssl x509 -req -in "$t/cert.csr" -CA "$t/ca.pem" -CAkey "$t/ca-key.pem" -CAcreateserial -days 3650 \
      -extfile "$t/cert.ext" -out "$t/cert.pem"
  } >"$t/openssl.log" 2>&1 || fail "could not make TLS certificates; see $t/openssl.log"
  chmod 644 "$t"/*.pem
}

users_file() {
  local user
  for user in "${users[@]}"; do
    # user:password:uid:gid:gecos:home:shell:extra — uid and gid come from mail_uid and mail_gid.
    echo "$user@$domain:{PLAIN}$password::::$dir/mail/$user::"
  done >"$dir/dovecot/users"
  chmod 644 "$dir/dovecot/users"
}

dovecot_conf() {
  local mail_uid mail_gid
  mail_uid=$(id -u mail) && mail_gid=$(id -g mail) || fail "there is no user mail to own the Maildirs"
  cat >"$dir/dovecot/dovecot.conf" <<EOF
# Made by scripts/mail-servers.sh; self-contained (nothing from /etc/dovecot is read).
instance_name = franz-mail-$(basename "$dir")
base_dir = $dir/dovecot/run
state_dir = $dir/dovecot/state
log_path = $dir/log/dovecot.log
auth_verbose = yes
protocols = imap lmtp
listen = 127.0.0.1
hostname = mail.$domain
ssl = yes
ssl_cert = <$dir/tls/cert.pem
ssl_key = <$dir/tls/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_default_realm = $domain
# A wrong password is refused at once, not after Dovecot's usual 2 s (see also service anvil).
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_uid = $mail_uid
mail_gid = $mail_gid
first_valid_uid = $mail_uid
first_valid_gid = $mail_gid
mail_fsync = never
mail_max_userip_connections = 1000
namespace inbox {
  inbox = yes
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/dovecot/users
}
userdb {
  driver = passwd-file
  args = $dir/dovecot/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
    ssl = yes
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
# No penalty for past failures from 127.0.0.1 either: auth finds no anvil-auth-penalty socket to ask.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service auth {
  unix_listener auth-client {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@$domain
}
EOF
}

postfix_conf() {
  local etc=$dir/postfix/etc
  cat >"$etc/main.cf" <<EOF
# Made by scripts/mail-servers.sh; self-contained (start with postfix -c $etc; nothing from /etc/postfix).
compatibility_level = 3.6
queue_directory = $dir/postfix/spool
data_directory = $dir/postfix/data
maillog_file = $dir/log/postfix.log
maillog_file_prefixes = $dir/log
myhostname = mail.$domain
mydomain = $domain
myorigin = $domain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
biff = no
append_dot_mydomain = no
# No local delivery here: all of $domain goes to Dovecot over LMTP, whatever the user (Dovecot refuses unknown
# ones, and Postfix bounces them to the sender). Other domains go to the error transport, so smtpd refuses them at
# RCPT (and reject_unauth_destination does first where the client has not authenticated).
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = $domain
relay_recipient_maps =
relay_transport = lmtp:unix:$dir/dovecot/run/lmtp
default_transport = error:5.7.1 franz test mail servers deliver to $domain only
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
# One recipient whose server defers every mail, as a full mailbox or greylisting does.
smtpd_recipient_restrictions = check_recipient_access inline:{ { deferred@$domain = 452 4.2.2 Mailbox full, try again later } }
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $dir/dovecot/run/auth-client
smtpd_tls_security_level = may
smtpd_tls_chain_files = $dir/tls/key.pem, $dir/tls/cert.pem
smtpd_tls_auth_only = no
# Deferred mail (Dovecot down) is retried within seconds, not minutes.
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 10s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
EOF
  cat >"$etc/master.cf" <<EOF
# service        type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$smtp_port inet n       -       n       -       -       smtpd
pickup           unix  n       -       n       60      1       pickup
cleanup          unix  n       -       n       -       0       cleanup
qmgr             unix  n       -       n       300     1       qmgr
tlsmgr           unix  -       -       n       1000?   1       tlsmgr
rewrite          unix  -       -       n       -       -       trivial-rewrite
bounce           unix  -       -       n       -       0       bounce
defer            unix  -       -       n       -       0       bounce
trace            unix  -       -       n       -       0       bounce
verify           unix  -       -       n       -       1       verify
flush            unix  n       -       n       1000?   0       flush
proxymap         unix  -       -       n       -       -       proxymap
proxywrite       unix  -       -       n       -       1       proxymap
smtp             unix  -       -       n       -       -       smtp
relay            unix  -       -       n       -       -       smtp
showq            unix  n       -       n       -       -       showq
error            unix  -       -       n       -       -       error
retry            unix  -       -       n       -       -       error
discard          unix  -       -       n       -       -       discard
lmtp             unix  -       -       n       -       -       lmtp
anvil            unix  -       -       n       -       1       anvil
scache           unix  -       -       n       -       1       scache
postlog          unix-dgram n  -       n       -       1       postlogd
EOF
}

dovecot_pidfile() { echo "$dir/dovecot/run/master.pid"; }
postfix_pidfile() { echo "$dir/postfix/spool/pid/master.pid"; }

# Starts Dovecot on $imap_port and $imaps_port and waits for it. 1: it exited at start (a port taken, say).
# 2: it did not answer in time.
start_dovecot() {
  rm -f "$(dovecot_pidfile)"
  dovecot -c "$dir/dovecot/dovecot.conf" </dev/null >>"$dir/log/dovecot-start.log" 2>&1 || return 1
  await "$imap_port" "* OK" "$(dovecot_pidfile)" && await "$imaps_port" "" "$(dovecot_pidfile)"
}

start_postfix() {
  rm -f "$(postfix_pidfile)"
  postfix -c "$dir/postfix/etc" start </dev/null >>"$dir/log/postfix-start.log" 2>&1 || return 1
  await "$smtp_port" "220" "$(postfix_pidfile)"
}

# Stops Dovecot and ends every connection it served, as a real server's stop does (shutdown_clients): the master
# alone stopped, its imap processes would go on serving their clients.
stop_dovecot() {
  kill_pidfile "$(dovecot_pidfile)"
  pkill -KILL -f "^dovecot-franz-mail-$(basename "$dir")/" 2>/dev/null || true
}
stop_postfix() {
  [ -f "$dir/postfix/etc/main.cf" ] && postfix -c "$dir/postfix/etc" stop </dev/null >/dev/null 2>&1 || true
  kill_pidfile "$(postfix_pidfile)"
}

# The last errors in logs "$@", on one line.
why() { grep -h -E 'Error|Fatal|fatal' "$@" 2>/dev/null | grep -v postfix-script | tail -n 2 | tr '\n' ' '; }

# Whether the last lines of logs "$@" say that a server's port was taken (then another one is picked).
port_taken() { tail -q -n 5 "$@" 2>/dev/null | grep -q 'Address already in use'; }

load_ports() {
  # shellcheck disable=SC1091
  . "$dir/ports"
}

start() {
  root || cannot "Postfix's master must start as root, and this user is not root"
  install_missing
  command -v dovecot >/dev/null && command -v postfix >/dev/null || cannot "dovecot or postfix is not on PATH"
  if [ -n "${1:-}" ]; then
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
  else
    dir=$(mktemp -d /tmp/franz-mail.XXXXXX)
  fi
  [ -z "$(ls -A "$dir")" ] || [ -f "$dir/.franz-mail-servers" ] || fail "$dir is not empty"
  [ -f "$dir/.franz-mail-servers" ] && { stop_postfix; stop_dovecot; }
  # Unix socket paths must stay under 108 bytes.
  [ ${#dir} -le 60 ] || fail "$dir is too long for Dovecot's sockets (60 characters at most)"
  touch "$dir/.franz-mail-servers"
  # Dovecot's and Postfix's unprivileged users reach their sockets and the Maildirs through it.
  chmod 755 "$dir"
  mkdir -p "$dir/log" "$dir/dovecot/run" "$dir/dovecot/state" "$dir/mail" "$dir/postfix/etc" \
    "$dir/postfix/spool" "$dir/postfix/data"
  chown mail:mail "$dir/mail"
  chown postfix "$dir/postfix/data"
  tls
  users_file

  local attempt picked rc
  for attempt in 1 2 3 4 5; do
    imap_port=${FRANZ_MAIL_IMAP_PORT:-$(free_port)}
    imaps_port=${FRANZ_MAIL_IMAPS_PORT:-$(free_port "$imap_port")}
    dovecot_conf
    rc=0 && start_dovecot || rc=$?
    [ $rc -eq 0 ] && break
    stop_dovecot
    [ $rc -eq 2 ] && fail "Dovecot did not answer on 127.0.0.1:$imap_port within $deadline s; see $dir/log"
    if [ -n "${FRANZ_MAIL_IMAP_PORT:-}${FRANZ_MAIL_IMAPS_PORT:-}" ] || [ $attempt -eq 5 ] ||
      ! port_taken "$dir/log/dovecot-start.log" "$dir/log/dovecot.log"; then
      fail "Dovecot exited at start: $(why "$dir/log/dovecot-start.log" "$dir/log/dovecot.log")(see $dir/log)"
    fi
  done
  for attempt in 1 2 3 4 5; do
    smtp_port=${FRANZ_MAIL_SMTP_PORT:-$(free_port "$imap_port" "$imaps_port")}
    postfix_conf
    rc=0 && start_postfix || rc=$?
    [ $rc -eq 0 ] && break
    stop_postfix
    [ $rc -eq 2 ] && { stop_dovecot; fail "Postfix did not answer on 127.0.0.1:$smtp_port within $deadline s; see $dir/log"; }
    if [ -n "${FRANZ_MAIL_SMTP_PORT:-}" ] || [ $attempt -eq 5 ] || ! port_taken "$dir/log/postfix.log"; then
      stop_dovecot
      fail "Postfix exited at start: $(why "$dir/log/postfix-start.log" "$dir/log/postfix.log")(see $dir/log)"
    fi
  done
  printf 'imap_port=%s\nimaps_port=%s\nsmtp_port=%s\n' "$imap_port" "$imaps_port" "$smtp_port" >"$dir/ports"

  local q_self q_dir
  q_self=$(printf %q "$self") q_dir=$(printf %q "$dir")
  printf '#!/bin/sh\nexec %s stop %s\n' "$q_self" "$q_dir" >"$dir/stop"
  printf '#!/bin/sh\nexec %s restart-imap %s\n' "$q_self" "$q_dir" >"$dir/restart-imap"
  chmod 755 "$dir/stop" "$dir/restart-imap"
  picked=""
  for user in "${users[@]}"; do picked+="${picked:+ }$user@$domain"; done
  cat >"$dir/env" <<EOF
FRANZ_MAIL_DIR=$dir
FRANZ_MAIL_IMAP=127.0.0.1:$imap_port
FRANZ_MAIL_IMAPS=127.0.0.1:$imaps_port
FRANZ_MAIL_SMTP=127.0.0.1:$smtp_port
FRANZ_MAIL_CA=$dir/tls/ca.pem
FRANZ_MAIL_DOMAIN=$domain
FRANZ_MAIL_USERS=$picked
FRANZ_MAIL_PASSWORD=$password
FRANZ_MAIL_STOP=$q_self stop $q_dir
FRANZ_MAIL_RESTART_IMAP=$q_self restart-imap $q_dir
EOF
  # The same for a shell: . DIR/env.sh
  while IFS='=' read -r key value; do printf 'export %s=%q\n' "$key" "$value"; done <"$dir/env" >"$dir/env.sh"
  if [ -n "${FRANZ_MAIL_WATCH_PID:-}" ]; then
    local watched=$FRANZ_MAIL_WATCH_PID
    setsid nohup bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" stop "$3"' \
      _ "$watched" "$self" "$dir" </dev/null >>"$dir/log/watch.log" 2>&1 &
  fi
  cat "$dir/env"
}

case ${1:-start} in
  start) shift $(($# > 0 ? 1 : 0)); [ $# -le 1 ] || usage; start "${1:-}" ;;
  install) install_missing ;;
  stop) set_dir "${2:-}"; stop_postfix; stop_dovecot ;;
  clean) set_dir "${2:-}"; stop_postfix; stop_dovecot; rm -rf -- "$dir" ;;
  stop-imap) set_dir "${2:-}"; stop_dovecot ;;
  start-imap | restart-imap)
    set_dir "${2:-}"
    root || cannot "Dovecot must start as root here, and this user is not root"
    load_ports
    [ "$1" = restart-imap ] && stop_dovecot
    start_dovecot || fail "Dovecot did not start: $(why "$dir/log/dovecot-start.log" "$dir/log/dovecot.log")(see $dir/log)"
    ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  /* | ./* | ../*) [ $# -eq 1 ] || usage; start "$1" ;;
  *) usage ;;
esac
