// The C side of spirit-init, PID 1 (Sources/SpiritPID1): the calls whose
// macros, structs or async-signal-safe children Embedded Swift cannot
// write itself. Every function returns -errno on failure.
#ifndef SPIRIT_PID1_H
#define SPIRIT_PID1_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/// CLOCK_BOOTTIME in microseconds.
int64_t pid1_boottime_us(void);
/// errno of the last failed libc call, and its text.
int pid1_errno(void);
const char *pid1_strerror(int err);
/// Blocks every signal: before any child exists, so that each one is read
/// from the signalfd and none is delivered the default way to PID 1.
int pid1_block_signals(void);
/// A signalfd for every signal (close-on-exec).
int pid1_signalfd(void);
/// Reads one signal: 1 with its number and sender, or -errno.
int pid1_next_signal(int fd, int *signo, int *sender);
/// fork + exec with an empty signal mask and default handlers; optionally
/// a new session and `tty` as the controlling terminal on fds 0, 1, 2.
/// The child's exec failure comes back as -errno.
int pid1_spawn(const char *path, char *const argv[], char *const envp[], int new_session, const char *tty, pid_t *pid);
/// waitpid(pid, WNOHANG): the pid that ended and its wait status, 0 when
/// none has, -errno (-ECHILD: no child left).
int pid1_reap(pid_t pid, int *status);
/// Brings the loopback interface up.
int pid1_loopback_up(void);
/// reboot(2) with a LINUX_REBOOT_CMD_* value.
int pid1_reboot(unsigned int cmd);
/// The running kernel's release (uname -r) into `buffer`.
void pid1_kernel_release(char *buffer, int size);
/// Sleeps, carrying on after a signal.
void pid1_sleep_ms(int milliseconds);
/// mkdir(2) with the mode as an int (mode_t differs between C libraries).
int pid1_mkdir(const char *path, int mode);
/// Whether `fd` is an open file descriptor.
int pid1_is_open(int fd);
/// Whether `path` exists.
int pid1_exists(const char *path);
/// Opens: 0 read-only, 1 read-write (a terminal, not made the controlling
/// one), 2 for appending (created 0644), 3 write-only (a device).
int pid1_open(const char *path, int how);
/// execv(2) with PID 1's own environment; returns only -errno.
int pid1_exec(const char *path, char *const argv[]);
/// kill(2).
int pid1_kill(pid_t pid, int signal);
/// SIGNAL to every process but PID 1 and `spared`, listed in `procfs`
/// (/proc, or where it was moved to).
int pid1_kill_all_but(const char *procfs, int signal, pid_t spared);

#endif
