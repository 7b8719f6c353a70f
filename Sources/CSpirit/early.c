// The first code of ours in the process, before the Swift runtime's own
// initialisers (priority 101 is the first one available to programs): it
// notes when the process started (Nexus's first-frame time counts from
// it) and keeps argv, which the Linux runtime would otherwise find from
// `environ`. PID 1 is spirit-init (Sources/SpiritPID1), not this binary,
// so nothing here needs /proc.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "CSpirit.h"

static int64_t process_start_us;
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
}

int64_t spirit_process_start_us(void) { return process_start_us; }

char **spirit_arguments(int *count) {
    *count = saved_argc;
    return saved_argv;
}
