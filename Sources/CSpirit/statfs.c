#include "CSpirit.h"

#include <errno.h>
#include <sys/vfs.h>

int spirit_statfs_type(const char *path, long *type) {
    struct statfs buffer;
    if (statfs(path, &buffer) != 0) return -errno;
    *type = (long)buffer.f_type;
    return 0;
}
