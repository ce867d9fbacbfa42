#!/usr/bin/env bash
# Capacity past this machine's own limits: the capacity run (bench/capacity.sh) inside a throw-away
# virtual machine, where the guest's kernel settings and open-file limit are ours to set. For a
# sandbox whose hard open-file limit or missing privileges stop 25,000 peers on the machine itself.
#
#   bash bench/capacity-vm.sh [peers=25000] [networks=250] [netdev_max_backlog=3000000]
#
# Needs Debian's qemu-system-x86, linux-image-amd64, busybox-static and cpio. The guest is a small
# initramfs: busybox, the two release binaries and their libraries, and an init script that applies
# the sysctls of deploy/systemd/99-peerpigeon.conf, `ulimit -n 65536`, starts the server, runs
# `loadgen connect` and prints its JSON line (RESULT), with the server's threads, RSS (VmRSS, and
# smaps_rollup's, which is exact where an older kernel's VmRSS is not: docs/performance.md) and
# /metrics every 15 s (T), and the kernel's TCP figures (S: sockstat, backlog drops per CPU,
# retransmits).
# With VM_ACCEL=kvm (and a usable /dev/kvm) it runs at the machine's speed; otherwise under software
# emulation, some twenty times slower: counts (connected, delivered) mean what they say, times and
# /health do not. The guest is stopped after an hour at most.
#
# netdev_max_backlog: with the load generator on the same machine every message crosses loopback,
# which queues packets per CPU up to net.core.netdev_max_backlog (1,000 by default) and drops the
# rest; docs/performance.md ("Capacity") tells what the default did to 25,000 peers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
peers="${1:-25000}"
networks="${2:-250}"
backlog="${3:-3000000}"
kernel="$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)"
if [ -z "$kernel" ] || ! command -v qemu-system-x86_64 cpio >/dev/null || [ ! -x /bin/busybox ]; then
  echo "needs a kernel in /boot and qemu: apt-get install -y qemu-system-x86 linux-image-amd64 busybox-static cpio" >&2
  exit 1
fi
accel="tcg,thread=multi"
if [ -w /dev/kvm ] && [ "${VM_ACCEL:-}" = kvm ]; then accel=kvm; fi

(cd "$root" && cargo build --release --quiet --bin peerpigeon && cargo build --release --quiet -p peerpigeon-bench --bin loadgen)
guest="$(mktemp -d)"
trap 'rm -rf "$guest"' EXIT
mkdir -p "$guest"/{bin,usr/bin,dev,proc,sys,tmp}
cp /bin/busybox "$guest/bin/"
for applet in sh mount ip sysctl cat grep awk tr cut date sleep seq wget kill poweroff; do
  ln -s busybox "$guest/bin/$applet"
done
cp "$root/target/release/peerpigeon" "$root/target/release/loadgen" "$guest/usr/bin/"
for lib in $(ldd "$guest/usr/bin/peerpigeon" "$guest/usr/bin/loadgen" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*[^:]$/ { print $1 }' | sort -u); do
  mkdir -p "$guest$(dirname "$lib")" && cp -L "$lib" "$guest$lib"
done

cat >"$guest/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
ip link set lo up
sysctl -w vm.max_map_count=262144 kernel.pid_max=4194304 net.core.netdev_max_backlog=$BACKLOG >/dev/null
ulimit -n 65536
echo "guest: $(cat /proc/sys/kernel/osrelease), vm.max_map_count=$(cat /proc/sys/vm/max_map_count) kernel.pid_max=$(cat /proc/sys/kernel/pid_max) net.core.netdev_max_backlog=$(cat /proc/sys/net/core/netdev_max_backlog) open files=$(ulimit -n)"
PORT=3000 HOST=127.0.0.1 MAX_CONNECTIONS=$((PEERS + 2000)) MAX_PENDING_HANDSHAKES_PER_IP=1024 /usr/bin/peerpigeon 2>/tmp/server.log &
server=$!
tries=0
while ! wget -qO /dev/null http://127.0.0.1:3000/health; do
  tries=$((tries + 1)); [ $tries -gt 600 ] && { echo "RESULT server did not start: $(cat /tmp/server.log)"; poweroff -f; }
  sleep 0.2
done
(
  while sleep 15; do
    echo "T $(date +%T) $(grep -E 'Threads|VmRSS' /proc/$server/status | tr -s '\t\n ' ' ') smaps Rss: $(grep '^Rss:' /proc/$server/smaps_rollup | tr -s ' ' | cut -d' ' -f2) kB $(wget -qO- http://127.0.0.1:3000/metrics | grep -E '^peerpigeon_(peers|cut_off|messages_dropped|queued|messages_received_total.type=.announce)' | grep -v ' 0$' | tr '\n' ' ')"
    echo "S $(grep TCP: /proc/net/sockstat) backlog drops per CPU $(awk '{printf "%d ", ("0x" $2) + 0}' /proc/net/softnet_stat) retransmitted $(awk '/^Tcp:/ { if (++n == 2) print $13 }' /proc/net/snmp)"
  done
) &
echo "RESULT $(/usr/bin/loadgen connect --url ws://127.0.0.1:3000 --peers $PEERS --networks $NETWORKS --pid $server --discovery-limit 600)"
poweroff -f
EOF
chmod +x "$guest/init"
(cd "$guest" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$guest.cpio.gz")
trap 'rm -rf "$guest" "$guest.cpio.gz"' EXIT
echo "host: $(nproc) cpus; guest: $kernel, $accel, 2 cpus, 14 GiB"
timeout 3600 qemu-system-x86_64 -accel "$accel" -smp 2 -m 14G -kernel "$kernel" -initrd "$guest.cpio.gz" -nographic -no-reboot \
  -append "console=ttyS0 quiet PEERS=$peers NETWORKS=$networks BACKLOG=$backlog" | grep --line-buffered -aE '^(T|S|RESULT) |guest: ' | sed -u 's/\r$//; s/^.*guest: /guest: /'
