"""What the launcher and the remote supervisor read of processes in /proc, and how they end
them (Linux only, as MXNet's parameter server)."""
import os
import socket
import struct
import time


def kill_group(popen, signum):
    """Send signum to popen's process group (its own session); gone already is fine."""
    try:
        os.killpg(popen.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def cpu_and_state(pid):
    """(CPU seconds used, state letter) of a live process, from /proc; (None, None) if unreadable.

    The state is T for a process stopped by a signal (SIGSTOP, Ctrl-Z), t under a debugger.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), fields[0]
    except (OSError, IndexError, ValueError):
        return None, None


def wait_listening(popen, address, port, timeout):
    """True once popen itself holds a listening socket on address:port (Linux /proc)."""
    deadline = time.monotonic() + timeout
    ip = struct.unpack("<I", socket.inet_aton(socket.gethostbyname(address)))[0]
    want = f"{ip:08X}:{port:04X}"
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            return False  # "bind failed": someone else has the port
        try:
            with open("/proc/net/tcp") as f:
                inodes = {parts[9] for parts in (line.split() for line in f.readlines()[1:])
                          if parts[1] == want and parts[3] == "0A"}
            fd_dir = f"/proc/{popen.pid}/fd"
            links = {os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)}
        except OSError:
            inodes, links = set(), set()
        if any(f"socket:[{inode}]" in links for inode in inodes):
            return True
        time.sleep(0.05)
    return False
