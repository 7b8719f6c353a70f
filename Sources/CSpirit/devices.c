// Device ioctls that take a struct pointer or a macro request, which Swift
// cannot pass: the VT's display mode, evdev's capability bits, name and grab.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <linux/kd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "CSpirit.h"

// InputEvent.parse in SpiritCore reads records of this size and layout.
_Static_assert(sizeof(struct input_event) == 24, "struct input_event is not 24 bytes on this target");

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

int spirit_evdev_bits(int fd, unsigned int type, uint8_t *bits, unsigned int size) {
    memset(bits, 0, size);
    int rc = ioctl(fd, EVIOCGBIT(type, size), bits);
    return rc >= 0 ? rc : -errno;
}

int spirit_evdev_name(int fd, char *name, unsigned int size) {
    if (size == 0) return -EINVAL;
    int rc = ioctl(fd, EVIOCGNAME(size), name);
    if (rc < 0) return -errno;
    name[size - 1] = 0;
    return rc;
}

int spirit_evdev_grab(int fd, int grab) {
    return ioctl(fd, EVIOCGRAB, grab ? 1 : 0) == 0 ? 0 : -errno;
}
