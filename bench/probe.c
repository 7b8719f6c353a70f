/* The real init of the peers' root disk in `make bench`: the moment it runs
 * is the end of their initramfs stage. It reads CLOCK_BOOTTIME first thing,
 * then writes a line to the kernel log and finds there when the kernel
 * handed off to the initramfs's /init ("Run /init as init process", printed
 * by kernel_init), prints it all on the console and powers the machine off,
 * so that a boot ends by itself.
 *
 *   bench-probe: init at <µs> us, kmsg <µs> us, /init at <µs> us
 *
 * "init at" is CLOCK_BOOTTIME; "kmsg" is the kernel log's timestamp of the
 * probe's own line, so that the initramfs's part (kmsg - /init) is measured
 * on one clock, the printk clock: under TCG it drifts from CLOCK_BOOTTIME by
 * a few tens of ms a minute.
 *
 * Static (gcc -static): the root disk holds nothing else. The kernel log is
 * read with syslog(2); /dev/kmsg and the console are opened from /dev,
 * mounting devtmpfs there if the initramfs did not move its own /dev into the
 * root (systemd's switch-root leaves PID 1's stdio on /dev/null). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

static long long micros(struct timespec t) { return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000; }

/* The timestamp of the first kernel log line that holds `needle`, in µs of
 * the printk clock, or -1. Lines read "<6>[    3.012345] Run /init as init
 * process". */
static long long log_micros(const char *needle) {
    int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
    if (size <= 0) return -1;
    char *log = malloc((size_t)size + 1);
    if (!log) return -1;
    int length = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, size);
    if (length < 0) { free(log); return -1; }
    log[length] = 0;
    long long found = -1;
    for (char *line = log; line && *line; ) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *stamp = strchr(line, '[');
        long seconds, fraction;
        if (stamp && strstr(stamp, needle) && sscanf(stamp, "[%ld.%ld]", &seconds, &fraction) == 2) {
            found = (long long)seconds * 1000000 + fraction;
            break;
        }
        line = next;
    }
    free(log);
    return found;
}

int main(void) {
    struct timespec now;
    clock_gettime(CLOCK_BOOTTIME, &now);
    long long init = micros(now);

    int kmsg = open("/dev/kmsg", O_WRONLY | O_NOCTTY);
    if (kmsg < 0) {
        mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
        kmsg = open("/dev/kmsg", O_WRONLY | O_NOCTTY);
    }
    if (kmsg >= 0 && write(kmsg, "bench-probe: running\n", 21) < 0) { close(kmsg); kmsg = -1; }
    long long logged = kmsg >= 0 ? log_micros("] bench-probe: running") : -1;
    long long handoff = log_micros(" as init process");

    int console = open("/dev/console", O_WRONLY | O_NOCTTY);
    if (console < 0) console = 1;
    char line[160];
    int n = snprintf(line, sizeof line, "\nbench-probe: init at %lld us, kmsg %lld us, /init at %lld us\n", init, logged, handoff);
    if (write(console, line, (size_t)n) < 0) { /* nothing left to tell it to */ }
    fsync(console);
    sync();
    reboot(RB_POWER_OFF);
    /* PID 1 must not return; if poweroff failed, say so and wait. */
    n = snprintf(line, sizeof line, "bench-probe: unable to power off: %s\n", strerror(errno));
    if (write(console, line, (size_t)n) < 0) { }
    for (;;) pause();
}
