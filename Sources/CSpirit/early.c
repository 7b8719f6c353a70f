// The Swift runtime reads /proc/self/... before main() (to find its own
// path); a static Swift binary started as PID 1 has no /proc yet and dies
// with "Unable to obtain Swift runtime path". This constructor runs before
// the runtime's own initialisers (priority 101 is the first one available
// to programs) and mounts /proc when we are PID 1.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "CSpirit.h"

static int64_t process_start_us;
static int early_proc_status;

int64_t spirit_boottime_us(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0) return 0;
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

__attribute__((constructor(101)))
static void spirit_early_constructor(void) {
    process_start_us = spirit_boottime_us();
    if (getpid() != 1) return;
    struct stat st;
    if (stat("/proc/self", &st) == 0) return;
    (void)mkdir("/proc", 0555);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0) {
        early_proc_status = 1;
    } else {
        early_proc_status = -errno;
    }
}

int64_t spirit_process_start_us(void) { return process_start_us; }
int spirit_early_proc_status(void) { return early_proc_status; }
