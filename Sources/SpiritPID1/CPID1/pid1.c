// See pid1.h. Between fork and exec only async-signal-safe calls run.
#define _GNU_SOURCE
#include "pid1.h"
#include "../../CSpirit/shared/spirit_shared.h"

#include <dirent.h>
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

int64_t pid1_boottime_us(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0) return 0;
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int pid1_errno(void) { return errno; }

const char *pid1_strerror(int err) { return strerror(err); }

int pid1_block_signals(void) {
    sigset_t all;
    sigfillset(&all);
    return sigprocmask(SIG_BLOCK, &all, NULL) == 0 ? 0 : -errno;
}

int pid1_signalfd(void) {
    sigset_t all;
    sigfillset(&all);
    int fd = signalfd(-1, &all, SFD_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

int pid1_next_signal(int fd, int *signo, int *sender) {
    struct signalfd_siginfo info;
    for (;;) {
        ssize_t n = read(fd, &info, sizeof info);
        if (n == (ssize_t)sizeof info) break;
        if (n < 0 && errno == EINTR) continue;
        return n < 0 ? -errno : -EIO;
    }
    *signo = (int)info.ssi_signo;
    *sender = (int)info.ssi_pid;
    return 1;
}

int pid1_spawn(const char *path, char *const argv[], char *const envp[], int new_session, const char *tty, pid_t *pid) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    pid_t child = fork();
    if (child < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        return -err;
    }
    if (child == 0) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < _NSIG; sig++) {
            if (sig == SIGKILL || sig == SIGSTOP) continue;
            (void)sigaction(sig, &dfl, NULL);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (new_session && setsid() < 0) spirit_shared_child_fail(report[1], errno);
        if (tty) {
            int fd = open(tty, O_RDWR | O_NOCTTY);
            if (fd < 0) spirit_shared_child_fail(report[1], errno);
            if (ioctl(fd, TIOCSCTTY, 1) < 0) spirit_shared_child_fail(report[1], errno);
            for (int target = 0; target < 3; target++) {
                if (dup2(fd, target) < 0) spirit_shared_child_fail(report[1], errno);
            }
            if (fd > 2) close(fd);
        }
        execve(path, argv, envp);
        spirit_shared_child_fail(report[1], errno);
    }
    close(report[1]);
    int child_errno = spirit_shared_exec_report(report[0], child);
    if (child_errno != 0) return -child_errno;
    *pid = child;
    return 0;
}

int pid1_reap(pid_t pid, int *status) {
    pid_t rc;
    do {
        rc = waitpid(pid, status, WNOHANG);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : (int)rc;
}

int pid1_loopback_up(void) { return spirit_shared_loopback_up(); }

int pid1_reboot(unsigned int cmd) { return reboot((int)cmd) == 0 ? 0 : -errno; }

void pid1_kernel_release(char *buffer, int size) {
    struct utsname name;
    if (size <= 0) return;
    buffer[0] = 0;
    if (uname(&name) != 0) return;
    strncpy(buffer, name.release, (size_t)size - 1);
    buffer[size - 1] = 0;
}

void pid1_sleep_ms(int milliseconds) {
    struct timespec left = { .tv_sec = milliseconds / 1000, .tv_nsec = (long)(milliseconds % 1000) * 1000000L };
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {}
}

int pid1_mkdir(const char *path, int mode) {
    if (mkdir(path, (mode_t)mode) == 0 || errno == EEXIST) return 0;
    return -errno;
}

int pid1_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

int pid1_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int pid1_open(const char *path, int how) {
    int flags = how == 0 ? O_RDONLY : how == 1 ? (O_RDWR | O_NOCTTY) : how == 2 ? (O_WRONLY | O_CREAT | O_APPEND)
              : how == 3 ? (O_WRONLY | O_NOCTTY) : (O_WRONLY | O_CREAT | O_TRUNC);
    int fd;
    do {
        fd = open(path, flags | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    return fd >= 0 ? fd : -errno;
}

int pid1_kill(pid_t pid, int signal) { return kill(pid, signal) == 0 ? 0 : -errno; }

int pid1_kill_all_but(const char *procfs, int signal, pid_t spared) {
    // kill(-1) with one exception: each process in `procfs` but this one
    // and `spared`. Kernel threads ignore the signal.
    DIR *proc = opendir(procfs);
    if (!proc) return -errno;
    pid_t self = getpid();
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        char *end = NULL;
        long pid = strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || pid <= 1 || pid == self || pid == spared) continue;
        kill((pid_t)pid, signal);
    }
    closedir(proc);
    return 0;
}

int pid1_exec(const char *path, char *const argv[]) {
    execv(path, argv);
    return -errno;
}

// Embedded Swift's Hasher seeds itself with arc4random_buf, which musl
// 1.2.3 does not have; the hash functions of InitCore's public enums refer
// to it even though PID 1 hashes nothing. getrandom(2) without blocking:
// PID 1 must never wait for the kernel's random pool.
#include <sys/random.h>
void arc4random_buf(void *buffer, size_t size) {
    unsigned char *bytes = buffer;
    size_t done = 0;
    while (done < size) {
        ssize_t n = getrandom(bytes + done, size - done, GRND_NONBLOCK);
        if (n <= 0) break;
        done += (size_t)n;
    }
    for (uint64_t x = (uint64_t)pid1_boottime_us() | 1; done < size; done++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        bytes[done] = (unsigned char)x;
    }
}
