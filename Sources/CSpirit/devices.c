// Device ioctls that take a macro request, which Swift cannot pass: the
// VT's display mode.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "CSpirit.h"

int spirit_console_set_mode(const char *tty, int graphics) {
    int fd;
    do {
        fd = open(tty, O_RDWR | O_NOCTTY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return -errno;
    int rc = ioctl(fd, KDSETMODE, graphics ? KD_GRAPHICS : KD_TEXT);
    int err = errno;
    close(fd);
    return rc == 0 ? 0 : -err;
}
