#include "CSpirit.h"

#include <sys/vfs.h>

int spirit_statfs_type(const char *path, long *type) {
    struct statfs buffer;
    int rc = statfs(path, &buffer);
    if (rc == 0) *type = (long)buffer.f_type;
    return rc;
}
