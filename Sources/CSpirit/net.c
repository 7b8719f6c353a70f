// Network calls Swift cannot make directly: the ancillary data of recvmsg(2)
// (CMSG_* are macros), and ioctl(2), which is variadic.
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <unistd.h>

#include "CSpirit.h"
#include "shared/spirit_shared.h"

int spirit_ioctl_value(int fd, unsigned long request, unsigned long value) {
    int rc;
    do {
        rc = ioctl(fd, request, value);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : rc;
}

int spirit_enable_packet_info(int fd) {
    int on = 1;
    return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on) == 0 ? 0 : -errno;
}

long spirit_recv_datagram(int fd, void *buffer, size_t size, void *from, unsigned int *from_length,
                          uint32_t *local_address) {
    struct iovec iov = { .iov_base = buffer, .iov_len = size };
    union {
        char space[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } control;
    struct msghdr message = {
        .msg_name = from,
        .msg_namelen = *from_length,
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.space,
        .msg_controllen = sizeof control.space,
    };
    ssize_t n;
    do {
        n = recvmsg(fd, &message, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    *from_length = message.msg_namelen;
    *local_address = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof info);
            *local_address = info.ipi_spec_dst.s_addr;
        }
    }
    // A datagram longer than the buffer was cut: say so with its size.
    if (message.msg_flags & MSG_TRUNC) return -EMSGSIZE;
    return n;
}

long spirit_send_datagram_from(int fd, const void *buffer, size_t size, const void *to, unsigned int to_length,
                               uint32_t local_address) {
    struct iovec iov = { .iov_base = (void *)buffer, .iov_len = size };
    union {
        char space[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = {
        .msg_name = (void *)to,
        .msg_namelen = to_length,
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.space,
        .msg_controllen = sizeof control.space,
    };
    struct cmsghdr *c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo info = { .ipi_ifindex = 0 };
    info.ipi_spec_dst.s_addr = local_address;
    memcpy(CMSG_DATA(c), &info, sizeof info);
    ssize_t n;
    do {
        n = sendmsg(fd, &message, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int spirit_loopback_up(void) { return spirit_shared_loopback_up(); }

long spirit_send_with_fd(int fd, const void *bytes, size_t count, int passed) {
    struct iovec iov = { .iov_base = (void *)bytes, .iov_len = count };
    union {
        char space[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.space,
        .msg_controllen = sizeof control.space,
    };
    struct cmsghdr *c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passed, sizeof passed);
    ssize_t n;
    do {
        n = sendmsg(fd, &message, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}
