"""Which sockets a process listens on, read from /proc (Linux): what `ss -ltnup` shows for it."""
import ipaddress
import os
import re


def _address(text, v6):
    """'0100007F:1F90' (as /proc/net/tcp writes it) -> ('127.0.0.1', 8080)."""
    ip, port = text.split(":")
    raw = bytes.fromhex(ip)
    # the kernel prints each 32-bit word of the address in host (little-endian) order
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.IPv6Address(raw) if v6 else ipaddress.IPv4Address(raw)
    return str(address), int(port, 16)


def _table(pid):
    """{socket inode: (kind, address, port)} of the sockets that accept connections or
    datagrams in pid's network namespace: TCP in LISTEN, bound UDP, listening unix sockets
    (address: the path, or '' for an unnamed one; port None)."""
    found = {}
    for kind, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            with open(f"/proc/{pid}/net/{kind}") as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        for row in rows:
            if row[3] == state:
                found[row[9]] = (kind, *_address(row[1], kind.endswith("6")))
    with open(f"/proc/{pid}/net/unix") as f:
        for row in (line.split() for line in f.readlines()[1:]):
            if int(row[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
                found[row[6]] = ("unix", row[7] if len(row) > 7 else "", None)
    return found


def listening(pid):
    """[(kind, address, port)] of every socket pid listens on; OSError once pid is gone."""
    fd_dir = f"/proc/{pid}/fd"
    inodes = set()
    for fd in os.listdir(fd_dir):
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(os.path.join(fd_dir, fd)))
        except FileNotFoundError:  # closed meanwhile
            continue
        if match:
            inodes.add(match.group(1))
    table = _table(pid)
    return sorted(table[inode] for inode in inodes if inode in table)


def role(pid):
    """The DMLC_ROLE a process runs with, or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"DMLC_ROLE="):
                    return item.split(b"=", 1)[1].decode()
    except OSError:
        pass
    return None


def descendants(pid):
    """The pids of every process started, directly or not, by pid (and still running)."""
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
