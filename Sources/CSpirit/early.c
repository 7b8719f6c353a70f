// The Swift runtime reads /proc/self/... before main() (to find its own
// path); a static Swift binary started as PID 1 has no /proc yet and dies
// with "Unable to obtain Swift runtime path". This constructor runs before
// the runtime's own initialisers (priority 101 is the first one available
// to programs) and mounts /proc when we are PID 1.
//
// The runtime also seeds Hasher from getrandom(2) in a global constructor,
// which blocks until the kernel's random pool is ready: on a machine without
// RDRAND or a hardware RNG (QEMU's default CPU) that held PID 1 for about a
// second ("random: crng init done" came 6 ms after main). PID 1 hashes only
// its own small tables, so it asks for the runtime's fixed seed instead;
// PID 1 passes the same to the boot worker and to no one else. setenv moves
// `environ`, from which the Linux runtime finds argv for CommandLine, so the
// constructor keeps argv itself (glibc passes it to constructors).
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "CSpirit.h"

static int64_t process_start_us;
static int early_proc_status;
static int saved_argc;
static char **saved_argv;

int64_t spirit_boottime_us(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0) return 0;
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

__attribute__((constructor(101)))
static void spirit_early_constructor(int argc, char **argv, char **envp) {
    (void)envp;
    process_start_us = spirit_boottime_us();
    saved_argc = argc;
    saved_argv = argv;
    if (getpid() != 1) return;
    (void)setenv("SWIFT_DETERMINISTIC_HASHING", "1", 1);
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

char **spirit_arguments(int *count) {
    *count = saved_argc;
    return saved_argv;
}
