// C shared by the two binaries that cannot link each other: `spirit` (glibc,
// CSpirit) and PID 1, `spirit-init` (musl, Embedded Swift, CPID1). Each
// function is static inline so that each binary compiles its own copy
// against its own libc. The callers define _GNU_SOURCE before any include.
#ifndef SPIRIT_SHARED_H
#define SPIRIT_SHARED_H

#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

// In a forked child that cannot exec: its errno to the parent through the
// report pipe, then gone. Async-signal-safe.
static inline void spirit_shared_child_fail(int report_fd, int err) {
    ssize_t unused = write(report_fd, &err, sizeof err);
    (void)unused;
    _exit(127);
}

// The parent's side of the report pipe (its write end already closed): 0
// once the child has exec'd (the pipe closes on exec), else the child's
// errno, with the failed child collected so that no caller sees a pid that
// never ran.
static inline int spirit_shared_exec_report(int report_read, pid_t child) {
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(report_read, &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    close(report_read);
    if (n != (ssize_t)sizeof child_errno) return 0;
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    return child_errno;
}

// The loopback interface up (the kernel gives it 127.0.0.1 then): 0 or -errno.
static inline int spirit_shared_loopback_up(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(fd, SIOCGIFFLAGS, &request);
    if (rc == 0 && !(request.ifr_flags & IFF_UP)) {
        request.ifr_flags |= IFF_UP;
        rc = ioctl(fd, SIOCSIFFLAGS, &request);
    }
    int error = rc < 0 ? -errno : 0;
    close(fd);
    return error;
}

#endif
