# -*- coding: utf-8 -*-
# Copyright: Meshfleet engineers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a netns VM boots: ``/sbin/meshfleet-init`` (PID 1 of the VM's PID namespace) and the
sshd drop-in that binds sshd to the VM's address.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

INIT_PATH = "/sbin/meshfleet-init"

INIT_SCRIPT = r'''#!/bin/sh
# Meshfleet netns VM init: PID 1 of the VM's PID namespace, in its own mount, UTS and
# IPC namespaces, chrooted into the VM's rootfs. Written by the netns VM provider
# (plugins/module_utils/vm_providers/netns/); rewritten on every create.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022
say() { echo "meshfleet-init: $*"; }
say "booting $(cat /etc/hostname)"
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t tmpfs -o nosuid,mode=0755,size=16m dev /dev
for spec in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $spec
  mknod -m 666 "/dev/$1" c "$2" "$3"
done
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=0755,size=64m run /run
mkdir -p /run/lock /run/sshd
chmod 1777 /run/lock
: > /run/utmp
cat /etc/hostname > /proc/sys/kernel/hostname
[ -s /etc/machine-id ] || tr -d - < /proc/sys/kernel/random/uuid > /etc/machine-id
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
# sshd on the VM's address (sshd_config.d/10-meshfleet-vm.conf), restarted if it dies
(
  while :; do
    /usr/sbin/sshd -D -e
    say "sshd exited ($?); restarting it"
    sleep 1
  done
) &
# SysV runlevel 2: what a play installs and enables (update-rc.d) starts on every boot
RUNLEVEL=2
PREVLEVEL=N
export RUNLEVEL PREVLEVEL
for script in /etc/rc2.d/S*; do
  [ -x "$script" ] || continue
  case "${script##*/}" in
    S[0-9][0-9]ssh) continue ;;   # sshd is run above
  esac
  say "$script start"
  "$script" start < /dev/null || say "$script start failed ($?)"
done
say "up"
# reap orphans until killed (the host kills this PID 1: the whole VM goes with it)
while :; do
  wait
  sleep 60
done
'''

SSHD_VM_CONF = """# Written by the Meshfleet netns VM provider.
ListenAddress %(address)s
HostKey /etc/ssh/ssh_host_ed25519_key
"""
