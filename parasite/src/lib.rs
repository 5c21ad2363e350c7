//! Remote control of ptrace-stopped tasks (seize, injected syscalls, remote memory); arrives with the dump/restore issue.
