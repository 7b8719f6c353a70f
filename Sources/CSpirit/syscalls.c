// Calls Swift cannot make directly: variadic syscall(2), kernel constants
// behind macros, signalfd's struct, and glibc's GNU-only string functions.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/swap.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "CSpirit.h"

int spirit_errno(void) { return errno; }

int spirit_finit_module(int fd, const char *params, int flags) {
    long rc = syscall(SYS_finit_module, fd, params ? params : "", flags);
    return rc == 0 ? 0 : -errno;
}

int spirit_reboot(unsigned int cmd) {
    long rc = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, cmd, NULL);
    return rc == 0 ? 0 : -errno;
}

int spirit_block_all_signals(void) {
    sigset_t all;
    sigfillset(&all);
    int rc = sigprocmask(SIG_BLOCK, &all, NULL);
    return rc == 0 ? 0 : -errno;
}

int spirit_signalfd_all(void) {
    sigset_t all;
    sigfillset(&all);
    int fd = signalfd(-1, &all, SFD_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

int spirit_signalfd_read(int fd, pid_t *sender) {
    struct signalfd_siginfo info;
    for (;;) {
        ssize_t n = read(fd, &info, sizeof info);
        if (n == (ssize_t)sizeof info) break;
        if (n < 0 && errno == EINTR) continue;
        return n < 0 ? -errno : -EIO;
    }
    if (sender) *sender = (pid_t)info.ssi_pid;
    return (int)info.ssi_signo;
}

const char *spirit_signal_abbrev(int sig) { return sigabbrev_np(sig); }
const char *spirit_signal_description(int sig) { return sigdescr_np(sig); }

pid_t spirit_wait(pid_t pid, int nohang, int *exited, int *code) {
    int status = 0;
    pid_t rc;
    do {
        rc = waitpid(pid, &status, nohang ? WNOHANG : 0);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -errno;
    if (rc == 0) return 0;
    if (WIFEXITED(status)) {
        *exited = 1;
        *code = WEXITSTATUS(status);
    } else {
        *exited = 0;
        *code = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }
    return rc;
}

int spirit_loop_attach(const char *file, char *device, size_t device_size) {
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) return -errno;
    int backing = open(file, O_RDONLY | O_CLOEXEC);
    if (backing < 0) {
        int err = errno;
        close(control);
        return -err;
    }
    int result = -EBUSY;
    // Another process may take the free device between GET_FREE and
    // CONFIGURE (EBUSY): ask again, a few times.
    for (int attempt = 0; attempt < 16 && result == -EBUSY; attempt++) {
        int number = ioctl(control, LOOP_CTL_GET_FREE);
        if (number < 0) { result = -errno; break; }
        snprintf(device, device_size, "/dev/loop%d", number);
        int loop = open(device, O_RDONLY | O_CLOEXEC);
        if (loop < 0) { result = -errno; break; }
        struct loop_config config;
        memset(&config, 0, sizeof config);
        config.fd = (unsigned int)backing;
        config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        strncpy((char *)config.info.lo_file_name, file, LO_NAME_SIZE - 1);
        if (ioctl(loop, LOOP_CONFIGURE, &config) == 0) {
            result = loop;
        } else {
            result = -errno;
            close(loop);
        }
    }
    close(backing);
    close(control);
    return result;
}

int spirit_chroot(const char *path) {
    return chroot(path) == 0 ? 0 : -errno;
}

int spirit_swapon(const char *device) {
    return swapon(device, 0) == 0 ? 0 : -errno;
}

int spirit_uevent_socket(void) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
    if (fd < 0) return -errno;
    struct sockaddr_nl address;
    memset(&address, 0, sizeof address);
    address.nl_family = AF_NETLINK;
    address.nl_groups = 1; // the kernel's own uevents (udev's are group 2)
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    // A burst of devices must not be lost to a full receive queue.
    int size = 4 << 20;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    return fd;
}

int spirit_uevent_read(int fd, char *buffer, int size, int timeout_ms) {
    struct pollfd wanted = { .fd = fd, .events = POLLIN };
    int ready;
    do {
        ready = poll(&wanted, 1, timeout_ms);
    } while (ready < 0 && errno == EINTR);
    if (ready < 0) return -errno;
    if (ready == 0) return 0;
    ssize_t n;
    do {
        n = recv(fd, buffer, (size_t)size - 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    buffer[n] = 0;
    return (int)n;
}

int spirit_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : -errno;
}

static int unix_address(const char *path, struct sockaddr_un *address) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address->sun_path) return -ENAMETOOLONG;
    strcpy(address->sun_path, path);
    return 0;
}

int spirit_unix_bind(const char *path, int stream) {
    struct sockaddr_un address;
    int rc = unix_address(path, &address);
    if (rc < 0) return rc;
    int fd = socket(AF_UNIX, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    (void)unlink(path);
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || (stream && listen(fd, 16) != 0)) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int spirit_unix_connect(const char *path) {
    struct sockaddr_un address;
    int rc = unix_address(path, &address);
    if (rc < 0) return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    while (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        if (errno == EINTR) continue;
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int spirit_accept(int fd) {
    int connection;
    do {
        connection = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    } while (connection < 0 && errno == EINTR);
    return connection >= 0 ? connection : -errno;
}

long spirit_peer_uid(int fd) {
    struct ucred credentials;
    socklen_t size = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return -errno;
    return (long)credentials.uid;
}

int spirit_output_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) != 0) return -errno;
    int flags = fcntl(fds[0], F_GETFL);
    if (flags < 0 || fcntl(fds[0], F_SETFL, flags | O_NONBLOCK) != 0) {
        int err = errno;
        close(fds[0]);
        close(fds[1]);
        return -err;
    }
    return 0;
}

int spirit_swapoff(const char *device) {
    return swapoff(device) == 0 ? 0 : -errno;
}

int spirit_memfd_create(const char *name) { return (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC); }
