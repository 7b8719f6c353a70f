#include "CSpirit.h"

#include <errno.h>
#include <sys/vfs.h>
#include <sys/xattr.h>

int spirit_statfs_type(const char *path, long *type) {
    struct statfs buffer;
    if (statfs(path, &buffer) != 0) return -errno;
    *type = (long)buffer.f_type;
    return 0;
}

long spirit_lgetxattr(const char *path, const char *name, void *value, unsigned long size) {
    ssize_t n = lgetxattr(path, name, value, size);
    return n < 0 ? -errno : (long)n;
}
