// Device ioctls that take a struct pointer or a macro request, which Swift
// cannot pass: fbdev's screen info, the VT's display mode, evdev's
// capability bits, name and grab, and the pseudo-terminal calls.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <linux/input.h>
#include <linux/kd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "CSpirit.h"

// InputEvent.parse in SpiritCore reads records of this size and layout.
_Static_assert(sizeof(struct input_event) == 24, "struct input_event is not 24 bytes on this target");

int spirit_fb_screen_info(int fd, spirit_fb_info *info) {
    struct fb_var_screeninfo var;
    struct fb_fix_screeninfo fix;
    memset(&var, 0, sizeof var);
    memset(&fix, 0, sizeof fix);
    if (ioctl(fd, FBIOGET_VSCREENINFO, &var) != 0) return -errno;
    if (ioctl(fd, FBIOGET_FSCREENINFO, &fix) != 0) return -errno;
    memset(info, 0, sizeof *info);
    info->width = var.xres;
    info->height = var.yres;
    info->x_offset = var.xoffset;
    info->y_offset = var.yoffset;
    info->bits_per_pixel = var.bits_per_pixel;
    info->red_offset = var.red.offset;
    info->green_offset = var.green.offset;
    info->blue_offset = var.blue.offset;
    info->line_length = fix.line_length;
    info->memory_length = fix.smem_len;
    memcpy(info->id, fix.id, sizeof fix.id);
    info->id[sizeof info->id - 1] = 0;
    return 0;
}

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

int spirit_pty_open(char *slave, size_t size) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (master < 0) return -errno;
    if (grantpt(master) != 0 || unlockpt(master) != 0) {
        int err = errno;
        close(master);
        return -err;
    }
    int rc = ptsname_r(master, slave, size);
    if (rc != 0) {
        close(master);
        return -rc;
    }
    return master;
}

int spirit_pty_set_size(int fd, unsigned short rows, unsigned short columns) {
    struct winsize size;
    memset(&size, 0, sizeof size);
    size.ws_row = rows;
    size.ws_col = columns;
    return ioctl(fd, TIOCSWINSZ, &size) == 0 ? 0 : -errno;
}
